"""Writing and reading videos with PyAV (RGB ``uint8`` frames in, RGB frames out).

Writer (:class:`VideoWriter`, :func:`write_video`) — the format follows the
output path:

* ``.mp4``: H.264 (libx264), ``yuv420p`` so every player accepts it;
* ``.webm``: VP9 (libvpx-vp9), ``yuv420p``;
* ``.gif``: an adaptive 256-colour palette per frame (quantised with Pillow,
  encoded by PyAV's GIF encoder);
* a path with no suffix, or ending in ``/``: a folder of ``frame_00000.png`` ...

Odd frame sizes are padded by one edge row/column for the 4:2:0 formats.

Reader (:class:`VideoReader`) is independent of the writer: it opens any file
PyAV can decode (or a PNG folder) and yields RGB frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import numpy as np

from .errors import VideoError

VIDEO_SUFFIXES: dict[str, str] = {".mp4": "mp4", ".webm": "webm", ".gif": "gif"}
FORMATS: tuple[str, ...] = ("mp4", "webm", "gif", "png")
MP4_CRF: int = 18
WEBM_CRF: int = 30
GIF_COLORS: int = 256
PNG_PATTERN: str = "frame_{:05d}.png"
MAX_FPS: float = 240.0


def detect_format(path: str | os.PathLike[str]) -> str:
    """``"mp4"``, ``"webm"``, ``"gif"`` or ``"png"`` (folder) from the output path."""
    p = str(path)
    suffix = Path(p).suffix.lower()
    if p.endswith(("/", os.sep)) or suffix == "":
        return "png"
    if suffix in VIDEO_SUFFIXES:
        return VIDEO_SUFFIXES[suffix]
    raise VideoError(
        f"cannot tell the video format of {p!r} (suffix {suffix!r})",
        hint="use .mp4, .webm, .gif, or a folder name (no suffix) for PNG frames",
    )


def _fps_fraction(fps: float) -> Fraction:
    if not (0 < fps <= MAX_FPS):
        raise VideoError(f"fps must be in (0, {MAX_FPS:g}], got {fps!r}")
    return Fraction(fps).limit_denominator(1001)


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise VideoError(f"a frame must be an (H, W, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise VideoError(f"a frame must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def _even(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return arr
    return np.pad(arr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class VideoWriter:
    """Write RGB frames to ``path``; use as a context manager.

    ``format`` overrides the detection from the path (``"mp4"``, ``"webm"``,
    ``"gif"``, ``"png"``). All frames must have the size of the first one.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, format: str | None = None) -> None:
        self.path = Path(path)
        self.format = format or detect_format(path)
        if self.format not in FORMATS:
            raise VideoError(f"unknown video format {self.format!r}", hint=f"use one of {', '.join(FORMATS)}")
        self.fps = float(fps)
        self._rate = _fps_fraction(self.fps)
        self._container = None
        self._stream = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0
        if self.format == "png":
            self.path.mkdir(parents=True, exist_ok=True)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def _open(self, height: int, width: int) -> None:
        import av

        codec, pix_fmt, options = {
            "mp4": ("libx264", "yuv420p", {"crf": str(MP4_CRF), "preset": "medium"}),
            "webm": ("libvpx-vp9", "yuv420p", {"crf": str(WEBM_CRF), "b": "0", "row-mt": "1"}),
            "gif": ("gif", "pal8", {}),
        }[self.format]
        try:
            self._container = av.open(str(self.path), mode="w")
            stream = self._container.add_stream(codec, rate=self._rate, options=options)
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"cannot write {self.format} to {str(self.path)!r}: {exc}") from None
        if pix_fmt == "yuv420p":
            height, width = height + height % 2, width + width % 2
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        self._stream = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3) uint8`` RGB frame."""
        rgb = _as_rgb(frame)
        if self._size is None:
            self._size = rgb.shape[:2]
        elif rgb.shape[:2] != self._size:
            raise VideoError(f"frame {self.frames_written} is {rgb.shape[:2]}, the first frame was {self._size}")
        if self.format == "png":
            from PIL import Image

            Image.fromarray(rgb).save(self.path / PNG_PATTERN.format(self.frames_written))
            self.frames_written += 1
            return
        import av

        if self._stream is None:
            self._open(*rgb.shape[:2])
        assert self._stream is not None and self._container is not None
        if self.format == "gif":
            vframe = _palette_frame(rgb)
        else:
            vframe = av.VideoFrame.from_ndarray(_even(rgb), format="rgb24").reformat(format="yuv420p")
        for packet in self._stream.encode(vframe):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and close the file (safe to call twice)."""
        if self._stream is not None and self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        if self._container is not None:
            self._container.close()
        self._container = self._stream = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _palette_frame(rgb: np.ndarray):  # -> av.VideoFrame
    import av
    from PIL import Image

    img = Image.fromarray(rgb).quantize(GIF_COLORS, method=Image.Quantize.MEDIANCUT)
    pal = np.zeros((256, 3), np.uint8)
    used = np.array(img.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    pal[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), pal], axis=1)
    return av.VideoFrame.from_ndarray((np.asarray(img, dtype=np.uint8), argb), format="pal8")


def write_video(
    path: str | os.PathLike[str], frames: Iterable[np.ndarray], fps: float, format: str | None = None
) -> int:
    """Write all ``frames`` to ``path``; returns how many were written."""
    with VideoWriter(path, fps, format) as writer:
        for f in frames:
            writer.write(f)
        if writer.frames_written == 0:
            raise VideoError(f"no frames to write to {str(path)!r}")
        return writer.frames_written


# --- reading -----------------------------------------------------------------


class VideoReader:
    """RGB frames of a video file (anything PyAV decodes) or a folder of PNG/JPEG frames."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"video {str(self.path)!r} does not exist")
        self.fps: float | None = None
        self._files: list[Path] | None = None
        if self.path.is_dir():
            self._files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
            if not self._files:
                raise VideoError(f"folder {str(self.path)!r} has no PNG/JPEG frames")
        else:
            import av

            try:
                with av.open(str(self.path)) as c:
                    if not c.streams.video:
                        raise VideoError(f"{str(self.path)!r} has no video stream")
                    rate = c.streams.video[0].average_rate or c.streams.video[0].guessed_rate
                    self.fps = float(rate) if rate else None
            except av.FFmpegError as exc:
                raise VideoError(f"cannot read video {str(self.path)!r}: {exc}") from None

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._files is not None:
            from PIL import Image

            for p in self._files:
                with Image.open(p) as im:
                    yield np.asarray(im.convert("RGB"))
            return
        import av

        try:
            with av.open(str(self.path)) as c:
                for frame in c.decode(video=0):
                    yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoError(f"cannot decode video {str(self.path)!r}: {exc}") from None

    def read_all(self) -> list[np.ndarray]:
        """Every frame, in order."""
        return list(self)
