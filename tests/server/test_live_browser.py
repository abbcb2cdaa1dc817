"""The live mirror in a real browser: Chromium's fake camera plays a y4m clip made here from the bundled photo.

The server runs ``--no-crop`` style (no face models: the centre square of each
camera frame is the face) on the synthetic networks with a **stand-in
renderer**: tracking, motion extraction and the relative keypoints are real,
warp+decode is replaced by a picture that follows the keypoints (the real one
takes seconds per frame on a CPU). Also checks the messages for a denied and a
missing camera. Screenshots go to ``$LPSTUDIO_ARTIFACTS`` (or a temporary folder).
"""

from __future__ import annotations

import os
import threading
import time
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_browser

from lpstudio.engine import LivePortrait
from lpstudio.server import ServerSettings, create_app

pytestmark = pytest.mark.browser

FAKE_CAMERA_FLAGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
CLIP_SIZE = (320, 240)  # width, height of the fake camera
CLIP_FRAMES = 12
CLIP_FPS = 10
WAIT_MS = 120_000  # bounds every wait (the motion extractor takes a fraction of a second per frame on a CPU)

CANVAS_PROBE = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4 * 37) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return {hash: h, state: c.dataset.state || ''};
}"""


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> Path:
    """RGB frames (even width and height) -> a YUV4MPEG2 4:2:0 file, as Chromium's fake camera reads."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode("ascii"))
        for rgb in frames:
            f.write(b"FRAME\n")
            f.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())  # Y, then U, then V planes
    return path


def camera_clip() -> list[np.ndarray]:
    """The bundled portrait, centred, drifting and turning a little: a "head" that moves."""
    photo = cv2.imread(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))
    photo = cv2.cvtColor(photo, cv2.COLOR_BGR2RGB)
    w, h = CLIP_SIZE
    frames = []
    for i in range(CLIP_FRAMES):
        angle = 8.0 * np.sin(2 * np.pi * i / CLIP_FRAMES)
        cx, cy = photo.shape[1] / 2, photo.shape[0] / 2
        m = cv2.getRotationMatrix2D((cx, cy), angle, h / photo.shape[0])  # photo centre stays at (cx, cy)
        m[0, 2] += w / 2 - cx + 6 * np.cos(2 * np.pi * i / CLIP_FRAMES)  # ... moved to the clip's centre
        m[1, 2] += h / 2 - cy
        frames.append(cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return frames


class FollowingStandin:
    """Warp+decode stand-in: the source picture tinted by the driving keypoints (different motion, different frame)."""

    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, items):
        out = []
        for state, x_d in items:
            base = cv2.resize(state.image_256, (512, 512))
            shift = int((x_d - state.x_s[0]).abs().sum() * 4000) % 120
            out.append(np.clip(base.astype(np.int16) + shift - 60, 0, 255).astype(np.uint8))
            self.frames += 1
        return out


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def live_url(engine):
    require_browser()
    import uvicorn

    standin = LivePortrait(engine.networks, "cpu", "float32")
    standin.render_mixed = FollowingStandin()  # type: ignore[method-assign]
    app = create_app(standin, ServerSettings(crop=False, fps=2.0, idle_default=False))
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
def playwright_instance():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


def _open(p, url: str, flags: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS + flags)
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=WAIT_MS)
    return browser, page, errors


