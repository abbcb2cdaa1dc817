"""``--backend auto``: the calibration's choice, bounds, failure tolerance and cache.

Stand-in backends and an injected clock keep these fast: each stand-in "renders" the
reference frames plus noise of a chosen size (so its PSNR is known) and advances the
clock by its cost per frame. One test calibrates the real eager/fused backends on
one frame.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from lpstudio.backends import auto
from lpstudio.backends.auto import (
    CACHE_FILE,
    MIN_PSNR_DB,
    calibrate,
    calibration_key,
    choose_backend,
    read_cache,
)
from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason

CPU = torch.device("cpu")
FUSED_DTYPE = "float32" if cpu_bfloat16_unavailable_reason() else "bfloat16"
"""The fused backend's CPU dtype here: bfloat16 where the CPU runs it natively (building it is refused elsewhere)."""
FRAMES = 2
F32, BF16 = torch.float32, torch.bfloat16


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reference_frames(feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """(B,3,8,8) in 0..1, a function of the inputs (the "float32 eager" output of the stand-ins)."""
    value = torch.sigmoid(feature.flatten(1).mean(1) + x_d.flatten(1).sum(1) - x_s.flatten(1).sum(1))
    return value[:, None, None, None].expand(-1, 3, 8, 8).clone()


class StandIn:
    """A backend that costs ``first_s``/``steady_s`` per frame on the fake clock and adds ``noise``."""

    def __init__(self, name: str, dtype: torch.dtype, clock: FakeClock, steady_s: float, noise: float = 0.0,
                 first_s: float | None = None, needs_warm_up: bool = False) -> None:  # fmt: skip
        self.name, self.dtype, self.device = name, dtype, CPU
        self.clock, self.steady_s, self.noise = clock, steady_s, noise
        self.first_s = steady_s if first_s is None else first_s
        self.needs_warm_up = needs_warm_up
        self.calls = 0

    def warp_decode(self, feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        self.clock.now += (self.first_s if self.calls == 0 else self.steady_s) * x_d.shape[0]
        self.calls += 1
        out = reference_frames(feature, x_s, x_d)
        return out + self.noise * torch.linspace(-1, 1, out.numel()).reshape(out.shape)


def noise_for_psnr(db: float) -> float:
    """Amplitude of the stand-in's linear ramp noise giving about ``db`` PSNR (mean square of the ramp ~ 1/3)."""
    return math.sqrt(3 * 10 ** (-db / 10))


class Factory:
    """``build(name, networks, device, dtype)`` over a table of stand-ins; records what was built."""

    def __init__(self, clock: FakeClock, table: dict[tuple[str, torch.dtype], dict]) -> None:
        self.clock, self.table, self.built = clock, table, []

    def __call__(self, name: str, networks, device, dtype) -> StandIn:
        spec = self.table[(name, dtype)]
        if "error" in spec:
            raise spec["error"]
        backend = StandIn(name, dtype, self.clock, **spec)
        self.built.append(backend)
        return backend


def inputs(frames: int = FRAMES) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return (
        torch.randn(frames, 2, 2, 2, 2, generator=g),
        torch.randn(frames, 21, 3, generator=g),
        torch.randn(frames, 21, 3, generator=g),
    )


TABLE = {
    ("eager", F32): {"steady_s": 10.0},
    ("fused", BF16): {"steady_s": 2.0, "noise": noise_for_psnr(44)},
    ("fused", F32): {"steady_s": 9.0},
    ("compile", BF16): {"steady_s": 1.0, "first_s": 60.0, "noise": noise_for_psnr(43), "needs_warm_up": True},
    ("onnxruntime", F32): {"steady_s": 0.5, "noise": noise_for_psnr(30)},  # fastest, but not faithful
}
ORDER = [("fused", BF16), ("fused", F32), ("compile", BF16), ("onnxruntime", F32)]


def test_picks_the_fastest_backend_that_holds_40_db() -> None:
    clock = FakeClock()
    build = Factory(clock, TABLE)
    choice = calibrate(None, CPU, inputs(), candidates=ORDER, budget_s=1e6, clock=clock, build=build)
    assert (choice.backend, choice.dtype) == ("compile", "bfloat16")
    assert choice.ms_per_frame == pytest.approx(1000.0) and choice.reference_ms_per_frame == pytest.approx(10000.0)
    assert choice.backend_instance is build.built[3]  # the winner's built backend is kept for the engine
    trials = {(t.backend, t.dtype): t for t in choice.trials}
    ort_trial = trials[("onnxruntime", "float32")]
    assert not ort_trial.accepted and "dB" in ort_trial.reason and ort_trial.psnr_db < MIN_PSNR_DB
    assert trials[("fused", "bfloat16")].psnr_db == pytest.approx(44, abs=0.5)
    assert trials[("compile", "bfloat16")].first_call_s == pytest.approx(60.0 * FRAMES)
    assert choice.calibration_s == pytest.approx(clock.now)


def test_a_candidate_slower_than_the_best_after_its_first_frame_is_not_run_again() -> None:
    clock = FakeClock()
    build = Factory(clock, TABLE)
    choice = calibrate(None, CPU, inputs(), candidates=ORDER[:2], budget_s=1e6, clock=clock, build=build)
    eager, fused_bf16, fused_f32 = build.built
    assert eager.calls == 1  # the reference renders once
    assert fused_f32.calls == 1 and "slower" in choice.trials[-1].reason
    assert fused_bf16.calls == auto.TIMED_CALLS
    assert (choice.backend, choice.dtype) == ("fused", "bfloat16")


def test_the_budget_bounds_the_calibration() -> None:
    clock = FakeClock()
    build = Factory(clock, TABLE)
    choice = calibrate(None, CPU, inputs(), candidates=ORDER, budget_s=25.0, clock=clock, build=build)
    names = [b.name for b in build.built]
    assert names == ["eager", "fused"]  # the reference (20 s) and the first candidate fit; the rest are skipped
    skipped = [t for t in choice.trials if t.reason and "budget" in t.reason]
    assert [(t.backend, t.dtype) for t in skipped] == [("fused", "float32"), ("compile", "bfloat16"),
                                                       ("onnxruntime", "float32")]  # fmt: skip
    assert (choice.backend, choice.dtype) == ("fused", "bfloat16")


def test_a_failing_backend_is_skipped_with_its_reason() -> None:
    clock = FakeClock()
    table = dict(TABLE)
    table[("fused", BF16)] = {"error": RuntimeError("oneDNN has no bf16 kernel here")}
    build = Factory(clock, table)
    choice = calibrate(None, CPU, inputs(), candidates=ORDER[:2], budget_s=1e6, clock=clock, build=build)
    failed = choice.trials[1]
    assert not failed.accepted and "oneDNN has no bf16 kernel here" in failed.reason
    assert (choice.backend, choice.dtype) == ("fused", "float32")


def test_the_reference_wins_when_nothing_is_faster_and_faithful() -> None:
    clock = FakeClock()
    table = {("eager", F32): {"steady_s": 1.0}, ("onnxruntime", F32): {"steady_s": 0.1, "noise": 0.5}}
    choice = calibrate(None, CPU, inputs(), candidates=[("onnxruntime", F32)], budget_s=1e6, clock=clock,
                       build=Factory(clock, table))  # fmt: skip
    assert (choice.backend, choice.dtype) == ("eager", "float32")
    assert choice.backend_instance is None


def test_choice_is_cached_per_machine_torch_and_lpstudio_version(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(auto.ENV_CACHE_DIR, str(tmp_path))
    clock = FakeClock()
    build = Factory(clock, TABLE)
    options = {"weights": "w1", "engine_dtype": F32, "progress": False, "candidates": ORDER[:1], "budget_s": 1e6,
               "clock": clock, "build": build}  # fmt: skip
    first = choose_backend(None, CPU, inputs, **options)
    assert not first.cached and (tmp_path / CACHE_FILE).is_file()
    built = len(build.built)
    monkeypatch.setattr(auto, "default_candidates", lambda device: ORDER)  # the cached choice is "available"
    second = choose_backend(None, CPU, inputs, **options)
    assert second.cached and (second.backend, second.dtype) == (first.backend, first.dtype)
    assert len(build.built) == built  # nothing was built or timed
    assert "cached" in second.summary()

    monkeypatch.setattr(torch, "__version__", "99.0")  # another torch: calibrated again
    assert not choose_backend(None, CPU, inputs, **options).cached
    assert len(read_cache(tmp_path / CACHE_FILE)) == 2
    assert not choose_backend(None, CPU, inputs, **{**options, "weights": "w2"}).cached  # other weights too
    assert not choose_backend(None, CPU, inputs, recalibrate=True, **options).cached


def test_key_names_the_machine_and_versions() -> None:
    from lpstudio import __version__

    key = json.loads(calibration_key(CPU, "abc", F32))
    assert key["torch"] == torch.__version__ and key["lpstudio"] == __version__
    assert key["device"] == "cpu" and key["weights"] == "abc" and key["machine"]


def test_a_corrupt_cache_is_ignored_and_rewritten(monkeypatch, tmp_path, caplog) -> None:
    monkeypatch.setenv(auto.ENV_CACHE_DIR, str(tmp_path))
    (tmp_path / CACHE_FILE).write_text("{not json", encoding="utf-8")
    clock = FakeClock()
    choice = choose_backend(None, CPU, inputs, weights="w", engine_dtype=F32, progress=False, candidates=ORDER[:1],
                            budget_s=1e6, clock=clock, build=Factory(clock, TABLE))  # fmt: skip
    assert not choice.cached and "ignoring the calibration cache" in caplog.text
    assert len(read_cache(tmp_path / CACHE_FILE)) == 1


def test_a_cached_backend_that_is_gone_is_calibrated_again(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(auto.ENV_CACHE_DIR, str(tmp_path))
    clock = FakeClock()
    build = Factory(clock, TABLE)
    options = {"weights": "w", "engine_dtype": F32, "progress": False, "candidates": ORDER[:1], "budget_s": 1e6,
               "clock": clock, "build": build}  # fmt: skip
    choose_backend(None, CPU, inputs, **options)
    monkeypatch.setattr(auto, "default_candidates", lambda device: [])  # e.g. the package was uninstalled
    assert not choose_backend(None, CPU, inputs, **options).cached


def test_real_calibration_on_one_frame(engine, golden) -> None:
    """eager float32 against fused bfloat16 (float32 on a CPU without native bfloat16) on the synthetic weights:
    a faithful, faster choice."""
    f, xs, xd = (torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))
    dtype = getattr(torch, FUSED_DTYPE)
    choice = calibrate(engine.networks, CPU, (f, xs, xd), candidates=[("fused", dtype)], budget_s=600.0)
    fused = choice.trials[1]
    assert fused.psnr_db is not None and fused.psnr_db >= MIN_PSNR_DB and fused.accepted
    assert (choice.backend, choice.dtype) in {("fused", FUSED_DTYPE), ("eager", "float32")}
    assert choice.reference_ms_per_frame > 0
