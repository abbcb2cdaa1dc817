"""Keyframe timelines over the 17 editing parameters.

Vocabulary
----------
* A :class:`Keyframe` is a time (ms, relative to the start of its motion) and a
  *partial* parameter set: only the parameters it names are keyed there. Each
  parameter is interpolated between the keyframes that name it, with the easing
  of the keyframe the segment arrives at (smoothstep unless told otherwise).
* Keyframe values are **offsets from the base pose** (see :func:`resolve_base`):
  a plain number is added to the base value, :class:`Rel` is a fraction of the
  base value (``eye_ratio: Rel(-1.0)`` closes the eyes whatever their size) and
  :class:`Abs` is an absolute target (converted to an offset when sampled).
* A :class:`Gesture` is one named movement (a preset at some intensity/speed, a
  pose sequence, idle liveliness). Every parameter it touches starts at offset 0
  at ``t = 0`` and is back to 0 at ``t = duration_ms``, so a motion always starts
  and ends exactly at the base pose.
* A :class:`Timeline` places motions (:class:`Step`) on a clock. Overlapping
  steps are *layers*: their offsets add, and the sum is clamped to each
  parameter's valid range (:data:`lpstudio.params.PARAM_SPECS`).

Sampling a timeline at any fps gives one :class:`~lpstudio.params.EditParams`
per frame; the first and the last frame are exactly the base pose.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import numpy as np

from ..errors import CommandError

# Nominal base ratios used when there is no source photo (``say --dry-run``):
# a typical open-eyed portrait has an eyes-open ratio of about 0.35, and a
# closed mouth a lip-open ratio of 0.
from ..keypoints import NOMINAL_EYE_RATIO, NOMINAL_LIP_RATIO  # noqa: E402  (re-exported)
from ..params import PARAM_NAMES, PARAM_SPECS, SPECS_BY_NAME, EditParams, unknown_param_error
from ..video import MAX_FPS  # noqa: E402  (the one frame-rate cap)

DEFAULT_FPS: float = 25.0
# Frame times closer than this to the end are merged into the final frame.
_TIME_EPS_MS: float = 1e-6


class Easing(str, Enum):
    """How a segment between two keyframes is traversed."""

    SMOOTHSTEP = "smoothstep"
    LINEAR = "linear"
    EASE_IN = "ease_in"
    """Cubic ease-in: starts slowly, arrives fast (a blink closing)."""
    EASE_OUT = "ease_out"
    """Cubic ease-out: leaves fast, arrives softly (a blink opening)."""
    EASE_IN_OUT = "ease_in_out"
    """Cubic ease-in-out: a stronger smoothstep."""


def ease(easing: Easing | str, u: np.ndarray | float) -> np.ndarray:
    """Map segment progress ``u`` in [0, 1] to eased progress in [0, 1] (exact at both ends)."""
    e = Easing(easing)
    x = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    if e is Easing.LINEAR:
        return x
    if e is Easing.SMOOTHSTEP:
        return x * x * (3.0 - 2.0 * x)
    if e is Easing.EASE_IN:
        return x**3
    if e is Easing.EASE_OUT:
        return 1.0 - (1.0 - x) ** 3
    return np.where(x < 0.5, 4.0 * x**3, 1.0 - (-2.0 * x + 2.0) ** 3 / 2.0)


@dataclass(frozen=True)
class Rel:
    """An offset given as a fraction of the base value (``Rel(-1)`` = down to 0)."""

    factor: float


@dataclass(frozen=True)
class Abs:
    """An absolute target value; ``weight`` (intensity) scales the way there."""

    value: float
    weight: float = 1.0


Value = float | Rel | Abs


def offset_of(value: Value, base_value: float) -> float:
    """The additive offset that ``value`` means on top of ``base_value``."""
    if isinstance(value, Rel):
        return value.factor * base_value
    if isinstance(value, Abs):
        return value.weight * (value.value - base_value)
    return float(value)


def scale_value(value: Value, k: float) -> Value:
    """``value`` with its strength multiplied by ``k``."""
    if isinstance(value, Rel):
        return Rel(value.factor * k)
    if isinstance(value, Abs):
        return Abs(value.value, value.weight * k)
    return float(value) * k


def _value_json(value: Value) -> Any:
    if isinstance(value, Rel):
        return {"rel": round(value.factor, 6)}
    if isinstance(value, Abs):
        return {"abs": round(value.value, 6), "weight": round(value.weight, 6)}
    return round(float(value), 6)


def _is_zero(value: Value) -> bool:
    if isinstance(value, Rel):
        return value.factor == 0.0
    if isinstance(value, Abs):
        return value.weight == 0.0
    return float(value) == 0.0


def _check_name(name: str) -> None:
    if name not in SPECS_BY_NAME:
        raise unknown_param_error(name)


@dataclass(frozen=True)
class Keyframe:
    """Parameter offsets keyed at ``t_ms``; ``easing`` shapes the segment arriving here."""

    t_ms: float
    values: Mapping[str, Value]
    easing: Easing = Easing.SMOOTHSTEP

    def __post_init__(self) -> None:
        if not math.isfinite(self.t_ms) or self.t_ms < 0:
            raise CommandError(f"keyframe time must be a finite number of ms >= 0, got {self.t_ms!r}")
        for name in self.values:
            _check_name(name)
        object.__setattr__(self, "values", dict(self.values))
        object.__setattr__(self, "easing", Easing(self.easing))


@dataclass(frozen=True)
class _Track:
    times: np.ndarray
    values: tuple[Value, ...]
    easings: tuple[Easing, ...]  # easings[i] shapes segment (i-1 -> i); easings[0] unused


class Gesture:
    """One named movement made of keyframes; starts and ends at offset 0 (the base pose).

    ``apex_ms`` is when the expression is fully reached and ``release_ms`` when
    it starts going back; layering uses them to time a second motion over this
    one and :meth:`with_hold` to hold it longer.
    """

    def __init__(
        self,
        name: str,
        keyframes: Iterable[Keyframe],
        duration_ms: float | None = None,
        *,
        apex_ms: float | None = None,
        release_ms: float | None = None,
        return_easing: Easing = Easing.SMOOTHSTEP,
    ) -> None:
        kfs = sorted(keyframes, key=lambda k: k.t_ms)
        last = kfs[-1].t_ms if kfs else 0.0
        self.name = name
        self.keyframes: tuple[Keyframe, ...] = tuple(kfs)
        self.duration_ms: float = float(last if duration_ms is None else duration_ms)
        if self.duration_ms < last:
            raise CommandError(f"motion {name!r}: duration {self.duration_ms:g} ms ends before its last keyframe")
        self.apex_ms: float = float(self.duration_ms / 2 if apex_ms is None else apex_ms)
        self.release_ms: float = float(self.apex_ms if release_ms is None else release_ms)
        self.return_easing = Easing(return_easing)
        self._tracks = self._build_tracks()

    def _build_tracks(self) -> dict[str, _Track]:
        per: dict[str, list[tuple[float, Value, Easing]]] = {}
        for kf in self.keyframes:
            for name, value in kf.values.items():
                per.setdefault(name, []).append((kf.t_ms, value, kf.easing))
        tracks: dict[str, _Track] = {}
        for name, pts in per.items():
            points: list[tuple[float, Value, Easing]] = []
            if pts[0][0] > 0.0:
                points.append((0.0, 0.0, Easing.SMOOTHSTEP))
            elif not _is_zero(pts[0][1]):
                raise CommandError(f"motion {self.name!r}: {name} must start at offset 0 (the base pose)")
            points.extend(pts)
            if points[-1][0] < self.duration_ms:
                points.append((self.duration_ms, 0.0, self.return_easing))
            elif not _is_zero(points[-1][1]):
                raise CommandError(f"motion {self.name!r}: {name} must end at offset 0 (the base pose)")
            tracks[name] = _Track(
                np.array([p[0] for p in points], dtype=np.float64),
                tuple(p[1] for p in points),
                tuple(p[2] for p in points),
            )
        return tracks

    @property
    def params(self) -> frozenset[str]:
        """Names of the parameters this motion moves."""
        return frozenset(self._tracks)

    def offsets(self, t_ms: np.ndarray | float, base: Mapping[str, float]) -> dict[str, np.ndarray]:
        """Offsets of every moved parameter at times ``t_ms`` (outside [0, duration]: 0)."""
        t = np.atleast_1d(np.asarray(t_ms, dtype=np.float64))
        out: dict[str, np.ndarray] = {}
        for name, tr in self._tracks.items():
            vals = np.array([offset_of(v, base[name]) for v in tr.values], dtype=np.float64)
            res = np.zeros_like(t)
            inside = (t >= 0.0) & (t <= self.duration_ms)
            ti = t[inside]
            idx = np.clip(np.searchsorted(tr.times, ti, side="right") - 1, 0, len(tr.times) - 2)
            t0, t1 = tr.times[idx], tr.times[idx + 1]
            span = np.where(t1 > t0, t1 - t0, 1.0)
            u = np.where(t1 > t0, (ti - t0) / span, 1.0)
            eased = np.empty_like(u)
            for j in np.unique(idx):
                sel = idx == j
                eased[sel] = ease(tr.easings[j + 1], u[sel])
            seg = vals[idx] + (vals[idx + 1] - vals[idx]) * eased
            # exact values on keyframes (the base pose at both ends is exact)
            on_next = u >= 1.0
            seg[on_next] = vals[idx + 1][on_next]
            res[inside] = seg
            out[name] = res
        return out

    def scaled(self, intensity: float = 1.0, speed: float = 1.0, name: str | None = None) -> Gesture:
        """A copy with every offset times ``intensity`` and every time divided by ``speed``."""
        if not (intensity >= 0 and math.isfinite(intensity)):
            raise CommandError(f"intensity must be a finite number >= 0, got {intensity!r}")
        if not (speed > 0 and math.isfinite(speed)):
            raise CommandError(f"speed must be a finite number > 0, got {speed!r}")
        kfs = [
            Keyframe(k.t_ms / speed, {n: scale_value(v, intensity) for n, v in k.values.items()}, k.easing)
            for k in self.keyframes
        ]
        return Gesture(
            name or self.name,
            kfs,
            self.duration_ms / speed,
            apex_ms=self.apex_ms / speed,
            release_ms=self.release_ms / speed,
            return_easing=self.return_easing,
        )

    def with_hold(self, extra_ms: float) -> Gesture:
        """A copy held ``extra_ms`` longer at its apex.

        Keyframes from ``release_ms`` on move ``extra_ms`` later; a keyframe at
        exactly ``release_ms`` is kept there too, so the pose it keys is held.
        """
        if extra_ms <= 0:
            return self
        kfs: list[Keyframe] = []
        for k in self.keyframes:
            if k.t_ms >= self.release_ms and k.t_ms > 0:
                if k.t_ms == self.release_ms:
                    kfs.append(k)
                    kfs.append(Keyframe(k.t_ms + extra_ms, k.values, Easing.LINEAR))
                else:
                    kfs.append(Keyframe(k.t_ms + extra_ms, k.values, k.easing))
            else:
                kfs.append(k)
        return Gesture(
            self.name,
            kfs,
            self.duration_ms + extra_ms,
            apex_ms=self.apex_ms,
            release_ms=self.release_ms + extra_ms,
            return_easing=self.return_easing,
        )

    def describe(self) -> dict[str, Any]:
        """JSON-friendly keyframes (for ``--json`` output and cache keys)."""
        return {
            "name": self.name,
            "duration_ms": round(self.duration_ms, 3),
            "keyframes": [
                {
                    "t_ms": round(k.t_ms, 3),
                    "easing": k.easing.value,
                    "values": {n: _value_json(v) for n, v in sorted(k.values.items())},
                }
                for k in self.keyframes
            ],
        }

    def __repr__(self) -> str:
        return f"Gesture({self.name!r}, {len(self.keyframes)} keyframes, {self.duration_ms:g} ms)"


@dataclass(frozen=True)
class Step:
    """A gesture placed on a timeline.

    ``preset`` is the preset (or ``"pose"``, ``"idle"``...) it came from,
    ``layer`` 0 for the main sequence, 1+ for motions layered over it and -1 for
    idle liveliness; ``intensity`` and ``speed`` are what the motion was built with.
    """

    gesture: Gesture
    start_ms: float
    preset: str
    layer: int = 0
    intensity: float = 1.0
    speed: float = 1.0
    text: str = ""

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.gesture.duration_ms

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "preset": self.preset,
            "start_ms": round(self.start_ms, 3),
            "end_ms": round(self.end_ms, 3),
            "layer": self.layer,
            "intensity": round(self.intensity, 4),
            "speed": round(self.speed, 4),
            "params": sorted(self.gesture.params),
        }
        if self.text:
            out["text"] = self.text
        return out


def resolve_base(base: EditParams | Mapping[str, float | None] | None = None) -> dict[str, float]:
    """All 17 base values as numbers: missing ratios take the nominal constants.

    Pass ``state.neutral_params()`` for a real source (its own ratios), or
    nothing for the nominal base used by ``say --dry-run``.
    """
    if base is None:
        values: dict[str, float | None] = EditParams().as_dict()
    elif isinstance(base, EditParams):
        values = base.as_dict()
    else:
        values = EditParams.from_mapping(base).as_dict()
    out: dict[str, float] = {}
    for spec in PARAM_SPECS:
        v = values[spec.name]
        if v is None:
            v = NOMINAL_EYE_RATIO if spec.name == "eye_ratio" else NOMINAL_LIP_RATIO
        out[spec.name] = float(v)
    return out


class Timeline:
    """Motions placed in time; sampled into per-frame :class:`EditParams`.

    Build one with :meth:`single`, then combine with :meth:`then` (one after the
    other) and :meth:`over` (layered: offsets add, the sum is clamped).
    """

    def __init__(self, steps: Iterable[Step] = (), duration_ms: float | None = None) -> None:
        self.steps: tuple[Step, ...] = tuple(sorted(steps, key=lambda s: (s.start_ms, s.layer)))
        for s in self.steps:
            if s.start_ms < 0:
                raise CommandError(f"step {s.preset!r} starts before 0 ms")
        end = max((s.end_ms for s in self.steps), default=0.0)
        self.duration_ms: float = float(end if duration_ms is None else max(end, duration_ms))

    @classmethod
    def single(
        cls,
        gesture: Gesture,
        preset: str | None = None,
        *,
        intensity: float = 1.0,
        speed: float = 1.0,
        text: str = "",
    ) -> Timeline:
        """A timeline of one gesture starting at 0."""
        return cls([Step(gesture, 0.0, preset or gesture.name, 0, intensity, speed, text)])

    def shifted(self, dt_ms: float, layer_offset: int = 0) -> Timeline:
        """The same steps, ``dt_ms`` later (and ``layer_offset`` higher, idle stays -1)."""
        return Timeline(
            [
                Step(
                    s.gesture,
                    s.start_ms + dt_ms,
                    s.preset,
                    s.layer + layer_offset if s.layer >= 0 else s.layer,
                    s.intensity,
                    s.speed,
                    s.text,
                )
                for s in self.steps
            ],
            self.duration_ms + dt_ms if self.steps or self.duration_ms else None,
        )

    def then(self, other: Timeline, gap_ms: float = 0.0) -> Timeline:
        """``other`` played after this one (``gap_ms`` of base pose in between)."""
        if not self.steps and self.duration_ms == 0:
            return other
        return Timeline(
            self.steps + other.shifted(self.duration_ms + gap_ms).steps,
            self.duration_ms + gap_ms + other.duration_ms,
        )

    def over(self, other: Timeline, at_ms: float = 0.0) -> Timeline:
        """``other`` layered on top of this one, starting at ``at_ms``."""
        top = max((s.layer for s in self.steps), default=-1)
        moved = other.shifted(at_ms, layer_offset=top + 1)
        return Timeline(self.steps + moved.steps, max(self.duration_ms, moved.duration_ms))

    def padded(self, tail_ms: float) -> Timeline:
        """The same timeline with ``tail_ms`` of base pose at the end."""
        return Timeline(self.steps, self.duration_ms + max(0.0, tail_ms))

    # -- sampling ---------------------------------------------------------
    def frame_times(self, fps: float = DEFAULT_FPS) -> np.ndarray:
        """Frame times in ms: every ``1000/fps`` ms, and a last frame exactly at the end."""
        check_fps(fps)
        step = 1000.0 / fps
        n = int(math.ceil(self.duration_ms / step - 1e-9))
        times = np.arange(n + 1, dtype=np.float64) * step
        times[-1] = self.duration_ms
        return times

    def frame_count(self, fps: float = DEFAULT_FPS) -> int:
        """How many frames :meth:`sample` gives at ``fps`` (first and last at the base pose)."""
        return len(self.frame_times(fps))

    def sample_array(
        self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, float | None] | None = None
    ) -> np.ndarray:
        """Frames as a ``(n_frames, 17)`` float array in :data:`PARAM_NAMES` order, clamped to range."""
        return self.sample_at(self.frame_times(fps), base)

    def sample_at(
        self, times_ms: np.ndarray, base: EditParams | Mapping[str, float | None] | None = None
    ) -> np.ndarray:
        """The parameters at arbitrary times (ms): ``(len(times_ms), 17)``, offsets added to the base, clamped."""
        b = resolve_base(base)
        times = np.asarray(times_ms, dtype=np.float64)
        total = np.tile(np.array([b[n] for n in PARAM_NAMES], dtype=np.float64), (len(times), 1))
        col = {n: i for i, n in enumerate(PARAM_NAMES)}
        for s in self.steps:
            for name, off in s.gesture.offsets(times - s.start_ms, b).items():
                total[:, col[name]] += off
        lo = np.array([spec.minimum for spec in PARAM_SPECS])
        hi = np.array([spec.maximum for spec in PARAM_SPECS])
        return np.clip(total, lo, hi)

    def sample(
        self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, float | None] | None = None
    ) -> list[EditParams]:
        """One :class:`EditParams` per frame; the first and last equal the base exactly."""
        arr = self.sample_array(fps, base)
        return [EditParams(**dict(zip(PARAM_NAMES, map(float, row), strict=True))) for row in arr]

    def to_json(
        self,
        fps: float = DEFAULT_FPS,
        base: EditParams | Mapping[str, float | None] | None = None,
        *,
        decimals: int = 5,
    ) -> dict[str, Any]:
        """``{"fps", "duration_ms", "n_frames", "base", "steps": [...], "frames": [{param: value}]}``."""
        arr = self.sample_array(fps, base)
        frames = [{n: round(float(v), decimals) for n, v in zip(PARAM_NAMES, row, strict=True)} for row in arr]
        return {
            "fps": fps,
            "duration_ms": round(self.duration_ms, 3),
            "n_frames": len(frames),
            "base": resolve_base(base),
            "steps": [s.to_json() for s in self.steps],
            "frames": frames,
        }

    def key(self, fps: float = DEFAULT_FPS, base: EditParams | Mapping[str, float | None] | None = None) -> str:
        """A stable digest of what this timeline renders to (for caches)."""
        payload = {
            "fps": fps,
            "base": resolve_base(base),
            "duration_ms": round(self.duration_ms, 3),
            "steps": [{"start_ms": round(s.start_ms, 3), "motion": s.gesture.describe()} for s in self.steps],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def main_steps(self) -> list[Step]:
        """Steps that are not idle liveliness."""
        return [s for s in self.steps if s.layer >= 0]

    def __repr__(self) -> str:
        names = ", ".join(f"{s.preset}@{s.start_ms:g}" for s in self.steps)
        return f"Timeline([{names}], {self.duration_ms:g} ms)"


def check_fps(fps: float) -> None:
    """Raise :class:`CommandError` unless ``fps`` is a finite number in (0, :data:`MAX_FPS`]."""
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise CommandError(f"fps must be a number in (0, {MAX_FPS:g}], got {fps!r}")


def sequence(timelines: Sequence[Timeline], gap_ms: float = 0.0) -> Timeline:
    """Timelines one after the other."""
    out = Timeline()
    for tl in timelines:
        out = out.then(tl, gap_ms)
    return out
