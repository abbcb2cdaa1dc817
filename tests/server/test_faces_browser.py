"""The page on a group photo (Chromium via Playwright, stand-in renderer, MediaPipe models): the faces are
outlined, clicking one makes the buttons drive it, and "all faces" drives both in one batch per frame."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from PIL import Image
from service_helpers import live_server
from standin_server import StandInEngine

from group_photos import two_face_photo
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})"),
]
TIMEOUT_MS = 120_000


def test_click_a_face_outline_then_a_button(tmp_path: Path) -> None:
    require_browser()
    from playwright.sync_api import sync_playwright

    from lpstudio.face.models import MediaPipeFacePipeline

    photo = tmp_path / "two.png"
    Image.fromarray(two_face_photo()).save(photo)
    engine = StandInEngine(frame_ms=1.0, prepare_ms=1.0, face=MediaPipeFacePipeline())
    settings = ServerSettings(crop=True, fps=5.0, idle_default=False, default_source=photo)
    shots = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path))
    bodies: list[dict] = []
    with live_server(create_app(engine, settings)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "request",
            lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/generate") and r.post_data else None,
        )
        page.goto(url)
        page.wait_for_function(
            "() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS
        )
        outline = page.get_by_test_id("face-outline-1")
        outline.wait_for(timeout=TIMEOUT_MS)
        assert page.get_by_test_id("face-outline-0").get_attribute("aria-pressed") == "true"  # the session's face
        # the outline lies over the second (smaller, right-hand) face of the photo
        box0 = page.get_by_test_id("face-outline-0").bounding_box()
        box1 = outline.bounding_box()
        assert box1["x"] > box0["x"] + box0["width"] / 2 and box1["width"] < box0["width"]
        page.screenshot(path=str(shots / "faces_outlined.png"))

        outline.click()
        assert outline.get_attribute("aria-pressed") == "true"
        engine.batches.clear()
        page.locator("button.preset[data-preset='smile']").click()
        page.wait_for_function("() => document.getElementById('progressText').textContent.includes('done')",
                               timeout=TIMEOUT_MS)  # fmt: skip
        assert bodies[-1]["faces"] == [1] and bodies[-1]["preset"] == "smile"
        assert engine.batches  # face 1 alone: frames of one face (a first frame, then batches of frames)

        page.get_by_test_id("faces-all").check()
        engine.batches.clear()
        page.locator("button.preset[data-preset='smile']").click()
        page.wait_for_function("() => document.getElementById('progressText').textContent.includes('done')",
                               timeout=TIMEOUT_MS)  # fmt: skip
        assert bodies[-1]["faces"] == "all"
        assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # both faces of a frame in one batch
        page.screenshot(path=str(shots / "faces_all.png"))
        assert errors == []
        browser.close()
