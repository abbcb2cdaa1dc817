"""The upload tabs (issue 23 §1) in Chromium against the synthetic engine: a driving video and a motion
template play as clips, another photo's expression shows as the still, a bad file gets a plain error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from service_helpers import live_server
from test_drive_api import noise_frames, png_bytes, template_bytes, video_bytes

from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 180_000
HASH_JS = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4 * 97) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""
ERROR_JS = "() => document.getElementById('error').hidden ? '' : document.getElementById('error').textContent"


@pytest.fixture(scope="module")
def page(engine, tmp_path_factory):
    require_browser()
    from playwright.sync_api import sync_playwright

    settings = ServerSettings(crop=False, fps=4.0, idle_default=False, prerender=False)
    with live_server(create_app(engine, settings)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # the tabs never use /generate: the idle loop it would render only competes for the CPU here
        page.route("**/generate", lambda route: route.abort())
        page.goto(url)
        page.wait_for_function(
            "() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS
        )
        page.evaluate("() => { const i = document.getElementById('idle'); if (i.checked) i.click(); }")
        yield page
        assert errors == []
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("tab-shots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _wait_stats(page, text: str) -> None:
    page.wait_for_function(
        f"() => document.getElementById('stats').textContent.includes({text!r}) || "
        "!document.getElementById('error').hidden",
        timeout=TIMEOUT_MS,
    )
    assert page.evaluate(ERROR_JS) == ""


def test_drive_tab_plays_a_driving_video(page, shots: Path) -> None:
    page.get_by_test_id("tab-drive").click()
    assert page.get_by_test_id("tab-drive-file").is_visible()
    page.get_by_test_id("tab-drive-file").set_input_files(
        {"name": "drive.mp4", "mimeType": "video/mp4", "buffer": video_bytes(noise_frames(2))}
    )
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'playing'", timeout=TIMEOUT_MS)
    _wait_stats(page, "drive.mp4")
    page.screenshot(path=str(shots / "tab-drive.png"))
    page.get_by_test_id("tab-drive-file").set_input_files(
        {"name": "notes.mp4", "mimeType": "video/mp4", "buffer": b"plain text, no video"}
    )
    page.wait_for_function("() => !document.getElementById('error').hidden", timeout=TIMEOUT_MS)
    assert "notes.mp4" in page.evaluate(ERROR_JS)


def test_expression_tab_shows_the_other_photos_expression(page, shots: Path) -> None:
    page.get_by_test_id("tab-expression").click()
    assert not page.get_by_test_id("tab-drive-file").is_visible()
    before = page.evaluate(HASH_JS)
    page.get_by_test_id("tab-expression-file").set_input_files(
        {"name": "other.png", "mimeType": "image/png", "buffer": png_bytes(noise_frames(1, seed=5)[0])}
    )
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'edited'", timeout=TIMEOUT_MS)
    assert page.evaluate(ERROR_JS) == ""
    assert page.evaluate(HASH_JS) != before
    page.screenshot(path=str(shots / "tab-expression.png"))


@pytest.mark.slow  # the same stream path as the drive tab; the template itself is covered in test_drive_api.py
def test_template_tab_plays_a_motion_template(page, tmp_path: Path) -> None:
    page.get_by_test_id("tab-template").click()
    page.get_by_test_id("tab-template-file").set_input_files(
        {"name": "motion.npz", "mimeType": "application/octet-stream", "buffer": template_bytes(tmp_path, 2)}
    )
    _wait_stats(page, "motion.npz")
