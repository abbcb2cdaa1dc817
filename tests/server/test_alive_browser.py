"""The page alive at every moment (issue 22), in Debian's Chromium against the real server.

The server renders each photo's idle segments and gaze atlas in the background (``idle_pieces``);
the renderer is the service stand-in (``benchmarks/standin_server.py``) made to show every idle
motion (blinks darken an eye band, tilts and up/down gaze shift rows), so the pieces are ready in
about a second and what the canvas shows can be told apart. Checked: idle plays from segments for
over a minute with no 10-second window repeating and no render request; the page's schedule is the
server's; the eyes follow the pointer with no request sent during the moves and come back to the
viewer; a clip goes waiting -> playing -> neutral at the start line's rate; cancel stops a clip and
idle resumes; leaving the page closes its session. Screenshots: desktop 1280x900 and phone 390x844.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from service_helpers import live_server
from standin_server import PX_PER_GAZE, StandInEngine

from lpstudio.server import ServerSettings, ServiceLimits, create_app

pytestmark = pytest.mark.browser

CLIP_FPS = 5.0
"""The server's clip rate here: a smile (~2 s) is about ten frames, long enough to cancel while it plays."""
IDLE_FPS = 6.25
"""Idle segments at half the default rate: fewer frames to render for the test (a blink is still 2-3 frames)."""
READY_TIMEOUT_MS = 120_000
"""Generous: the machine may be busy (the pieces take about a second with the stand-in)."""
IDLE_WATCH_S = 62.0
"""How long idle is sampled (the issue: at least 60 s)."""
SAMPLE_S = 0.1
WINDOW_S = 10.0
"""No stretch of idle this long may repeat."""
RUN_TOLERANCE_S = 0.3
"""Two runs of one picture "match" when their lengths differ by less than this (sampling: +-SAMPLE_S)."""
EYE_BAND = slice(200, 232)
"""Rows the stand-in darkens as the eyes close (a visible blink)."""
DARK_PER_CLOSURE = 2.0
"""Fraction of brightness removed per unit of eye closure (eye ratio below the photo's)."""
PX_PER_ROLL = 3.0
DRAW_SLACK_MS = 20.0
"""The first frame is drawn in the same step that sets the playback clock: at most this late."""

CANVAS_HASH = """() => {
  const c = document.getElementById('portrait');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 4 * 29) h = (h * 31 + d[i] + 7 * d[i + 1] + 13 * d[i + 2]) >>> 0;
  return h;
}"""


