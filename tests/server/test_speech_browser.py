"""The page speaks (issue 12, points 5 and 6), in Chromium against the stand-in renderer.

Clicking 말해봐 starts an ``AudioContext`` that reaches ``running`` (read from the page's data
attributes), the voice starts with the frames and frames play on the audio clock; mute sets the gain
to 0 and is remembered; an uploaded 30 s audio file plays with every frame within one frame of the
audio; a bad file gets a plain error; without eSpeak NG the talk button says so and the rest works.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, create_app
from lpstudio.speech import AudioClip, speech_available, write_wav
from lpstudio.speech import espeak as espeak_module

pytestmark = pytest.mark.browser

FPS = 12.0
FRAME_MS = 1000.0 / FPS
TIMEOUT_MS = 120_000
LONG_CLIP_S = 29.5
VOICE_FLAGS = [*CHROMIUM_FLAGS, "--autoplay-policy=no-user-gesture-required"]
requires_speech = pytest.mark.skipif(not speech_available(), reason="eSpeak NG is not installed")

STATE_JS = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4 * 97) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  const b = document.body.dataset;
  return {hash: h, state: c.dataset.state || '', audio: b.audioState || '', played: Number(b.voicePlayed || 0),
          voice: b.voice || '', muted: b.muted || '', gain: b.gain || '', skew: b.avSkewMs, clock: b.avClock || '',
          dropped: Number(b.framesDropped || 0),
          error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
          note: document.getElementById('voiceNote').textContent};
}"""


def _speechlike(seconds: float, rate: int = 16_000) -> AudioClip:
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 700, 1200), start=1))
    gate = (np.sin(2 * np.pi * 2.0 * t) > 0).astype(np.float32)
    return AudioClip.from_mono((0.3 * tone * gate).astype(np.float32), rate)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("speech-shots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=VOICE_FLAGS)
        yield browser
        browser.close()


def _open_page(browser, url: str) -> Iterator:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS)
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    context.close()


@pytest.fixture(scope="module")
def page(browser):
    engine = StandInEngine(frame_ms=2, prepare_ms=5)
    with live_server(create_app(engine, ServerSettings(crop=False, fps=FPS, idle_default=False))) as url:
        yield from _open_page(browser, url)


def _state(page) -> dict:
    return page.evaluate(STATE_JS)


def _play(page, start, *, timeout_s: float = TIMEOUT_MS / 1000) -> tuple[dict, set[int], list[dict]]:
    """Start a clip with ``start()``, watch it back to the portrait; (final state, canvas hashes seen, states)."""
    base = _state(page)
    start()
    seen: set[int] = set()
    states: list[dict] = []
    saw_playing = False
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        st = _state(page)
        states.append(st)
        saw_playing = saw_playing or st["state"] == "playing"
        if st["hash"] != base["hash"]:
            seen.add(st["hash"])
        if saw_playing and st["state"] == "neutral":
            return st, seen, states
        time.sleep(0.05)
    pytest.fail(f"the clip did not finish in {timeout_s:.0f} s: {states[-1] if states else None}")


@requires_speech
def test_talk_button_plays_the_voice_with_the_frames(page, shots):
    talk = page.get_by_role("button", name="말해봐 (talk)", exact=True)
    final, seen, states = _play(page, talk.click)
    assert not final["error"], final["error"]
    assert any(s["audio"] == "running" for s in states), "the AudioContext never reached 'running'"
    assert any(s["voice"] == "playing" for s in states), "the voice never played"
    assert final["played"] >= 1 and final["clock"] == "audio"
    assert len(seen) >= 2, "frames did not play"
    assert float(final["skew"]) < FRAME_MS, f"a frame was {final['skew']} ms late against the audio"
    assert page.errors == []


@requires_speech
def test_typed_speech_command_speaks(page):
    def send() -> None:
        page.fill("#command", "웃으면서 말해줘 안녕하세요")
        page.press("#command", "Enter")

    before = _state(page)["played"]
    final, seen, states = _play(page, send)
    assert not final["error"], final["error"]
    assert final["played"] == before + 1 and final["clock"] == "audio"
    assert any(s["voice"] == "playing" for s in states) and len(seen) >= 2
    assert float(final["skew"]) < FRAME_MS


