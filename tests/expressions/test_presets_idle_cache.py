"""Presets (names, design properties), idle liveliness and the clip cache."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from lpstudio.errors import CommandError
from lpstudio.expressions.cache import ClipCache, clip_key, source_digest
from lpstudio.expressions.idle import (
    BLINK_INTERVAL_MS,
    idle_gesture,
    idle_timeline,
    with_idle,
)
from lpstudio.expressions.language import parse_command
from lpstudio.expressions.presets import PRESETS, get_preset
from lpstudio.expressions.timeline import Timeline, resolve_base
from lpstudio.params import PARAM_NAMES

REQUIRED = {
    "smile",
    "big_laugh",
    "blink",
    "wink_left",
    "wink_right",
    "talk",
    "surprise",
    "nod",
    "head_shake",
    "look_left",
    "look_right",
    "look_up",
    "frown",
    "angry",
    "sad",
    "pout",
    "kiss",
    "sleepy",
    "doubtful",
}
COL = {n: i for i, n in enumerate(PARAM_NAMES)}


def test_required_presets_with_names() -> None:
    assert len(PRESETS) >= 14
    assert REQUIRED <= set(PRESETS)
    for p in PRESETS.values():
        assert p.names_ko and all(any("\uac00" <= c <= "\ud7a3" for c in n) for n in p.names_ko)
        assert p.names_en and all(n.isascii() for n in p.names_en)
        assert p.description


def test_get_preset_by_any_name() -> None:
    assert get_preset("미소").name == "smile"
    assert get_preset("big laugh").name == "big_laugh"
    assert get_preset("Head-Shake").name == "head_shake"
    with pytest.raises(CommandError) as err:
        get_preset("smiel")
    assert "smile" in (err.value.hint or "")


@pytest.mark.parametrize("bad", [(-0.1, 1.0), (3.0, 1.0), (1.0, 0.0), (1.0, 10.0)])
def test_modifier_limits(bad: tuple[float, float]) -> None:
    with pytest.raises(CommandError):
        PRESETS["smile"].gesture(*bad)


def test_smile_has_anticipation_and_overshoot() -> None:
    arr = Timeline.single(PRESETS["smile"].gesture()).sample_array(100)[:, COL["smile"]]
    assert arr.min() < 0  # dips before rising
    peak = arr.max()
    held = arr[int(PRESETS["smile"].gesture().release_ms / 10) - 1]
    assert peak > held > 0  # overshoots, then settles on the held value


def test_talk_is_syllabic_not_a_sine() -> None:
    lip = Timeline.single(PRESETS["talk"].gesture()).sample_array(100)[:, COL["lip_ratio"]]
    peaks = [i for i in range(1, len(lip) - 1) if lip[i] > lip[i - 1] and lip[i] >= lip[i + 1] and lip[i] > 0.08]
    assert len(peaks) >= 8
    heights = lip[peaks]
    gaps = np.diff(peaks)
    assert heights.std() > 0.03  # varying openness
    assert gaps.std() > 0.5  # varying rhythm (10 ms frames)
    shapes = Timeline.single(PRESETS["talk"].gesture()).sample_array(100)
    assert shapes[:, COL["lip_variation_one"]].min() < -3  # rounded vowels
    assert shapes[:, COL["lip_variation_two"]].max() > 2  # spread vowels


def test_wink_presets_differ_by_side() -> None:
    left = Timeline.single(PRESETS["wink_left"].gesture()).sample_array(25)
    right = Timeline.single(PRESETS["wink_right"].gesture()).sample_array(25)
    assert left[:, COL["wink"]].max() > 30 and right[:, COL["wink"]].max() > 30
    assert np.sign(left[:, COL["head_roll"]].sum()) == -np.sign(right[:, COL["head_roll"]].sum())


def test_expressions_come_with_head_motion() -> None:
    for name in ("smile", "big_laugh", "surprise", "sad", "angry", "doubtful"):
        arr = Timeline.single(PRESETS[name].gesture()).sample_array(25)
        head = arr[:, [COL["head_pitch"], COL["head_roll"], COL["head_yaw"]]]
        assert 0.3 < np.abs(head).max() < 12, name


# --- idle -----------------------------------------------------------------------


def _blink_starts(eye: np.ndarray, base_eye: float, dt_ms: float) -> list[float]:
    closed = eye < base_eye * 0.5
    return [i * dt_ms for i in range(1, len(eye)) if closed[i] and not closed[i - 1]]


def test_idle_is_deterministic_per_seed() -> None:
    a = idle_timeline(30000, seed=5).sample_array(25)
    b = idle_timeline(30000, seed=5).sample_array(25)
    c = idle_timeline(30000, seed=6).sample_array(25)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_idle_starts_and_ends_at_base_and_moves_subtly() -> None:
    arr = idle_timeline(20000, seed=1).sample_array(25)
    base = np.array(list(resolve_base(None).values()))
    assert np.array_equal(arr[0], base) and np.array_equal(arr[-1], base)
    assert 0 < np.abs(arr[:, COL["head_pitch"]]).max() <= 1.0
    assert 0 < np.abs(arr[:, COL["eyeball_x"]]).max() <= 5.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_idle_blink_rhythm(seed: int) -> None:
    dt = 10.0
    arr = idle_timeline(60000, seed=seed).sample_array(1000 / dt)
    starts = _blink_starts(arr[:, COL["eye_ratio"]], resolve_base(None)["eye_ratio"], dt)
    assert 8 <= len(starts) <= 40
    gaps = np.diff(starts)
    singles = gaps[gaps > 1000]  # double blinks are ~400 ms apart
    assert singles.min() >= BLINK_INTERVAL_MS[0] and singles.max() <= BLINK_INTERVAL_MS[1] + 1000


def test_idle_double_blinks_happen() -> None:
    dt = 10.0
    found = False
    for seed in range(6):
        arr = idle_timeline(60000, seed=seed).sample_array(1000 / dt)
        starts = _blink_starts(arr[:, COL["eye_ratio"]], resolve_base(None)["eye_ratio"], dt)
        found = found or bool((np.diff(starts) < 1000).any())
    assert found


def test_commands_layer_on_idle_and_idle_avoids_their_eye_windows() -> None:
    cmd = parse_command("wink").timeline()
    tl = with_idle(cmd, seed=3, lead_in_ms=4000, tail_ms=4000)
    assert tl.steps[0].preset == "idle" and tl.steps[0].layer == -1
    wink = next(s for s in tl.steps if s.preset == "wink_right")
    assert wink.start_ms == 4000
    dt = 10.0
    arr = tl.sample_array(1000 / dt)
    eye = arr[:, COL["eye_ratio"]]
    lo, hi = int(wink.start_ms / dt), int(wink.end_ms / dt)
    assert eye[lo:hi].min() > resolve_base(None)["eye_ratio"] * 0.5  # no idle blink during the wink
    idle_only = with_idle(Timeline(duration_ms=cmd.duration_ms), seed=3, lead_in_ms=4000, tail_ms=4000)
    assert idle_only.duration_ms == tl.duration_ms


def test_idle_motion_zero_length() -> None:
    m = idle_gesture(0, seed=1)
    assert m.duration_ms == 0
    assert Timeline.single(m).frame_count(25) == 1


# --- cache ----------------------------------------------------------------------


def _clip(n: int, value: int) -> np.ndarray:
    return np.full((n, 8, 8, 3), value, dtype=np.uint8)


def test_cache_hit_miss_and_get_or_render() -> None:
    cache = ClipCache(max_memory_bytes=10_000)
    calls = []

    def render() -> list[np.ndarray]:
        calls.append(1)
        return list(_clip(3, 7))

    a = cache.get_or_render("k", render)
    b = cache.get_or_render("k", render)
    assert len(calls) == 1 and a is b and cache.hits == 1 and cache.misses == 1
    assert not a.flags.writeable


def test_cache_memory_bound_evicts_lru() -> None:
    clip_bytes = _clip(2, 0).nbytes
    cache = ClipCache(max_memory_bytes=clip_bytes * 2)
    cache.put("a", _clip(2, 1))
    cache.put("b", _clip(2, 2))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("c", _clip(2, 3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert cache.memory_bytes <= clip_bytes * 2


def test_cache_disk_roundtrip_and_bound(tmp_path) -> None:
    clip_bytes = _clip(2, 0).nbytes
    cache = ClipCache(tmp_path, max_memory_bytes=0, max_disk_bytes=3 * (clip_bytes + 200))
    for i in range(6):
        cache.put(f"{i:02d}x", _clip(2, i))
    assert cache.disk_bytes() <= 3 * (clip_bytes + 200)
    fresh = ClipCache(tmp_path)
    got = fresh.get("05x")
    assert got is not None and int(got[0, 0, 0, 0]) == 5
    assert fresh.get("00x") is None


def test_cache_keys() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    other = img.copy()
    other[0, 0, 0] = 1
    assert source_digest(img) != source_digest(other)
    assert source_digest(img, crop=True) != source_digest(img, crop=False)
    assert clip_key("s", "t", {"dtype": "float32"}) != clip_key("s", "t", {"dtype": "float16"})
    assert clip_key("s", "t", {"a": 1, "b": 2}) == clip_key("s", "t", {"b": 2, "a": 1})


def test_cache_threads() -> None:
    cache = ClipCache(max_memory_bytes=1_000_000)
    errors = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                cache.get_or_render(f"{(i + j) % 5}", lambda: _clip(1, 1))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(cache) == 5


def test_cache_rejects_bad_clips() -> None:
    with pytest.raises(ValueError):
        ClipCache().put("x", np.zeros((2, 4, 4, 3), np.float32))
