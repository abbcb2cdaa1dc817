"""Idle segments (base pose at both ends) and their seeded schedule (human timing, never repeating)."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from scipy import stats

from lpstudio.expressions.idle_segments import (
    BLINK_INTERVAL_S,
    GAZE_COLS,
    GAZE_ROWS,
    MOTION_MARGIN_S,
    Mulberry32,
    gaze_axes,
    idle_schedule,
    idle_segments,
    schedule_seed,
)
from lpstudio.params import EditParams

FPS = 12.5
WINDOW_S = 10.0
SCHEDULE_S = 300.0
BLINKS = ("blink", "double_blink")


def _durations() -> dict[str, float]:
    return {s.id: s.duration_s for s in idle_segments()}


def test_every_segment_starts_and_ends_at_the_base_pose_and_moves_in_between() -> None:
    base = EditParams(eye_ratio=0.35, lip_ratio=0.1)  # a photo's neutral pose (its own ratios)
    kinds = set()
    for seg in idle_segments():
        frames = seg.timeline.sample(FPS, base)
        assert frames[0] == base and frames[-1] == base, seg.id
        kinds.add(seg.kind)
        if seg.id != "still":
            assert any(f != base for f in frames), f"{seg.id} never moves"
        else:
            assert all(f == base for f in frames)
    assert {"blink", "glance", "breath", "tilt", "look_away", "still"} <= kinds


def test_a_blink_lasts_its_documented_time_and_closes_the_eyes_on_a_frame() -> None:
    blink = next(s for s in idle_segments() if s.id == "blink")
    assert 0.25 <= blink.duration_s <= 0.4
    ratios = [f.eye_ratio for f in blink.timeline.sample(FPS, EditParams(eye_ratio=0.35))]
    assert min(ratios) == pytest.approx(0.0, abs=1e-6)  # fully closed on at least one frame at 12.5 fps


def test_schedule_is_deterministic_covers_five_minutes_and_never_overlaps() -> None:
    durations = _durations()
    a = idle_schedule(7, durations, SCHEDULE_S)
    assert a == idle_schedule(7, durations, SCHEDULE_S)
    assert a != idle_schedule(8, durations, SCHEDULE_S)
    assert a[-1].start_s > SCHEDULE_S - max(BLINK_INTERVAL_S)
    for prev, item in zip(a, a[1:]):
        assert item.segment != prev.segment, (prev, item)  # never the same segment twice in a row
        assert item.start_s >= prev.start_s + durations[prev.segment] - 1e-9, (prev, item)
    motions = [i.segment for i in a if i.segment not in BLINKS]
    assert all(m != n for m, n in zip(motions, motions[1:]))
    glances = [i for i in a if i.segment.startswith("glance")]
    assert len(glances) >= SCHEDULE_S / 30  # glances every few seconds


def _window(items, t0: float) -> tuple:
    return tuple((i.segment, round(i.start_s - t0, 1)) for i in items if t0 <= i.start_s < t0 + WINDOW_S)


@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_no_ten_second_window_repeats_over_five_minutes(seed: int) -> None:
    """What a viewer sees in 10 s from any segment's start (which segments, at which offsets to a tenth of a
    second, about a frame at 12.5 fps) never appears again from another segment's start."""
    items = idle_schedule(seed, _durations(), SCHEDULE_S)
    seen: dict[tuple, float] = {}
    for item in items:
        if item.start_s > SCHEDULE_S - WINDOW_S:
            break
        w = _window(items, item.start_s)
        assert w not in seen, f"the window at {item.start_s:.1f} s repeats the one at {seen[w]:.1f} s"
        seen[w] = item.start_s
    assert len(seen) > SCHEDULE_S / WINDOW_S


def test_blink_intervals_follow_the_stated_uniform_distribution() -> None:
    durations = _durations()
    intervals: list[float] = []
    for seed in range(20):
        blinks = [i.start_s for i in idle_schedule(seed, durations, SCHEDULE_S) if i.segment in BLINKS]
        intervals += list(np.diff(blinks))
    lo, hi = BLINK_INTERVAL_S
    assert min(intervals) >= lo and max(intervals) <= hi
    assert stats.kstest(intervals, "uniform", args=(lo, hi - lo)).pvalue > 0.01
    doubles = sum(
        1 for seed in range(20) for i in idle_schedule(seed, durations, SCHEDULE_S) if i.segment == "double_blink"
    )
    assert 0.08 < doubles / (len(intervals) + 20) < 0.25


def test_a_motion_keeps_its_margins_between_blinks() -> None:
    durations = _durations()
    items = idle_schedule(3, durations, SCHEDULE_S)
    for prev, item, nxt in zip(items, items[1:], items[2:]):
        if item.segment not in BLINKS:
            assert item.start_s - (prev.start_s + durations[prev.segment]) >= MOTION_MARGIN_S - 1e-9
            assert nxt.start_s - (item.start_s + durations[item.segment]) >= MOTION_MARGIN_S - 1e-9


MULBERRY32_JS = """
function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6D2B79F5) >>> 0;
    let z = a;
    z = Math.imul(z ^ (z >>> 15), z | 1);
    z ^= z + Math.imul(z ^ (z >>> 7), z | 61);
    return ((z ^ (z >>> 14)) >>> 0) / 4294967296;
  };
}
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run the JavaScript mirror")
def test_the_generator_gives_the_same_numbers_as_a_javascript_mulberry32() -> None:
    """A page mirrors the schedule with the usual 32-bit JavaScript Mulberry32: same seed, same numbers."""
    seeds = [0, 1, 7, 2**31 + 5, 2**32 - 1]
    script = MULBERRY32_JS + (
        f"console.log(JSON.stringify({json.dumps(seeds)}.map((s) => {{ const r = mulberry32(s); "
        "return Array.from({length: 50}, () => r()); })));"
    )
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=30, check=True)
    expected = json.loads(out.stdout)
    for seed, js in zip(seeds, expected):
        rng = Mulberry32(seed)
        assert [rng.next() for _ in range(50)] == js, seed
    assert schedule_seed("abc") == schedule_seed("abc") != schedule_seed("abd")


def test_gaze_grid_is_at_least_five_by_three_and_symmetric() -> None:
    xs, ys = gaze_axes()
    assert len(xs) == GAZE_COLS >= 5 and len(ys) == GAZE_ROWS >= 3
    assert xs == sorted(xs) and xs[len(xs) // 2] == 0.0 and xs[0] == -xs[-1]
    assert ys[0] > 0 > ys[-1]  # top row looks up
