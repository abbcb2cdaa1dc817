"""Keyframe timelines: easing, start/end at base, ranges, smoothness, layering, sequencing."""

from __future__ import annotations

import numpy as np
import pytest

from lpstudio.errors import CommandError, ParamError
from lpstudio.expressions.presets import PRESETS
from lpstudio.expressions.timeline import (
    NOMINAL_EYE_RATIO,
    Abs,
    Easing,
    Gesture,
    Keyframe,
    Rel,
    Timeline,
    ease,
    resolve_base,
)
from lpstudio.params import PARAM_NAMES, PARAM_SPECS, EditParams

SPANS = np.array([s.maximum - s.minimum for s in PARAM_SPECS])
MAX_STEP_FRACTION_30FPS = 0.25
"""No parameter may move more than this fraction of its range between two frames at 30 fps."""
BASES = [
    None,
    EditParams(eye_ratio=0.28, lip_ratio=0.05),
    EditParams(eye_ratio=0.41, lip_ratio=0.0, smile=0.3, head_yaw=-4.0, mov_z=1.05),
]


def base_row(base: EditParams | None) -> np.ndarray:
    b = resolve_base(base)
    return np.array([b[n] for n in PARAM_NAMES])


@pytest.mark.parametrize("easing", list(Easing))
def test_easing_exact_ends_and_monotonic(easing: Easing) -> None:
    u = np.linspace(0, 1, 101)
    v = ease(easing, u)
    assert v[0] == 0.0 and v[-1] == 1.0
    assert np.all(np.diff(v) >= -1e-12)


