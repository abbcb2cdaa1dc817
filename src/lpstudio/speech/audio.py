"""Audio in and out: read any file PyAV decodes (wav, mp3, m4a, a video's audio track), WAV bytes out.

Audio is held as :class:`AudioClip`: ``samples`` ``(channels, n)`` float32 in [-1, 1] (mono or
stereo) at its own sample rate. Reading checks everything before any model work: the file exists,
has an audio stream, decodes, is not empty and not longer than :data:`MAX_AUDIO_SECONDS`.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Callable
from dataclasses import dataclass
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AudioError
from ..sniff import AUDIO_NAMES, SNIFF_BYTES, Format, describe, sniff_audio, sniff_image

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

MIN_SAMPLE_RATE: int = 8_000
"""Lowest sample rate read: telephone speech (G.711), the least that still carries the formants we track."""
MAX_SAMPLE_RATE: int = 192_000
"""Highest sample rate read: the top rate of studio / high-resolution audio (e.g. 24-bit/192 kHz masters).
A header may declare any 32-bit number; nothing is sized from it before this check."""
MAX_INPUT_CHANNELS: int = 8
"""Most channels read (7.1 surround); they are mixed down to :data:`MAX_CHANNELS` while decoding."""
MAX_FRAME_SAMPLES: int = 65_536
"""Largest decoded frame, per channel: FLAC's largest block (65,535) is the biggest of the codecs we read."""
MAX_PACKET_BYTES: int = 4 * 2**20
"""Largest compressed packet: a FLAC frame of 65,535 samples x 8 channels x 32 bits is 2 MiB uncompressed."""
MAX_BAD_PACKETS: int = 16
"""Damaged packets skipped (as players do; an MP3 joined from two files has one at the joint) before a file is
refused."""
NO_PROTOCOLS: str = "none"
"""FFmpeg ``protocol_whitelist`` of an upload: it is read from memory, so a demuxer may open nothing else
(no ``file``, ``http``, ``rtp``...); no protocol has this name."""
PCM_CODEC_PREFIX: str = "pcm_"
AUDIO_CODECS: frozenset[str] = frozenset(
    {"mp3", "mp3float", "mp2", "mp2float", "aac", "alac", "flac", "opus", "libopus", "vorbis", "libvorbis",
     "adpcm_ms", "adpcm_ima_wav", "gsm_ms", "pcm_alaw", "pcm_mulaw"}
)  # fmt: skip
"""Decoders an upload may use besides PCM: those of the containers :mod:`lpstudio.sniff` accepts (WAV, MP3,
MP4/M4A, Ogg, FLAC, WebM) as speech is stored in them; anything else is refused before decoding."""
DECODER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, UnicodeDecodeError)
"""What PyAV raises for a file it cannot read, besides ``av.FFmpegError`` (imported lazily, added where used)."""

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

    For a local file the caller chose (the CLI): FFmpeg probes its format. Uploads go through
    :func:`decode_audio`, which never lets it guess. The header's numbers are bounded either way.

    Raises:
        AudioError: missing file, no audio stream, undecodable, empty, or longer than ``max_seconds``.
    """
    p = Path(path)
    if not p.is_file():
        raise AudioError(f"cannot read audio {p}: no such file", hint="check the path")
    return _decode(str(p), str(p), max_seconds)


def check_audio_kind(data: bytes, name: str) -> Format:
    """The accepted container ``data`` starts with, else an :class:`AudioError` naming what it looks like.

    Only the first bytes count: the client's file name and content type are not trusted.
    """
    head = data[:SNIFF_BYTES]
    fmt = sniff_audio(head)
    if fmt is not None:
        return fmt
    image = sniff_image(head)
    what = f"a {image.name} image" if image is not None else describe(head)
    raise AudioError(f"{name} is not audio: it looks like {what}", hint=f"upload one of: {AUDIO_NAMES}")


def decode_audio(
    data: bytes,
    name: str,
    max_seconds: float = MAX_AUDIO_SECONDS,
    *,
    choose_rate: Callable[[int], int] | None = None,
    mono: bool = False,
) -> AudioClip:
    """:func:`read_audio` of an untrusted file's bytes (an upload), named ``name`` in errors.

    The container is identified by its first bytes (:func:`check_audio_kind`) and opened with that
    demuxer named, from memory, with no protocol allowed: a playlist, a concat script or an SDP text
    is refused before FFmpeg sees it, and nothing in a file can make FFmpeg open another file or a
    socket. A file whose container states a duration over ``max_seconds`` is refused before
    decoding; decoding stops as soon as it passes the limit otherwise.

    ``choose_rate(rate)``: the rate to return for the (bounded) input rate, converted while decoding
    (default: the input's own); ``mono``: mix the channels down while decoding.
    """
    if not data:
        raise AudioError(f"{name} is empty", hint=_HINT)
    fmt = check_audio_kind(data, name)
    return _decode(io.BytesIO(data), name, max_seconds, fmt=fmt.decoder, choose_rate=choose_rate, mono=mono)


def _unreadable(name: str, exc: BaseException | None = None) -> AudioError:
    """Our own message; the decoder's text stays on ``__cause__`` (for the server log, never the client)."""
    err = AudioError(f"cannot read audio {name}: it is damaged or not a kind of audio we read", hint=_HINT)
    err.__cause__ = exc
    return err


def _check_rate_and_channels(name: str, rate: int, channels: int) -> None:
    """Refuse a sample rate or channel count outside what speech audio has, before anything is sized from it."""
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"{name} declares a sample rate of {rate} Hz; audio from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz is read",
            hint=_HINT,
        )
    if not 1 <= channels <= MAX_INPUT_CHANNELS:
        raise AudioError(
            f"{name} declares {channels} audio channels; at most {MAX_INPUT_CHANNELS} are read", hint=_HINT
        )


