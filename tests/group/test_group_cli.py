"""``--faces`` end to end: a two-face photo made of real photos, MediaPipe models, synthetic weights.

The photo: :func:`group_photos.two_face_photo` (two real faces side by side). "A face's box" in the checks below is the
region its animated crop is blended into (the paste-back mask, wider than the detector's box).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from group_photos import two_face_photo
from lpstudio.cli import main
from lpstudio.face import PasteBack
from lpstudio.face.mediapipe import INSTALL_HINT, available

LEVELS = 2
"""Pixels outside the faces' regions may differ from the input by at most this (PNG round trip: 0)."""

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("group") / "two.png"
    Image.fromarray(two_face_photo()).save(path)
    return path


@pytest.fixture(scope="module")
def faces():
    from lpstudio.face.models import MediaPipeFacePipeline

    mp = MediaPipeFacePipeline()
    photo = two_face_photo()
    return [mp.analyze(photo, face_index=i) for i in range(2)]


def _alpha(face, hw: tuple[int, int]) -> np.ndarray:
    paster = PasteBack.for_face(face, hw)
    full = np.zeros(hw, np.float32)
    r = paster.region
    full[r.y0 : r.y1, r.x0 : r.x1] = paster.alpha[..., 0]
    return full


def _edit(photo_path: Path, weights: Path, out: Path, *extra: str) -> int:
    args = ["edit", str(photo_path), "--face-models", "mediapipe", "--weights-dir", str(weights), "-o", str(out)]
    return main([*args, *extra])


@pytest.mark.slow  # two faces prepared and rendered on the CPU engine; the stand-in tests check batching in CI
def test_both_faces_found_and_rendered_in_one_batch(
    photo_path: Path, faces, synthetic_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lpstudio.engine import LivePortrait

    assert len(faces[0].all_boxes) == 2  # today's detector finds both
    batches: list[int] = []
    original = LivePortrait.render_mixed

    def counting(self, items):  # noqa: ANN001, ANN202
        batches.append(len(items))
        return original(self, items)

    monkeypatch.setattr(LivePortrait, "render_mixed", counting)
    out = tmp_path / "all.png"
    assert _edit(photo_path, synthetic_weights_dir, out, "--faces", "all", "--set", "smile=1") == 0
    assert batches == [2]  # one forward of batch 2, not two forwards
    photo = two_face_photo()
    result = np.asarray(Image.open(out).convert("RGB"))
    assert result.shape == photo.shape
    diff = np.abs(result.astype(np.int16) - photo.astype(np.int16)).max(axis=2)
    alphas = [_alpha(f, photo.shape[:2]) for f in faces]
    outside = (alphas[0] == 0) & (alphas[1] == 0)
    assert diff[outside].max() <= LEVELS
    for a in alphas:  # each face was re-rendered
        assert diff[a > 0.9].mean() > 1


def test_faces_1_changes_only_the_second_face(
    photo_path: Path, faces, synthetic_weights_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "second.png"
    assert _edit(photo_path, synthetic_weights_dir, out, "--faces", "1") == 0
    photo = two_face_photo()
    result = np.asarray(Image.open(out).convert("RGB"))
    diff = np.abs(result.astype(np.int16) - photo.astype(np.int16)).max(axis=2)
    second = _alpha(faces[1], photo.shape[:2])
    assert diff[second == 0].max() <= LEVELS  # face 0 and everything else untouched
    x0, y0, x1, y1 = faces[0].box[:4].astype(int)
    assert diff[y0:y1, x0:x1].max() <= LEVELS
    assert diff[second > 0.9].mean() > 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--faces", "2"), "face 2 was asked for, but the photo has 2 faces (numbered 0 to 1, largest first)"),
        (("--faces", "0,x"), "is not 'all' nor a list of face numbers"),
        (("--faces", "1", "--face-index", "1"), "--faces and --face-index both choose faces"),
    ],
)
def test_bad_face_choices_exit_2_with_one_line(
    photo_path: Path, synthetic_weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, message
) -> None:
    assert _edit(photo_path, synthetic_weights_dir, tmp_path / "x.png", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_photo_without_a_face(synthetic_weights_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((300, 400, 3), 128, np.uint8)).save(blank)
    assert _edit(blank, synthetic_weights_dir, tmp_path / "x.png", "--faces", "all") == 2
    err = capsys.readouterr().err.strip()
    assert "No face was found in the photo (400x300 pixels)" in err and len(err.splitlines()) == 1


def _template(path: Path, frames: int, seed: int) -> Path:
    """A small motion template (near-frontal head, small expression changes): drives without a driving video."""
    from fractions import Fraction

    from lpstudio.drive.template import MotionTrack, save_motion

    rng = np.random.default_rng(seed)
    arrays = {
        "rotation": np.repeat(np.eye(3, dtype=np.float32)[None], frames, axis=0),
        "exp": (0.01 * rng.normal(size=(frames, 21, 3))).astype(np.float32),
        "scale": np.ones((frames, 1), np.float32),
        "t": np.zeros((frames, 3), np.float32),
        "kp": (0.1 * rng.normal(size=(frames, 21, 3))).astype(np.float32),
    }
    return save_motion(path, MotionTrack(arrays, Fraction(10), np.ones(frames, bool), "test"))


@pytest.mark.slow  # two faces prepared and driven on the CPU engine (~30 s); run with --runslow
def test_drive_faces_each_its_own_template(
    photo_path: Path, synthetic_weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--drive-face 1=b.npz with DRIVING a.npz and --faces all: two faces, one batch per frame, the length of
    the shorter template."""
    from lpstudio.engine import LivePortrait

    batches: list[int] = []
    original = LivePortrait.render_mixed
    monkeypatch.setattr(
        LivePortrait, "render_mixed", lambda self, items: batches.append(len(items)) or original(self, items)
    )
    a, b = _template(tmp_path / "a.npz", 2, 1), _template(tmp_path / "b.npz", 1, 2)
    out = tmp_path / "drive.mp4"
    args = ["drive", str(photo_path), str(a), "--faces", "all", "--drive-face", f"1={b}", "--batch-size", "2"]
    args += ["--face-models", "mediapipe", "--weights-dir", str(synthetic_weights_dir), "--quiet", "-o", str(out)]
    assert main(args) == 0
    assert batches == [2]  # 1 frame (the shorter template), its 2 faces in one batch
    assert out.is_file() and out.stat().st_size > 0


def test_drive_face_out_of_range(photo_path: Path, synthetic_weights_dir: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    a = _template(tmp_path / "a.npz", 2, 1)
    args = ["drive", str(photo_path), str(a), "--drive-face", f"4={a}", "--face-models", "mediapipe"]
    assert main([*args, "--weights-dir", str(synthetic_weights_dir), "-o", str(tmp_path / "x.mp4")]) == 2
    err = capsys.readouterr().err.strip()
    assert "face 4 was asked for, but the photo has 2 faces" in err and len(err.splitlines()) == 1
    assert main(["drive", str(photo_path), str(a), "--drive-face", "one=a.npz", "-o", str(tmp_path / "x.mp4")]) == 2
    assert "is not FACE=FILE" in capsys.readouterr().err
