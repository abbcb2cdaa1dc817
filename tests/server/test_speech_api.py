"""The web app's voice over HTTP (issue 12, points 5 and 6) on the stand-in renderer.

``POST /generate`` for a command that speaks (the talk button, "say: ...", "웃으면서 말해줘 ...")
carries the audio in its ``start`` line on the frames' clock; ``POST /generate-audio`` takes the
user's speech audio; shared renders and the clip cache key on the audio; every input is bounded;
a server without eSpeak NG still serves everything else and answers the talk button plainly.
"""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.speech import AudioClip, speak_text, speech_available, wav_bytes
from lpstudio.speech import espeak as espeak_module

FPS = 12.0
requires_speech = pytest.mark.skipif(
    not speech_available(), reason='eSpeak NG is not installed: pip install "liveportrait-studio[speech]"'
)
SMALL_LIMITS = ServiceLimits(max_clip_ms=6_000.0, max_audio_upload_bytes=400 * 1024)
TONE_RATE = 16_000


def _settings(limits: ServiceLimits = SMALL_LIMITS) -> ServerSettings:
    return ServerSettings(crop=False, fps=FPS, idle_default=False, prerender=False, limits=limits)


@pytest.fixture(scope="module")
def speech_client() -> Iterator[tuple[TestClient, str, StandInEngine]]:
    engine = StandInEngine(frame_ms=1, prepare_ms=1)
    with TestClient(create_app(engine, _settings())) as c:
        yield c, c.post("/session", json={}).json()["session"], engine


def _lines(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _wav_of(audio: dict) -> tuple[int, int, int]:
    """``(sample_rate, channels, n_samples)`` of the start line's WAV (decoded, so it must be valid)."""
    with wave.open(io.BytesIO(base64.b64decode(audio["wav_base64"]))) as w:
        return w.getframerate(), w.getnchannels(), w.getnframes()


def _check_clock(lines: list[dict]) -> dict:
    """The start line's audio against the frames that came: same count, same length within one frame."""
    start, frames, end = lines[0], [x for x in lines if x["type"] == "frame"], lines[-1]
    assert start["type"] == "start" and end["type"] == "end", (start["type"], end)
    audio = start["audio"]
    rate, _, n = _wav_of(audio)
    assert start["frames"] == audio["n_frames"] == len(frames)
    frame_ms = 1000.0 / start["fps"]
    assert audio["frame_ms"] == pytest.approx(frame_ms)
    video_ms = len(frames) * frame_ms
    assert abs(1000.0 * n / rate - video_ms) < frame_ms, "audio and frames differ by a frame or more"
    assert audio["duration_ms"] == pytest.approx(1000.0 * n / rate, abs=1.0)
    assert audio["speech_ms"] <= audio["duration_ms"] + 1e-6
    assert [f["index"] for f in frames] == list(range(len(frames)))
    return audio


def _tone_wav(seconds: float, rate: int = TONE_RATE) -> bytes:
    """Speech-like audio: a vowel-ish harmonic tone in syllables with pauses (not a model's output)."""
    t = np.arange(int(seconds * rate)) / rate
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1200), start=1))
    gate = (np.sin(2 * np.pi * 2.5 * t) > 0).astype(np.float32)
    return wav_bytes(AudioClip.from_mono((0.3 * voice * gate).astype(np.float32), rate))


# ---------------------------------------------------------------------- text that speaks
@requires_speech
def test_talk_button_start_line_carries_decodable_audio_on_the_frames_clock(speech_client):
    client, session, _ = speech_client
    lines = _lines(client.post("/generate", json={"session": session, "preset": "talk"}))
    audio = _check_clock(lines)
    assert lines[0]["speaks"] is True
    assert audio["language"] == "ko" and audio["text"] == "안녕하세요, 반갑습니다."
    assert audio["start_ms"] == 0.0 and audio["phonemes"], "phoneme times come with the audio"
    rate, channels, n = _wav_of(audio)
    assert (rate, channels) == (audio["sample_rate"], 1)
    samples = np.frombuffer(base64.b64decode(audio["wav_base64"])[44:], "<i2")
    assert np.abs(samples).max() > 1000, "the WAV is silent"


