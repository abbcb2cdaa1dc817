"""Writing video files (PyAV): :class:`VideoWriter`, :func:`write_video` and the audio they carry.

The format and encoding policy (:data:`~lpstudio.video.FORMATS`, frame rates, even frame sizes) is
:mod:`lpstudio.video`'s, whose docstring states it; this module puts frames, and the audio copied from
another file or given as samples, into a partial beside the path that replaces it only on success
(:mod:`lpstudio.atomic`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from .atomic import commit, discard, reserve_partial
from .errors import VideoError
from .video import FORMATS, _as_rgb, _codec_name, _Format, _open_input, as_fps, detect_format, even_frame

if TYPE_CHECKING:
    from .speech.audio import AudioClip

_log = logging.getLogger(__name__)

GIF_COLORS: int = 256
PNG_PATTERN: str = "frame_{:05d}.png"

AUDIO_BITRATE: int = 192_000
OPUS_SAMPLE_RATE: int = 48_000
AUDIO_SAMPLE_RATE: int = 48_000
"""Rate of audio given as samples (:meth:`VideoWriter.add_audio`): native to Opus, standard for AAC."""
AUDIO_FRAME_SAMPLES: dict[str, int] = {"aac": 1024, "libopus": 960}
"""Samples per encoded audio frame: AAC's fixed 1024, and libopus' default 20 ms at 48 kHz."""

FOLDER_OTHERS_SHOWN: int = 3
"""Names listed when a PNG output folder holds files that are not frames."""
_FRAME_NAME = re.compile(r"frame_\d{5,}\.png")


class VideoWriter:
    """Write RGB frames to ``path`` (format from the path, or ``format``); use as a context manager.

    Everything is written to a partial beside ``path`` (see :mod:`lpstudio.atomic`) and moved
    over ``path`` only by a successful :meth:`close` (the end of the ``with`` block); an exception
    inside the block (``KeyboardInterrupt`` too) or :meth:`abort` removes the partial and leaves
    whatever was at ``path`` before untouched. A writer that got no frame leaves ``path`` as it was.
    All frames must have the size of the first one.

    Sound (mp4/mov/mkv/webm only), one of:

    * ``audio_from``: a file whose audio track is copied in, cut at the video's end;
    * ``audio_channels`` (1 or 2) and :meth:`add_audio`: sample arrays, queued as they come (the
      audio of a sentence may arrive before its frames) and encoded on the video's clock: after
      frame ``k`` the audio up to ``(k + 1) / fps``; :meth:`close` cuts or pads it with silence to
      exactly ``frames / fps`` seconds, so the streams agree within one audio frame (21 ms).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: Fraction | float,
        format: str | None = None,
        *,
        audio_from: str | os.PathLike[str] | None = None,
        audio_channels: int | None = None,
        crf: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = format or detect_format(path)
        if self.format not in FORMATS:
            raise VideoError(f"unknown video format {self.format!r}", hint=f"use one of {', '.join(FORMATS)}")
        self._spec = FORMATS[self.format]
        self.fps = as_fps(fps)
        self._options = dict(self._spec.options)
        if crf is not None:
            if self.format not in ("mp4", "mov", "mkv", "webm"):
                raise VideoError(f"--crf applies to H.264/VP9 videos, not to {self.format}")
            self._options["crf"] = str(int(crf))
        wants_audio = audio_from is not None or audio_channels is not None
        if wants_audio and self._spec.audio_codec is None:
            raise VideoError(
                f"cannot put audio into {self.path}: {self.format} carries no sound", hint="write .mp4 or .webm"
            )
        if audio_from is not None and audio_channels is not None:
            raise VideoError("give the audio either as a file (audio_from) or as samples (audio_channels), not both")
        if audio_channels is not None and audio_channels not in (1, 2):
            raise VideoError(f"cannot write {audio_channels}-channel audio", hint="use mono or stereo audio")
        self.frames_written = 0
        self._size: tuple[int, int] | None = None  # (H, W) of the first frame
        self._out: Any = None
        self._video: Any = None
        self._audio: _AudioCopy | _AudioSamples | None = None
        if self.format == "png":
            self._check_frame_folder()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoError(
                f"cannot write {self.path}: cannot create its folder ({exc.strerror or type(exc).__name__})",
                hint="check the path and that its parent folder is writable",
            ) from None
        self._partial: Path | None = reserve_partial(self.path, folder=self.format == "png", error=VideoError)
        try:
            if audio_from is not None:
                self._audio = _AudioCopy(Path(audio_from), self._spec)
            elif audio_channels is not None:
                self._audio = _AudioSamples(audio_channels, self._spec)
        except BaseException:
            self.abort()
            raise

    def _check_frame_folder(self) -> None:
        """Refuse a folder holding anything but frames: it is replaced as a whole on success."""
        if self.path.name in ("", ".", ".."):
            raise VideoError(
                f"cannot write frames into {self.path}: a finished render replaces the whole folder",
                hint="name a new folder for the frames, e.g. -o frames/",
            )
        if not self.path.is_dir():
            return
        others = sorted(p.name for p in self.path.iterdir() if not _FRAME_NAME.fullmatch(p.name))
        if others:
            shown = ", ".join(others[:FOLDER_OTHERS_SHOWN]) + (", ..." if len(others) > FOLDER_OTHERS_SHOWN else "")
            raise VideoError(
                f"cannot write frames into {self.path}: the folder holds other files ({shown}), and a finished "
                "render replaces the whole folder",
                hint="name a new folder, or one that holds only frame_NNNNN.png files",
            )

    @property
    def seconds_written(self) -> float:
        """Duration of the frames written so far."""
        return float(self.frames_written / self.fps)

    @property
    def partial_path(self) -> Path | None:
        """Where the data goes until :meth:`close` moves it to :attr:`path` (None once closed or aborted)."""
        return self._partial

    def _target(self) -> Path:
        if self._partial is None:
            raise VideoError(f"cannot write {self.path}: the writer is already closed")
        return self._partial

    def _open(self, height: int, width: int) -> None:
        import av

        try:
            self._out = av.open(str(self._target()), mode="w")
            stream = self._out.add_stream(self._spec.codec, rate=self.fps, options=self._options)
        except (av.error.FFmpegError, ValueError) as exc:
            _log.warning("cannot open %s for writing: %s", self._partial, exc)
            raise VideoError(
                f"cannot write {self.format} to {self.path}", hint="check the folder exists and is writable"
            ) from None
        stream.width, stream.height, stream.pix_fmt = width, height, self._spec.pix_fmt
        self._video = stream
        if self._audio is not None:
            self._audio.attach(self._out)

    def add_audio(self, clip: AudioClip) -> None:
        """Queue audio samples (any rate; mono is duplicated for stereo output, stereo averaged for mono)."""
        if not isinstance(self._audio, _AudioSamples):
            raise VideoError(f"cannot add audio samples to {self.path}: the writer was made without audio_channels")
        self._audio.add(clip)

    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3) uint8`` RGB frame."""
        target = self._target()
        rgb = _as_rgb(frame, self.frames_written)
        if self._size is None:
            self._size = rgb.shape[:2]
        elif rgb.shape[:2] != self._size:
            raise VideoError(
                f"cannot write {self.path}: frame {self.frames_written} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"the first frame was {self._size[1]}x{self._size[0]}"
            )
        if self.format == "png":
            from PIL import Image

            Image.fromarray(rgb).save(target / PNG_PATTERN.format(self.frames_written))
            self.frames_written += 1
            return
        import av

        if self._spec.pix_fmt == "yuv420p":
            rgb = even_frame(rgb)
        if self._video is None:
            self._open(*rgb.shape[:2])
        vframe = _palette_frame(rgb) if self.format == "gif" else av.VideoFrame.from_ndarray(rgb, format="rgb24")
        vframe.pts = self.frames_written
        vframe.time_base = 1 / self.fps
        for packet in self._video.encode(vframe):
            self._out.mux(packet)
        self.frames_written += 1
        if self._audio is not None:
            self._audio.mux_until(self._out, self.frames_written / self.fps)

    def close(self) -> None:
        """Flush the encoders, finish the file and move it over :attr:`path` (safe to call twice).

        A writer that got no frame removes its partial and leaves :attr:`path` as it was.
        If finishing fails (or is interrupted), the partial is removed and :attr:`path` is untouched.
        """
        if self._partial is None:
            return
        try:
            if self._out is not None:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
                if self._audio is not None:
                    self._audio.finish(self._out, self.frames_written / self.fps)
            self._release()
        except BaseException:
            self.abort()
            raise
        partial, self._partial = self._partial, None
        if self.frames_written == 0:
            discard(partial)
            return
        commit(partial, self.path, error=VideoError)

    def _release(self) -> None:
        try:
            if self._out is not None:
                self._out.close()
        finally:
            self._out = None
            if self._audio is not None:
                self._audio.close()

    def abort(self) -> None:
        """Stop and remove the partial output; whatever was at :attr:`path` before stays as it was."""
        try:
            self._release()
        except Exception as exc:  # the container may be broken: what matters now is the cleanup
            _log.debug("closing the aborted output %s failed: %s", self._partial, exc)
        finally:
            if self._partial is not None:
                discard(self._partial)
                self._partial = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class _AudioSamples:
    """Audio given as sample arrays, resampled to one rate and encoded on the video's clock."""

    def __init__(self, channels: int, spec: _Format) -> None:
        self.channels = channels
        self.codec = spec.audio_codec or ""
        self.frame_samples = AUDIO_FRAME_SAMPLES.get(self.codec, AUDIO_FRAME_SAMPLES["aac"])
        self.samples_written = 0
        self._pending = np.zeros((channels, 0), np.float32)
        self._stream: Any = None

    def attach(self, out: Any) -> None:
        self._stream = out.add_stream(self.codec, rate=AUDIO_SAMPLE_RATE)
        self._stream.layout = "mono" if self.channels == 1 else "stereo"
        self._stream.bit_rate = AUDIO_BITRATE

    def add(self, clip: AudioClip) -> None:
        from .speech.audio import resample

        s = clip.samples
        if s.shape[0] != self.channels:
            s = np.repeat(s[:1], self.channels, axis=0) if self.channels > s.shape[0] else s.mean(0, keepdims=True)
        s = resample(s, clip.sample_rate, AUDIO_SAMPLE_RATE)
        self._pending = np.concatenate([self._pending, np.clip(s, -1.0, 1.0).astype(np.float32)], axis=1)

    @staticmethod
    def _samples_at(seconds: Fraction) -> int:
        return int(round(seconds * AUDIO_SAMPLE_RATE))

    def _encode(self, out: Any, upto: int, *, final: bool = False) -> None:
        """Encode queued audio until ``upto`` samples in all (whole audio frames unless ``final``)."""
        import av

        want = upto - self.samples_written
        if not final:
            want = (want // self.frame_samples) * self.frame_samples
        want = min(want, self._pending.shape[1])
        if want <= 0:
            return
        chunk, self._pending = self._pending[:, :want], self._pending[:, want:]
        for start in range(0, want, self.frame_samples):
            part = np.ascontiguousarray(chunk[:, start : start + self.frame_samples])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=self._stream.layout.name)
            frame.sample_rate = AUDIO_SAMPLE_RATE
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
            self.samples_written += part.shape[1]
            for packet in self._stream.encode(frame):
                out.mux(packet)

    def mux_until(self, out: Any, seconds: Fraction) -> None:
        self._encode(out, self._samples_at(seconds))

    def finish(self, out: Any, seconds: Fraction) -> None:
        """Pad with silence (or cut) to exactly ``seconds``, then flush the encoder."""
        target = self._samples_at(seconds)
        missing = target - self.samples_written - self._pending.shape[1]
        if missing > 0:
            self._pending = np.pad(self._pending, ((0, 0), (0, missing)))
        self._encode(out, target, final=True)
        for packet in self._stream.encode(None):
            out.mux(packet)

    def close(self) -> None:
        self._pending = np.zeros((self.channels, 0), np.float32)