def test_easing_shapes_differ() -> None:
    mid = {e: float(ease(e, 0.25)) for e in Easing}
    assert mid[Easing.EASE_IN] < mid[Easing.SMOOTHSTEP] < mid[Easing.LINEAR] < mid[Easing.EASE_OUT]


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("base_i", range(len(BASES)))
def test_preset_starts_and_ends_exactly_at_base(name: str, base_i: int) -> None:
    base = BASES[base_i]
    arr = Timeline.single(PRESETS[name].gesture()).sample_array(25, base)
    row = base_row(base)
    assert np.array_equal(arr[0], row)
    assert np.array_equal(arr[-1], row)
    assert not np.array_equal(arr[len(arr) // 2], row), "the preset must do something"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_in_range_and_smooth(name: str) -> None:
    for intensity in (0.5, 1.0, 2.0):
        arr = Timeline.single(PRESETS[name].gesture(intensity)).sample_array(30, BASES[1])
        lo = np.array([s.minimum for s in PARAM_SPECS])
        hi = np.array([s.maximum for s in PARAM_SPECS])
        assert np.all(arr >= lo) and np.all(arr <= hi)
        step = np.abs(np.diff(arr, axis=0)).max(axis=0) / SPANS
        worst = PARAM_NAMES[int(np.argmax(step))]
        assert step.max() <= MAX_STEP_FRACTION_30FPS * max(1.0, intensity), (
            f"{name} x{intensity}: {worst} jumps {step.max():.2f}"
        )


def test_sample_returns_editparams_with_numeric_ratios() -> None:
    frames = Timeline.single(PRESETS["blink"].gesture()).sample(25)
    assert all(isinstance(f, EditParams) for f in frames)
    assert frames[0].eye_ratio == NOMINAL_EYE_RATIO
    assert min(f.eye_ratio for f in frames) == pytest.approx(0.0, abs=0.03)


@pytest.mark.parametrize("fps,expected", [(25, 26), (30, 31), (24, 25), (7, 8)])
def test_frame_count(fps: float, expected: int) -> None:
    motion = Gesture("m", [Keyframe(500, {"smile": 0.5})], 1000)
    tl = Timeline.single(motion)
    assert tl.frame_count(fps) == expected
    times = tl.frame_times(fps)
    assert times[0] == 0 and times[-1] == 1000
    assert np.all(np.diff(times) > 0) and np.all(np.diff(times) <= 1000 / fps + 1e-9)


def test_partial_keyframes_interpolate_per_parameter() -> None:
    m = Gesture(
        "m",
        [Keyframe(100, {"smile": 1.0}, Easing.LINEAR), Keyframe(300, {"wink": 20.0}, Easing.LINEAR)],
        400,
        return_easing=Easing.LINEAR,
    )
    off = m.offsets(np.array([50.0, 100.0, 150.0, 300.0]), resolve_base(None))
    assert off["smile"].tolist() == pytest.approx([0.5, 1.0, 1.0 - 50 / 300, 1.0 - 200 / 300])
    assert off["wink"][3] == pytest.approx(20.0)
    assert off["wink"][0] == pytest.approx(20.0 * 50 / 300)


def test_rel_and_abs_offsets_follow_the_base() -> None:
    m = Gesture("m", [Keyframe(100, {"eye_ratio": Rel(-1.0), "smile": Abs(0.5)}, Easing.LINEAR)], 200)
    for eye, smile in ((0.2, 0.0), (0.45, 0.3)):
        arr = Timeline.single(m).sample_array(10, EditParams(eye_ratio=eye, lip_ratio=0.0, smile=smile))
        col = {n: i for i, n in enumerate(PARAM_NAMES)}
        assert arr[1, col["eye_ratio"]] == pytest.approx(0.0)
        assert arr[1, col["smile"]] == pytest.approx(0.5)
        assert arr[-1, col["smile"]] == smile


def test_motion_must_start_and_end_at_base() -> None:
    with pytest.raises(CommandError):
        Gesture("bad", [Keyframe(0, {"smile": 0.5}), Keyframe(100, {"smile": 0.0})])
    with pytest.raises(CommandError):
        Gesture("bad", [Keyframe(100, {"smile": 0.5})], 100)
    with pytest.raises(ParamError):
        Keyframe(10, {"smiel": 1.0})
    with pytest.raises(CommandError):
        Keyframe(-5, {"smile": 1.0})


def test_layering_adds_and_clamps() -> None:
    smile = Timeline.single(PRESETS["smile"].gesture())
    blink = Timeline.single(PRESETS["blink"].gesture(2.0))
    both = smile.over(blink, at_ms=800)
    col = {n: i for i, n in enumerate(PARAM_NAMES)}
    a_smile = smile.sample_array(100)
    a_both = both.sample_array(100)
    # t = 880 ms: the blink is closed, the smile still on
    i = 88
    assert a_both[i, col["smile"]] == pytest.approx(a_smile[i, col["smile"]])
    assert a_both[i, col["eye_ratio"]] == 0.0  # clamped at the bottom of the range, not negative
    assert a_smile[i, col["eye_ratio"]] > 0.2
    # additivity away from the clamp: smile + smile = twice the offset (bounded by the range)
    twice = smile.over(smile).sample_array(100)
    k = 100
    assert twice[k, col["smile"]] == pytest.approx(min(1.3, 2 * a_smile[k, col["smile"]]))
    assert both.steps[1].layer == 1


def test_sequence_places_steps_back_to_back() -> None:
    a = Timeline.single(PRESETS["smile"].gesture())
    b = Timeline.single(PRESETS["nod"].gesture())
    seq = a.then(b, gap_ms=100)
    assert [s.preset for s in seq.steps] == ["smile", "nod"]
    assert seq.steps[1].start_ms == pytest.approx(a.duration_ms + 100)
    assert seq.duration_ms == pytest.approx(a.duration_ms + 100 + b.duration_ms)
    arr = seq.sample_array(50)
    gap_frame = int(round((a.duration_ms + 50) / 20))
    assert np.array_equal(arr[gap_frame], base_row(None))


def test_speed_and_intensity_scale() -> None:
    m = PRESETS["smile"].gesture()
    fast = PRESETS["smile"].gesture(1.0, 2.0)
    strong = PRESETS["smile"].gesture(0.5)
    assert fast.duration_ms == pytest.approx(m.duration_ms / 2)
    b = resolve_base(None)
    assert strong.offsets(m.apex_ms, b)["smile"][0] == pytest.approx(0.5 * m.offsets(m.apex_ms, b)["smile"][0])


def test_with_hold_extends_the_apex() -> None:
    m = PRESETS["smile"].gesture()
    held = m.with_hold(1000)
    b = resolve_base(None)
    assert held.duration_ms == m.duration_ms + 1000
    apex = m.offsets(m.release_ms, b)["smile"][0]
    assert held.offsets(m.release_ms + 500, b)["smile"][0] == pytest.approx(apex)
    assert held.offsets(held.duration_ms, b)["smile"][0] == 0.0


def test_to_json_shape() -> None:
    tl = Timeline.single(PRESETS["wink_left"].gesture())
    js = tl.to_json(25)
    assert js["fps"] == 25 and len(js["frames"]) == tl.frame_count(25) == js["n_frames"]
    assert all(set(f) == set(PARAM_NAMES) for f in js["frames"])
    assert js["steps"][0]["preset"] == "wink_left"
    assert js["steps"][0]["end_ms"] == pytest.approx(tl.duration_ms)


def test_key_is_stable_and_sensitive() -> None:
    a = Timeline.single(PRESETS["smile"].gesture())
    assert a.key(25) == Timeline.single(PRESETS["smile"].gesture()).key(25)
    assert a.key(25) != a.key(30)
    assert a.key(25) != Timeline.single(PRESETS["smile"].gesture(0.9)).key(25)
    assert a.key(25) != a.key(25, EditParams(eye_ratio=0.3, lip_ratio=0.0))


def test_bad_fps() -> None:
    tl = Timeline.single(PRESETS["blink"].gesture())
    for fps in (0, -1, float("nan"), 1000):
        with pytest.raises(CommandError):
            tl.frame_count(fps)
