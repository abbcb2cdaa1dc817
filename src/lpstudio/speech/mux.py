"""Writing a speaking clip: H.264 video and AAC audio from arrays, interleaved, with equal durations.

:class:`SpeechVideoWriter` takes RGB frames and audio samples as they come (audio of a sentence
before its frames, for streaming) and interleaves them on one clock: after video frame ``k`` the
audio up to ``(k + 1) / fps`` is encoded. Audio is resampled to :data:`OUTPUT_AUDIO_RATE` and, on
:meth:`~SpeechVideoWriter.close`, cut or padded with silence to exactly ``frames / fps`` seconds,
so the two streams agree to within one AAC frame (1024 samples, 21 ms), less than a video frame.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoError
from .audio import AudioClip, resample

OUTPUT_SUFFIXES: tuple[str, ...] = (".mp4", ".mov", ".mkv")
VIDEO_CODEC: str = "libx264"
PIXEL_FORMAT: str = "yuv420p"
DEFAULT_CRF: int = 15
"""x264 quality (the official ``crf``, as in ``lpstudio drive``)."""
AUDIO_CODEC: str = "aac"
AUDIO_BITRATE: int = 128_000
OUTPUT_AUDIO_RATE: int = 48_000
AAC_FRAME: int = 1024
"""Samples per AAC frame."""
FPS_MAX_DENOMINATOR: int = 1001


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


class SpeechVideoWriter:
    """Write ``(H, W, 3)`` uint8 frames and float audio to an ``.mp4``/``.mov``/``.mkv`` file.

    Use as a context manager; on an exception the partial file is removed. ``channels`` is 1 or 2.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, channels: int = 1, crf: int = DEFAULT_CRF) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix.lower() not in OUTPUT_SUFFIXES:
            raise VideoError(
                f"cannot write {self.path}: unsupported video extension {self.path.suffix or '(none)'}",
                hint=f"use one of {', '.join(OUTPUT_SUFFIXES)}",
            )
        if not self.path.parent.is_dir():
            raise VideoError(
                f"cannot write {self.path}: folder {self.path.parent} does not exist",
                hint="check the folder exists and is writable",
            )
        if channels not in (1, 2):
            raise VideoError(f"cannot write {channels}-channel audio", hint="use mono or stereo audio")
        self.fps = Fraction(fps).limit_denominator(FPS_MAX_DENOMINATOR)
        self.crf = crf
        self.channels = channels
        self.frames_written = 0
        self.samples_written = 0
        self._pending = np.zeros((channels, 0), np.float32)
        try:
            self._out: Any = av.open(str(self.path), mode="w")
        except av.FFmpegError as exc:
            raise VideoError(
                f"cannot write {self.path}: {exc}", hint="check the folder exists and is writable"
            ) from None
        self._video: Any = None
        self._audio: Any = self._out.add_stream(AUDIO_CODEC, rate=OUTPUT_AUDIO_RATE)
        self._audio.layout = "mono" if channels == 1 else "stereo"
        self._audio.bit_rate = AUDIO_BITRATE

    # --------------------------------------------------------------- audio
    def add_audio(self, clip: AudioClip) -> None:
        """Queue audio (any rate; mono is duplicated for stereo output, stereo averaged for mono)."""
        s = clip.samples
        if s.shape[0] != self.channels:
            s = np.repeat(s[:1], self.channels, axis=0) if self.channels > s.shape[0] else s.mean(0, keepdims=True)
        s = resample(s, clip.sample_rate, OUTPUT_AUDIO_RATE)
        self._pending = np.concatenate([self._pending, np.clip(s, -1.0, 1.0).astype(np.float32)], axis=1)

    def _samples_at(self, frames: int) -> int:
        return int(round(frames * OUTPUT_AUDIO_RATE / self.fps))

    def _encode_audio(self, upto: int, *, final: bool = False) -> None:
        """Encode queued audio until ``upto`` samples in all (whole AAC frames unless ``final``)."""
        import av

        want = upto - self.samples_written
        if not final:
            want = (want // AAC_FRAME) * AAC_FRAME
        want = min(want, self._pending.shape[1])
        if want <= 0:
            return
        chunk, self._pending = self._pending[:, :want], self._pending[:, want:]
        for start in range(0, want, AAC_FRAME):
            part = np.ascontiguousarray(chunk[:, start : start + AAC_FRAME])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=self._audio.layout.name)
            frame.sample_rate = OUTPUT_AUDIO_RATE
            frame.pts = self.samples_written
            frame.time_base = Fraction(1, OUTPUT_AUDIO_RATE)
            self.samples_written += part.shape[1]
            for packet in self._audio.encode(frame):
                self._out.mux(packet)

    # --------------------------------------------------------------- video
    def write(self, frame: np.ndarray) -> None:
        """Append one ``(H, W, 3)`` uint8 RGB frame."""
        import av

        arr = np.asarray(frame)
        if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
            raise VideoError(f"a frame must be an (H, W, 3) uint8 array, got {arr.shape} {arr.dtype}")
        arr = _even(np.ascontiguousarray(arr))
        if self._video is None:
            stream = self._out.add_stream(VIDEO_CODEC, rate=self.fps)
            stream.width, stream.height = arr.shape[1], arr.shape[0]
            stream.pix_fmt = PIXEL_FORMAT
            stream.options = {"crf": str(self.crf)}
            self._video = stream
        elif (arr.shape[1], arr.shape[0]) != (self._video.width, self._video.height):
            raise VideoError(
                f"cannot write {self.path}: frame {self.frames_written} is {arr.shape[1]}x{arr.shape[0]}, "
                f"the video is {self._video.width}x{self._video.height}"
            )
        vf = av.VideoFrame.from_ndarray(arr, format="rgb24")
        vf.pts = self.frames_written
        vf.time_base = 1 / self.fps
        for packet in self._video.encode(vf):
            self._out.mux(packet)
        self.frames_written += 1
        self._encode_audio(self._samples_at(self.frames_written))

    def close(self) -> None:
        """Pad/cut the audio to the video's length, flush both encoders and finish the file."""
        if self._out is None:
            return
        try:
            if self._video is not None:
                for packet in self._video.encode(None):
                    self._out.mux(packet)
            target = self._samples_at(self.frames_written)
            missing = target - self.samples_written - self._pending.shape[1]
            if missing > 0:
                self._pending = np.pad(self._pending, ((0, 0), (0, missing)))
            self._encode_audio(target, final=True)
            for packet in self._audio.encode(None):
                self._out.mux(packet)
        finally:
            self._out.close()
            self._out = None

    def abort(self) -> None:
        """Close and delete the partial file."""
        try:
            if self._out is not None:
                self._out.close()
                self._out = None
        finally:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> SpeechVideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def stream_durations(path: str | os.PathLike[str]) -> dict[str, float]:
    """Durations of a written file's streams, in seconds.

    ``video_s``/``audio_s``: from the container (what players use; the AAC encoder's priming is
    removed by the edit list). ``video_decoded_s``: decoded frames / fps. ``audio_decoded_s``:
    decoded samples / rate, which still include part of the encoder's priming (under one AAC frame).
    """
    import av

    out: dict[str, float] = {}
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        whole = float(c.duration / 1_000_000) if c.duration else 0.0  # some containers keep no stream durations
        out["video_s"] = float(v.duration * v.time_base) if v.duration else whole
        out["audio_s"] = float(a.duration * a.time_base) if a.duration else whole
        fps = Fraction(v.average_rate)
        n = sum(1 for _ in c.decode(v))
        out["video_frames"] = float(n)
        out["video_decoded_s"] = float(n / fps)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        out["audio_decoded_s"] = sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate
    return out
