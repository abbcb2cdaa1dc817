"""Idle segments and their schedule: endless idle composed from short pieces rendered once per photo.

Every segment starts and ends at the base pose, so any two can be played one after the other
(with the base pose held in between) without a jump. The segments are rendered once per photo
in the background; what the viewer sees between commands is a *schedule* of them:

* blink events: the interval from one blink's start to the next is uniform on
  :data:`BLINK_INTERVAL_S` (2-6 s, mean 4 s: 15 blinks a minute, a resting adult's rate); each event
  is a double blink with probability :data:`DOUBLE_BLINK_PROBABILITY`, else a single blink;
* between two blink events exactly one other segment is placed: a weighted random choice
  (:data:`MOTION_WEIGHTS`) among those that fit in the gap with :data:`MOTION_MARGIN_S` on both
  sides, never the one placed in the previous gap, at a uniformly random offset within the slack;
  stillness fits in every gap (the shortest gap is 2 s minus a double blink);
* so no two identical segments are ever back to back (blink kinds and other motions alternate,
  and two consecutive motions differ), and glances come every few seconds.

:func:`idle_schedule` is pure (its random numbers come from :class:`Mulberry32`, a 32-bit
generator a page can mirror exactly in JavaScript), so a page given the same seed computes the
same schedule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .presets import GAZE_SCREEN_RIGHT, PITCH_DOWN, YAW_SCREEN_RIGHT
from .timeline import Easing, Gesture, Keyframe, Rel, Timeline

E = Easing

# ---------------------------------------------------------------------- segment motion design
BLINK_CLOSE_MS = 80.0
"""Lids closing (fast, easing in)."""
BLINK_HOLD_MS = 80.0
"""Lids closed (two frames at 12.5 fps, so the closed lids are always seen)."""
BLINK_OPEN_MS = 160.0
"""Lids opening (slower than closing, as in a real blink): a blink lasts 320 ms (documented range 0.25-0.4 s)."""
DOUBLE_BLINK_GAP_MS = 110.0
"""Open time between the two blinks of a double blink."""
GLANCE_MOVE_MS = 120.0
"""A glance: the saccade out."""
GLANCE_HOLD_MS = 520.0
"""A glance: held."""
GLANCE_BACK_MS = 260.0
"""A glance: back to the viewer (a little slower than the saccade out)."""
GLANCE_X = 12.0
"""Horizontal glance, ``eyeball_x`` slider units (the look presets go to 22)."""
GLANCE_UP_Y = 10.0
"""Upward glance, ``eyeball_y`` slider units."""
GLANCE_HEAD_SHARE = 0.25
"""Degrees of head turn per slider unit of gaze in a glance (the head follows the eyes a little)."""
BREATH_MS = 3200.0
"""One breath with a slight sway."""
BREATH_PITCH_DEG = 0.8
BREATH_MOV_Y = 0.002
BREATH_ROLL_DEG = 0.9
TILT_MS = 1800.0
"""A small head tilt and back."""
TILT_ROLL_DEG = 3.5
LOOK_AWAY_MS = 2600.0
"""A slow look away (eyes lead, head follows) and back."""
LOOK_AWAY_X = 16.0
LOOK_AWAY_Y = -4.0
LOOK_AWAY_YAW_DEG = 5.0
STILL_MS = 320.0
"""Stillness: a few frames of the base pose, enough to hold between segments."""


def _k(t_ms: float, easing: Easing = E.SMOOTHSTEP, **values: float | Rel) -> Keyframe:
    return Keyframe(t_ms, values, easing)


def _blinks(count: int) -> list[Keyframe]:
    keys: list[Keyframe] = []
    t = 0.0
    one = BLINK_CLOSE_MS + BLINK_HOLD_MS + BLINK_OPEN_MS
    for _ in range(count):
        keys += [
            _k(t, E.LINEAR, eye_ratio=0.0),
            _k(t + BLINK_CLOSE_MS, E.EASE_IN, eye_ratio=Rel(-1.0)),
            _k(t + BLINK_CLOSE_MS + BLINK_HOLD_MS, E.LINEAR, eye_ratio=Rel(-1.0)),
            _k(t + one, E.EASE_OUT, eye_ratio=0.0),
        ]
        t += one + DOUBLE_BLINK_GAP_MS
    return keys


def _glance(name: str, x: float, y: float) -> Gesture:
    held = {"eyeball_x": x, "eyeball_y": y}
    head = {
        "head_yaw": GLANCE_HEAD_SHARE * x * GAZE_SCREEN_RIGHT * YAW_SCREEN_RIGHT,
        "head_pitch": -GLANCE_HEAD_SHARE * y * PITCH_DOWN,
    }
    out, hold_end = GLANCE_MOVE_MS, GLANCE_MOVE_MS + GLANCE_HOLD_MS
    end = hold_end + GLANCE_BACK_MS
    keys = [
        _k(out, E.EASE_OUT, **held),
        _k(out + GLANCE_HOLD_MS / 2, **head),  # the head follows slowly while the eyes hold
        _k(hold_end, **held),
        _k(end, E.EASE_IN_OUT, eyeball_x=0.0, eyeball_y=0.0, head_yaw=0.0, head_pitch=0.0),
    ]
    return Gesture(name, keys, end, apex_ms=out, release_ms=hold_end)


def _breath() -> Gesture:
    third = BREATH_MS / 3
    keys = [
        _k(
            third,
            E.EASE_IN_OUT,
            head_pitch=-BREATH_PITCH_DEG * PITCH_DOWN,
            mov_y=-BREATH_MOV_Y,
            head_roll=BREATH_ROLL_DEG,
        ),
        _k(
            2 * third,
            E.EASE_IN_OUT,
            head_pitch=0.3 * BREATH_PITCH_DEG * PITCH_DOWN,
            mov_y=0.0,
            head_roll=-0.5 * BREATH_ROLL_DEG,
        ),
        _k(BREATH_MS, E.EASE_IN_OUT, head_pitch=0.0, mov_y=0.0, head_roll=0.0),
    ]
    return Gesture("breath", keys, BREATH_MS)


def _tilt() -> Gesture:
    keys = [
        _k(TILT_MS * 0.35, E.EASE_IN_OUT, head_roll=TILT_ROLL_DEG, eyeball_y=1.5),
        _k(TILT_MS * 0.6, head_roll=TILT_ROLL_DEG, eyeball_y=1.5),
        _k(TILT_MS, E.EASE_IN_OUT, head_roll=0.0, eyeball_y=0.0),
    ]
    return Gesture("head_tilt", keys, TILT_MS)


def _look_away() -> Gesture:
    x = -LOOK_AWAY_X * GAZE_SCREEN_RIGHT
    yaw = -LOOK_AWAY_YAW_DEG * YAW_SCREEN_RIGHT
    keys = [
        _k(LOOK_AWAY_MS * 0.15, E.EASE_OUT, eyeball_x=x, eyeball_y=LOOK_AWAY_Y, head_yaw=0.0),
        _k(LOOK_AWAY_MS * 0.45, E.EASE_IN_OUT, eyeball_x=0.6 * x, head_yaw=yaw),
        _k(LOOK_AWAY_MS * 0.6, eyeball_x=0.6 * x, head_yaw=yaw, eyeball_y=LOOK_AWAY_Y),
        _k(LOOK_AWAY_MS * 0.75, E.EASE_OUT, eyeball_x=0.0, eyeball_y=0.0),
        _k(LOOK_AWAY_MS, E.EASE_IN_OUT, head_yaw=0.0),
    ]
    return Gesture("look_away", keys, LOOK_AWAY_MS)


@dataclass(frozen=True)
class IdleSegment:
    """One idle piece: an id, its kind (``blink``, ``glance``, ...) and its motion (base pose at both ends)."""

    id: str
    kind: str
    gesture: Gesture

    @property
    def timeline(self) -> Timeline:
        return Timeline.single(self.gesture, self.id)

    @property
    def duration_s(self) -> float:
        return self.gesture.duration_ms / 1000.0

    def frame_count(self, fps: float) -> int:
        return self.timeline.frame_count(fps)


def idle_segments() -> list[IdleSegment]:
    """Every idle segment, in the order they are rendered (blink first: it is what makes a face alive)."""
    one_blink = BLINK_CLOSE_MS + BLINK_HOLD_MS + BLINK_OPEN_MS
    right = GLANCE_X * GAZE_SCREEN_RIGHT
    return [
        IdleSegment("blink", "blink", Gesture("blink", _blinks(1), one_blink)),
        IdleSegment("still", "still", Gesture("still", [], STILL_MS)),
        IdleSegment("glance_left", "glance", _glance("glance_left", -right, 0.0)),
        IdleSegment("glance_right", "glance", _glance("glance_right", right, 0.0)),
        IdleSegment("double_blink", "blink", Gesture("double_blink", _blinks(2), 2 * one_blink + DOUBLE_BLINK_GAP_MS)),
        IdleSegment("breath", "breath", _breath()),
        IdleSegment("glance_up", "glance", _glance("glance_up", 0.0, GLANCE_UP_Y)),
        IdleSegment("head_tilt", "tilt", _tilt()),
        IdleSegment("look_away", "look_away", _look_away()),
    ]


# ---------------------------------------------------------------------- schedule
BLINK_INTERVAL_S: tuple[float, float] = (2.0, 6.0)
"""Start-to-start interval between blink events: uniform on this range (seconds)."""
DOUBLE_BLINK_PROBABILITY = 0.15
"""Share of blink events that are double blinks."""
MOTION_MARGIN_S = 0.15
"""Base pose held at least this long before and after the segment placed between two blinks."""
SCHEDULE_S = 300.0
"""Default schedule length (5 minutes)."""
MOTION_WEIGHTS: Mapping[str, float] = {
    "still": 2.0,
    "glance_left": 1.5,
    "glance_right": 1.5,
    "glance_up": 1.0,
    "breath": 1.0,
    "head_tilt": 0.8,
    "look_away": 0.8,
}
"""Relative odds of the segment placed between two blink events (among those that fit)."""
BLINK_IDS = ("blink", "double_blink")
FNV_OFFSET = 0x811C9DC5
"""FNV-1a 32-bit offset basis."""
FNV_PRIME = 0x01000193
"""FNV-1a 32-bit prime."""
UINT32 = 0xFFFFFFFF
MULBERRY_INCREMENT = 0x6D2B79F5
"""The additive constant of the Mulberry32 generator."""


class Mulberry32:
    """A tiny 32-bit random generator (Mulberry32) whose every step a page can repeat in JavaScript.

    ``next()`` gives a float in [0, 1) from 32 bits; all arithmetic is modulo 2**32.
    """

    def __init__(self, seed: int) -> None:
        self.state = seed & UINT32

    def next(self) -> float:
        self.state = (self.state + MULBERRY_INCREMENT) & UINT32
        z = self.state
        z = ((z ^ (z >> 15)) * (z | 1)) & UINT32
        z ^= (z + (((z ^ (z >> 7)) * (z | 61)) & UINT32)) & UINT32
        return ((z ^ (z >> 14)) & UINT32) / 2**32

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.next()


@dataclass(frozen=True)
class ScheduleItem:
    """Play ``segment`` starting at ``start_s`` (seconds from the schedule's start); base pose held between items."""

    segment: str
    start_s: float

    def to_json(self) -> dict[str, object]:
        return {"segment": self.segment, "start_s": round(self.start_s, 3)}


def idle_schedule(seed: int, durations_s: Mapping[str, float], length_s: float = SCHEDULE_S) -> list[ScheduleItem]:
    """A seeded idle schedule covering ``length_s`` seconds (rules in the module docstring).

    ``durations_s``: each segment's duration by id; it must hold ``blink`` and ``still``, and may hold
    ``double_blink`` and the motions of :data:`MOTION_WEIGHTS` (missing ones are never chosen).
    """
    if "blink" not in durations_s or "still" not in durations_s:
        raise ValueError("an idle schedule needs the 'blink' and 'still' segments")
    rng = Mulberry32(seed)
    items: list[ScheduleItem] = []
    t = rng.uniform(0.5, BLINK_INTERVAL_S[0])  # the first blink comes soon
    last_motion: str | None = None
    while t < length_s:
        double = "double_blink" in durations_s and rng.next() < DOUBLE_BLINK_PROBABILITY
        blink = "double_blink" if double else "blink"
        items.append(ScheduleItem(blink, t))
        blink_end = t + durations_s[blink]
        t_next = t + rng.uniform(*BLINK_INTERVAL_S)
        room = t_next - blink_end - 2 * MOTION_MARGIN_S
        fits = [m for m in MOTION_WEIGHTS if m in durations_s and m != last_motion and durations_s[m] <= room]
        if fits:
            motion = _weighted(rng, fits)
            slack = room - durations_s[motion]
            items.append(ScheduleItem(motion, blink_end + MOTION_MARGIN_S + rng.uniform(0.0, slack)))
            last_motion = motion
        t = t_next
    return items


def _weighted(rng: Mulberry32, names: Sequence[str]) -> str:
    total = sum(MOTION_WEIGHTS[n] for n in names)
    pick = rng.next() * total
    for name in names:
        pick -= MOTION_WEIGHTS[name]
        if pick < 0:
            return name
    return names[-1]


def schedule_seed(text: str) -> int:
    """A stable 32-bit seed from a string (a session id): FNV-1a."""
    h = FNV_OFFSET
    for byte in text.encode("utf-8"):
        h = ((h ^ byte) * FNV_PRIME) & UINT32
    return h


# ---------------------------------------------------------------------- gaze atlas
GAZE_COLS = 5
GAZE_ROWS = 3
GAZE_X_MAX = 18.0
"""``eyeball_x`` of the outer columns (slider units; the look presets go to 22)."""
GAZE_Y_MAX = 12.0
"""``eyeball_y`` of the top and bottom rows (slider units, > 0 looks up)."""
GAZE_HEAD_YAW_PER_X = 0.3
"""Degrees of head yaw per slider unit of ``eyeball_x``: the head turns a fraction of the gaze."""
GAZE_HEAD_PITCH_PER_Y = 0.3
"""Degrees of head pitch per slider unit of ``eyeball_y``."""


def gaze_axes(cols: int = GAZE_COLS, rows: int = GAZE_ROWS) -> tuple[list[float], list[float]]:
    """The atlas grid: ``eyeball_x`` per column (screen left to right), ``eyeball_y`` per row (top to bottom)."""
    xs = [GAZE_X_MAX * GAZE_SCREEN_RIGHT * (2 * c / (cols - 1) - 1) for c in range(cols)]
    ys = [GAZE_Y_MAX * (1 - 2 * r / (rows - 1)) for r in range(rows)]
    return xs, ys


def gaze_offsets(x: float, y: float) -> dict[str, float]:
    """Parameter offsets of one atlas cell: the gaze and a small matching head turn."""
    return {
        "eyeball_x": x,
        "eyeball_y": y,
        "head_yaw": GAZE_HEAD_YAW_PER_X * x * GAZE_SCREEN_RIGHT * YAW_SCREEN_RIGHT,
        "head_pitch": -GAZE_HEAD_PITCH_PER_Y * y * PITCH_DOWN,
    }
