"""Reading the user's audio with PyAV (wav, mp3, m4a, a video's track; any rate, mono or stereo) and its errors."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from lpstudio.errors import AudioError
from lpstudio.speech.audio import AudioClip, is_audio_path, read_audio, wav_bytes, write_wav


def tone(rate: int, seconds: float, channels: int = 1, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    sig = 0.4 * np.sin(2 * np.pi * freq * t)
    return np.stack([sig * (1.0 - 0.3 * c) for c in range(channels)]).astype(np.float32)


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [("a.wav", 22050, 1), ("b.wav", 48000, 2), ("c.mp3", 44100, 2), ("d.m4a", 16000, 1), ("e.m4a", 48000, 2)],
)
def test_reads_common_formats(audio_file, name: str, rate: int, channels: int) -> None:
    samples = tone(rate, 1.0, channels)
    clip = read_audio(audio_file(name, samples, rate))
    assert clip.sample_rate == rate and clip.channels == channels
    assert clip.duration_ms == pytest.approx(1000.0, abs=60.0)  # lossy codecs add a frame of padding
    mono = clip.mono()
    # same tone back: the loudest FFT bin is the tone
    spec = np.abs(np.fft.rfft(mono[: rate // 2]))
    assert np.fft.rfftfreq(rate // 2, 1 / rate)[np.argmax(spec)] == pytest.approx(300.0, abs=4.0)
    assert 0.2 < np.abs(mono).max() <= 1.0


def test_reads_the_audio_track_of_a_video(audio_file) -> None:
    clip = read_audio(audio_file("clip.mp4", tone(44100, 1.0), 44100, video=True))
    assert clip.sample_rate == 44100 and clip.duration_ms == pytest.approx(1000.0, abs=60.0)


def test_errors_say_what_is_wrong(tmp_path: Path, audio_file) -> None:
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"this is not audio" * 50)
    with pytest.raises(AudioError, match="junk.mp3"):
        read_audio(junk)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.wav"):
        read_audio(empty)
    silent_video = tmp_path / "video_only.mp4"
    import av

    with av.open(str(silent_video), "w") as out:
        v = out.add_stream("libx264", rate=10)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        for k in range(3):
            f = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            f.pts = k
            out.mux(v.encode(f))
        out.mux(v.encode(None))
    with pytest.raises(AudioError, match="no audio track"):
        read_audio(silent_video)
    with pytest.raises(AudioError, match="longer than"):
        read_audio(audio_file("long.wav", tone(8000, 3.0), 8000), max_seconds=1.0)


def test_wav_bytes_round_trip(tmp_path: Path) -> None:
    clip = AudioClip(tone(16000, 0.25, 2), 16000)
    data = wav_bytes(clip)
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 16000, 4000)
    back = read_audio(write_wav(tmp_path / "x.wav", clip))
    assert np.abs(back.samples - clip.samples).max() < 2 / 32767


def test_audio_suffixes() -> None:
    assert is_audio_path("a.WAV") and is_audio_path("b.m4a") and is_audio_path("c.mp3")
    assert not is_audio_path("d.mp4") and not is_audio_path("e.npz")
    clip = AudioClip.from_mono(np.ones(10, np.float32), 10)
    assert clip.padded_to(15).n_samples == 15 and clip.padded_to(4).n_samples == 4


def _wav_declaring(rate: int, n_bytes: int = 4096) -> bytes:
    """A 16-bit mono WAV whose header says ``rate`` (any 32-bit number), with silence as data."""
    import struct

    fmt = struct.pack("<HHIIHH", 1, 1, rate, (2 * rate) & 0xFFFFFFFF, 2, 16)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", n_bytes) + b"\0" * n_bytes
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def test_header_rates_are_bounded_for_paths_and_uploads(tmp_path: Path) -> None:
    from lpstudio.speech.audio import MAX_SAMPLE_RATE, decode_audio

    data = _wav_declaring(2_000_000_011)
    with pytest.raises(AudioError, match="declares a sample rate of 2000000011 Hz"):
        decode_audio(data, "up.wav")
    (tmp_path / "local.wav").write_bytes(data)
    with pytest.raises(AudioError, match="declares a sample rate"):
        read_audio(tmp_path / "local.wav")
    assert read_audio(_write(tmp_path / "top.wav", _wav_declaring(MAX_SAMPLE_RATE))).sample_rate == MAX_SAMPLE_RATE


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_uploads_convert_while_decoding_and_are_told_by_their_bytes() -> None:
    from lpstudio.speech.audio import decode_audio

    stereo = wav_bytes(AudioClip(tone(44100, 0.5, channels=2), 44100))
    clip = decode_audio(stereo, "s.bin", choose_rate=lambda rate: 24_000 if rate > 24_000 else rate, mono=True)
    assert (clip.sample_rate, clip.channels) == (24_000, 1)
    assert clip.duration_ms == pytest.approx(500.0, abs=2.0)
    for body, what in [(b"ffconcat version 1.0\nfile a.wav\n", "concat script"), (b"#EXTM3U\n", "playlist")]:
        with pytest.raises(AudioError, match=f"voice.wav is not audio: it looks like .*{what}"):
            decode_audio(body, "voice.wav")
