"""No data loss on disk: an output that exists survives a failed or interrupted write, and a
finished write replaces it whole, with no partial file left behind.

Covers every writer the CLI uses: videos (mp4, webm, gif), PNG folders, video with audio
samples (the speaking clips), still images, motion templates and the shared helper itself.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from lpstudio import atomic
from lpstudio.drive import template as template_module
from lpstudio.drive.template import MotionTemplateError, MotionTrack, load_motion, save_motion
from lpstudio.errors import ImageError, LPStudioError, VideoError
from lpstudio.imageio import save_image
from lpstudio.speech.audio import AudioClip
from lpstudio.video import VideoReader
from lpstudio.video_writer import VideoWriter

FPS = 10
OLD_FRAMES = 5
NEW_FRAMES = 3
SIZE = (32, 48)  # (H, W): even, so no padding muddles the comparison
AUDIO_RATE = 16_000


class Boom(RuntimeError):
    """The failure a test injects (a stand-in for a renderer's error)."""


def frame(value: int) -> np.ndarray:
    return np.full((*SIZE, 3), value, np.uint8)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes): what is on disk, partials included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def audio_kwargs(audio: bool) -> dict[str, int]:
    """The writer's arguments for a mono sound track (none without one)."""
    return {"audio_channels": 1} if audio else {}


def write_frames(path: Path, count: int, value: int, *, audio: bool = False) -> None:
    with VideoWriter(path, FPS, **audio_kwargs(audio)) as writer:
        if audio:
            writer.add_audio(AudioClip.from_mono(np.full(AUDIO_RATE, 0.1, np.float32), AUDIO_RATE))
        for _ in range(count):
            writer.write(frame(value))


VIDEO_CASES = {
    "mp4": ("out.mp4", False),
    "webm": ("out.webm", False),
    "gif": ("out.gif", False),
    "png-folder": ("frames", False),
    "mp4-with-audio": ("talk.mp4", True),
}


@pytest.fixture(params=list(VIDEO_CASES))
def existing(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, bool, dict[str, bytes]]:
    """An output of :data:`OLD_FRAMES` frames already on disk; returns (path, audio, snapshot of the folder)."""
    name, audio = VIDEO_CASES[request.param]
    path = tmp_path / name
    write_frames(path, OLD_FRAMES, 200, audio=audio)
    return path, audio, snapshot(tmp_path)


def test_existing_video_survives_a_failure_before_the_first_frame(existing) -> None:
    path, audio, before = existing
    with pytest.raises(Boom), VideoWriter(path, FPS, **audio_kwargs(audio)):
        raise Boom("the renderer failed before its first frame")
    assert snapshot(path.parent) == before  # the old output, byte for byte, and no partial


def test_existing_video_survives_ctrl_c_mid_write(existing) -> None:
    path, audio, before = existing
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, FPS, **audio_kwargs(audio)) as writer:
        if audio:
            writer.add_audio(AudioClip.from_mono(np.zeros(AUDIO_RATE, np.float32), AUDIO_RATE))
        writer.write(frame(10))
        writer.write(frame(20))
        raise KeyboardInterrupt
    assert snapshot(path.parent) == before
    assert len(VideoReader(path).read_all()) == OLD_FRAMES


def test_success_replaces_the_output_whole_and_leaves_no_partial(existing) -> None:
    path, audio, _ = existing
    write_frames(path, NEW_FRAMES, 40, audio=audio)
    got = VideoReader(path).read_all()
    assert len(got) == NEW_FRAMES  # no stale frame of the old output (a PNG folder is swapped, not overwritten)
    assert abs(float(got[-1].mean()) - 40) < 8
    assert names(path.parent) == [path.name]


