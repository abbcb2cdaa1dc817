"""Idle liveliness: natural random blinks, breathing sway and small gaze saccades.

Everything is drawn from ``numpy.random.default_rng(seed)``, so the same seed
and duration give exactly the same motion. The idle motion fades in and out, so
it starts and ends at the base pose like any other motion; command timelines
layer on top of it (:func:`with_idle`), and blinks/saccades keep out of the
windows in which a command moves the eyes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .timeline import Easing, Gesture, Keyframe, Rel, Step, Timeline

BLINK_INTERVAL_MS: tuple[float, float] = (2000.0, 6000.0)
DOUBLE_BLINK_PROBABILITY: float = 0.15
BLINK_CLOSE_MS: float = 80.0
BLINK_HOLD_MS: float = 40.0
BLINK_OPEN_MS: float = 170.0
DOUBLE_BLINK_GAP_MS: float = 90.0
FIRST_BLINK_MS: tuple[float, float] = (600.0, 2500.0)

BREATH_PERIOD_MS: tuple[float, float] = (3600.0, 4600.0)
BREATH_PITCH_DEG: float = 0.5
BREATH_MOV_Y: float = 0.0015
SWAY_ROLL_DEG: float = 0.6
SWAY_YAW_DEG: float = 0.8
SWAY_PERIOD_MS: tuple[float, float] = (6500.0, 11000.0)
SWAY_KEY_STEP_MS: float = 100.0
FADE_MS: float = 600.0

SACCADE_INTERVAL_MS: tuple[float, float] = (1200.0, 3500.0)
SACCADE_MOVE_MS: float = 50.0
SACCADE_X: float = 4.0
SACCADE_Y: float = 2.5
SACCADE_BACK_TO_CENTER: float = 0.5

EYE_PARAMS: frozenset[str] = frozenset({"eye_ratio", "wink", "eyeball_x", "eyeball_y"})
AVOID_BEFORE_MS: float = 350.0
AVOID_AFTER_MS: float = 250.0

Window = tuple[float, float]


def _free(t0: float, t1: float, busy: Sequence[Window]) -> bool:
    return all(t1 <= a or t0 >= b for a, b in busy)


def idle_gesture(duration_ms: float, seed: int = 0, *, busy: Sequence[Window] = ()) -> Gesture:
    """Idle liveliness over ``duration_ms``; blinks and saccades avoid the ``busy`` windows."""
    rng = np.random.default_rng(seed)
    duration_ms = float(max(0.0, duration_ms))
    keyframes: list[Keyframe] = []
    fade = min(FADE_MS, duration_ms / 3.0)

    # breathing (pitch + a hint of vertical movement) and a slow sway (roll, yaw)
    if duration_ms > 0:
        breath = rng.uniform(*BREATH_PERIOD_MS)
        sway_r, sway_y = rng.uniform(*SWAY_PERIOD_MS, size=2)
        ph = rng.uniform(0, 2 * math.pi, size=3)
        n = max(2, int(math.ceil(duration_ms / SWAY_KEY_STEP_MS)))
        for t in np.linspace(0.0, duration_ms, n + 1)[1:-1]:
            env = _envelope(float(t), duration_ms, fade)
            b = math.sin(2 * math.pi * t / breath + ph[0])
            keyframes.append(
                Keyframe(
                    float(t),
                    {
                        "head_pitch": env * BREATH_PITCH_DEG * b,
                        "mov_y": env * BREATH_MOV_Y * b,
                        "head_roll": env * SWAY_ROLL_DEG * math.sin(2 * math.pi * t / sway_r + ph[1]),
                        "head_yaw": env * SWAY_YAW_DEG * math.sin(2 * math.pi * t / sway_y + ph[2]),
                    },
                    Easing.LINEAR,
                )
            )

    # blinks
    blink_len = BLINK_CLOSE_MS + BLINK_HOLD_MS + BLINK_OPEN_MS
    t = rng.uniform(*FIRST_BLINK_MS)
    while t + blink_len < duration_ms:
        double = rng.random() < DOUBLE_BLINK_PROBABILITY
        total = blink_len * (2 if double else 1) + (DOUBLE_BLINK_GAP_MS if double else 0.0)
        if t + total < duration_ms and _free(t, t + total, busy):
            start = t
            for _ in range(2 if double else 1):
                keyframes += [
                    Keyframe(start, {"eye_ratio": 0.0}, Easing.LINEAR),
                    Keyframe(start + BLINK_CLOSE_MS, {"eye_ratio": Rel(-1.0)}, Easing.EASE_IN),
                    Keyframe(start + BLINK_CLOSE_MS + BLINK_HOLD_MS, {"eye_ratio": Rel(-1.0)}, Easing.LINEAR),
                    Keyframe(start + blink_len, {"eye_ratio": 0.0}, Easing.EASE_OUT),
                ]
                start += blink_len + DOUBLE_BLINK_GAP_MS
        t += total + rng.uniform(*BLINK_INTERVAL_MS)

    # saccades: quick small jumps of gaze, held until the next one
    x = y = 0.0
    t = rng.uniform(*SACCADE_INTERVAL_MS)
    end_by = duration_ms - fade - SACCADE_MOVE_MS
    while t < end_by:
        if _free(t - SACCADE_MOVE_MS, t + 2 * SACCADE_MOVE_MS, busy):
            if rng.random() < SACCADE_BACK_TO_CENTER and (x or y):
                nx, ny = 0.0, 0.0
            else:
                nx, ny = rng.uniform(-SACCADE_X, SACCADE_X), rng.uniform(-SACCADE_Y, SACCADE_Y)
            keyframes += [
                Keyframe(t, {"eyeball_x": x, "eyeball_y": y}, Easing.LINEAR),
                Keyframe(t + SACCADE_MOVE_MS, {"eyeball_x": nx, "eyeball_y": ny}, Easing.EASE_OUT),
            ]
            x, y = nx, ny
        t += rng.uniform(*SACCADE_INTERVAL_MS)
    if x or y:  # back to centre before the end (smoothly, during the fade)
        t_back = max(0.0, duration_ms - fade)
        keyframes.append(Keyframe(t_back, {"eyeball_x": x, "eyeball_y": y}, Easing.LINEAR))
    return Gesture("idle", keyframes, duration_ms, apex_ms=fade, release_ms=max(fade, duration_ms - fade))


def _envelope(t: float, duration: float, fade: float) -> float:
    if fade <= 0:
        return 1.0
    u = min(1.0, t / fade, (duration - t) / fade)
    u = max(0.0, u)
    return u * u * (3 - 2 * u)


def eye_busy_windows(timeline: Timeline) -> list[Window]:
    """Where the timeline's (non-idle) steps move the eyes, with some margin."""
    return [
        (s.start_ms - AVOID_BEFORE_MS, s.end_ms + AVOID_AFTER_MS)
        for s in timeline.main_steps
        if s.gesture.params & EYE_PARAMS
    ]


def with_idle(timeline: Timeline, seed: int = 0, *, lead_in_ms: float = 0.0, tail_ms: float = 0.0) -> Timeline:
    """``timeline`` (shifted by ``lead_in_ms``) over idle liveliness that lasts the whole clip."""
    tl = timeline.shifted(lead_in_ms) if lead_in_ms > 0 else timeline
    tl = tl.padded(tail_ms)
    idle = idle_gesture(tl.duration_ms, seed, busy=eye_busy_windows(tl))
    return Timeline((Step(idle, 0.0, "idle", -1),) + tl.steps, tl.duration_ms)


def idle_timeline(duration_ms: float, seed: int = 0) -> Timeline:
    """Idle liveliness alone (e.g. for the web app's waiting loop)."""
    return Timeline([Step(idle_gesture(duration_ms, seed), 0.0, "idle", -1)], duration_ms)