@requires_speech
@pytest.mark.parametrize(
    ("command", "language", "text"),
    [
        ("say: nice to meet you", "en-us", "nice to meet you"),
        ("웃으면서 말해줘 안녕하세요", "ko", "안녕하세요"),
        ("뭐라고 말 좀 해봐", "ko", "안녕하세요, 반갑습니다."),
    ],
)
def test_typed_speech_commands_speak(speech_client, command, language, text):
    client, session, _ = speech_client
    audio = _check_clock(_lines(client.post("/generate", json={"session": session, "command": command})))
    assert (audio["language"], audio["text"]) == (language, text)


@requires_speech
def test_silent_commands_carry_no_audio(speech_client):
    client, session, _ = speech_client
    lines = _lines(client.post("/generate", json={"session": session, "command": "웃어줘"}))
    assert "audio" not in lines[0] and lines[0]["speaks"] is False


@requires_speech
def test_shared_renders_and_cache_key_on_the_audio(speech_client):
    client, session, _ = speech_client

    def run(command: str) -> tuple[dict, dict]:
        lines = _lines(client.post("/generate", json={"session": session, "command": command}))
        return lines[0]["audio"], lines[-1]

    first, end1 = run("말해봐: 하나 둘")
    other, end2 = run("말해봐: 셋 넷")
    again, end3 = run("말해봐: 하나 둘")
    assert not end1["cached"] and not end2["cached"], "a different text must not replay another's frames"
    assert first["key"] != other["key"] and first["wav_base64"] != other["wav_base64"]
    assert end3["cached"] and again["key"] == first["key"] and again["wav_base64"] == first["wav_base64"]


def test_cache_key_differs_with_audio_even_for_one_timeline():
    from lpstudio.expressions.timeline import Timeline
    from lpstudio.params import EditParams
    from lpstudio.server.plans import ClipPlan, clip_cache_key
    from lpstudio.server.speech import audio_start
    from lpstudio.speech.clip import SpeechClip

    timeline = Timeline([], 1000.0)
    clips = [SpeechClip(AudioClip.from_mono(np.full(16_000, v, np.float32), 16_000), timeline) for v in (0.1, 0.2)]
    keys = {
        clip_cache_key("photo", ClipPlan(timeline, FPS, [], None, 1, audio_start(c, FPS)), EditParams(), "engine")
        for c in clips
    }
    silent = clip_cache_key("photo", ClipPlan(timeline, FPS, [], None, 1), EditParams(), "engine")
    assert len(keys) == 2 and silent not in keys


def test_speech_memo_returns_the_same_audio_and_stays_bounded():
    from lpstudio.expressions.timeline import Timeline
    from lpstudio.server.speech import SpeechMemo, audio_start
    from lpstudio.speech.clip import SpeechClip

    made: list[str] = []

    def maker(key: str, seconds: float):
        def make():
            made.append(key)
            audio = AudioClip.from_mono(np.full(int(16_000 * seconds), 0.1, np.float32), 16_000)
            return audio_start(SpeechClip(audio, Timeline([], audio.duration_ms)), FPS)

        return make

    one = audio_start(SpeechClip(AudioClip.from_mono(np.zeros(16_000, np.float32), 16_000), Timeline([], 1000.0)), FPS)
    memo = SpeechMemo(max_bytes=3 * (64_000 + len(one.audio_json)))  # room for about three 1 s clips
    first = memo.get_or_make("a", maker("a", 1.0))
    assert memo.get_or_make("a", maker("a", 1.0)) is first and made == ["a"]
    for key in "bcd":
        memo.get_or_make(key, maker(key, 1.0))
    assert memo.bytes <= memo.max_bytes and len(memo) == 3
    memo.get_or_make("a", maker("a", 1.0))  # "a" was the least recently used: dropped, made again
    assert made == ["a", "b", "c", "d", "a"]
    assert memo.get_or_make("silent", lambda: None) is None and "silent" not in memo
    huge = memo.get_or_make("huge", maker("huge", 10.0))  # larger than the memo: served, not kept
    assert huge is not None and "huge" not in memo


@requires_speech
def test_speech_over_the_clip_limit_is_refused_before_rendering(speech_client):
    client, session, engine = speech_client
    before = sum(engine.batches)
    long_text = "오늘은 날씨가 정말 좋네요. " * 12
    res = client.post("/generate", json={"session": session, "command": f"말해봐: {long_text}"})
    assert res.status_code == 400
    assert "the limit is 6 s" in res.json()["error"]
    assert sum(engine.batches) == before, "frames were rendered for a refused request"