def test_ctrl_c_while_the_finished_file_moves_in_keeps_the_old_one(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.mp4"
    write_frames(target, OLD_FRAMES, 200)
    before = snapshot(tmp_path)

    def interrupted_replace(src, dst) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        write_frames(target, NEW_FRAMES, 40)  # every frame written; Ctrl+C as the file is finished
    assert snapshot(tmp_path) == before


def test_a_bad_audio_source_fails_before_the_output_is_touched(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    write_frames(target, OLD_FRAMES, 200)
    before = snapshot(tmp_path)
    with pytest.raises(VideoError, match="no such file"):
        VideoWriter(target, FPS, audio_from=tmp_path / "missing.wav")
    assert snapshot(tmp_path) == before


def test_the_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "out.gif"
    write_frames(target, OLD_FRAMES, 200)
    target.chmod(0o640)
    write_frames(target, NEW_FRAMES, 40)
    assert target.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("name", [".", ".."])
def test_the_current_folder_is_never_a_frame_folder(tmp_path: Path, monkeypatch, name: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(VideoError, match="replaces the whole folder"):
        VideoWriter(name, FPS, "png")
    assert names(tmp_path) == ["work"] and names(work) == []


def test_partial_keeps_the_extension_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "clip.webm"
    with pytest.raises(Boom), VideoWriter(target, FPS) as writer:
        partial = writer.partial_path
        assert partial is not None and partial.parent == tmp_path and partial.suffix == ".webm"
        assert partial.name.startswith(".clip.partial-")
        writer.write(frame(0))
        raise Boom("after one frame")
    assert names(tmp_path) == []  # the partial is cleaned up; nothing was there before


def test_writer_without_frames_leaves_the_output_alone(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    write_frames(target, OLD_FRAMES, 200)
    before = snapshot(tmp_path)
    with VideoWriter(target, FPS):
        pass
    assert snapshot(tmp_path) == before


def test_png_folder_with_other_files_is_refused_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(VideoError, match="notes.txt"):
        VideoWriter(folder, FPS)
    assert snapshot(tmp_path) == {"mine/notes.txt": b"keep me"}


# ------------------------------------------------------------------------------ images
def _failing_save(exc: BaseException) -> Callable[..., None]:
    """A Pillow ``save`` that writes half a file, then fails."""

    def save(self, fp, format=None, **params) -> None:  # noqa: A002 - Pillow's own argument name
        Path(fp).write_bytes(b"\x89PNG half")
        raise exc

    return save


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), OSError(28, "No space left on device")])
def test_existing_image_survives_a_failed_save(tmp_path: Path, monkeypatch, exc: BaseException) -> None:
    from PIL import Image

    target = tmp_path / "edited.png"
    save_image(target, frame(200))
    before = snapshot(tmp_path)
    monkeypatch.setattr(Image.Image, "save", _failing_save(exc))
    with pytest.raises(type(exc) if isinstance(exc, KeyboardInterrupt) else ImageError) as info:
        save_image(target, frame(10))
    if isinstance(info.value, ImageError):
        assert "No space" not in info.value.message  # Pillow/OS words go to the log, not the user
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp"])
def test_image_save_replaces_whole_and_leaves_no_partial(tmp_path: Path, suffix: str) -> None:
    from PIL import Image

    target = tmp_path / f"edited{suffix}"
    save_image(target, frame(200))
    save_image(target, frame(40))
    with Image.open(target) as im:
        assert abs(float(np.asarray(im.convert("RGB")).mean()) - 40) < 4
    assert names(tmp_path) == [target.name]


# ------------------------------------------------------------------------------ motion templates
def _track(n: int, value: float) -> MotionTrack:
    arrays = {name: np.full((n, *shape), value, np.float32) for name, shape in template_module.FIELD_SHAPES.items()}
    return MotionTrack(arrays, Fraction(25), np.ones(n, bool), "test")


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Boom("disk went away")])
def test_existing_motion_template_survives_a_failed_save(tmp_path: Path, monkeypatch, exc: BaseException) -> None:
    target = tmp_path / "motion.npz"
    save_motion(target, _track(4, 0.5))
    before = snapshot(tmp_path)

    def failing(fh, **arrays) -> None:
        fh.write(b"PK half a zip")
        raise exc

    monkeypatch.setattr(template_module.np, "savez_compressed", failing)
    with pytest.raises(type(exc)):
        save_motion(target, _track(2, 0.25))
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    assert len(load_motion(target)) == 4


