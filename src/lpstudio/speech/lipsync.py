"""Mouth targets -> a smooth mouth track -> timeline motions over the official lip parameters.

Pipeline (both for phonemes from eSpeak and for the audio analyser):

1. **Targets** on a regular grid of :data:`STEP_MS`: one :class:`~.visemes.MouthShape` per instant, as
   four channels (open, round, spread, pout) in [0, 1]. For phonemes: each phoneme's viseme over its
   interval; transparent consonants (h, k, g) take the next vowel's lip shape with the jaw partly
   open; a vowel's opening is scaled by its loudness (:func:`loudness_gains`).
2. **Look-ahead**: targets are moved :data:`LOOKAHEAD_MS` earlier for what comes and
   :data:`RELEASE_LEAD_MS` for what ends (the larger of the two moved copies), so the mouth shapes
   a vowel slightly before it sounds (lips move ahead of the sound in natural speech) and keeps it
   almost to its end.
3. **Co-articulation**: each channel follows its target through a one-pole filter whose time
   constant depends on the direction: :data:`ATTACK_MS` when the value grows, :data:`RELEASE_MS`
   when it shrinks (both are 10-90 % rise times). Neighbouring phonemes therefore blend.
4. **Bilabial closure** (m/b/p, ㅁ/ㅂ/ㅍ): a closure weight that is exactly 1 over the middle of each
   bilabial (at least :data:`CLOSURE_MIN_MS` wide, so a frame at 25 fps always lands in it), with
   raised-cosine ramps of :data:`CLOSURE_RAMP_MS`. Where it is 1 the lips are pressed shut
   whatever the smoothing says.
5. **Parameters** (offsets from the base pose): ``lip_variation_three`` and ``lip_ratio`` from
   ``open`` (and ``lip_variation_three`` = :data:`CLOSED_SLIDER` when closed), ``lip_variation_one``
   from ``round`` (negative = pursed), ``lip_variation_two`` and a little ``smile`` from ``spread``,
   ``lip_variation_zero`` from ``pout``. The closure also takes ``lip_ratio`` to 0 (an
   :class:`~lpstudio.expressions.timeline.Abs` target), so a source photo with an open mouth closes too.

The track becomes :class:`~lpstudio.expressions.timeline.Gesture` objects with a keyframe every
:data:`KEY_STEP_MS` (linear in between), which start and end at the base pose like every motion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..expressions.timeline import Abs, Easing, Gesture, Keyframe
from .espeak import Phoneme
from .visemes import CHANNELS, TRANSPARENT_OPEN, MouthShape, Role, Viseme, viseme_of

STEP_MS: float = 5.0
"""Grid of the mouth track (200 Hz)."""
KEY_STEP_MS: float = 10.0
"""One keyframe every this many ms in the mouth motions."""
LOOKAHEAD_MS: float = 50.0
"""Onsets lead the sound by this much (with the filter's lag, an opening is half-way ~35 ms early)."""
RELEASE_LEAD_MS: float = 15.0
"""Offsets lead the sound by only this much: a vowel keeps its shape nearly to its end."""
ATTACK_MS: float = 45.0
"""10-90 % rise time of a channel moving up (the mouth opening, the lips rounding)."""
RELEASE_MS: float = 55.0
"""10-90 % fall time of a channel moving down (the mouth closing)."""
_RISE_PER_TAU: float = math.log(9.0)
"""A one-pole filter goes from 10 % to 90 % in ln(9) time constants."""
CLOSURE_MIN_MS: float = 40.0
"""Shortest full closure of the lips on a bilabial (one frame at 25 fps)."""
CLOSURE_FRACTION: float = 0.5
"""Fraction of a bilabial's interval, around its middle, in which the lips are fully closed."""
CLOSURE_RAMP_MS: float = 35.0
"""Raised-cosine ramps into and out of a closure."""
END_FADE_MS: float = 80.0
"""The mouth returns to the base pose over the last this-many ms of a track (when still open)."""

# Mapping to the official parameters (offsets). Ranges in lpstudio.params.PARAM_SPECS; the scale of
# the opening matches the 'talk', 'big_laugh' and 'surprise' presets (lip_ratio ~0.3, slider ~25-30).
OPEN_SLIDER: float = 28.0
"""``lip_variation_three`` at ``open`` = 1 (a wide '아')."""
OPEN_RATIO: float = 0.3
"""``lip_ratio`` offset at ``open`` = 1."""
CLOSED_SLIDER: float = -12.0
"""``lip_variation_three`` with the lips pressed shut (m/b/p)."""
ROUND_SLIDER: float = 10.0
"""``lip_variation_one`` = -round x this (negative is pursed, as in the kiss preset)."""
SPREAD_SLIDER: float = 5.0
"""``lip_variation_two`` (grin) at ``spread`` = 1."""
SPREAD_SMILE: float = 0.1
"""``smile`` at ``spread`` = 1 (the corners pull back a little on '이', "ee")."""
POUT_SPAN: float = 0.012
"""``lip_variation_zero`` at ``pout`` = 1 (kept small: it moves a lip keypoint sideways)."""

MOUTH_PARAMS: tuple[str, ...] = (
    "lip_variation_three",
    "lip_ratio",
    "lip_variation_one",
    "lip_variation_two",
    "smile",
    "lip_variation_zero",
)

DIPHTHONG_SPLIT: float = 0.55
"""A diphthong holds its first shape over this fraction of its interval, then glides to the second."""
DIPHTHONG_MIN_FIRST_MS: float = 60.0
"""...but over at least this long (a short diphthong hardly reaches its glide)."""
CONSONANT_ROUND_SHARE: float = 0.6
"""A consonant takes this share of the next vowel's rounding and pout (anticipatory rounding)."""
BILABIAL_SPREAD_SHARE: float = 0.5
"""Closed lips take this share of the next vowel's spread."""

# Loudness scaling of vowel openings.
LOUDNESS_REFERENCE_PERCENTILE: float = 90.0
LOUDNESS_RANGE_DB: float = 24.0
"""A vowel this many dB below the reference loudness would have no opening (clipped at GAIN_MIN)."""
GAIN_MIN: float = 0.55
GAIN_MAX: float = 1.1
_DB_FLOOR: float = -120.0


@dataclass(frozen=True)
class MouthTrack:
    """The mouth over time: ``values`` ``(n, 4)`` (open, round, spread, pout) in [0, 1] and ``closure``
    ``(n,)`` in [0, 1], sampled every ``step_ms`` from t = 0 (sample ``i`` is at ``i * step_ms``)."""

    step_ms: float
    values: np.ndarray
    closure: np.ndarray
    duration_ms: float

    def times(self) -> np.ndarray:
        return np.arange(len(self.closure), dtype=np.float64) * self.step_ms

    def at(self, t_ms: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """``(values (m, 4), closure (m,))`` linearly interpolated at ``t_ms``."""
        t = np.atleast_1d(np.asarray(t_ms, dtype=np.float64))
        grid = self.times()
        vals = np.stack([np.interp(t, grid, self.values[:, c]) for c in range(self.values.shape[1])], axis=1)
        return vals, np.interp(t, grid, self.closure)

    def offsets(self) -> dict[str, np.ndarray]:
        """Per-sample offsets of the mouth parameters (without the ``lip_ratio`` closure, see :func:`mouth_motions`)."""
        return parameter_offsets(self.values, self.closure)


def parameter_offsets(values: np.ndarray, closure: np.ndarray) -> dict[str, np.ndarray]:
    """Mouth channels ``(n, 4)`` and closure weight ``(n,)`` -> offsets of the mouth parameters ``{name: (n,)}``."""
    opened = values[:, 0] * (1.0 - closure)
    return {
        "lip_variation_three": opened * OPEN_SLIDER + closure * CLOSED_SLIDER,
        "lip_ratio": opened * OPEN_RATIO,
        "lip_variation_one": -values[:, 1] * ROUND_SLIDER,
        "lip_variation_two": values[:, 2] * SPREAD_SLIDER,
        "smile": values[:, 2] * SPREAD_SMILE,
        "lip_variation_zero": values[:, 3] * POUT_SPAN,
    }


def grid_size(duration_ms: float, step_ms: float = STEP_MS) -> int:
    """Samples of a track of ``duration_ms`` (the last one at or after the end)."""
    return int(math.ceil(duration_ms / step_ms - 1e-9)) + 1


def loudness_gains(
    audio: np.ndarray, sample_rate: int, phonemes: Sequence[Phoneme], *, only_vowels: bool = True
) -> list[float]:
    """One opening gain per phoneme from the RMS level of the audio over its interval.

    The reference is the :data:`LOUDNESS_REFERENCE_PERCENTILE` of the vowels' levels; a vowel at the
    reference gets 1, quieter ones less (down to :data:`GAIN_MIN`), louder ones up to :data:`GAIN_MAX`.
    Non-vowels get 1.
    """
    levels: list[float | None] = []
    for p in phonemes:
        if only_vowels and viseme_of(p.ipa).role is not Role.VOWEL:
            levels.append(None)
            continue
        a = int(p.start_ms * sample_rate / 1000.0)
        b = max(a + 1, int(p.end_ms * sample_rate / 1000.0))
        seg = audio[a:b]
        rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if len(seg) else 0.0
        levels.append(20.0 * math.log10(rms) if rms > 0 else _DB_FLOOR)
    known = [v for v in levels if v is not None and v > _DB_FLOOR]
    if not known:
        return [1.0] * len(phonemes)
    ref = float(np.percentile(known, LOUDNESS_REFERENCE_PERCENTILE))
    return [
        1.0 if v is None else float(np.clip(1.0 + (v - ref) / LOUDNESS_RANGE_DB, GAIN_MIN, GAIN_MAX)) for v in levels
    ]


def _next_vowel(visemes: Sequence[Viseme], i: int) -> int | None:
    for j in range(i + 1, len(visemes)):
        role = visemes[j].role
        if role is Role.VOWEL:
            return j
        if role is Role.PAUSE:
            return None
    return None


def phoneme_targets(
    phonemes: Sequence[Phoneme],
    duration_ms: float,
    gains: Sequence[float] | None = None,
    step_ms: float = STEP_MS,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw targets ``(n, 4)`` on the grid (not yet moved earlier) and the closure weight ``(n,)``."""
    n = grid_size(duration_ms, step_ms)
    t = np.arange(n, dtype=np.float64) * step_ms
    targets = np.zeros((n, len(CHANNELS)), dtype=np.float64)
    closure = np.zeros(n, dtype=np.float64)
    visemes = [viseme_of(p.ipa) for p in phonemes]
    g = list(gains) if gains is not None else [1.0] * len(phonemes)
    for i, (p, vis) in enumerate(zip(phonemes, visemes, strict=True)):
        a, b = p.start_ms, p.end_ms
        sel = (t >= a) & (t < b)
        if vis.role is Role.PAUSE:
            continue
        if vis.role is Role.VOWEL:
            shapes = [s.scaled_open(g[i]) for s in vis.shapes]
            if len(shapes) == 1:
                targets[sel] = shapes[0].as_tuple()
            else:  # a diphthong: first shape over the first part, the glide target after
                cut = a + min(b - a, max((b - a) * DIPHTHONG_SPLIT, DIPHTHONG_MIN_FIRST_MS))
                targets[sel & (t < cut)] = shapes[0].as_tuple()
                targets[sel & (t >= cut)] = shapes[1].as_tuple()
            continue
        nxt = _next_vowel(visemes, i)
        ahead = visemes[nxt].shapes[0].scaled_open(g[nxt]) if nxt is not None else None
        if vis.role is Role.TRANSPARENT:
            if ahead is not None:
                targets[sel] = (ahead.open * TRANSPARENT_OPEN, ahead.round, ahead.spread, ahead.pout)
            continue
        if vis.role is Role.BILABIAL:
            # lips close in the shape of the vowel to come ("mu" is rounded while closed)
            if ahead is not None:
                targets[sel] = (0.0, ahead.round, ahead.spread * BILABIAL_SPREAD_SHARE, ahead.pout)
            mid, half = (a + b) / 2.0, max((b - a) * CLOSURE_FRACTION, CLOSURE_MIN_MS) / 2.0
            closure = np.maximum(closure, _plateau(t, mid - half, mid + half, CLOSURE_RAMP_MS))
            continue
        shape = vis.shapes[0]
        if ahead is not None:  # consonants take some of the next vowel's rounding
            share = CONSONANT_ROUND_SHARE
            shape = MouthShape(
                shape.open, max(shape.round, ahead.round * share), shape.spread, max(shape.pout, ahead.pout * share)
            )
        targets[sel] = shape.as_tuple()
    return targets, closure


def _plateau(t: np.ndarray, a: float, b: float, ramp: float) -> np.ndarray:
    """1 on [a, b], raised-cosine ramps of ``ramp`` ms on both sides, 0 elsewhere."""
    w = np.zeros_like(t)
    w[(t >= a) & (t <= b)] = 1.0
    up = (t > a - ramp) & (t < a)
    w[up] = 0.5 - 0.5 * np.cos(np.pi * (t[up] - (a - ramp)) / ramp)
    down = (t > b) & (t < b + ramp)
    w[down] = 0.5 + 0.5 * np.cos(np.pi * (t[down] - b) / ramp)
    return w


def _shifted(targets: np.ndarray, lead_ms: float, step_ms: float) -> np.ndarray:
    k = min(len(targets), int(round(lead_ms / step_ms)))
    if k <= 0:
        return targets
    out = np.empty_like(targets)
    out[: len(targets) - k] = targets[k:]
    out[len(targets) - k :] = targets[-1]
    return out


def lead(
    targets: np.ndarray,
    lead_ms: float = LOOKAHEAD_MS,
    step_ms: float = STEP_MS,
    release_lead_ms: float = RELEASE_LEAD_MS,
) -> np.ndarray:
    """``(n, c)`` targets with onsets ``lead_ms`` and offsets ``release_lead_ms`` earlier (the end is held)."""
    return np.maximum(_shifted(targets, lead_ms, step_ms), _shifted(targets, min(lead_ms, release_lead_ms), step_ms))


def smooth(
    targets: np.ndarray,
    step_ms: float = STEP_MS,
    attack_ms: float = ATTACK_MS,
    release_ms: float = RELEASE_MS,
) -> np.ndarray:
    """Asymmetric one-pole smoothing of ``(n, c)`` targets; the output starts at 0.

    ``attack_ms``/``release_ms`` are the 10-90 % times of a step up/down.
    """
    a_up = 1.0 - math.exp(-step_ms * _RISE_PER_TAU / attack_ms)
    a_down = 1.0 - math.exp(-step_ms * _RISE_PER_TAU / release_ms)
    out = np.zeros_like(targets, dtype=np.float64)
    y = np.zeros(targets.shape[1], dtype=np.float64)
    for i in range(1, len(targets)):
        x = targets[i]
        y = y + np.where(x > y, a_up, a_down) * (x - y)
        out[i] = y
    return out


def end_fade(n: int, step_ms: float = STEP_MS, fade_ms: float = END_FADE_MS) -> np.ndarray:
    """``(n,)`` weights: 1, then down to exactly 0 at the last sample over ``fade_ms`` (smoothstep)."""
    w = np.ones(n)
    k = min(n - 1, int(round(fade_ms / step_ms)))
    if k > 0:
        u = np.linspace(1.0, 0.0, k + 1)
        w[-(k + 1) :] = u * u * (3.0 - 2.0 * u)
    if n:
        w[-1] = 0.0
    return w


def track_from_targets(
    targets: np.ndarray,
    closure: np.ndarray,
    duration_ms: float,
    step_ms: float = STEP_MS,
    lead_ms: float = LOOKAHEAD_MS,
) -> MouthTrack:
    """Look-ahead + co-articulation smoothing + end fade of raw targets -> :class:`MouthTrack`."""
    values = smooth(lead(targets, lead_ms, step_ms), step_ms)
    fade = end_fade(len(values), step_ms)
    values = np.clip(values * fade[:, None], 0.0, 1.0)
    closure = np.clip(closure * fade, 0.0, 1.0)
    if len(closure):
        closure[0] = 0.0
    return MouthTrack(step_ms, values, closure, float(duration_ms))


def phoneme_track(
    phonemes: Sequence[Phoneme],
    duration_ms: float,
    gains: Sequence[float] | None = None,
) -> MouthTrack:
    """The mouth track of timed phonemes (see the module docstring)."""
    targets, closure = phoneme_targets(phonemes, duration_ms, gains)
    return track_from_targets(targets, closure, duration_ms)


def mouth_motions(track: MouthTrack, name: str = "speech") -> list[Gesture]:
    """The track as motions: the mouth parameters (offsets) and the lip-ratio closure (an ``Abs`` target).

    Keyframes every :data:`KEY_STEP_MS`, linear in between; both motions last ``track.duration_ms``
    and start and end at the base pose.
    """
    duration = track.duration_ms
    if duration <= 0:
        return []
    n_keys = int(math.floor(duration / KEY_STEP_MS - 1e-9))
    key_t = np.arange(1, n_keys + 1, dtype=np.float64) * KEY_STEP_MS
    vals, closure = track.at(key_t)
    offs = parameter_offsets(vals, closure)
    mouth = [
        Keyframe(float(t), {p: round(float(offs[p][i]), 5) for p in MOUTH_PARAMS}, Easing.LINEAR)
        for i, t in enumerate(key_t)
    ]
    out = [Gesture(name, mouth, duration, apex_ms=0.0, release_ms=duration, return_easing=Easing.LINEAR)]
    if np.any(closure > 0):
        shut = [
            Keyframe(float(t), {"lip_ratio": Abs(0.0, round(float(w), 5))}, Easing.LINEAR)
            for t, w in zip(key_t, closure, strict=True)
        ]
        out.append(
            Gesture(f"{name}_closure", shut, duration, apex_ms=0.0, release_ms=duration, return_easing=Easing.LINEAR)
        )
    return out
