"""Measure the alive page (issue 22): clips played at the start line's rate keep their real duration.

Runs the real server on the stand-in renderer (``standin_server.py``: the model's cost replaced by a
fixed sleep per frame, so a slow machine can be imitated without weights) with the idle pieces on,
opens the page in Debian's Chromium and clicks presets. For each clip it prints what the start line
said (rate rendered, rate asked, frames), the duration the page played it for (first frame on
screen to the end of the last one: the canvas's ``data-played-ms``) against ``frames / fps``, and
click-to-first-frame (``data-state`` turning ``playing``).

    PYTHONPATH=src:benchmarks:tests/server python benchmarks/alive_page.py [--frame-ms 150] [--fps 25]

A renderer slower than the asked rate makes the server render fewer frames (``pacing.py``); the
page holds each frame for 1/fps of the rate rendered, so the played duration stays the clip's.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from browser_helpers import CHROMIUM, CHROMIUM_FLAGS
from service_helpers import live_server
from standin_server import StandInEngine

from lpstudio.server import ServerSettings, create_app

PAGE_TIMEOUT_MS = 300_000
PRESETS = ("깜빡여봐 (blink)", "웃어봐 (smile)", "끄덕여봐 (nod)")
STATE = "document.getElementById('portrait').dataset.state"


def measure(url: str, presets: tuple[str, ...]) -> list[dict[str, Any]]:
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_function(
            f"() => {STATE} === 'neutral' && window.lpAlive.state.segs.size > 0", timeout=PAGE_TIMEOUT_MS
        )
        for name in presets:
            t0 = time.perf_counter()
            page.get_by_role("button", name=name, exact=True).click()
            page.wait_for_function(f"() => {STATE} === 'playing'", timeout=PAGE_TIMEOUT_MS)
            first_s = time.perf_counter() - t0
            page.wait_for_function(f"() => {STATE} === 'neutral'", timeout=PAGE_TIMEOUT_MS)
            data = page.evaluate("({...document.getElementById('portrait').dataset})")
            start = page.evaluate("window.lpAlive.state.clip.start")
            played, expected = float(data["playedMs"]), float(data["clipMs"])
            rows.append(
                {
                    "clip": name,
                    "fps": start["fps"],
                    "requested_fps": start.get("requested_fps", start["fps"]),
                    "frames": start["frames"],
                    "click_to_first_frame_s": round(first_s, 2),
                    "played_s": round(played / 1000, 3),
                    "frames_over_fps_s": round(expected / 1000, 3),
                    "played_over_expected": round(played / expected, 3),
                }
            )
        browser.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame-ms", type=float, default=150.0, help="stand-in cost per frame (150: ~6.7 frames/s)")
    ap.add_argument("--fps", type=float, default=25.0, help="the clip rate the server is asked for")
    args = ap.parse_args()
    engine = StandInEngine(frame_ms=args.frame_ms, prepare_ms=1)
    app = create_app(engine, ServerSettings(crop=False, fps=args.fps, idle_default=True, idle_pieces=True))
    with live_server(app) as url:
        for row in measure(url, PRESETS):
            print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
