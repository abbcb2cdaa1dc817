"""Audio in and out: read any file PyAV decodes (wav, mp3, m4a, a video's audio track), WAV bytes out.

Audio is held as :class:`AudioClip`: ``samples`` ``(channels, n)`` float32 in [-1, 1] (mono or
stereo) at its own sample rate. Reading checks everything before any model work: the file exists,
has an audio stream, decodes, is not empty and not longer than :data:`MAX_AUDIO_SECONDS`.
"""

from __future__ import annotations

import io
import os
import wave
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from ..errors import AudioError

AUDIO_SUFFIXES: tuple[str, ...] = (
    ".wav",
    ".mp3",
    ".m4a",
    ".aac",
    ".flac",
    ".ogg",
    ".oga",
    ".opus",
    ".wma",
    ".aif",
    ".aiff",
)
"""File extensions taken as audio files (videos are read for their audio track too)."""
MAX_AUDIO_SECONDS: float = 600.0
"""Longest audio accepted (10 minutes): bounds memory (~230 MB of float32 stereo at 48 kHz) and work."""
MAX_CHANNELS: int = 2
"""More channels are mixed down to stereo."""
PCM16_SCALE: float = 32767.0
AV_TIME_BASE: int = 1_000_000
"""Units per second of a container's ``duration`` (FFmpeg's ``AV_TIME_BASE``)."""
DURATION_SLACK_S: float = 0.05
"""A stated duration may exceed the limit by this much (containers round) before it is refused unread."""

_HINT = "use a .wav, .mp3 or .m4a file with speech in it (or a video with an audio track)"


def is_audio_path(path: str | os.PathLike[str]) -> bool:
    """Whether a path names an audio file by its extension."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


@dataclass(frozen=True)
class AudioClip:
    """``samples``: ``(channels, n)`` float32 in [-1, 1]; ``channels`` is 1 or 2."""

    samples: np.ndarray
    sample_rate: int

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_ms(self) -> float:
        return 1000.0 * self.n_samples / self.sample_rate

    def mono(self) -> np.ndarray:
        """``(n,)`` float32: the channels averaged."""
        return self.samples.mean(axis=0).astype(np.float32)

    @classmethod
    def from_mono(cls, samples: np.ndarray, sample_rate: int) -> AudioClip:
        return cls(np.asarray(samples, dtype=np.float32).reshape(1, -1), int(sample_rate))

    def padded_to(self, n_samples: int) -> AudioClip:
        """Cut or padded with silence to exactly ``n_samples``."""
        s = self.samples[:, :n_samples]
        if s.shape[1] < n_samples:
            s = np.pad(s, ((0, 0), (0, n_samples - s.shape[1])))
        return AudioClip(np.ascontiguousarray(s, dtype=np.float32), self.sample_rate)


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """``x`` (``(..., n)``) at ``to_rate`` (polyphase filter, scipy)."""
    if from_rate == to_rate:
        return np.asarray(x, dtype=np.float32)
    from scipy.signal import resample_poly

    g = gcd(int(from_rate), int(to_rate))
    return resample_poly(x, to_rate // g, from_rate // g, axis=-1).astype(np.float32)


def read_audio(path: str | os.PathLike[str], max_seconds: float = MAX_AUDIO_SECONDS) -> AudioClip:
    """The first audio stream of ``path`` (any format PyAV decodes), at its own rate, mono or stereo.

    Raises:
        AudioError: missing file, no audio stream, undecodable, empty, or longer than ``max_seconds``.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"cannot read audio {p}: no such file", hint="check the path")
    return _decode(str(p), str(p), max_seconds)


def decode_audio(data: bytes, name: str, max_seconds: float = MAX_AUDIO_SECONDS) -> AudioClip:
    """:func:`read_audio` of a file's bytes (an upload), named ``name`` in errors.

    A file whose container states a duration over ``max_seconds`` is refused before decoding;
    decoding stops as soon as it passes the limit otherwise.
    """
    if not data:
        raise AudioError(f"{name} is empty", hint=_HINT)
    return _decode(io.BytesIO(data), name, max_seconds)


def _decode(what: str | io.BytesIO, name: str, max_seconds: float) -> AudioClip:
    import av

    try:
        container = av.open(what)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"cannot read audio {name}: {exc}", hint=_HINT) from None
    chunks: list[np.ndarray] = []
    total = 0
    too_long = AudioError(
        f"{name} is longer than {max_seconds:g} s", hint=f"cut it into pieces of at most {max_seconds:g} s"
    )
    try:
        if not container.streams.audio:
            raise AudioError(f"{name} has no audio track", hint=_HINT)
        if container.duration is not None and container.duration / AV_TIME_BASE > max_seconds + DURATION_SLACK_S:
            raise too_long
        stream = container.streams.audio[0]
        rate = int(stream.codec_context.sample_rate or stream.rate or 0)
        channels = int(stream.codec_context.channels or 1)
        if rate <= 0:
            raise AudioError(f"cannot read audio {name}: the audio track has no sample rate", hint=_HINT)
        layout = "mono" if channels == 1 else "stereo"
        resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
        limit = int(max_seconds * rate)
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    arr = out.to_ndarray().astype(np.float32)
                    chunks.append(arr)
                    total += arr.shape[1]
                if total > limit:
                    raise too_long
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().astype(np.float32))
        except av.FFmpegError as exc:
            raise AudioError(f"cannot decode the audio of {name}: {exc}", hint=_HINT) from None
    finally:
        container.close()
    if not chunks or sum(c.shape[1] for c in chunks) == 0:
        raise AudioError(f"{name} has no audio samples", hint=_HINT)
    samples = np.concatenate(chunks, axis=1)
    samples = np.nan_to_num(np.clip(samples, -1.0, 1.0))
    return AudioClip(np.ascontiguousarray(samples[:MAX_CHANNELS]), rate)


def wav_bytes(clip: AudioClip) -> bytes:
    """The clip as a 16-bit PCM WAV file (bytes), e.g. for a page's ``<audio>`` or Web Audio."""
    pcm = np.round(np.clip(clip.samples, -1.0, 1.0) * PCM16_SCALE).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(clip.channels)
        w.setsampwidth(2)
        w.setframerate(clip.sample_rate)
        w.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    return buf.getvalue()


def write_wav(path: str | os.PathLike[str], clip: AudioClip) -> Path:
    """Write the clip as a 16-bit PCM WAV file."""
    p = Path(path)
    p.write_bytes(wav_bytes(clip))
    return p
