"""The page in a real browser (Debian's Chromium via Playwright) on synthetic weights.

Loads the page, checks the portrait is shown and not black, clicks 웃어봐 and
watches the frames change and come back to the neutral portrait, sends a
typed command, moves a slider and sees the preview, uploads a photo, and
checks the phone-width layout. Screenshots go to ``$LPSTUDIO_ARTIFACTS`` (or
the test's temporary folder).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_browser
from PIL import Image

from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

CLIP_TIMEOUT_MS = 420_000  # a CPU renders a frame in seconds; a clip takes minutes when the machine is busy

# Canvas fingerprint: a hash and the mean of a sample of its pixels.
CANVAS_PROBE = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0, sum = 0, n = 0;
  for (let i = 0; i < d.length; i += 4 * 37) {
    h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
    sum += d[i] + d[i + 1] + d[i + 2]; n += 3;
  }
  return {hash: h, mean: sum / n, w: c.width, h: c.height, state: c.dataset.state || ''};
}"""


@pytest.fixture(scope="module")
def server_url(engine):
    require_browser()
    import uvicorn

    app = create_app(engine, ServerSettings(crop=False, fps=2.0, idle_default=False, batch_size=4))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def page(server_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server_url)
        page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=120_000)
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def _probe(page) -> dict:
    return page.evaluate(CANVAS_PROBE)


def _wait_neutral(page) -> dict:
    """Wait until no clip, fade or preview is on the canvas; return its fingerprint."""
    page.wait_for_function(
        "() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=CLIP_TIMEOUT_MS
    )
    return _probe(page)


def test_portrait_shown_and_not_black(page, shots):
    probe = _probe(page)
    assert (probe["w"], probe["h"]) == (512, 512)
    assert probe["mean"] > 30, f"portrait looks black (mean {probe['mean']:.1f})"
    assert page.get_by_role("button", name="웃어봐 (smile)", exact=True).count() == 1
    assert page.locator("#sliders input[type=range]").count() == 17
    page.screenshot(path=str(shots / "01-loaded.png"))
    assert page.errors == []


def test_smile_button_plays_and_returns_to_neutral(page, shots):
    base = _wait_neutral(page)
    page.get_by_role("button", name="웃어봐 (smile)", exact=True).click()
    seen: set[int] = set()
    shot_taken = False
    deadline = time.time() + CLIP_TIMEOUT_MS / 1000
    while time.time() < deadline:
        probe = _probe(page)
        if probe["hash"] != base["hash"]:
            assert probe["mean"] > 30, "a black frame was displayed"
            seen.add(probe["hash"])
            if not shot_taken:
                page.screenshot(path=str(shots / "02-smiling.png"))
                shot_taken = True
        text = page.locator("#stats").inner_text()
        if "first frame" in text and probe["hash"] == base["hash"] and probe["state"] == "neutral":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the clip did not finish in time (saw {len(seen)} distinct frames)")
    assert len(seen) >= 2, "the displayed frames did not change"
    assert _probe(page)["hash"] == base["hash"], "the view did not return to the neutral portrait"
    page.screenshot(path=str(shots / "03-back-to-neutral.png"))
    assert "render" in page.locator("#stats").inner_text()


def test_typed_command_runs(page, shots):
    page.fill("#command", "살짝 웃어줘")
    page.press("#command", "Enter")
    page.wait_for_function(
        "() => document.getElementById('stats').textContent.includes('살짝 웃어줘')", timeout=CLIP_TIMEOUT_MS
    )
    page.screenshot(path=str(shots / "04-command.png"))


def test_unknown_command_shows_plain_error(page, shots):
    page.fill("#command", "qwzx")
    page.press("#command", "Enter")
    page.wait_for_selector("#error:not([hidden])", timeout=30_000)
    _wait_neutral(page)
    text = page.locator("#error").inner_text()
    assert "cannot understand" in text and "smile" in text
    page.screenshot(path=str(shots / "05-error.png"))


def test_slider_preview_and_reset(page, shots):
    base = _wait_neutral(page)

    page.evaluate(
        """() => { const s = document.getElementById('p-head_yaw'); s.value = 20;
                   s.dispatchEvent(new Event('input', {bubbles: true})); }"""
    )
    page.wait_for_function(
        "() => document.getElementById('portrait').dataset.state === 'preview'", timeout=CLIP_TIMEOUT_MS
    )
    preview = _probe(page)
    assert preview["hash"] != base["hash"] and preview["mean"] > 30
    assert page.locator("#o-head_yaw").inner_text() == "20.00"
    page.screenshot(path=str(shots / "06-slider.png"))
    page.get_by_role("button", name="초기화 / reset").click()
    assert _probe(page)["hash"] == base["hash"]
    # Every slider is back exactly on its neutral value (on the slider's grid).
    assert page.evaluate(
        """() => app.specs.every((s) =>
             Math.abs(parseFloat(document.getElementById('p-' + s.name).value) - neutralOf(s)) < 1e-9)"""
    )


def test_upload_shows_the_new_photo(page, shots, tmp_path):
    photo = np.zeros((400, 400, 3), np.uint8)
    photo[..., 2] = 220  # blue
    photo[120:280, 120:280] = (240, 200, 40)
    path = tmp_path / "blue.png"
    Image.fromarray(photo).save(path)
    before = _wait_neutral(page)
    page.set_input_files("#upload", str(path))
    page.wait_for_function(
        f"() => {{ const p = ({CANVAS_PROBE})(); return p.hash !== {before['hash']} && p.state === 'neutral'; }}",
        timeout=120_000,
    )
    pixel = page.evaluate(
        "() => Array.from(document.getElementById('portrait').getContext('2d').getImageData(10, 10, 1, 1).data)"
    )
    assert pixel[2] > 180 and pixel[0] < 60, f"corner is not the uploaded blue: {pixel}"
    page.screenshot(path=str(shots / "07-uploaded.png"))


def test_phone_width_layout(page, shots):
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a phone screen"
    assert page.locator("#portrait").bounding_box()["width"] <= 390
    page.screenshot(path=str(shots / "08-phone.png"), full_page=True)
    assert page.errors == []
