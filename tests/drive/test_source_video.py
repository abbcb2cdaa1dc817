"""The source-video module: probing, tracked crops, per-frame states, and its errors."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from drive_helpers import empty_video, write_video

from lpstudio.drive.source_video import (
    SourceTracker,
    iter_source_crops,
    iter_source_frames,
    open_source_video,
)
from lpstudio.engine import LivePortrait
from lpstudio.errors import FaceNotFoundError, ParamError, VideoError
from lpstudio.video import iter_frames


@pytest.fixture(scope="module")
def face_engine(engine, face_pipeline) -> LivePortrait:
    return LivePortrait(engine.networks, "cpu", "float32", face=face_pipeline)


def _frames(n: int, seed: int = 0, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def test_open_reports_fps_count_size_audio_and_duration(tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(5), fps=Fraction(30000, 1001))
    info = open_source_video(video)
    assert (info.frame_count, info.width, info.height, info.has_audio) == (5, 128, 96, True)
    assert info.fps_exact == Fraction(30000, 1001) and info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration_s == pytest.approx(5 / info.fps)
    assert open_source_video(video, max_frames=2).frame_count == 2
    with pytest.raises(ParamError):
        open_source_video(video, max_frames=0)


def test_a_zero_frame_video_and_a_non_video_fail_with_the_file_name(tmp_path: Path) -> None:
    empty = empty_video(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match=r"empty\.mp4: it has no video track"):
        open_source_video(empty)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all" * 10)
    with pytest.raises(VideoError, match="fake.mp4"):
        open_source_video(fake)
    (tmp_path / "frames").mkdir()
    with pytest.raises(VideoError, match="shorter than one frame"):
        open_source_video(tmp_path / "frames")


def test_every_frame_gets_its_own_state_and_paste_back(face_engine, tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(2, seed=1))
    out = list(iter_source_frames(face_engine, video))
    assert [f.index for f in out] == [0, 1] and all(f.tracked for f in out)
    for f, original in zip(out, iter_frames(video), strict=True):
        np.testing.assert_array_equal(f.rgb, original)
        assert f.state.feature_3d.shape[0] == 1 and f.state.x_s.shape == (1, 21, 3)
        assert f.state.photo is f.rgb and f.state.paster is not None
        pasted = face_engine.paste_back(f.state, np.zeros((512, 512, 3), np.uint8))
        assert pasted.shape == original.shape
    # different frames, different appearance: each frame's own f_s
    assert not np.array_equal(out[0].state.feature_3d.numpy(), out[1].state.feature_3d.numpy())


def test_tracking_detects_on_the_first_frame_and_every_n_frames(face_pipeline, tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(7, seed=2), audio=False)
    import lpstudio.drive.source_video as sv

    counts = []
    original = SourceTracker._detect

    def counting(self, frame):
        counts.append(self.frame_number)
        return original(self, frame)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sv.SourceTracker, "_detect", counting)
        crops = list(iter_source_crops(video, face_pipeline, detect_every=3))
    assert len(crops) == 7 and all(c.M_o2c is not None and c.lmk203 is not None for c in crops)
    main_pass = counts[1:]  # the first entry is the pre-scan that finds the first face
    assert counts[0] == 0 and main_pass[0] == 0 and len(main_pass) < 7


def test_recorded_matrices_replay_the_same_crops(face_pipeline, tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(3, seed=4), audio=False)
    first = list(iter_source_crops(video, face_pipeline))
    replay = list(iter_source_crops(video, None, matrices=np.stack([c.M_o2c for c in first])))
    for a, b in zip(first, replay, strict=True):
        np.testing.assert_array_equal(a.image_256, b.image_256)


def test_no_face_in_any_frame_names_the_file(engine, faceless_pipeline, tmp_path: Path) -> None:
    faceless = LivePortrait(engine.networks, "cpu", "float32", face=faceless_pipeline)
    video = write_video(tmp_path / "noface.mp4", _frames(2, seed=5), audio=False)
    with pytest.raises(FaceNotFoundError, match=r"any of the 2 frames of the source video .*noface\.mp4"):
        next(iter_source_frames(faceless, video))


def test_face_index_out_of_range_is_one_clear_error(face_pipeline, tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(2, seed=6), audio=False)
    with pytest.raises(FaceNotFoundError, match="Face number 3 was asked for"):
        next(iter_source_crops(video, face_pipeline, face_index=3))


def test_no_crop_frames_are_resized_without_paste_back(engine, tmp_path: Path) -> None:
    video = write_video(tmp_path / "s.mp4", _frames(2, seed=7, size=(64, 64)), audio=False)
    out = list(iter_source_frames(engine, video, no_crop=True, max_frames=1))
    assert len(out) == 1 and out[0].state.paster is None and out[0].state.image_256.shape == (256, 256, 3)
