"""Video files in and out (PyAV): one reader, one writer, one policy.

Reading (:func:`probe_video`, :func:`iter_frames`, :class:`VideoReader`) streams
``(H, W, 3)`` uint8 RGB frames, one decoded frame in memory at a time, from any
file PyAV decodes or from a folder of PNG/JPEG frames. :func:`probe_video` reads
the headers and the first frame, so a corrupt, empty or undecodable file fails
before any model work starts, with a message that names the file.

Writing (:class:`~lpstudio.video_writer.VideoWriter`, :func:`~lpstudio.video_writer.write_video`, in
:mod:`lpstudio.video_writer`): the format follows the path.

==========================  ================================================================
path                        written as
==========================  ================================================================
``.mp4``, ``.mov``, ``.mkv``  H.264 (libx264, ``yuv420p``, CRF :data:`H264_CRF`); audio AAC
``.webm``                   VP9 (``yuv420p``, CRF :data:`VP9_CRF`); audio Opus
``.gif``                    an adaptive 256-colour palette per frame; no audio
no suffix, or ending ``/``  a folder of ``frame_00000.png`` ...; no audio
==========================  ================================================================

The policy, the same for every command:

* frame rates are exact rationals (``30000/1001`` stays NTSC); a float is turned
  into the nearest fraction with a denominator of at most 1001; at most :data:`MAX_FPS`;
* odd frame sizes are padded to even (4:2:0 needs it) by repeating the last row/column;
* ``audio_from`` copies the audio of another file, packet by packet when its codec
  fits the container and re-encoded otherwise, interleaved with the video and cut at
  the video's end;
* audio given as samples (:meth:`~lpstudio.video_writer.VideoWriter.add_audio`, the speaking clips) is encoded on
  the video's clock and cut or padded to the video's length;
* nothing is written at the path until the output is complete: the data goes to a partial
  beside it (:mod:`lpstudio.atomic`) that replaces the path on success; a write that fails
  (an exception inside the ``with`` block, ``KeyboardInterrupt`` included, or
  :meth:`~lpstudio.video_writer.VideoWriter.abort`) removes only the partial, so an earlier output at that path, a
  file or a PNG folder, survives. A PNG folder is replaced as a whole, so it may hold only frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .errors import VideoError

MAX_FPS: float = 120.0
"""The highest frame rate lpstudio renders, streams or writes (every command and the server)."""

DEFAULT_FPS = Fraction(25)
"""Frame rate of a video whose file states none (official ``output_fps``)."""

FPS_MAX_DENOMINATOR: int = 1001
"""A float frame rate becomes the nearest fraction with at most this denominator (29.97 -> 30000/1001)."""

H264_CRF: int = 15
"""x264 constant rate factor (the official ``crf``): visually lossless for faces."""

VP9_CRF: int = 30
"""libvpx-vp9 constant quality (with ``b=0``): about the visual quality of the H.264 setting."""

FRAME_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""Files read as frames from a folder, in name order."""

VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".gif", ".flv", ".wmv", ".mpg", ".mpeg",
)  # fmt: skip
"""File extensions taken as video inputs (anything else is tried as an image)."""


@dataclass(frozen=True)
class _Format:
    codec: str
    pix_fmt: str
    options: dict[str, str]
    audio_codec: str | None  # None: the format carries no audio
    copyable_audio: frozenset[str]  # source audio codecs stream-copied as they are


_H264 = ("libx264", "yuv420p", {"crf": str(H264_CRF)})
FORMATS: dict[str, _Format] = {
    "mp4": _Format(*_H264, "aac", frozenset({"aac", "mp3", "alac", "ac3"})),
    "mov": _Format(*_H264, "aac", frozenset({"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be"})),
    "mkv": _Format(*_H264, "aac", frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "pcm_s16le"})),
    "webm": _Format(
        "libvpx-vp9", "yuv420p", {"crf": str(VP9_CRF), "b": "0", "row-mt": "1"}, "libopus", frozenset({"opus"})
    ),
    "gif": _Format("gif", "pal8", {}, None, frozenset()),
    "png": _Format("png", "rgb24", {}, None, frozenset()),
}
"""Every output format: codec, pixel format, encoder options and how audio is carried."""

DECLARED_FORMAT_MARK = ".demux-"
"""A file whose stem ends in ``.demux-NAME`` (e.g. ``source.demux-matroska.webm``) is opened with FFmpeg's
demuxer ``NAME`` named, never probed: the server names its private copies of uploads so, after sniffing
their first bytes (:mod:`lpstudio.sniff`)."""
DECLARED_FORMATS: tuple[str, ...] = ("mp4", "matroska")
"""Demuxers a :data:`DECLARED_FORMAT_MARK` may name (the upload containers the server accepts)."""

