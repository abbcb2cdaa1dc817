"""The page in Chromium against the service in full-photo mode (stand-in face models, paste-back) with the
stand-in renderer: the idle loop plays, a clip plays, no dark patch ever covers the face (checked block by
block over the face box, not only as the canvas mean), a busy server shows "busy, retrying" and is retried,
and a dropped stream returns to the portrait."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from PIL import Image
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.face import FacePipeline
from lpstudio.server import ServerSettings, create_app

TIMEOUT_MS = 120_000
GRID = 8
DARK_RATIO = 0.6
"""A face block darker than this fraction of the same block in the still portrait is a dark patch."""
DARK_MARGIN = 12.0

# Luminance means of a GRID x GRID grid of blocks over a canvas region, plus a hash of the whole canvas.
BLOCKS_JS = """([x0, y0, x1, y1, n]) => {
  const c = document.getElementById('portrait');
  const ctx = c.getContext('2d');
  const w = x1 - x0, h = y1 - y0;
  const d = ctx.getImageData(x0, y0, w, h).data;
  const sums = new Array(n * n).fill(0), counts = new Array(n * n).fill(0);
  for (let y = 0; y < h; y += 2) for (let x = 0; x < w; x += 2) {
    const i = (y * w + x) * 4;
    const b = Math.min(n - 1, Math.floor(y * n / h)) * n + Math.min(n - 1, Math.floor(x * n / w));
    sums[b] += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]; counts[b] += 1;
  }
  const all = ctx.getImageData(0, 0, c.width, c.height).data;
  let hash = 0;
  for (let i = 0; i < all.length; i += 4 * 97) hash = (hash * 31 + all[i] + 7 * all[i + 1] + 13 * all[i + 2]) >>> 0;
  return {blocks: sums.map((s, k) => s / Math.max(1, counts[k])), hash, w: c.width, h: c.height,
          state: c.dataset.state || '', busy: c.dataset.busy || ''};
}"""


def dark_blocks(blocks: list[float], base: list[float]) -> list[int]:
    """Indices of face blocks much darker than in the still portrait."""
    return [i for i, (b, ref) in enumerate(zip(blocks, base)) if b < DARK_RATIO * ref - DARK_MARGIN]


def test_dark_patch_check_can_fail():
    base = [120.0] * (GRID * GRID)
    patched = list(base)
    patched[10:14] = [3.0] * 4  # a black patch over part of the face
    assert dark_blocks(base, base) == []
    assert dark_blocks(patched, base) == [10, 11, 12, 13]
    assert dark_blocks([b * 0.8 for b in base], base) == []  # shading is not a patch


def _portrait(path: Path) -> Path:
    """A 512x512 'portrait': a lit face oval with eyes and mouth where the stand-in detector reports a face."""
    yy, xx = np.mgrid[0:512, 0:512].astype(np.float32)
    img = np.zeros((512, 512, 3), np.float32)
    img[...] = (70 + 0.1 * yy)[..., None] * np.array([0.6, 0.7, 1.0])
    face = ((xx - 256) / 150) ** 2 + ((yy - 260) / 180) ** 2 < 1
    img[face] = np.array([225, 185, 160]) - 0.05 * (yy[face, None] - 260)
    for cx in (200, 312):
        img[((xx - cx) / 22) ** 2 + ((yy - 220) / 12) ** 2 < 1] = (40, 30, 30)
    img[((xx - 256) / 55) ** 2 + ((yy - 340) / 14) ** 2 < 1] = (170, 70, 70)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    require_browser()
    from standin_models import write_face_models

    root = tmp_path_factory.mktemp("svc")
    face = FacePipeline(write_face_models(root / "weights"), ["CPUExecutionProvider"])
    engine = StandInEngine(frame_ms=15, prepare_ms=20, face=face)
    settings = ServerSettings(crop=True, fps=12.0, idle_default=True, default_source=_portrait(root / "portrait.png"))
    with live_server(create_app(engine, settings)) as url:
        info = httpx.post(f"{url}/session").json()
        yield url, info


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("shots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def page(service):
    from playwright.sync_api import sync_playwright

    url, _ = service
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_function(
            "() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS
        )
        page.errors = errors  # type: ignore[attr-defined]
        yield page
        browser.close()


def _box(service) -> list[int]:
    _, info = service
    x0, y0, x1, y1 = info["faces"][0]["box"]
    return [int(x0), int(y0), int(x1), int(y1), GRID]


def _probe(page, service) -> dict:
    return page.evaluate(BLOCKS_JS, _box(service))


@pytest.mark.browser
def test_full_photo_idle_loop_plays_without_dark_patches(page, service, shots):
    _, info = service
    base = _probe(page, service)
    assert (base["w"], base["h"]) == (info["width"], info["height"]) == (512, 512)
    assert min(base["blocks"]) > 20, "the still portrait's face is dark"
    page.screenshot(path=str(shots / "svc-01-loaded.png"))
    seen = {base["hash"]}
    deadline = time.time() + TIMEOUT_MS / 1000
    while len(seen) < 4 and time.time() < deadline:
        probe = _probe(page, service)
        assert not dark_blocks(probe["blocks"], base["blocks"]), f"dark patch in the idle loop: {probe['blocks']}"
        seen.add(probe["hash"])
        time.sleep(0.05)
    assert len(seen) >= 4, "the idle loop did not play"
    page.screenshot(path=str(shots / "svc-02-idle.png"))
    page.base_blocks = base["blocks"]  # type: ignore[attr-defined]


@pytest.mark.browser
def test_full_photo_clip_pastes_a_face_never_a_dark_patch(page, service, shots):
    base_blocks = page.base_blocks  # type: ignore[attr-defined]
    page.get_by_role("button", name="웃어봐 (smile)", exact=True).click()
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'playing'", timeout=TIMEOUT_MS)
    checked = 0
    shot = False
    deadline = time.time() + TIMEOUT_MS / 1000
    while time.time() < deadline:
        probe = _probe(page, service)
        assert not dark_blocks(probe["blocks"], base_blocks), f"dark patch over the face: {probe['blocks']}"
        checked += 1
        if not shot and checked > 5:
            page.screenshot(path=str(shots / "svc-03-smiling.png"))
            shot = True
        if probe["state"] == "neutral" and "first frame" in page.locator("#stats").inner_text():
            break
        time.sleep(0.03)
    else:
        pytest.fail("the clip did not finish")
    assert checked > 5
    assert page.errors == []


@pytest.mark.browser
def test_busy_server_shows_busy_and_retries(page, service, shots):
    page.uncheck("#idle")
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS)
    refused: list[str] = []

    def handle(route):
        if '"preset"' in (route.request.post_data or "") and not refused:
            refused.append(route.request.url)
            body = json.dumps({"error": "the server is busy", "hint": "retry", "kind": "OverloadedError"})
            route.fulfill(status=429, headers={"Retry-After": "2", "Content-Type": "application/json"}, body=body)
        else:
            route.continue_()

    page.route("**/generate", handle)
    try:
        page.get_by_role("button", name="깜빡여봐 (blink)", exact=True).click()
        page.wait_for_function("() => document.getElementById('portrait').dataset.busy === '1'", timeout=10_000)
        assert "busy, retrying" in page.locator("#progressText").inner_text()
        page.screenshot(path=str(shots / "svc-04-busy.png"))
        page.wait_for_function(
            "() => document.getElementById('stats').textContent.includes('깜빡여봐')", timeout=TIMEOUT_MS
        )
    finally:
        page.unroute("**/generate")
    assert refused and page.locator("#error").is_hidden()
    assert page.evaluate("document.getElementById('portrait').dataset.busy") is None


@pytest.mark.browser
def test_dropped_stream_returns_to_the_portrait(page, service, shots):
    url, info = service
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=TIMEOUT_MS)
    base = _probe(page, service)
    # A real start line and one real frame, then the connection drops (no end line).
    real = httpx.post(f"{url}/generate", json={"session": info["session"], "preset": "surprise"}, timeout=60)
    lines = real.text.splitlines()
    cut = "\n".join(lines[:3]) + "\n"
    ndjson = {"Content-Type": "application/x-ndjson"}
    page.route("**/generate", lambda route: route.fulfill(status=200, body=cut, headers=ndjson))
    try:
        page.get_by_role("button", name="놀라봐 (surprise)", exact=True).click()
        page.wait_for_selector("#error:not([hidden])", timeout=30_000)
        page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'", timeout=30_000)
    finally:
        page.unroute("**/generate")
    after = _probe(page, service)
    assert "interrupted" in page.locator("#error").inner_text()
    assert after["hash"] == base["hash"], "the page did not return to the portrait"
    assert not dark_blocks(after["blocks"], base["blocks"])
    page.screenshot(path=str(shots / "svc-05-dropped.png"))
    assert page.errors == []