class VisibleStandIn(StandInEngine):
    """The stand-in renderer, with blinks, head roll and up/down gaze visible too.

    ``edited_keypoints`` row 1 carries (eyeball_x, eyeball_y, head_roll) and row 2 the eye closure;
    frames are (512, 512, 3) uint8 as the stand-in's.
    """

    def edited_keypoints(self, state: Any, params: Sequence[Any], *, stitching: bool = True) -> Any:
        x_d = super().edited_keypoints(state, params, stitching=stitching)
        own = float(np.mean(state.eye_ratio))
        for i, p in enumerate(params):
            x_d[i, 1, 1] = p.eyeball_y
            x_d[i, 1, 2] = p.head_roll
            x_d[i, 2, 0] = 0.0 if p.eye_ratio is None else max(0.0, own - p.eye_ratio) / own
        return x_d

    def render_mixed(self, items: Sequence[tuple[Any, Any]]) -> list[np.ndarray]:
        frames = super().render_mixed(items)
        out = []
        for (_, x), frame in zip(items, frames):
            dy = round(PX_PER_GAZE * float(x[1, 1]) + PX_PER_ROLL * float(x[1, 2]))
            moved = np.roll(frame, shift=-dy, axis=0).copy()
            closure = min(1.0, float(x[2, 0]))
            band = moved[EYE_BAND].astype(np.float32) * max(0.0, 1.0 - DARK_PER_CLOSURE * closure)
            moved[EYE_BAND] = band.astype(np.uint8)
            out.append(moved)
        return out


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Any]]:
    require_browser()
    limits = ServiceLimits(idle_fps=IDLE_FPS)
    settings = ServerSettings(
        crop=False, fps=CLIP_FPS, idle_default=True, idle_pieces=True, batch_size=4, limits=limits
    )
    app = create_app(VisibleStandIn(), settings)
    with live_server(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path_factory.mktemp("screenshots")))
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser: Any, server: tuple[str, Any]) -> Iterator[Any]:
    """One desktop page with every idle piece and the gaze atlas loaded."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_function(
        """() => { const s = window.lpAlive.state; const c = document.getElementById('portrait');
                   return s.info && s.atlas && s.segs.size === s.info.segments.length
                     && c.dataset.idle === 'endless' && c.dataset.gaze === 'ready'; }""",
        timeout=READY_TIMEOUT_MS,
    )
    page.errors = errors  # type: ignore[attr-defined]
    yield page
    page.close()


def _hash(page: Any) -> int:
    return int(page.evaluate(CANVAS_HASH))


def _runs(samples: list[tuple[float, int]]) -> list[tuple[int, float, float]]:
    """Maximal runs of one picture: (hash, start, length) in seconds."""
    runs: list[tuple[int, float, float]] = []
    for t, h in samples:
        if runs and runs[-1][0] == h:
            continue
        if runs:
            runs[-1] = (runs[-1][0], runs[-1][1], t - runs[-1][1])
        runs.append((h, t, 0.0))
    if runs:
        runs[-1] = (runs[-1][0], runs[-1][1], samples[-1][0] - runs[-1][1])
    return runs


def repeated_windows(samples: list[tuple[float, int]], window_s: float = WINDOW_S) -> list[tuple[float, float]]:
    """Start times (a, b) of two stretches of ``window_s`` that show the same pictures for the same times.

    A stretch starting at run i "repeats" at run j when the runs from i and j covering ``window_s``
    have the same pictures in the same order and lengths within :data:`RUN_TOLERANCE_S` (a loop
    replayed with sampling jitter matches; a seeded random schedule does not).
    """
    runs = _runs(samples)
    end = samples[-1][0]
    found = []
    for i in range(len(runs)):
        if runs[i][1] + window_s > end:
            break
        for j in range(i + 1, len(runs)):
            if runs[j][1] + window_s > end:
                break
            covered, k = 0.0, 0
            while covered < window_s:
                a, b = runs[i + k], runs[j + k]
                if a[0] != b[0]:
                    break
                last = covered + min(a[2], b[2]) >= window_s
                if not last and abs(a[2] - b[2]) > RUN_TOLERANCE_S:
                    break
                covered += a[2]
                k += 1
            else:
                found.append((runs[i][1], runs[j][1]))
    return found


def test_the_repeat_detector_finds_a_looped_clip() -> None:
    """The non-repetition check can fail: a 4-second loop (the old idle) sampled with jitter repeats."""
    rng = np.random.default_rng(0)
    loop = [1, 1, 2, 3, 2, 1] + [0] * 14  # 20 samples of 0.2 s: a blink, then the still portrait
    t, samples = 0.0, []
    while t < 40.0:
        samples.append((t, loop[int(t / 0.2) % len(loop)]))
        t += SAMPLE_S + rng.uniform(-0.02, 0.02)
    assert repeated_windows(samples)


def test_page_schedule_is_the_servers(page: Any, server: tuple[str, Any]) -> None:
    """The page's endless schedule starts with exactly the items GET /idle lists (same seed, same rules)."""
    info = page.evaluate("async () => (await fetch('/idle?session=' + encodeURIComponent(app.session))).json()")
    durations = {s["id"]: s["duration_s"] for s in info["segments"]}
    items = info["schedule"]["items"]
    assert len(items) > 50
    mine = page.evaluate(
        "([seed, d, n]) => window.lpAlive.scheduleFor(seed, d, n)", [info["schedule"]["seed"], durations, len(items)]
    )
    assert [m["segment"] for m in mine] == [i["segment"] for i in items]
    assert np.allclose([m["start_s"] for m in mine], [i["start_s"] for i in items], atol=2e-3)


def test_idle_is_endless_and_never_repeats(page: Any, shots: Path) -> None:
    """Over a minute of idle: no 10-second window repeats, segments vary, and nothing is rendered for it."""
    renders: list[str] = []
    page.on("request", lambda r: renders.append(r.url) if "/generate" in r.url or "/render" in r.url else None)
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    since = page.evaluate("performance.now()")
    shot = False
    while (t := time.monotonic() - t0) < IDLE_WATCH_S:
        samples.append((t, _hash(page)))
        if not shot and page.evaluate("document.getElementById('portrait').dataset.idleSegment") == "look_away":
            page.screenshot(path=str(shots / "alive-01-idle-look-away.png"))
            shot = True
        time.sleep(SAMPLE_S)
    log = page.evaluate("window.lpAlive.log")
    log = [e for e in log if e["at"] >= since]
    played = [e["segment"] for e in log]
    assert renders == [], f"idle asked the server to render: {renders}"
    assert len({h for _, h in samples}) > 10, "the canvas hardly changed"
    assert repeated_windows(samples) == [], "a 10-second stretch of idle repeated"
    assert len(set(played)) >= 4, f"idle segments do not vary: {played}"
    assert all(a != b for a, b in zip(played, played[1:])), f"a segment played twice in a row: {played}"
    blinks = [e["start_s"] for e in log if e["segment"] in ("blink", "double_blink")]
    gaps = np.diff(blinks)
    assert len(gaps) >= 8 and gaps.min() >= 2.0 - 1e-6 and gaps.max() <= 6.0 + 1e-6, gaps
    assert page.errors == []


