"""Hostile audio uploads to ``POST /generate-audio`` (issue 20): refused plainly, fast, within bounded memory.

The format is told by the first bytes only (a concat script, playlist or SDP text named ``voice.wav`` is
never handed to FFmpeg), every number a header declares is bounded before anything is sized from it,
and no decoder text reaches a client: a refusal carries our own message and a request id.
"""

from __future__ import annotations

import io
import re
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.speech import AudioClip, wav_bytes

FPS = 12.0
LIMITS = ServiceLimits(max_clip_ms=6_000.0, max_audio_upload_bytes=5 * 2**20)
FAST_S = 3.0
"""A refusal must come at once: an SDP text left to FFmpeg hangs ~20 s on RTP listeners."""
MIB = 2**20
SECRET_RATE = 16_000
DECODER_WORDS = re.compile(
    r"invalid data|avformat|avcodec|errno|operation not permitted|no such file|secret|<none>|ffmpeg error|"
    r"protocol|whitelist|traceback",
    re.IGNORECASE,
)
"""What FFmpeg/PyAV/Python text looks like (and the name of the file that must stay unread)."""


@pytest.fixture(scope="module")
def upload() -> Iterator[TestClient]:
    engine = StandInEngine(frame_ms=1, prepare_ms=1)
    settings = ServerSettings(crop=False, fps=FPS, idle_default=False, prerender=False, limits=LIMITS)
    with TestClient(create_app(engine, settings)) as c:
        session = c.post("/session", json={}).json()["session"]

        def post(name: str, data: bytes, ctype: str = "audio/wav"):  # noqa: ANN202
            return c.post("/generate-audio", data={"session": session}, files={"file": (name, data, ctype)})

        c.upload = post  # type: ignore[attr-defined]
        yield c


def _refused_plainly(res, status: int = 400) -> dict:
    """A 4xx JSON error of our own words with a request id; nothing a decoder wrote."""
    assert res.status_code == status, res.text[:500]
    body = res.json()
    assert set(body) >= {"error", "hint", "kind", "request_id"}, body
    assert re.fullmatch(r"[0-9a-f]{12}", body["request_id"]), body
    assert not DECODER_WORDS.search(res.text), res.text
    return body


def _wav(rate: int, data_bytes: int, *, tag: int = 1, channels: int = 1) -> bytes:
    """A WAV whose header declares ``rate`` and format ``tag`` (any 32-bit values), with 16-bit noise."""
    block = 2 * channels
    fmt = struct.pack("<HHIIHH", tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, 16)
    pcm = np.random.default_rng(7).integers(-3000, 3000, data_bytes // 2).astype("<i2").tobytes()
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def _mp3(layout: str, seconds: float, rate: int = 44_100) -> bytes:
    """A tone encoded as MP3 with PyAV (libmp3lame), mono or stereo."""
    import av

    channels = 1 if layout == "mono" else 2
    t = np.arange(int(seconds * rate)) / rate
    signal = np.repeat((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)[None], channels, axis=0)
    frame_samples = 1152  # one MPEG-1 Layer III frame
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = layout
        for i in range(0, signal.shape[1], frame_samples):
            part = np.ascontiguousarray(signal[:, i : i + frame_samples])
            frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
            frame.sample_rate, frame.pts = rate, i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def _vm_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _peak_growth_mib(run) -> float:  # noqa: ANN001
    """How far this process's resident memory peaked above where it was, while ``run()`` ran."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS (Linux)
    before = _vm_kib("VmRSS")
    run()
    return (_vm_kib("VmHWM") - before) / 1024


# ---------------------------------------------------------------------- not audio at all
HOSTILE_TEXTS = {
    "ffconcat": b"ffconcat version 1.0\nfile secret.wav\n",
    "hls": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10.0,\nsecret.wav\n#EXT-X-ENDLIST\n",
    "sdp": b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=voice\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
}


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
@pytest.mark.parametrize("kind", sorted(HOSTILE_TEXTS))
def test_scripts_playlists_and_sdp_named_as_audio_are_refused_unread(upload, tmp_path, monkeypatch, kind, suffix):
    """The server's working directory holds ``secret.wav``; a body naming it must not decode it (nor hang)."""
    (tmp_path / "secret.wav").write_bytes(wav_bytes(AudioClip.from_mono(np.full(SECRET_RATE, 0.5), SECRET_RATE)))
    monkeypatch.chdir(tmp_path)
    ctype = "audio/wav" if suffix == ".wav" else "audio/mpeg"
    t0 = time.perf_counter()
    res = upload.upload(f"voice{suffix}", HOSTILE_TEXTS[kind], ctype)
    assert time.perf_counter() - t0 < FAST_S
    body = _refused_plainly(res)
    assert "is not audio: it looks like" in body["error"] and "WAV" in body["hint"], body


# ---------------------------------------------------------------------- headers that ask for the moon
def test_a_4kb_wav_declaring_2ghz_is_refused_at_once_in_bounded_memory(upload):
    data = _wav(2_000_000_011, 4096)
    out = {}
    growth = _peak_growth_mib(lambda: out.setdefault("res", upload.upload("voice.wav", data)))
    body = _refused_plainly(out["res"])
    assert "sample rate" in body["error"], body
    assert growth < 50, f"resident memory grew by {growth:.0f} MiB"


def test_a_wav_declaring_5mhz_with_4_5mb_of_data_is_refused_in_bounded_memory(upload):
    data = _wav(5_000_011, 4_500_000)
    out = {}
    growth = _peak_growth_mib(lambda: out.setdefault("res", upload.upload("voice.wav", data)))
    body = _refused_plainly(out["res"])
    assert "sample rate" in body["error"], body
    assert growth < 200, f"resident memory grew by {growth:.0f} MiB"


def test_a_wav_of_an_unknown_codec_tag_is_a_plain_400(upload):
    _refused_plainly(upload.upload("voice.wav", _wav(16_000, 4096, tag=0x7777)))


@pytest.mark.parametrize("first", ["mono", "stereo"])
def test_an_mp3_whose_channel_count_changes_mid_stream_is_read_whole(upload, first):
    """Joined from a mono and a stereo MP3 (either order): both halves are heard, no 500, no decoder text."""
    second = "stereo" if first == "mono" else "mono"
    res = upload.upload("voice.mp3", _mp3(first, 1.0) + _mp3(second, 1.0), "audio/mpeg")
    assert res.status_code == 200, res.text[:500]
    start = next(line for line in res.text.splitlines() if '"start"' in line)
    speech_ms = float(re.search(r'"speech_ms":\s*([0-9.]+)', start).group(1))
    assert abs(speech_ms - 2000.0) < 150.0, speech_ms  # encoder priming/padding of two files


def test_audio_is_told_by_its_bytes_not_by_its_name_or_type(upload):
    """A real WAV sent as ``notes.bin`` / ``application/octet-stream`` is read; a text sent as audio is not."""
    tone = wav_bytes(AudioClip.from_mono(0.3 * np.sin(np.arange(SECRET_RATE) / 5.0), SECRET_RATE))
    assert upload.upload("notes.bin", tone, "application/octet-stream").status_code == 200
    body = _refused_plainly(upload.upload("voice.wav", b"hello, this is plain text" * 4, "audio/wav"))
    assert "a text file" in body["error"], body
