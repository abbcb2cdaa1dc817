"""The streaming driver's input/output and errors (a stand-in renderer keeps these fast)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from drive_helpers import read_back, write_video

from lpstudio.cli import main
from lpstudio.drive.crop import DrivingCropper
from lpstudio.drive.driving_motion import DriveSettings, KeypointDriver
from lpstudio.drive.pipeline import drive, motion_chunks, template_chunks
from lpstudio.drive.template import load_motion
from lpstudio.engine import LivePortrait
from lpstudio.errors import FaceNotFoundError, VideoError
from lpstudio.video import iter_frames


@pytest.fixture(scope="module")
def face_engine(engine, face_pipeline) -> LivePortrait:
    """The synthetic-weights networks with the stand-in face models (photos are cropped, frames pasted back)."""
    return LivePortrait(engine.networks, "cpu", "float32", face=face_pipeline)


@pytest.fixture(scope="module")
def photo_state(face_engine, photo):
    return face_engine.prepare_source(photo)


@pytest.fixture()
def fast_render(monkeypatch: pytest.MonkeyPatch, face_engine: LivePortrait) -> None:
    """Replace warp+decode by a frame whose grey level follows x_d (the rest of the pipeline is real)."""

    def render_keypoints(state, x_d: torch.Tensor, *, batch_size: int = 4):
        for row in x_d:
            yield np.full((512, 512, 3), int(row.abs().sum() * 997) % 256, np.uint8)

    monkeypatch.setattr(face_engine, "render_keypoints", render_keypoints)


def _frames(n: int, seed: int = 0, size: int = 256) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_cropped_drive_keeps_count_fps_audio_and_saves_motion(
    face_engine, photo_state, fast_render, make_video, tmp_path: Path
) -> None:
    video = make_video(_frames(5), fps=25)
    out = tmp_path / "out.mp4"
    summary = drive(
        face_engine, photo_state, video, out, batch_size=4, progress=False, save_motion_to=tmp_path / "m.npz"
    )
    assert read_back(out) == (5, Fraction(25), True, (512, 512))  # pasted into the 512x512 photo
    assert (summary.frames, summary.faceless_frames, summary.audio) == (5, 0, True)
    track = load_motion(tmp_path / "m.npz")
    assert len(track) == 5 and track.fps == 25 and track.face_found.all()
    assert track.arrays["eye_ratio"].shape == (5, 2)  # cropping measures the landmarks anyway

    # the saved motion drives exactly like the video did
    cropper = DrivingCropper(face_engine.face)
    driver = KeypointDriver(face_engine, photo_state, DriveSettings())
    from_video = [driver(m) for m, _ in motion_chunks(face_engine, iter_frames(video), cropper, 4, "v")]
    driver = KeypointDriver(face_engine, photo_state, DriveSettings())
    from_template = [driver(m) for m, _ in template_chunks(track, 4, "cpu")]
    for a, b in zip(from_video, from_template, strict=True):
        assert torch.equal(a, b)

    # and without audio when asked
    summary = drive(face_engine, photo_state, video, tmp_path / "mute.mp4", audio=False, progress=False)
    assert read_back(tmp_path / "mute.mp4")[2] is False and not summary.audio


def test_faceless_frames_reuse_the_last_motion_and_are_counted(face_engine) -> None:
    frames = _frames(5, seed=3)
    inner = DrivingCropper(face_engine.face, precropped=True)
    faceless = {0, 2, 3}

    def cropper(frame):
        index = next(i for i, f in enumerate(frames) if f is frame)
        return None if index in faceless else inner(frame)

    chunks = list(motion_chunks(face_engine, iter(frames), cropper, 2, "v"))
    found = [f for _, flags in chunks for f in flags]
    rows = torch.cat([m.exp for m, _ in chunks])
    assert found == [False, True, False, False, True]
    assert len(rows) == 5
    assert torch.equal(rows[0], rows[1])  # before the first face: the first face's motion (no movement)
    assert torch.equal(rows[2], rows[1]) and torch.equal(rows[3], rows[1])
    assert not torch.equal(rows[4], rows[1])


def test_a_video_without_any_face_is_a_clear_error(engine, faceless_pipeline, make_video, tmp_path: Path) -> None:
    no_face = LivePortrait(engine.networks, "cpu", "float32", face=faceless_pipeline)
    state = engine.prepare_source(_frames(1, seed=9)[0], crop=False)
    video = make_video(_frames(3), audio=False)
    out = tmp_path / "out.mp4"
    with pytest.raises(FaceNotFoundError, match=r"any of the 3 frames of the driving video .*driving\.mp4"):
        drive(no_face, state, video, out, progress=False)
    assert not out.exists()  # no half-written file left behind


def test_corrupt_empty_and_unsupported_videos_are_clear_errors(engine, tmp_path: Path) -> None:
    state = engine.prepare_source(_frames(1, seed=9)[0], crop=False)
    out = tmp_path / "out.mp4"

    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"corrupt\.mp4.*(corrupt|not a video)"):
        drive(engine, state, corrupt, out, precropped=True, progress=False)

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty\.mp4.*empty"):
        drive(engine, state, empty, out, precropped=True, progress=False)

    good = write_video(tmp_path / "good.mkv", _frames(2), audio=False)
    data = good.read_bytes()
    assert data.count(b"V_MPEG4/ISO/AVC") == 1
    unsupported = tmp_path / "unsupported.mkv"
    unsupported.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_LPSTUDIO/XYZ1"))  # a codec id nobody knows
    with pytest.raises(VideoError, match=r"unsupported\.mkv.*codec .*not supported"):
        drive(engine, state, unsupported, out, precropped=True, progress=False)

    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(write_video(tmp_path / "full.mp4", _frames(3), audio=False).read_bytes()[:600])
    with pytest.raises(VideoError, match="truncated.mp4"):
        drive(engine, state, truncated, out, precropped=True, progress=False)
    assert not out.exists()


def test_cli_reports_a_bad_driving_file_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from lpstudio.imageio import save_image

    save_image(tmp_path / "me.png", _frames(1)[0])
    (tmp_path / "bad.mp4").write_bytes(b"\x00" * 100)
    code = main(["drive", str(tmp_path / "me.png"), str(tmp_path / "bad.mp4"), "-o", str(tmp_path / "o.mp4")])
    err = capsys.readouterr().err
    assert code == 2
    assert "bad.mp4" in err and "Traceback" not in err


def test_a_driving_image_gives_one_image(face_engine, photo_state, fast_render, tmp_path: Path) -> None:
    from lpstudio.imageio import load_image, save_image

    save_image(tmp_path / "smile.png", _frames(1, seed=4)[0])
    out = tmp_path / "out.png"
    summary = drive(face_engine, photo_state, tmp_path / "smile.png", out, progress=False)
    assert summary.kind == "image" and summary.frames == 1 and summary.notes
    assert load_image(out).rgb.shape == (512, 512, 3)
