"""The page's first minutes in Chromium (stand-in renderer, cropped-face mode): layout at 1280x900 and 390x844,
the text after previews, uploads and cached replays, the header's backend and dtype, and the icon.

Screenshots go to ``$LPSTUDIO_ARTIFACTS`` (or the test's temporary folder): ``first-desktop.png``,
``first-phone.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from PIL import Image
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 60_000
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
READY = "() => document.getElementById('portrait').dataset.state === 'neutral'"

# Every element whose box reaches past the viewport's right edge (or starts left of 0).
OVERFLOW_JS = """() => {
  const w = document.documentElement.clientWidth, out = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > w + 0.5 || r.left < -0.5) out.push(`${el.tagName}#${el.id}.${el.className} ${r.left}..${r.right}`);
  }
  return {width: w, scrollWidth: document.documentElement.scrollWidth, out};
}"""

# Rendered lines of an element's text (line boxes of its text nodes) and whether a word was split across lines.
LINES_JS = """(sel) => {
  const el = document.querySelector(sel);
  const range = document.createRange();
  const lines = [];
  const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (let i = 0; i < node.length; i++) {
      if (/\\s/.test(node.data[i])) continue;
      range.setStart(node, i); range.setEnd(node, i + 1);
      const r = range.getClientRects()[0];
      if (!r) continue;
      let line = lines.find((l) => Math.abs(l.top - r.top) < r.height / 2);
      if (!line) { line = {top: r.top, text: ''}; lines.push(line); }
      line.text += node.data[i];
    }
    lines.forEach((l) => l.text += ' ');
  }
  return lines.sort((a, b) => a.top - b.top).map((l) => l.text.trim());
}"""


AUDIO_LABEL = "🎤 음성 파일로 말하기"


def whole_words(lines: list[str], text: str) -> bool:
    """Whether each rendered line (spaces dropped) is a run of whole words of ``text``: no word split."""
    words = text.split()
    i = 0
    for line in lines:
        run = ""
        while i < len(words) and len(run) < len(line):
            run += words[i]
            i += 1
        if run != line:
            return False
    return i == len(words)


def test_whole_words_check_can_fail() -> None:
    assert whole_words(["🎤음성파일로", "말하기"], AUDIO_LABEL)
    assert not whole_words(["🎤음성파일로말", "하기"], AUDIO_LABEL)
    assert not whole_words(["🎤음성파", "일로말하기"], AUDIO_LABEL)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require_browser()
    engine = StandInEngine(frame_ms=2, prepare_ms=5)
    settings = ServerSettings(crop=False, fps=12.0, idle_default=False)
    with live_server(create_app(engine, settings)) as url:
        yield url


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


def _open(browser, url: str, viewport: dict):
    page = browser.new_page(viewport=viewport)
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(READY, timeout=TIMEOUT_MS)
    page.wait_for_function("() => document.querySelectorAll('#presets button').length > 0", timeout=TIMEOUT_MS)
    return page


@pytest.fixture(scope="module")
def desktop(browser, service):
    page = _open(browser, service, DESKTOP)
    yield page
    page.close()


@pytest.fixture(scope="module")
def phone(browser, service):
    page = _open(browser, service, PHONE)
    yield page
    page.close()


def test_the_icon_is_served_behind_the_guard(service) -> None:
    ok = httpx.get(f"{service}/favicon.ico")
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("image/svg+xml")
    assert b"<svg" in ok.content[:200]
    foreign = httpx.get(f"{service}/favicon.ico", headers={"Host": "evil.example"})
    assert foreign.status_code == 421  # the same Host guard as every route


def test_the_header_names_backend_and_dtype(desktop) -> None:
    desktop.wait_for_function("() => document.getElementById('health').textContent.includes('backend')")
    text = desktop.locator("#health").inner_text()
    assert "standin float32" in text and "cpu" in text


def test_the_portrait_stays_in_view_while_a_slider_has_focus(desktop, shots) -> None:
    last = desktop.locator("#sliders input[type=range]").last
    last.focus()
    last.press("ArrowRight")
    assert desktop.evaluate("() => window.scrollY") > 0, "the last slider fits without scrolling: nothing tested"
    box = desktop.locator("#portrait").bounding_box()
    assert box is not None and box["y"] >= 0 and box["y"] + box["height"] <= DESKTOP["height"]
    desktop.wait_for_function("() => document.getElementById('portrait').dataset.state === 'preview'")
    desktop.screenshot(path=str(shots / "first-desktop.png"))
    assert desktop.errors == []


def test_preview_then_reset_leave_no_stale_text(desktop) -> None:
    slider = desktop.locator("#p-smile")
    slider.focus()
    for _ in range(5):
        slider.press("ArrowRight")
    desktop.wait_for_function("() => document.getElementById('portrait').dataset.state === 'preview'")
    desktop.wait_for_function("() => document.getElementById('progressText').textContent === '미리보기 / preview'")
    assert "preview" in desktop.locator("#stats").inner_text()
    desktop.locator("#reset").click()
    desktop.wait_for_function(READY)
    assert desktop.locator("#progressText").inner_text() == "준비됨 / ready"
    assert desktop.locator("#stats").inner_text() == ""


def test_an_upload_clears_the_last_preview_time(desktop, tmp_path) -> None:
    slider = desktop.locator("#p-smile")
    slider.focus()
    slider.press("ArrowRight")
    desktop.wait_for_function("() => document.getElementById('stats').textContent.includes('preview')")
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(photo)
    desktop.locator("#upload").set_input_files(str(photo))
    desktop.wait_for_function("() => document.getElementById('progressText').textContent.includes('face')")
    assert "preview" not in desktop.locator("#stats").inner_text()


def test_a_cached_replay_shows_no_render_rate_and_one_first_frame(desktop) -> None:
    button = desktop.locator('button.preset[data-preset="blink"]')
    stats = []
    for _ in range(2):  # the second time the clip replays from the server's cache
        desktop.evaluate("() => { document.getElementById('stats').textContent = ''; }")
        button.click()
        desktop.wait_for_function("() => document.getElementById('stats').textContent.includes('first frame')",
                                  timeout=TIMEOUT_MS)  # fmt: skip
        desktop.wait_for_function(READY, timeout=TIMEOUT_MS)
        stats.append(desktop.locator("#stats").inner_text())
    rendered, replayed = stats
    assert rendered.count("first frame") == 1 and "render" in rendered and "fps" in rendered
    assert replayed.count("first frame") == 1 and "cache" in replayed and "fps" not in replayed


def test_phone_layout(phone, shots) -> None:
    phone.screenshot(path=str(shots / "first-phone.png"), full_page=True)
    overflow = phone.evaluate(OVERFLOW_JS)
    assert overflow["scrollWidth"] <= overflow["width"] and overflow["out"] == [], overflow
    presets = phone.locator("#presets").bounding_box()
    camera = phone.locator("#cameraButton").bounding_box()
    assert presets and camera and presets["y"] + presets["height"] <= camera["y"], "expressions below the camera"
    # the placeholder fits its box
    assert phone.evaluate(
        """() => { const el = document.getElementById('command');
                   const c = document.createElement('canvas').getContext('2d');
                   c.font = getComputedStyle(el).font;
                   const css = getComputedStyle(el);
                   const pad = parseFloat(css.paddingLeft) + parseFloat(css.paddingRight);
                   return c.measureText(el.placeholder).width <= el.clientWidth - pad; }"""
    ), "the command placeholder is cut off"
    # Korean words stay whole: every rendered line of the label is made of whole words of its text
    lines = phone.evaluate(LINES_JS, "#audioButton .ko")
    assert lines and whole_words(lines, AUDIO_LABEL), lines
    # parameter names do not run under the slider tracks
    for name in ("lip_variation_zero", "lip_variation_three"):
        code = phone.locator(f"label[for=p-{name}] code").bounding_box()
        track = phone.locator(f"#p-{name}").bounding_box()
        assert code and track
        overlaps = (
            code["x"] < track["x"] + track["width"]
            and track["x"] < code["x"] + code["width"]
            and (code["y"] < track["y"] + track["height"] and track["y"] < code["y"] + code["height"])
        )
        assert not overlaps, (name, code, track)
    assert phone.errors == []


def test_korean_lines_checker_can_fail(browser, service) -> None:
    """The word check sees a word broken across lines when the page lets it break."""
    page = _open(browser, service, PHONE)
    try:
        page.evaluate(
            """() => { const el = document.querySelector('#audioButton .ko');
                       el.style.wordBreak = 'break-all'; el.style.display = 'block'; el.style.width = '2.2em'; }"""
        )
        lines = page.evaluate(LINES_JS, "#audioButton .ko")
        assert len(lines) > 1 and not whole_words(lines, AUDIO_LABEL), lines
    finally:
        page.close()