def test_camera_drives_the_portrait_shows_latency_and_turns_off(playwright_instance, live_url, shots, tmp_path):
    clip = write_y4m(tmp_path / "clip.y4m", camera_clip())
    flags = [*FAKE_CAMERA_FLAGS, f"--use-file-for-fake-video-capture={clip}"]
    browser, page, errors = _open(playwright_instance, live_url, flags)
    try:
        base = page.evaluate(CANVAS_PROBE)
        camera = page.get_by_role("button", name="📷 카메라 / camera")
        assert camera.count() == 1
        camera.click()
        page.wait_for_function(
            "() => Number(document.getElementById('liveStats').dataset.frames || 0) >= 3", timeout=WAIT_MS
        )
        probe = page.evaluate(CANVAS_PROBE)
        assert probe["state"] == "live" and probe["hash"] != base["hash"], "no rendered frame reached the canvas"
        assert page.locator("#selfView").is_visible()
        text = page.locator("#liveStats").inner_text()
        assert "latency" in text and "fps" in text, text
        latency = float(page.locator("#liveStats").get_attribute("data-latency"))
        assert latency > 0
        assert page.get_by_role("button", name="중립 다시 / reset neutral").is_enabled()
        page.screenshot(path=str(shots / "live-01-camera-on.png"))

        page.get_by_label("표정만 / expression only").check()  # a region toggle mid-stream keeps frames coming
        before = int(page.locator("#liveStats").get_attribute("data-frames"))
        page.get_by_role("button", name="중립 다시 / reset neutral").click()
        page.wait_for_function(
            f"() => Number(document.getElementById('liveStats').dataset.frames) >= {before + 2}", timeout=WAIT_MS
        )
        assert page.locator("#liveMessage").get_attribute("data-kind") != "error"

        page.get_by_role("button", name="📷 카메라 끄기 / camera off").click()
        page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=WAIT_MS)
        assert page.evaluate(CANVAS_PROBE)["hash"] == base["hash"], "camera off did not bring back the portrait"
        assert not page.locator("#selfView").is_visible()
        assert page.evaluate("() => window.lpLive.stream === null && window.lpLive.ws === null")
        page.screenshot(path=str(shots / "live-02-camera-off.png"))
        assert errors == []
    finally:
        browser.close()


def test_denied_camera_shows_the_message(playwright_instance, live_url, shots):
    # A fake device but no fake permission UI: headless Chromium denies the request.
    browser, page, errors = _open(playwright_instance, live_url, ["--use-fake-device-for-media-stream"])
    try:
        page.get_by_role("button", name="📷 카메라 / camera").click()
        page.wait_for_selector("#liveMessage:not([hidden])", timeout=WAIT_MS)
        text = page.locator("#liveMessage").inner_text()
        assert "denied" in text and "거부" in text, text
        assert page.evaluate("() => document.getElementById('portrait').dataset.state") == "neutral"
        page.screenshot(path=str(shots / "live-03-denied.png"))
        assert errors == []
    finally:
        browser.close()


def test_missing_camera_shows_the_message(playwright_instance, live_url):
    # Permission granted but no camera device at all (no fake device).
    browser, page, errors = _open(playwright_instance, live_url, ["--use-fake-ui-for-media-stream"])
    try:
        page.get_by_role("button", name="📷 카메라 / camera").click()
        page.wait_for_selector("#liveMessage:not([hidden])", timeout=WAIT_MS)
        text = page.locator("#liveMessage").inner_text()
        assert "No camera" in text or "could not be opened" in text, text
        assert errors == []
    finally:
        browser.close()


LIVE_KEY = "browser-live-key"


@pytest.fixture(scope="module")
def keyed_live_url(engine):
    """A server with an API key: the page must fetch a ticket to open the live socket."""
    require_browser()
    from service_helpers import live_server

    standin = LivePortrait(engine.networks, "cpu", "float32")
    standin.render_mixed = FollowingStandin()  # type: ignore[method-assign]
    app = create_app(standin, ServerSettings(crop=False, fps=2.0, idle_default=False, api_key=LIVE_KEY))
    with live_server(app) as url:
        yield url


def test_the_camera_works_on_a_keyed_server_through_a_ticket(playwright_instance, keyed_live_url, tmp_path):
    clip = write_y4m(tmp_path / "clip.y4m", camera_clip())
    flags = [*FAKE_CAMERA_FLAGS, f"--use-file-for-fake-video-capture={clip}"]
    browser, page, errors = _open(playwright_instance, f"{keyed_live_url}/#key={LIVE_KEY}", flags)
    try:
        page.get_by_role("button", name="📷 카메라 / camera").click()
        page.wait_for_function(
            "() => Number(document.getElementById('liveStats').dataset.frames || 0) >= 2", timeout=WAIT_MS
        )
        assert page.evaluate("() => window.lpLive.ws.url").find(LIVE_KEY) < 0, "the key never goes into a URL"
        assert "ticket=" in page.evaluate("() => window.lpLive.ws.url")
        assert errors == []
    finally:
        browser.close()