# ---------------------------------------------------------------------- the user's audio
def test_audio_upload_plays_the_users_speech(speech_client):
    client, session, _ = speech_client
    data = _tone_wav(2.0)
    res = client.post("/generate-audio", data={"session": session}, files={"file": ("hello.wav", data, "audio/wav")})
    audio = _check_clock(_lines(res))
    assert audio["language"] is None and audio["phonemes"] == []
    assert audio["sample_rate"] == TONE_RATE
    assert abs(audio["speech_ms"] - 2000.0) < 1.0


ENCODERS: dict[str, tuple[str, str]] = {
    ".mp3": ("libmp3lame", "audio/mpeg"),
    ".m4a": ("aac", "audio/x-m4a"),
    ".flac": ("flac", "audio/flac"),
    ".ogg": ("libopus", "audio/ogg"),
}
ENCODE_RATE = 48_000
ENCODE_CHUNK = 960


def _encoded(suffix: str, seconds: float) -> bytes:
    """A speech-like signal in a compressed format, written with PyAV."""
    import av

    codec, _ = ENCODERS[suffix]
    t = np.arange(int(seconds * ENCODE_RATE)) / ENCODE_RATE
    signal = (0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2.5 * t) > 0)).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format={".m4a": "ipod", ".ogg": "ogg"}.get(suffix, suffix[1:])) as out:
        stream = out.add_stream(codec, rate=ENCODE_RATE)
        stream.layout = "mono"
        fmt = stream.codec_context.codec.audio_formats[0].name
        for i in range(0, len(signal), ENCODE_CHUNK):
            part = signal[None, i : i + ENCODE_CHUNK]
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp", layout="mono")
            frame.sample_rate = ENCODE_RATE
            frame.pts = i
            if fmt != "fltp":
                frame = av.AudioResampler(format=fmt, layout="mono", rate=ENCODE_RATE).resample(frame)[0]
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


@pytest.mark.parametrize("suffix", sorted(ENCODERS))
def test_audio_upload_takes_compressed_formats(speech_client, suffix):
    client, session, _ = speech_client
    data = _encoded(suffix, 1.5)
    files = {"file": (f"voice{suffix}", data, ENCODERS[suffix][1])}
    audio = _check_clock(_lines(client.post("/generate-audio", data={"session": session}, files=files)))
    assert audio["sample_rate"] == 24_000 and audio["channels"] == 1
    assert abs(audio["speech_ms"] - 1500.0) < 120.0, audio["speech_ms"]  # encoder priming/padding


def test_audio_upload_downmixes_and_bounds_the_rate(speech_client, tmp_path):
    client, session, _ = speech_client
    t = np.arange(48_000) / 48_000
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).astype(np.float32) * 0.3
    data = wav_bytes(AudioClip(stereo, 48_000))
    res = client.post("/generate-audio", data={"session": session}, files={"file": ("s.wav", data, "audio/x-wav")})
    audio = _check_clock(_lines(res))
    assert (audio["sample_rate"], audio["channels"]) == (24_000, 1)


@pytest.mark.parametrize(
    ("name", "ctype", "data", "status", "message"),
    [
        ("empty.wav", "audio/wav", b"", 400, "is empty"),
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64, 400, "not audio: it looks like a PNG image"),
        ("notes.txt", "application/octet-stream", b"hello", 400, "not audio: it looks like a text file"),
        ("fake.wav", "audio/wav", b"this is not a wav file at all" * 10, 400, "fake.wav is not audio"),
        ("long.wav", "audio/wav", None, 400, "longer than 6 s"),
        ("big.wav", "audio/wav", b"\0" * (400 * 1024 + 10), 413, "larger than"),
    ],
)
def test_audio_upload_rejects_bad_files(speech_client, name, ctype, data, status, message):
    client, session, engine = speech_client
    before = sum(engine.batches)
    body = _tone_wav(7.0) if data is None else data
    res = client.post("/generate-audio", data={"session": session}, files={"file": (name, body, ctype)})
    assert res.status_code == status, res.text
    err = res.json()
    assert message in err["error"] and err["hint"], err
    assert sum(engine.batches) == before


def test_audio_upload_body_over_the_limit_is_413_before_reading(speech_client):
    client, session, _ = speech_client
    res = client.post(
        "/generate-audio",
        data={"session": session},
        files={"file": ("huge.wav", b"\0" * (SMALL_LIMITS.max_audio_upload_body_bytes + 1), "audio/wav")},
    )
    assert res.status_code == 413


