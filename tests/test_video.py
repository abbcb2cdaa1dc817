"""Video writing (mp4/webm/gif/png folder) round-trips through the reader."""

from __future__ import annotations

import numpy as np
import pytest

from lpstudio.errors import VideoError
from lpstudio.video import VideoReader, detect_format
from lpstudio.video_writer import VideoWriter, write_video

N_FRAMES = 6


def frames(h: int = 64, w: int = 48) -> list[np.ndarray]:
    out = []
    for i in range(N_FRAMES):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, : (i + 1) * w // N_FRAMES] = (220, 40, 30)
        f[h // 2 :, :, 2] = 200
        out.append(f)
    return out


@pytest.mark.parametrize(
    "name,fmt", [("a.mp4", "mp4"), ("b.webm", "webm"), ("c.gif", "gif"), ("d", "png"), ("e/", "png")]
)
def test_detect_format(name: str, fmt: str) -> None:
    assert detect_format(name) == fmt


def test_detect_format_rejects_unknown() -> None:
    with pytest.raises(VideoError):
        detect_format("clip.avi")


@pytest.mark.parametrize("name,tol", [("v.mp4", 12), ("v.webm", 16), ("v.gif", 12), ("pngs", 0)])
def test_roundtrip(tmp_path, name: str, tol: int) -> None:
    src = frames()
    path = tmp_path / name
    assert write_video(path, src, fps=10) == N_FRAMES
    reader = VideoReader(path)
    got = reader.read_all()
    assert len(got) == N_FRAMES
    if name != "pngs":
        assert reader.fps == pytest.approx(10)
    for a, b in zip(src, got, strict=True):
        assert b.shape == a.shape
        assert np.abs(a.astype(int) - b.astype(int)).mean() <= tol


def test_odd_size_is_padded_for_yuv420(tmp_path) -> None:
    src = frames(33, 31)
    write_video(tmp_path / "odd.mp4", src, fps=5)
    got = VideoReader(tmp_path / "odd.mp4").read_all()
    assert got[0].shape == (34, 32, 3)


def test_writer_errors(tmp_path) -> None:
    with VideoWriter(tmp_path / "x.mp4", 10) as w:
        w.write(frames()[0])
        with pytest.raises(VideoError):
            w.write(np.zeros((10, 10, 3), np.uint8))
        with pytest.raises(VideoError):
            w.write(np.zeros((64, 48, 3), np.float32))
    with pytest.raises(VideoError):
        write_video(tmp_path / "empty.mp4", [], fps=10)
    with pytest.raises(VideoError):
        VideoWriter(tmp_path / "y.mp4", 0)
    with pytest.raises(VideoError):
        VideoReader(tmp_path / "missing.mp4")