def test_motion_template_save_replaces_whole(tmp_path: Path) -> None:
    target = tmp_path / "motion.npz"
    save_motion(target, _track(4, 0.5))
    save_motion(target, _track(2, 0.25))
    assert len(load_motion(target)) == 2
    assert names(tmp_path) == ["motion.npz"]
    with pytest.raises(MotionTemplateError):
        save_motion(tmp_path / "motion.pkl", _track(2, 0.25))


# ------------------------------------------------------------------------------ the helper
def test_folder_swap_puts_the_old_folder_back_when_the_new_one_cannot_move_in(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "frames"
    target.mkdir()
    (target / "frame_00000.png").write_bytes(b"old")
    real_rename = os.rename
    calls: list[tuple[str, str]] = []

    def rename(src, dst) -> None:
        calls.append((str(src), str(dst)))
        if len(calls) == 2:  # old folder moved aside; moving the new one in fails
            raise OSError(13, "Permission denied")
        real_rename(src, dst)

    with pytest.raises(LPStudioError, match="cannot move the finished output"):
        with atomic.atomic_output(target, folder=True) as partial:
            (partial / "frame_00000.png").write_bytes(b"new")
            monkeypatch.setattr(atomic.os, "rename", rename)
    assert snapshot(tmp_path) == {"frames/frame_00000.png": b"old"}


def test_atomic_output_refuses_a_folder_where_a_file_goes(tmp_path: Path) -> None:
    (tmp_path / "report.json").mkdir()
    with pytest.raises(LPStudioError, match="folder of that name exists"):
        with atomic.atomic_output(tmp_path / "report.json"):
            pass
    assert names(tmp_path) == ["report.json"]


# ------------------------------------------------------------------------------ ONNX exports
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), Boom("the exporter failed while saving")])
def test_existing_onnx_export_survives_a_failed_export(tmp_path: Path, monkeypatch, exc: BaseException) -> None:
    """`lpstudio export onnx --out DIR` over an earlier export: a failure keeps the earlier file."""
    import torch

    from lpstudio.export import export_stage
    from lpstudio.nets import Networks

    target = tmp_path / "stitching.onnx"
    target.write_bytes(b"an earlier, complete export")
    before = snapshot(tmp_path)

    class HalfSaved:
        def save(self, path: str) -> None:
            Path(path).write_bytes(b"half a model")
            raise exc

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: HalfSaved())
    with pytest.raises(type(exc)):
        export_stage(Networks(), "stitching", target, check=False)
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------------------ CLI reports
def test_bench_report_file_survives_an_interrupted_write(tmp_path: Path, monkeypatch, capsys) -> None:
    """`lpstudio bench --out FILE`: Ctrl+C while the report is written keeps the previous report."""
    from lpstudio import bench
    from lpstudio.cli import main

    report = tmp_path / "bench.json"
    report.write_text('{"previous": "report"}\n')
    before = snapshot(tmp_path)
    monkeypatch.setattr(bench, "run_bench", lambda opts: {"fake": "report"})
    real_write_text = Path.write_text

    def interrupted_write_text(self: Path, data: str, *args, **kwargs) -> int:
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", interrupted_write_text)
    assert main(["bench", "--json", "--quiet", "--out", str(report)]) == 130  # the CLI's "interrupted"
    assert snapshot(tmp_path) == before
    monkeypatch.setattr(Path, "write_text", real_write_text)
    assert main(["bench", "--json", "--quiet", "--out", str(report)]) == 0
    assert report.read_text() == '{\n  "fake": "report"\n}\n' and names(tmp_path) == ["bench.json"]
    capsys.readouterr()