def test_audio_upload_needs_a_known_session(speech_client):
    client, _, _ = speech_client
    res = client.post("/generate-audio", data={"session": "nope"}, files={"file": ("a.wav", _tone_wav(0.5))})
    assert res.status_code == 409


# ---------------------------------------------------------------------- streaming and availability
@requires_speech
def test_long_speech_streams_frames_before_the_clip_is_rendered():
    """The first frames reach the client while most of the sentence is still to be rendered."""
    engine = StandInEngine(frame_ms=25, prepare_ms=1)
    limits = ServiceLimits(max_clip_ms=30_000.0, stream_buffer_frames=12)
    with live_server(create_app(engine, _settings(limits))) as url:
        session = httpx.post(f"{url}/session").json()["session"]
        text = "The portrait speaks a long sentence, and its frames start before the last word is rendered."
        with httpx.stream(
            "POST", f"{url}/generate", json={"session": session, "command": f"say: {text}"}, timeout=60
        ) as res:
            lines = res.iter_lines()
            start = json.loads(next(lines))
            first = json.loads(next(lines))
            rendered_at_first = sum(engine.batches)
            time.sleep(0.5)  # not reading: the renderer may run only a window ahead of this viewer
            rendered_while_paused = sum(engine.batches)
            rest = [json.loads(x) for x in lines if x.strip()]
    total = start["frames"]
    assert first["type"] == "frame" and first["index"] == 0
    assert total > 60, total
    assert rendered_at_first < total / 2, (rendered_at_first, total)
    assert rendered_while_paused < total / 2, (rendered_while_paused, total)
    assert rest[-1]["type"] == "end" and rest[-1]["frames"] == total


def test_without_speech_the_talk_button_says_so_and_the_rest_works(monkeypatch):
    def missing():
        raise espeak_module.unavailable_error("stand-in: not installed")

    monkeypatch.setattr(espeak_module, "_ENGINE", [])
    monkeypatch.setattr(espeak_module, "_load", missing)
    engine = StandInEngine(frame_ms=1, prepare_ms=1)
    with TestClient(create_app(engine, _settings())) as client:
        assert client.get("/health").json()["speech"] is False
        session = client.post("/session", json={}).json()["session"]
        for body in ({"preset": "talk"}, {"command": "say: hello"}):
            res = client.post("/generate", json={"session": session, **body})
            assert res.status_code == 501, res.text
            err = res.json()
            assert "eSpeak NG" in err["error"] and err["kind"] == "SpeechUnavailableError"
            assert "pip install" in err["error"] + (err["hint"] or "")
        lines = _lines(client.post("/generate", json={"session": session, "preset": "smile"}))
        assert lines[-1]["type"] == "end" and lines[-1]["frames"] > 1
        # the user's own audio needs no synthesiser
        res = client.post("/generate-audio", data={"session": session}, files={"file": ("a.wav", _tone_wav(1.0))})
        _check_clock(_lines(res))


@requires_speech
def test_health_reports_speech(speech_client):
    client, _, _ = speech_client
    body = client.get("/health").json()
    assert body["speech"] is True and body["max_audio_upload_mb"] == pytest.approx(400 / 1024)


def test_espeak_own_audio_round_trips_through_the_upload(speech_client):
    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    client, session, _ = speech_client
    clip = speak_text("Hello there.", "en-us", idle=False)
    res = client.post(
        "/generate-audio", data={"session": session}, files={"file": ("hi.wav", wav_bytes(clip.audio), "audio/wav")}
    )
    audio = _check_clock(_lines(res))
    assert abs(audio["speech_ms"] - clip.audio_ms) < 1.0


# ---------------------------------------------------------------------- admission before synthesis
SPEAKERS = 20
PROBE_MAX_S = 1.0
"""What a page's cheap calls may take while the server is flooded with speech (they took seconds before)."""