def test_gaze_follows_the_pointer_without_requests(page: Any, shots: Path) -> None:
    """Pointer moves turn the eyes (canvas and gaze state) and send no request; still, the eyes come back."""
    sent: list[str] = []
    box = page.locator("#portrait").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    state = "window.lpAlive.state.gaze"
    page.on("request", lambda r: sent.append(r.url))
    seen = {}
    atlas = "window.lpAlive.state.atlas"
    moves = {
        "left": ((5, cy), f"{state}.u < 0.3"),
        "right": ((1275, cy), f"{state}.u > {atlas}.cols - 1.3"),
        "up": ((cx, 5), f"{state}.v < 0.3"),
        "down": ((cx, 895), f"{state}.v > {atlas}.rows - 1.3"),
    }
    for name, ((x, y), there) in moves.items():
        page.mouse.move(x, y, steps=8)
        page.wait_for_function(f"() => {state}.sacc === null && {there}")
        seen[name] = (_hash(page), page.evaluate(f"({{u: {state}.u, v: {state}.v}})"))
        if name == "left":
            page.screenshot(path=str(shots / "alive-02-gaze-left.png"))
    assert sent == [], f"pointer moves sent requests: {sent}"
    centre = page.evaluate(f"({{u: ({atlas}.cols - 1) / 2, v: ({atlas}.rows - 1) / 2}})")
    assert seen["left"][1]["u"] < centre["u"] < seen["right"][1]["u"]
    assert seen["up"][1]["v"] < centre["v"] < seen["down"][1]["v"]
    assert len({h for h, _ in seen.values()}) == 4, "the canvas did not follow the pointer"
    # no movement for a while: the eyes come back to the viewer (the atlas's centre cell, the base pose)
    page.wait_for_function(
        f"() => {state}.u === ({atlas}.cols - 1) / 2 && {state}.v === ({atlas}.rows - 1) / 2 && {state}.sacc === null",
        timeout=15_000,
    )
    assert sent == [], f"gazing sent requests: {sent}"
    page.uncheck("[data-testid=gaze-toggle]")
    assert page.evaluate("document.getElementById('portrait').dataset.gaze") is None
    page.check("[data-testid=gaze-toggle]")
    assert page.evaluate("document.getElementById('portrait').dataset.gaze") == "ready"


STATE_RECORDER = """() => {
  const c = document.getElementById('portrait');
  if (window.__recorder) window.__recorder.disconnect();
  window.__states = [c.dataset.state];
  window.__cancelShown = false;
  window.__recorder = new MutationObserver(() => {
    window.__states.push(c.dataset.state);
    if (!document.querySelector('[data-testid=cancel-clip]').hidden) window.__cancelShown = true;
  });
  window.__recorder.observe(c, {attributes: true, attributeFilter: ['data-state']});
}"""


def test_clip_goes_waiting_playing_neutral_at_its_rate(page: Any) -> None:
    """A blink: waiting, then playing once its frames show, then neutral; played for its frames / fps at least."""
    page.evaluate(STATE_RECORDER)
    page.get_by_role("button", name="깜빡여봐 (blink)", exact=True).click()
    page.wait_for_function(
        "() => window.__states.includes('playing') && document.getElementById('portrait').dataset.state === 'neutral'",
        timeout=READY_TIMEOUT_MS,
    )
    states = page.evaluate("window.__states")
    assert states[-3:] == ["waiting", "playing", "neutral"], states
    assert page.evaluate("window.__cancelShown")
    assert page.locator("[data-testid=cancel-clip]").is_hidden()
    canvas = page.evaluate("({...document.getElementById('portrait').dataset})")
    assert float(canvas["clipFps"]) == CLIP_FPS
    frames = round(float(canvas["clipMs"]) * CLIP_FPS / 1000)
    # frame k is never shown before k / fps after the first: the clip lasts at least its real duration
    assert float(canvas["playedMs"]) >= frames * 1000 / CLIP_FPS - DRAW_SLACK_MS
    page.wait_for_function("() => document.getElementById('portrait').dataset.idle === 'endless'")


