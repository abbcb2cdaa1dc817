"""The page's "advanced" crop panel in a real browser (Debian's Chromium via Playwright).

The server crops with MediaPipe's face models on the session's synthetic networks. The
panel shows the server's crop values; moving "size" and pressing apply re-sends the
portrait to ``POST /source-image/crop`` with the new value, and the server's crop square
grows by that factor; a bad threshold shows the server's one-line message. Screenshots go
to ``$LPSTUDIO_ARTIFACTS`` (or the test's temporary folder).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, free_port, require_browser

from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})"),
]

UPLOAD_TIMEOUT_MS = 240_000  # preparing a photo takes seconds on a busy CPU


@pytest.fixture(scope="module")
def served(engine):
    require_browser()
    import uvicorn

    from lpstudio.engine import LivePortrait
    from lpstudio.face.models import MediaPipeFacePipeline

    e = LivePortrait(engine.networks, "cpu", "float32", face=MediaPipeFacePipeline())
    app = create_app(e, ServerSettings(crop=True, fps=2.0, idle_default=False))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline:
            pytest.fail("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    url, _ = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function(
            "() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=UPLOAD_TIMEOUT_MS
        )
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _crop_side(app, session: str) -> float:
    _, source = app.state.lp.resolve(session)
    m = np.asarray(source.state.face.M_c2o, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:2, :2])))) * source.state.face.image_512.shape[0]


def test_advanced_panel_applies_a_larger_crop(page, served, shots) -> None:
    _, app = served
    page.click("#advancedPanel summary")
    page.wait_for_function("() => document.getElementById('crop-scale').value === '2.3'")
    before = _crop_side(app, page.evaluate("app.session"))
    page.eval_on_selector(
        "#crop-scale", "(e) => { e.value = '3.45'; e.dispatchEvent(new Event('input', {bubbles: true})); }"
    )
    assert page.text_content("#crop-scale-out") == "3.450"
    posted = lambda r: r.url.endswith("/source-image/crop") and r.request.method == "POST"  # noqa: E731
    with page.expect_response(posted, timeout=UPLOAD_TIMEOUT_MS) as response:
        page.click("#cropApply")
    assert response.value.status == 200
    options = response.value.json()["crop_options"]
    assert options["scale"] == 3.45 and options["vx"] == 0.0 and options["vy"] == -0.125  # only size was changed
    page.wait_for_function(
        "() => document.getElementById('cropNote').textContent.includes('crop_scale=3.45')", timeout=UPLOAD_TIMEOUT_MS
    )
    after = _crop_side(app, page.evaluate("app.session"))
    # the face is found and landmarked again for the new crop: the merged detection box (the every-face search
    # averages its passes) may move it by a fraction of a percent; an unapplied scale would be 1.0, not 1.5
    assert after / before == pytest.approx(3.45 / 2.3, rel=1e-2)
    page.screenshot(path=str(shots / "crop-panel-applied.png"), full_page=True)
    assert page.errors == []


def test_bad_threshold_shows_the_servers_message(page, shots) -> None:
    page.fill("#crop-det", "1.5")
    page.click("#cropApply")
    page.wait_for_function("() => !document.getElementById('error').hidden", timeout=UPLOAD_TIMEOUT_MS)
    text = page.text_content("#error") or ""
    assert "det_thresh 1.5 is out of range" in text and "Traceback" not in text
    page.wait_for_function("() => document.getElementById('cropNote').textContent.includes('not applied')")
    page.screenshot(path=str(shots / "crop-panel-error.png"), full_page=True)
    page.fill("#crop-det", "")