_FIX_HINT = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p -c:a aac OUT.mp4`, and try again"


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def detect_format(path: str | os.PathLike[str]) -> str:
    """The output format of a path: a key of :data:`FORMATS` (``"png"`` for a folder)."""
    p = str(path)
    suffix = Path(p).suffix.lower()
    if p.endswith(("/", os.sep)) or suffix == "":
        return "png"
    if suffix[1:] in FORMATS and suffix != ".png":
        return suffix[1:]
    writable = ", ".join(f".{f}" for f in FORMATS if f != "png")
    raise VideoError(
        f"cannot write a video to {p!r}: unsupported extension {suffix!r}",
        hint=f"use {writable}, or a folder name (no suffix) for PNG frames",
    )


def as_fps(fps: Fraction | float | int) -> Fraction:
    """A frame rate as an exact fraction, checked to be in (0, :data:`MAX_FPS`]."""
    try:
        rate = fps if isinstance(fps, Fraction) else Fraction(float(fps)).limit_denominator(FPS_MAX_DENOMINATOR)
    except (TypeError, ValueError, OverflowError):
        raise VideoError(f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r}") from None
    if not 0 < rate <= MAX_FPS:
        raise VideoError(f"fps must be in (0, {MAX_FPS:g}], got {float(rate):g}")
    return rate


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad an (H,W,3) frame by repeating its last row/column so both sides are even (yuv420p needs it)."""
    h, w = frame.shape[:2]
    if not (h % 2 or w % 2):
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _as_rgb(frame: np.ndarray, index: int) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise VideoError(f"frame {index} must be an (H, W, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise VideoError(f"frame {index} must be uint8, got {arr.dtype}")
    return np.ascontiguousarray(arr[:, :, :3])


def _codec_name(stream: Any) -> str:
    ctx = stream.codec_context
    return str(ctx.name) if ctx is not None and ctx.name else "unknown"


# ----------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class VideoInfo:
    """What a video holds, read from its headers (and the first frame)."""

    path: Path
    width: int
    height: int
    fps: Fraction  # frames per second, exact (e.g. 30000/1001)
    frame_count: int | None  # from the header; None when the container does not say
    codec: str
    has_audio: bool
    audio_codec: str | None

    @property
    def is_square(self) -> bool:
        return self.width == self.height


def declared_format(path: str | os.PathLike[str]) -> str | None:
    """The demuxer a file's name declares (see :data:`DECLARED_FORMAT_MARK`), or None: FFmpeg finds it."""
    stem = Path(path).stem
    _, mark, name = stem.rpartition(DECLARED_FORMAT_MARK)
    return name if mark and name in DECLARED_FORMATS else None


def _open_input(path: Path) -> Any:
    import av

    if not path.is_file():
        raise VideoError(f"cannot read {path}: no such file", hint="check the path")
    if path.stat().st_size == 0:
        raise VideoError(f"cannot read {path}: the file is empty (0 bytes)", hint="use a complete video file")
    try:
        return av.open(str(path), mode="r", format=declared_format(path))
    except (av.error.InvalidDataError, av.error.DemuxerNotFoundError) as exc:
        raise VideoError(
            f"cannot read {path}: not a video file, or the file is corrupt ({exc.strerror or exc})", hint=_FIX_HINT
        ) from exc
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot read {path}: {exc}", hint=_FIX_HINT) from exc


def _video_stream(container: Any, path: Path) -> Any:
    if not container.streams.video:
        raise VideoError(f"cannot read {path}: it has no video track", hint="use a video with a visible face")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or getattr(ctx, "codec", None) is None or not ctx.codec.is_decoder:
        tag = getattr(stream, "codec_tag", "") or "unknown"
        raise VideoError(
            f"cannot read {path}: its video codec ({ctx.name if ctx is not None else tag}) is not supported by this "
            "build of PyAV/FFmpeg",
            hint=_FIX_HINT,
        )
    return stream


def _decode_error(path: Path, index: int, exc: Exception) -> VideoError:
    where = "before the first frame" if index == 0 else f"after frame {index}"
    return VideoError(f"cannot decode {path}: the video data is corrupt {where} ({exc})", hint=_FIX_HINT)


def _no_frames(path: Path) -> VideoError:
    return VideoError(f"cannot read {path}: the video has no frames", hint="use a video with at least one frame")


def _stream_fps(stream: Any) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = Fraction(rate) if rate else DEFAULT_FPS
    return fps if fps > 0 else DEFAULT_FPS


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's headers and decode its first frame.

    Raises:
        VideoError: missing, empty, corrupt, no video track, unsupported codec, or no frame at all.
    """
    import av

    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        audio = container.streams.audio[0] if container.streams.audio else None
        try:
            first = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise _decode_error(path, 0, exc) from exc
        if first is None:
            raise _no_frames(path)
        return VideoInfo(
            path=path,
            width=int(first.width),
            height=int(first.height),
            fps=_stream_fps(stream),
            frame_count=int(stream.frames) or None,
            codec=_codec_name(stream),
            has_audio=audio is not None,
            audio_codec=_codec_name(audio) if audio is not None else None,
        )


def _frame_files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_IMAGE_SUFFIXES)
    if not files:
        raise VideoError(f"cannot read {folder}: the folder has no PNG/JPEG frames")
    return files


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode a video (or a folder of frames) one frame at a time: (H,W,3) uint8 RGB, in display order.

    Raises:
        VideoError: the file cannot be opened, its data is corrupt, or it has no frame.
    """
    import av

    path = Path(path)
    if path.is_dir():
        from PIL import Image

        for file in _frame_files(path):
            with Image.open(file) as im:
                yield np.asarray(im.convert("RGB"))
        return
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO"
        index = 0
        decoded = container.decode(stream)
        while True:
            try:
                frame = next(decoded)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:
                raise _decode_error(path, index, exc) from exc
            yield frame.to_ndarray(format="rgb24")
            index += 1
        if index == 0:
            raise _no_frames(path)


class VideoReader:
    """A video file or a folder of frames, checked on construction; iterate it for RGB frames.

    ``fps`` is the file's frame rate as a float (``None`` for a folder of frames).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise VideoError(f"cannot read {self.path}: no such file or folder", hint="check the path")
        self.fps: float | None = None
        if self.path.is_dir():
            _frame_files(self.path)
        else:
            self.fps = float(probe_video(self.path).fps)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter_frames(self.path)

    def read_all(self) -> list[np.ndarray]:
        """Every frame, in order."""
        return list(self)