def test_cancel_stops_a_clip_and_idle_resumes(page: Any, shots: Path) -> None:
    cancels: list[str] = []
    page.on("request", lambda r: cancels.append(r.post_data or "") if r.url.endswith("/generate/cancel") else None)
    page.evaluate(STATE_RECORDER)
    page.get_by_role("button", name="웃어봐 (smile)", exact=True).click()
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'playing'")
    assert page.evaluate("window.lpAlive.state.running") is False, "idle or gaze drew over the clip"
    page.screenshot(path=str(shots / "alive-03-playing-cancel.png"))
    page.get_by_test_id("cancel-clip").click()
    page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'")
    assert "취소" in page.locator("#progressText").inner_text()
    assert page.locator("[data-testid=cancel-clip]").is_hidden()
    clip_id = page.evaluate("window.lpAlive.state.clip.id")
    assert clip_id and any(clip_id in body for body in cancels), cancels
    page.wait_for_function("() => document.getElementById('portrait').dataset.idle === 'endless'")
    assert page.evaluate("window.__states").count("playing") == 1
    # the eyes were given up for the clip; they follow the pointer again after it
    box = page.locator("#portrait").bounding_box()
    page.mouse.move(5, box["y"] + box["height"] / 2, steps=4)
    page.wait_for_function("() => window.lpAlive.state.gaze.u < 0.3 && window.lpAlive.state.gaze.sacc === null")
    assert page.errors == []


def test_phone_layout(browser: Any, server: tuple[str, Any], shots: Path) -> None:
    url, _ = server
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone.goto(url)
        phone.wait_for_function(
            "() => document.getElementById('portrait').dataset.gaze === 'ready'", timeout=READY_TIMEOUT_MS
        )
        toggle = phone.get_by_test_id("gaze-toggle").bounding_box()
        assert toggle and toggle["x"] >= 0 and toggle["x"] + toggle["width"] <= 390
        phone.screenshot(path=str(shots / "alive-04-phone.png"), full_page=True)
        # a clip playing on the phone: the progress and its cancel button fit the width, under the portrait
        phone.get_by_role("button", name="웃어봐 (smile)", exact=True).click()
        phone.wait_for_function("() => document.getElementById('portrait').dataset.state === 'playing'")
        phone.evaluate("window.scrollTo(0, 0)")
        cancel = phone.get_by_test_id("cancel-clip").bounding_box()
        portrait = phone.locator("#portrait").bounding_box()
        assert cancel and portrait and cancel["x"] >= 0 and cancel["x"] + cancel["width"] <= 390
        assert cancel["y"] >= portrait["y"] + portrait["height"]
        phone.screenshot(path=str(shots / "alive-02-phone-playing.png"))  # docs/screenshots/ (docs/ALIVE_PAGE.md)
    finally:
        phone.close()


def test_leaving_the_page_closes_its_session(page: Any, server: tuple[str, Any]) -> None:
    _, app = server
    session = page.evaluate("app.session")
    assert app.state.lp.sessions.peek(session) is not None
    page.goto("about:blank")
    deadline = time.monotonic() + 10
    while app.state.lp.sessions.peek(session) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.state.lp.sessions.peek(session) is None, "the page's session stayed open after it left"


def test_leaving_a_keyed_page_closes_its_session(browser: Any) -> None:
    """With an API key the close passes the same guard (the key in the X-API-Key header, as every request)."""
    import httpx

    key = "alive-page-test-key"
    app = create_app(VisibleStandIn(), ServerSettings(crop=False, fps=CLIP_FPS, idle_default=False, api_key=key))
    with live_server(app) as url:
        page = browser.new_page()
        page.goto(f"{url}/#key={key}")
        page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'")
        session = page.evaluate("app.session")
        unkeyed = httpx.post(f"{url}/session/close", json={"session": session})
        assert unkeyed.status_code == 401, "the guard let a close without the key through"
        assert app.state.lp.sessions.peek(session) is not None
        page.goto("about:blank")
        deadline = time.monotonic() + 10
        while app.state.lp.sessions.peek(session) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        page.close()
        assert app.state.lp.sessions.peek(session) is None, "the keyed page's session stayed open after it left"
