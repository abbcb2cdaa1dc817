"""The page's slow-renderer rule (``bufferWaitS`` in web/app.js), run in Node on its own.

Playback starts when the rest of the clip, arriving at the measured render rate, will be
there before each frame is due; the wait is what the page shows as "about N s".
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import lpstudio

APP_JS = Path(lpstudio.__file__).parent / "web" / "app.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js to run the page's function")


def buffer_wait_s(cases: list[tuple[int, int, int, float, list[float]]]) -> list[float]:
    source = APP_JS.read_text(encoding="utf-8")
    match = re.search(r"const ETA_MARGIN[^\n]*\n(?:.*\n)*?function bufferWaitS\([^)]*\) \{\n(?:.*\n)*?\}\n", source)
    assert match, "bufferWaitS (and ETA_MARGIN before it) not found in app.js"
    script = match.group(0) + f"console.log(JSON.stringify({json.dumps(cases)}.map((c) => bufferWaitS(...c))));"
    out = subprocess.run([NODE, "-e", script], capture_output=True, text=True, timeout=30, check=True)
    return json.loads(out.stdout)


def arrivals(n: int, render_fps: float) -> list[float]:
    return [i * 1000.0 / render_fps for i in range(n)]


def no_stall(wait: float, have: int, total: int, fps: float, render_fps: float) -> bool:
    """Simulate: after ``wait`` s more frames arrived; does every later frame arrive before it is due?"""
    have_then = min(total, have + int(wait * render_fps))
    return all((i - have_then + 1) / render_fps <= i / fps + 1e-9 for i in range(have_then, total))


def test_fast_renderer_starts_at_once() -> None:
    assert buffer_wait_s([[0, 3, 75, 25, arrivals(3, 60)]]) == [0]


def test_slow_renderer_waits_until_the_rest_arrives_in_time() -> None:
    fps, render_fps, total, have = 25.0, 5.0, 75, 3
    (wait,) = buffer_wait_s([[0, have, total, fps, arrivals(have, render_fps)]])
    assert 9 < wait < 14  # 72 frames at 5 fps = 14.4 s (x1.15) minus the 2.96 s the clip plays
    assert no_stall(wait, have, total, fps, render_fps)
    assert not no_stall(wait / 2, have, total, fps, render_fps)


def test_no_wait_when_every_frame_is_there_or_the_rate_is_unknown() -> None:
    assert buffer_wait_s([[0, 75, 75, 25, arrivals(75, 2)], [0, 1, 75, 25, arrivals(1, 2)]]) == [0, 0]
