"""Video input and output for driving: decode frames one at a time, write H.264 with the driving audio.

Reading streams frames (RGB uint8, one decoded frame in memory at a time);
:func:`probe_video` reports fps, size, frame count and whether there is an
audio track before any model work starts, so that a corrupt file, an empty
file or a codec this build cannot decode fails early with a clear message.

:class:`VideoWriter` encodes H.264 (yuv420p, so any player opens it) and
interleaves the audio of another file as it goes: packets are stream-copied
when the codec fits the output container (AAC/MP3 in MP4), re-encoded to AAC
otherwise, and cut at the end of the video.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError

VIDEO_SUFFIXES: tuple[str, ...] = (
    ".mp4",
    ".mov",
    ".mkv",
    ".avi",
    ".webm",
    ".m4v",
    ".gif",
    ".flv",
    ".wmv",
    ".mpg",
    ".mpeg",
)
"""File extensions taken as videos (anything else is tried as an image)."""

OUTPUT_VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".mkv")
"""Containers the writer produces (H.264 + AAC fit all three)."""

DEFAULT_FPS = Fraction(25)
"""Frame rate when the input has none (official ``output_fps``)."""

DEFAULT_CRF = 15
"""x264 constant rate factor (official ``crf``): visually lossless for faces."""

VIDEO_CODEC = "libx264"
PIXEL_FORMAT = "yuv420p"
AUDIO_CODEC = "aac"
AUDIO_BITRATE = 192_000
COPYABLE_AUDIO: dict[str, frozenset[str]] = {
    ".mp4": frozenset({"aac", "mp3", "alac", "ac3"}),
    ".mov": frozenset({"aac", "mp3", "alac", "ac3", "pcm_s16le", "pcm_s16be"}),
    ".mkv": frozenset({"aac", "mp3", "opus", "vorbis", "flac", "ac3", "pcm_s16le"}),
}
"""Audio codecs stream-copied as they are, per output container; others are re-encoded to AAC."""

_FIX_HINT = "re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p -c:a aac OUT.mp4`, and try again"


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a video by its extension."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


@dataclass(frozen=True)
class VideoInfo:
    """What the driving video holds, read from its headers (and the first frame)."""

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


def _open_input(path: Path) -> Any:
    import av

    if not path.is_file():
        raise VideoError(f"cannot read {path}: no such file", hint="check the path")
    if path.stat().st_size == 0:
        raise VideoError(f"cannot read {path}: the file is empty (0 bytes)", hint="use a complete video file")
    try:
        return av.open(str(path), mode="r")
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


def _codec_name(stream: Any) -> str:
    ctx = stream.codec_context
    return str(ctx.name) if ctx is not None and ctx.name else "unknown"


def _decode_error(path: Path, index: int, exc: Exception) -> VideoError:
    where = "before the first frame" if index == 0 else f"after frame {index}"
    return VideoError(f"cannot decode {path}: the video data is corrupt {where} ({exc})", hint=_FIX_HINT)


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video's headers and decode its first frame.

    Raises:
        VideoError: missing, empty, corrupt, no video track, unsupported codec, or no frame at all.
    """
    import av

    path = Path(path)
    with _open_input(path) as container:
        stream = _video_stream(container, path)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = Fraction(rate) if rate else DEFAULT_FPS
        if fps <= 0:
            fps = DEFAULT_FPS
        audio = container.streams.audio[0] if container.streams.audio else None
        codec = _codec_name(stream)
        try:
            first = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise _decode_error(path, 0, exc) from exc
        if first is None:
            raise VideoError(f"cannot read {path}: the video has no frames", hint="use a video with at least one frame")
        return VideoInfo(
            path=path,
            width=int(first.width),
            height=int(first.height),
            fps=fps,
            frame_count=int(stream.frames) or None,
            codec=codec,
            has_audio=audio is not None,
            audio_codec=_codec_name(audio) if audio is not None else None,
        )


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode a video frame by frame: (H,W,3) uint8 RGB arrays, in display order.

    Only one decoded frame is held at a time (plus the decoder's own buffers).

    Raises:
        VideoError: the file cannot be opened or its data is corrupt.
    """
    import av

    path = Path(path)
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
            raise VideoError(f"cannot read {path}: the video has no frames", hint="use a video with at least one frame")


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad an (H,W,3) frame by repeating its last row/column so both sides are even (yuv420p needs it)."""
    h, w = frame.shape[:2]
    pad_h, pad_w = h % 2, w % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


class VideoWriter:
    """Write RGB frames as H.264 (yuv420p) with, optionally, the audio track of another file.

    Use as a context manager; the file is complete only after :meth:`close`.
    Frame size is fixed by the first frame (odd sides are padded to even).
    On an exception inside the ``with`` block the partial file is removed.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: Fraction | float,
        *,
        audio_from: str | os.PathLike[str] | None = None,
        crf: int = DEFAULT_CRF,
    ) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix.lower() not in OUTPUT_VIDEO_SUFFIXES:
            raise VideoError(
                f"cannot write {self.path}: unsupported video extension {self.path.suffix or '(none)'}",
                hint=f"use one of {', '.join(OUTPUT_VIDEO_SUFFIXES)}",
            )
        self.fps = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
        self.crf = crf
        self.frames_written = 0
        try:
            self._out = av.open(str(self.path), mode="w")
        except av.error.FFmpegError as exc:
            raise VideoError(
                f"cannot write {self.path}: {exc}", hint="check the folder exists and is writable"
            ) from exc
        self._video: Any = None
        self._audio_in: Any = None
        self._audio_src: Any = None
        self._audio_out: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._resampler: Any = None
        self._pending: Any = None
        self._audio_offset = 0.0
        self._transcode = False
        if audio_from is not None:
            self._open_audio(Path(audio_from))

    # ------------------------------------------------------------------ audio
    def _open_audio(self, source: Path) -> None:
        import av

        self._audio_in = av.open(str(source), mode="r")
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        src = self._audio_in.streams.audio[0]
        self._audio_src = src
        self._audio_offset = float(src.start_time * src.time_base) if src.start_time is not None else 0.0
        copyable = COPYABLE_AUDIO.get(self.path.suffix.lower(), frozenset())
        if _codec_name(src) in copyable:
            self._audio_out = self._out.add_stream_from_template(src)
        else:
            self._transcode = True
            rate = src.codec_context.sample_rate or 48_000
            self._audio_out = self._out.add_stream(AUDIO_CODEC, rate=rate)
            self._audio_out.bit_rate = AUDIO_BITRATE
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=rate)
            self._audio_out.layout = "stereo"
        self._audio_packets = iter(self._audio_in.demux(src))

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy/encode audio up to ``seconds`` of output (all of it up to the video end when None)."""
        if self._audio_packets is None:
            return
        limit = float(self.frames_written / self.fps) if seconds is None else seconds
        while True:
            packet = self._pending if self._pending is not None else next(self._audio_packets, None)
            self._pending = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's flush packet
            ts = packet.pts if packet.pts is not None else packet.dts
            start = float(ts * packet.time_base) - self._audio_offset
            if start >= limit:
                if seconds is None:
                    self._audio_packets = None  # past the end of the video: drop the rest
                else:
                    self._pending = packet
                return
            if self._transcode:
                for frame in packet.decode():
                    frame.pts = None
                    for resampled in self._resampler.resample(frame):
                        for out in self._audio_out.encode(resampled):
                            self._out.mux(out)
            else:
                packet.stream = self._audio_out
                self._out.mux(packet)

    # ------------------------------------------------------------------ video
    def _open_video(self, width: int, height: int) -> None:
        stream = self._out.add_stream(VIDEO_CODEC, rate=self.fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = PIXEL_FORMAT
        stream.options = {"crf": str(self.crf)}
        self._video = stream

    def write(self, frame: np.ndarray) -> None:
        """Append one (H,W,3) uint8 RGB frame."""
        import av

        frame = even_frame(np.ascontiguousarray(frame))
        if self._video is None:
            self._open_video(frame.shape[1], frame.shape[0])
        elif (frame.shape[1], frame.shape[0]) != (self._video.width, self._video.height):
            raise VideoError(
                f"cannot write {self.path}: frame {self.frames_written} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the video is {self._video.width}x{self._video.height}"
            )
        vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        for packet in self._video.encode(vf):
            self._out.mux(packet)
        self.frames_written += 1
        self._mux_audio_until(float(self.frames_written / self.fps))

    def close(self) -> None:
        """Flush the encoders and finish the file."""
        if self._out is None:
            return
        try:
            if self._video is not None:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
            self._mux_audio_until(None)
            if self._transcode and self._audio_out is not None:
                for packet in self._audio_out.encode(None):
                    self._out.mux(packet)
        finally:
            self._out.close()
            self._out = None
            if self._audio_in is not None:
                self._audio_in.close()

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            if self._out is not None:
                self._out.close()
                self._out = None
            if self._audio_in is not None:
                self._audio_in.close()
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