@requires_speech
def test_mute_sets_the_gain_to_zero_and_is_remembered(page, shots):
    mute = page.locator("#muteButton")
    assert _state(page)["muted"] == "0"
    mute.click()
    st = _state(page)
    assert (st["muted"], st["gain"]) == ("1", "0") and "🔇" in mute.inner_text()
    assert page.evaluate("() => voice.gain.gain.value") == 0
    final, _, states = _play(page, page.get_by_role("button", name="말해봐 (talk)", exact=True).click)
    assert not final["error"] and any(s["voice"] == "playing" for s in states)
    assert page.evaluate("() => voice.gain.gain.value") == 0, "muted, yet the voice was audible"
    page.reload()
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'")
    assert _state(page)["muted"] == "1" and "🔇" in mute.inner_text(), "mute was not remembered"
    mute.click()
    assert _state(page)["gain"] == "1"


def test_screenshot_of_the_voice_controls(page, shots):
    page.locator("#voice").scroll_into_view_if_needed()
    assert page.locator("#muteButton").is_visible() and page.locator("#audioButton").is_visible()
    page.screenshot(path=str(shots / "10-speech.png"))


def test_uploaded_audio_plays_in_sync_over_thirty_seconds(page, tmp_path):
    path = write_wav(tmp_path / "speech.wav", _speechlike(LONG_CLIP_S))
    final, seen, states = _play(
        page, lambda: page.set_input_files("#audioUpload", str(path)), timeout_s=TIMEOUT_MS / 1000 + LONG_CLIP_S
    )
    assert not final["error"], final["error"]
    assert final["clock"] == "audio" and any(s["voice"] == "playing" for s in states)
    assert float(final["skew"]) < FRAME_MS, f"a frame was {final['skew']} ms late against the audio"
    assert len(seen) >= 2, "frames did not play"  # the stand-in shows head motion (nods), not the mouth
    assert final["dropped"] < LONG_CLIP_S * FPS / 10, f"{final['dropped']} frames dropped to keep up with the voice"
    assert "🎤 speech.wav" in page.locator("#stats").inner_text()


def test_bad_audio_file_gets_a_plain_error(page, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"these are not sounds " * 20)
    page.set_input_files("#audioUpload", str(bad))
    page.wait_for_function("() => !document.getElementById('error').hidden", timeout=TIMEOUT_MS)
    text = page.locator("#error").inner_text()
    assert "notes.wav" in text and "→" in text
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'")


@pytest.fixture(scope="module")
def page_without_speech(browser):
    def missing():
        raise espeak_module.unavailable_error("stand-in: not installed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(espeak_module, "_load", missing)
        engine = StandInEngine(frame_ms=2, prepare_ms=5)
        with live_server(create_app(engine, ServerSettings(crop=False, fps=FPS, idle_default=False))) as url:
            yield from _open_page(browser, url)


def test_without_speech_the_talk_button_says_so_and_the_rest_works(page_without_speech, shots):
    page = page_without_speech
    assert "eSpeak NG" in _state(page)["note"]
    page.get_by_role("button", name="말해봐 (talk)", exact=True).click()
    page.wait_for_function("() => !document.getElementById('error').hidden", timeout=TIMEOUT_MS)
    text = page.locator("#error").inner_text()
    assert "말을 못 해요" in text and "eSpeak NG" in text and "busy" not in text
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'")
    base = _state(page)
    page.get_by_role("button", name="웃어봐 (smile)", exact=True).click()
    page.wait_for_function(
        "() => document.getElementById('stats').textContent.includes('first frame')", timeout=TIMEOUT_MS
    )
    st = _state(page)
    assert st["error"] == "" and base["hash"] is not None
    assert "eSpeak NG" in st["note"], "the note that this server cannot speak went away"
    page.screenshot(path=str(shots / "11-no-speech.png"))
    assert page.errors == []
