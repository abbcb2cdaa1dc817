"""Keeping what you make, in Chromium: the photo and clip downloads (decoded with PyAV), use as base, the
saved-expression round trip (save, use in a command, export, import in a new session) and drag to edit.

Service: full-photo mode with stand-in face models (landmarks, paste-back) and the stand-in renderer
(benchmarks/standin_server.py), so a clip takes well under a second; the page and routes are the real ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from PIL import Image
from service_helpers import live_server
from standin_server import StandInEngine
from test_browser_service import _portrait

from lpstudio.face import FacePipeline
from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
FPS = 12.0
NEUTRAL_JS = "() => document.getElementById('portrait').dataset.state === 'neutral'"
WIDER_THAN_VIEWPORT_JS = """() => [...document.querySelectorAll('#keep *')]
  .filter(e => e.getBoundingClientRect().right > innerWidth + 1).length"""
HASH_JS = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4 * 97) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require_browser()
    from standin_models import write_face_models

    root = tmp_path_factory.mktemp("keep")
    face = FacePipeline(write_face_models(root / "weights"), ["CPUExecutionProvider"])
    engine = StandInEngine(frame_ms=2, prepare_ms=5, face=face)
    settings = ServerSettings(crop=True, fps=FPS, idle_default=False, default_source=_portrait(root / "portrait.png"))
    with live_server(create_app(engine, settings)) as url:
        yield url, httpx.get(f"{url}/health").json()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("shots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser(service):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def _open(browser, url: str, width: int = 1280, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(NEUTRAL_JS, timeout=TIMEOUT_MS)
    page.wait_for_function("() => !!document.getElementById('portrait').dataset.regions", timeout=TIMEOUT_MS)
    return page


@pytest.fixture(scope="module")
def page(browser, service):
    page = _open(browser, service[0])
    yield page
    page.close()


def _set_slider(page, name: str, value: float) -> None:
    page.evaluate(
        """([name, value]) => { const el = document.getElementById('p-' + name); el.value = value;
           el.dispatchEvent(new Event('input', {bubbles: true})); }""",
        [name, value],
    )
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'preview'", timeout=TIMEOUT_MS)


def _command(page, text: str) -> None:
    page.fill("#command", text)
    page.press("#command", "Enter")
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'playing'", timeout=TIMEOUT_MS)
    page.wait_for_function(NEUTRAL_JS, timeout=TIMEOUT_MS)
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()


def _download(page, testid: str, into: Path) -> Path:
    with page.expect_download(timeout=TIMEOUT_MS) as info:
        page.get_by_test_id(testid).click()
    target = into / info.value.suggested_filename
    info.value.save_as(target)
    return target


def test_download_photo_is_the_full_photo_as_png(page, tmp_path, shots):
    _set_slider(page, "head_yaw", 10.0)
    path = _download(page, "download-photo", tmp_path)
    assert path.name.endswith("-lpstudio.png")
    with Image.open(path) as img:
        size = img.size
        assert img.format == "PNG"
    w, h = page.evaluate("() => { const c = document.getElementById('portrait'); return [c.width, c.height]; }")
    assert size == (w, h) == (512, 512)  # the photo's own size (512 x 512), pasted back
    page.screenshot(path=str(shots / "keep-01-desktop.png"), full_page=True)
    assert page.errors == []


def test_download_video_has_the_clip_duration_and_its_voice(page, service, tmp_path):
    import av

    from lpstudio.speech.mux import stream_durations

    _, health = service
    spoken = bool(health["speech"])
    _command(page, '"안녕" 이라고 말해' if spoken else "blink")
    seconds = float(page.evaluate("() => document.body.dataset.keepClipSeconds"))
    path = _download(page, "download-video", tmp_path)
    assert path.suffix == ".mp4"
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        assert frames / float(v.average_rate) == pytest.approx(seconds, abs=1e-6)
        has_audio = bool(c.streams.audio)
    assert has_audio == spoken
    if spoken:
        d = stream_durations(path)
        assert d["audio_s"] == pytest.approx(d["video_s"], abs=0.05)


def test_use_as_base_changes_what_commands_start_from(page):
    photo = page.evaluate(HASH_JS)
    _set_slider(page, "head_yaw", 15.0)
    page.get_by_test_id("use-as-base").click()
    page.wait_for_function("() => document.body.dataset.keepBase === 'set'", timeout=TIMEOUT_MS)
    page.wait_for_function(NEUTRAL_JS, timeout=TIMEOUT_MS)
    base = page.evaluate(HASH_JS)
    assert base != photo
    assert float(page.input_value("#p-head_yaw")) == 15.0  # the sliders now rest on the base
    seen: list[str] = []
    page.on("response", lambda r: seen.append(r.url) if "/generate" in r.url else None)
    _command(page, "blink")
    assert seen, "the command was not sent"
    assert page.evaluate(HASH_JS) == base  # the clip came back to the base, not to the photo
    page.get_by_test_id("reset-base").click()
    page.wait_for_function("() => document.body.dataset.keepBase === 'photo'", timeout=TIMEOUT_MS)
    page.wait_for_function(NEUTRAL_JS, timeout=TIMEOUT_MS)
    assert page.evaluate(HASH_JS) == photo
    assert page.errors == []


def test_saved_expression_round_trip(browser, page, service, tmp_path, shots):
    _set_slider(page, "smile", 1.0)
    page.fill("[data-testid=expression-name]", "My_Glow")
    page.get_by_test_id("save-expression").click()
    page.wait_for_selector("button.saved-play[data-expression=my_glow]", timeout=TIMEOUT_MS)
    _command(page, "my_glow 하고 윙크")
    exported = _download(page, "export-library", tmp_path)
    assert [e["name"] for e in json.loads(exported.read_text())["expressions"]] == ["my_glow"]
    page.screenshot(path=str(shots / "keep-02-library.png"), full_page=True)

    other = _open(browser, service[0], 390, 844)  # a new session, on a phone
    try:
        other.set_input_files("[data-testid=library-file]", str(exported))
        other.wait_for_selector("button.saved-play[data-expression=my_glow]", timeout=TIMEOUT_MS)
        _command(other, "my_glow then blink")
        other.screenshot(path=str(shots / "keep-03-phone.png"), full_page=True)
        wide = other.evaluate(WIDER_THAN_VIEWPORT_JS)
        assert wide == 0, "an element of the keep panel is wider than the phone"
        other.set_input_files("[data-testid=library-file]", {"name": "bad.json", "mimeType": "application/json",
                                                              "buffer": b'{"format": "nope"}'})  # fmt: skip
        other.wait_for_selector("#error:not([hidden])", timeout=TIMEOUT_MS)
        assert "not an lpstudio expression library" in other.locator("#error").inner_text()
        assert other.errors == []
    finally:
        other.close()


def test_drag_down_on_the_mouth_opens_it(page, shots):
    page.locator("#portrait").scroll_into_view_if_needed()
    regions = json.loads(page.evaluate("() => document.getElementById('portrait').dataset.regions"))
    box = page.locator("#portrait").bounding_box()
    scale = box["width"] / page.evaluate("() => document.getElementById('portrait').width")
    x0, y0, x1, y1 = regions["mouth"]
    x, y = box["x"] + scale * (x0 + x1) / 2, box["y"] + scale * (y0 + y1) / 2
    before = float(page.input_value("#p-lip_variation_three"))
    renders: list[str] = []
    page.on("request", lambda r: renders.append(r.url) if r.url.endswith("/render") else None)
    page.mouse.move(x - 2, y)
    page.mouse.move(x, y)
    page.wait_for_selector("#keepRegion:not([hidden])", timeout=TIMEOUT_MS)
    page.screenshot(path=str(shots / "keep-04-drag-mouth.png"))
    page.mouse.down()
    page.wait_for_function("() => document.body.dataset.keepDrag === 'mouth'", timeout=TIMEOUT_MS)
    for k in range(1, 6):
        page.mouse.move(x, y + 8 * k)
    page.mouse.up()
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'preview'", timeout=TIMEOUT_MS)
    after = float(page.input_value("#p-lip_variation_three"))
    assert after > before + 10, (before, after)
    assert renders, "the drag was not previewed through /render"
    assert len(renders) <= 5, "more renders than drag positions"
    assert page.errors == []