def _photo_png(seed: int, size: int = 64) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@requires_speech
def test_a_flood_of_distinct_speaking_commands_is_admitted_first_and_starves_no_one():
    """20 distinct spoken commands at once: the extra ones get 429 + Retry-After at once (no synthesis queued on
    the shared threads), and /health, /session and a photo upload stay fast meanwhile."""
    import asyncio

    # one page speaks all of them: the per-session and per-client stream caps are other tests' subject (on a busy
    # machine the admitted clips are still streaming when the last speakers arrive, and would take those 429s)
    limits = ServiceLimits(max_clip_ms=6_000.0, max_streams_per_session=SPEAKERS, max_streams_per_client=SPEAKERS)
    engine = StandInEngine(frame_ms=1, prepare_ms=1)
    with live_server(create_app(engine, _settings(limits))) as url:

        async def flood() -> tuple[list[httpx.Response], list[tuple[str, int, float]]]:
            async with httpx.AsyncClient(base_url=url, timeout=120.0) as c:
                session = (await c.post("/session", json={})).json()["session"]

                async def speak(i: int) -> httpx.Response:
                    text = f"say: hello number {i}, this is a sentence of a few words to say out loud"
                    return await c.post("/generate", json={"session": session, "command": text})

                async def probe(what: str, call) -> tuple[str, int, float]:  # noqa: ANN001
                    t0 = time.perf_counter()
                    res = await call()
                    return what, res.status_code, time.perf_counter() - t0

                speakers = [asyncio.create_task(speak(i)) for i in range(SPEAKERS)]
                probes = []
                for k in range(3):
                    probes.append(await probe("health", lambda: c.get("/health")))
                    probes.append(await probe("session", lambda: c.post("/session", json={})))
                    files = {"file": (f"p{k}.png", _photo_png(k), "image/png")}
                    probes.append(await probe("photo", lambda files=files: c.post("/source-image", files=files)))
                return list(await asyncio.gather(*speakers)), probes

        spoken, probes = asyncio.run(flood())
    statuses = sorted(r.status_code for r in spoken)
    assert set(statuses) <= {200, 429}, statuses
    refused = [r for r in spoken if r.status_code == 429]
    assert len(refused) >= SPEAKERS - 2 * limits.max_pending_speech, statuses
    assert all(int(r.headers["Retry-After"]) >= 1 and "speech" in r.json()["error"] for r in refused)
    for r in spoken:
        if r.status_code == 200:
            _check_clock([json.loads(line) for line in r.text.splitlines() if line.strip()])
    slow = [(what, status, round(s, 2)) for what, status, s in probes if status != 200 or s > PROBE_MAX_S]
    assert not slow, slow


def test_speech_desk_refuses_past_its_queue_and_frees_a_place_only_when_synthesis_ends():
    """A full queue answers 429 at once; a waiter that goes away does not free the place of a job still running."""
    import asyncio
    import threading

    from lpstudio.errors import OverloadedError
    from lpstudio.server.speech import SpeechDesk

    desk = SpeechDesk(max_pending=2, retry_after_s=2.0)
    release = threading.Event()
    try:
        running = desk.submit(lambda: release.wait(30))
        queued = desk.submit(lambda: "second")
        with pytest.raises(OverloadedError) as refused:
            desk.submit(lambda: "third")
        assert refused.value.http_status == 429 and refused.value.retry_after_s >= 2.0
        assert desk.pending == 2

        async def give_up() -> None:  # a client that disconnects while its synthesis runs
            task = asyncio.ensure_future(asyncio.wrap_future(running))
            await asyncio.sleep(0)
            task.cancel()

        asyncio.run(give_up())
        assert desk.pending == 2, "a place was freed while its synthesis still runs"
        release.set()
        assert queued.result(timeout=30) == "second"
        assert desk.pending == 0
        assert desk.submit(lambda: "again").result(timeout=30) == "again"
    finally:
        release.set()
        desk.close()


@requires_speech
def test_speech_is_synthesised_on_the_speech_thread_only(monkeypatch):
    """The talk button's pre-render and a typed spoken command both run eSpeak NG on the speech thread,
    never on the shared threads that decode photos and plan other requests."""
    import threading

    from lpstudio.server import speech as server_speech

    threads: list[str] = []
    real = server_speech.command_speech

    def recording(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(server_speech, "command_speech", recording)
    settings = ServerSettings(crop=False, fps=FPS, idle_default=False, prerender=True, limits=SMALL_LIMITS)
    with TestClient(create_app(StandInEngine(frame_ms=1, prepare_ms=1), settings)) as c:
        session = c.post("/session", json={}).json()["session"]  # a new photo: its buttons are pre-rendered
        memo = c.app.state.speech_memo
        deadline = time.monotonic() + 60.0
        while len(memo) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(memo) == 1, "the talk button was not pre-rendered"
        _lines(c.post("/generate", json={"session": session, "command": "say: the speech thread speaks"}))
    assert len(threads) == 2 and all(t.startswith("lpstudio-speech") for t in threads), threads