class _AudioCopy:
    """The audio track of another file, interleaved into a writer's output up to the video's end."""

    def __init__(self, source: Path, spec: _Format) -> None:
        self.source = source
        self.spec = spec
        self._in = _open_input(source)
        self._src = self._in.streams.audio[0] if self._in.streams.audio else None
        self._packets: Iterator[Any] | None = None
        self._pending: Any = None
        self._stream: Any = None
        self._resampler: Any = None
        self._offset = 0.0
        if self._src is None:
            self.close()

    def attach(self, out: Any) -> None:
        """Add the audio stream to the output (copied when the codec fits, else re-encoded)."""
        import av

        src = self._src
        if src is None:
            return
        self._offset = float(src.start_time * src.time_base) if src.start_time is not None else 0.0
        if _codec_name(src) in self.spec.copyable_audio:
            self._stream = out.add_stream_from_template(src)
        else:
            rate = OPUS_SAMPLE_RATE if self.spec.audio_codec == "libopus" else (src.codec_context.sample_rate or 48_000)
            self._stream = out.add_stream(self.spec.audio_codec, rate=rate)
            self._stream.bit_rate = AUDIO_BITRATE
            self._stream.layout = "stereo"
            fmt = self._stream.codec_context.format.name
            self._resampler = av.AudioResampler(format=fmt, layout="stereo", rate=rate)
        self._packets = iter(self._in.demux(src))

    def mux_until(self, out: Any, seconds: Fraction | float, *, final: bool = False) -> None:
        """Copy/encode the source's audio that starts before ``seconds`` of output."""
        if self._packets is None:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's flush packet
            ts = packet.pts if packet.pts is not None else packet.dts
            if float(ts * packet.time_base) - self._offset >= seconds:
                if final:
                    self._packets = None  # past the end of the video: drop the rest
                else:
                    self._pending = packet
                return
            if self._resampler is None:
                packet.stream = self._stream
                out.mux(packet)
                continue
            for frame in packet.decode():
                frame.pts = None
                for resampled in self._resampler.resample(frame):
                    out.mux(self._stream.encode(resampled))

    def finish(self, out: Any, seconds: Fraction | float) -> None:
        self.mux_until(out, seconds, final=True)
        if self._resampler is not None and self._stream is not None:
            out.mux(self._stream.encode(None))

    def close(self) -> None:
        if self._in is not None:
            self._in.close()
            self._in = None


def _palette_frame(rgb: np.ndarray) -> Any:  # -> av.VideoFrame (pal8)
    import av
    from PIL import Image

    img = Image.fromarray(rgb).quantize(GIF_COLORS, method=Image.Quantize.MEDIANCUT)
    pal = np.zeros((256, 3), np.uint8)
    used = np.array(img.getpalette() or [], np.uint8).reshape(-1, 3)[:256]
    pal[: len(used)] = used
    argb = np.concatenate([np.full((256, 1), 255, np.uint8), pal], axis=1)
    return av.VideoFrame.from_ndarray((np.asarray(img, dtype=np.uint8), argb), format="pal8")


def write_video(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: Fraction | float,
    format: str | None = None,
    *,
    audio_from: str | os.PathLike[str] | None = None,
) -> int:
    """Write all ``frames`` to ``path``; returns how many were written (none is an error)."""
    with VideoWriter(path, fps, format, audio_from=audio_from) as writer:
        for f in frames:
            writer.write(f)
        if writer.frames_written == 0:
            raise VideoError(f"cannot write {path}: no frames to write")
        return writer.frames_written
