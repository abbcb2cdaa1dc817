"""Motion templates: .npz round trip, official .pkl through the restricted loader, malicious files refused."""

from __future__ import annotations

import os
import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lpstudio.drive.template import MotionTemplateError, MotionTrack, load_motion, restricted_load, save_motion
from lpstudio.errors import VideoError


def _track(n: int = 3, ratios: bool = True) -> MotionTrack:
    rng = np.random.default_rng(2)
    arrays = {
        "rotation": rng.normal(size=(n, 3, 3)).astype(np.float32),
        "exp": rng.normal(size=(n, 21, 3)).astype(np.float32),
        "scale": rng.random((n, 1)).astype(np.float32),
        "t": rng.normal(size=(n, 3)).astype(np.float32),
        "kp": rng.normal(size=(n, 21, 3)).astype(np.float32),
    }
    if ratios:
        arrays["eye_ratio"] = rng.random((n, 2)).astype(np.float32)
        arrays["lip_ratio"] = rng.random((n, 1)).astype(np.float32)
    return MotionTrack(arrays, Fraction(30000, 1001), np.array([True, False, True][:n]), "d.mp4")


def test_npz_round_trip(tmp_path: Path) -> None:
    track = _track()
    loaded = load_motion(save_motion(tmp_path / "m.npz", track))
    assert loaded.fps == Fraction(30000, 1001) and len(loaded) == 3 and loaded.source == "d.mp4"
    np.testing.assert_array_equal(loaded.face_found, track.face_found)
    assert set(loaded.arrays) == set(track.arrays)
    for k, v in track.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[k], v)
    # the file itself loads without pickle
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert "meta" in data.files


def test_npz_with_object_arrays_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, rotation=np.array([{"a": 1}], dtype=object), meta=np.array("{}"))
    with pytest.raises(MotionTemplateError, match="pickled objects"):
        load_motion(path)


def test_npz_without_metadata_or_with_bad_shapes_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "plain.npz", rotation=np.zeros((2, 3, 3), np.float32))
    with pytest.raises(MotionTemplateError, match="metadata"):
        load_motion(tmp_path / "plain.npz")
    track = _track()
    track.arrays["exp"] = track.arrays["exp"][:, :20]
    save_motion(tmp_path / "bad.npz", track)
    with pytest.raises(MotionTemplateError, match="exp has shape"):
        load_motion(tmp_path / "bad.npz")


def _official(track: MotionTrack, old_keys: bool = False) -> dict:
    a = track.arrays
    return {
        "n_frames": len(track),
        "output_fps": 25,
        "motion": [
            {
                ("R_d" if old_keys else "R"): a["rotation"][i][None],
                "exp": a["exp"][i][None],
                "scale": a["scale"][i][None],
                "t": a["t"][i][None],
                "kp": a["kp"][i][None],
                "x_s": a["kp"][i][None],
            }
            for i in range(len(track))
        ],
        ("c_d_eyes_lst" if old_keys else "c_eyes_lst"): [a["eye_ratio"][i][None] for i in range(len(track))],
        ("c_d_lip_lst" if old_keys else "c_lip_lst"): [a["lip_ratio"][i][None] for i in range(len(track))],
    }


@pytest.mark.parametrize("protocol", [2, 4, pickle.HIGHEST_PROTOCOL])
@pytest.mark.parametrize("old_keys", [False, True])
def test_official_pkl_templates_load(tmp_path: Path, protocol: int, old_keys: bool) -> None:
    track = _track()
    path = tmp_path / "d0.pkl"
    path.write_bytes(pickle.dumps(_official(track, old_keys), protocol=protocol))
    loaded = load_motion(path)
    assert len(loaded) == 3 and loaded.fps == 25
    for k, v in track.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[k], v)


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"motion": [_Payload(marker)]}))
    with pytest.raises(MotionTemplateError, match=r"refused to load .*evil\.pkl.*posix\.mkdir|refused to load .*os"):
        load_motion(path)
    assert not marker.exists()
    for blob in (pickle.dumps(eval), pickle.dumps(np.load), pickle.dumps(Path("x"))):
        with pytest.raises(MotionTemplateError, match="refused"):
            restricted_load(blob)
    # object arrays carry arbitrary objects too
    with pytest.raises(MotionTemplateError, match="refused"):
        restricted_load(pickle.dumps(np.array([1, "a"], dtype=object)))


def test_template_errors_are_video_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(VideoError, match="junk.pkl"):
        load_motion(tmp_path / "junk.pkl")
    with pytest.raises(VideoError, match="no such file"):
        load_motion(tmp_path / "missing.npz")
