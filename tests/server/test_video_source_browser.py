"""The "a video as the portrait" tab (issue 21) in Chromium: pick a source video and a driving video, go,
the progress bar runs, the result plays in a <video> with a download link; a bad file gets a plain error.
The engine's networks are the instant stand-ins of test_video_source_api.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from service_helpers import live_server
from test_drive_api import noise_frames, video_bytes
from test_video_source_api import _stand_ins

from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

TIMEOUT_MS = 120_000
ERROR_JS = "() => document.getElementById('error').hidden ? '' : document.getElementById('error').textContent"
RESULT_STATE_JS = "() => document.getElementById('vsrc-result').dataset.state"


@pytest.fixture(scope="module")
def page(engine):
    require_browser()
    from playwright.sync_api import sync_playwright

    settings = ServerSettings(crop=False, fps=4.0, idle_default=False, prerender=False)
    with live_server(create_app(_stand_ins(engine), settings)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.route("**/generate", lambda route: route.abort())  # no idle loop competing for the CPU
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
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("vsrc-shots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _pick(page, which: str, name: str, data: bytes) -> None:
    page.get_by_test_id(f"vsrc-{which}").set_input_files({"name": name, "mimeType": "video/mp4", "buffer": data})


def test_the_tab_makes_a_video_and_shows_errors(page, shots: Path) -> None:
    page.get_by_test_id("tab-vsrc").click()
    assert page.get_by_test_id("vsrc-source").is_visible()
    assert not page.locator("#panel-drive").is_visible(), "the other tabs' panels are hidden"
    _pick(page, "source", "me.mp4", video_bytes(noise_frames(3, seed=3), fps=5))
    _pick(page, "driving", "drive.mp4", video_bytes(noise_frames(2)))
    page.get_by_test_id("vsrc-go").click()
    page.wait_for_function(f"() => ['done', 'error'].includes(({RESULT_STATE_JS})())", timeout=TIMEOUT_MS)
    assert page.evaluate(ERROR_JS) == ""
    assert page.evaluate("() => document.getElementById('vsrc-result').dataset.frames") == "2"
    assert page.locator("#vsrc-video").is_visible() and page.locator("#vsrc-download").is_visible()
    assert page.evaluate("() => document.getElementById('vsrc-progress').value") == page.evaluate(
        "() => document.getElementById('vsrc-progress').max"
    )
    page.wait_for_function("() => document.getElementById('vsrc-video').readyState >= 1", timeout=TIMEOUT_MS)
    assert page.evaluate("() => document.getElementById('vsrc-video').duration") > 0, "the browser plays the MP4"
    page.locator("#panel-vsrc").screenshot(path=str(shots / "tab-video-source.png"))

    page.get_by_test_id("vsrc-command").fill("웃어줘")  # a command over the source's own motion instead
    page.get_by_test_id("vsrc-go").click()
    page.wait_for_function(f"() => ({RESULT_STATE_JS})() === 'running'", timeout=TIMEOUT_MS)
    page.wait_for_function(f"() => ['done', 'error'].includes(({RESULT_STATE_JS})())", timeout=TIMEOUT_MS)
    assert page.evaluate(ERROR_JS) == ""
    assert page.evaluate("() => document.getElementById('vsrc-result').dataset.frames") == "3", "every source frame"
    page.get_by_test_id("vsrc-command").fill("")

    page.get_by_test_id("vsrc-text").fill("네")  # a dub: only the mouth says it, the speech is the sound
    page.get_by_test_id("vsrc-go").click()
    page.wait_for_function(f"() => ({RESULT_STATE_JS})() === 'running'", timeout=TIMEOUT_MS)
    page.wait_for_function(f"() => ['done', 'error'].includes(({RESULT_STATE_JS})())", timeout=TIMEOUT_MS)
    assert page.evaluate(ERROR_JS) == ""
    assert 1 <= int(page.evaluate("() => document.getElementById('vsrc-result').dataset.frames")) <= 3
    page.locator("#panel-vsrc").screenshot(path=str(shots / "tab-video-source-dub.png"))
    page.get_by_test_id("vsrc-text").fill("")

    _pick(page, "source", "notes.mp4", b"plain text, no video")
    page.get_by_test_id("vsrc-go").click()
    page.wait_for_function(f"() => ({RESULT_STATE_JS})() === 'error'", timeout=TIMEOUT_MS)
    message = page.evaluate(ERROR_JS)
    assert "notes.mp4" in message and "not a video" in message and "\n→" in message
    page.screenshot(path=str(shots / "tab-video-source-error.png"))