def _check_codec(name: str, codec: str | None) -> None:
    if codec is None or not (codec.startswith(PCM_CODEC_PREFIX) or codec in AUDIO_CODECS):
        what = f"the {codec} codec" if codec else "an unknown codec"
        raise AudioError(f"{name} is encoded with {what}, which is not read here", hint=_HINT)


class _Converter:
    """Decoded frames -> ``(channels, n)`` float32 at one rate and layout, whatever each frame carries.

    FFmpeg's resampler is set up for one input rate and layout; a stream whose layout or rate changes
    mid-way (an MP3 joined from a mono and a stereo file) gets a new one (the old one flushed first).
    """

    def __init__(self, name: str, rate: int, layout: str) -> None:
        self.name = name
        self.rate = rate
        self.layout = layout
        self._resampler: Any = None
        self._source: tuple[str, str, int] | None = None

    def __call__(self, frame: Any) -> list[np.ndarray]:
        import av

        rate, channels = int(frame.sample_rate or 0), int(frame.layout.nb_channels)
        _check_rate_and_channels(self.name, rate, channels)
        if frame.samples > MAX_FRAME_SAMPLES:
            raise _unreadable(self.name)
        source = (frame.format.name, frame.layout.name, rate)
        out: list[np.ndarray] = []
        if source != self._source:
            out = self.flush()
            self._resampler = av.AudioResampler(format="fltp", layout=self.layout, rate=self.rate)
            self._source = source
        frame.pts = None
        out.extend(f.to_ndarray().astype(np.float32) for f in self._resampler.resample(frame))
        return out

    def flush(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        out = [f.to_ndarray().astype(np.float32) for f in self._resampler.resample(None)]
        self._resampler = None
        self._source = None
        return out


def _decode(
    what: str | io.BytesIO,
    name: str,
    max_seconds: float,
    *,
    fmt: str | None = None,
    choose_rate: Callable[[int], int] | None = None,
    mono: bool = False,
) -> AudioClip:
    import av

    errors = (av.FFmpegError, *DECODER_ERRORS)
    options = {} if fmt is None else {"protocol_whitelist": NO_PROTOCOLS}
    try:
        container = av.open(what, format=fmt, options=options)
    except errors as exc:
        raise _unreadable(name, exc) from exc
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
        ctx = stream.codec_context  # None for a codec tag FFmpeg does not know (e.g. a WAV of format 0x7777)
        _check_codec(name, None if ctx is None else ctx.name)
        assert ctx is not None  # refused just above otherwise
        in_rate = int(ctx.sample_rate or 0)
        in_channels = int(ctx.channels or 0)
        _check_rate_and_channels(name, in_rate, in_channels)
        rate = choose_rate(in_rate) if choose_rate is not None else in_rate
        layout = "mono" if mono or in_channels == 1 else "stereo"
        convert = _Converter(name, rate, layout)
        limit = int(max_seconds * rate)
        bad_packets = 0
        try:
            for packet in container.demux(stream):
                if packet.size > MAX_PACKET_BYTES:
                    raise _unreadable(name)
                try:
                    frames = packet.decode()
                except av.InvalidDataError as exc:  # a damaged frame, or an MP3's joint: skip it, as players do
                    bad_packets += 1
                    if bad_packets > MAX_BAD_PACKETS:
                        raise _unreadable(name, exc) from exc
                    continue
                for frame in frames:
                    for arr in convert(frame):
                        chunks.append(arr)
                        total += arr.shape[1]
                    if total > limit:
                        raise too_long
            chunks.extend(convert.flush())
        except errors as exc:
            raise _unreadable(name, exc) from exc
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
