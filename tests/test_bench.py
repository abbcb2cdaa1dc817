"""``lpstudio bench``: plan, budget, progress and the JSON report (docs/BENCH.md): fake timings + one tiny real run."""

from __future__ import annotations

import json

import pytest
import torch

from lpstudio.backends import BACKENDS
from lpstudio.bench import (
    DEFAULT_BUDGET_S,
    FULL_BATCH_SIZES,
    FULL_ITERS,
    SCHEMA,
    BenchOptions,
    Budget,
    Measurement,
    Progress,
    build_report,
    format_report,
    psnr_db,
    resolve,
    run_bench,
    validate_report,
)

ENV = {"device": "cpu", "device_name": "test", "torch": "x", "threads": 2, "platform": "p", "python": "3"}
CONFIG = {
    "batch_sizes": [1, 4],
    "iters": 2,
    "seed": 1,
    "quick": False,
    "full": False,
    "budget_s": 600.0,
    "mixed_batch": 4,
    "mixed_sources": 4,
    "replica_batch": 4,
    "steps": {"planned": 20, "skipped": 1},
}
COMMON = {
    "engine_build_ms": 50.0,
    "startup_ms": 100.0,
    "stages_ms": {"F": 5.0, "M": 6.0, "stitching": 0.1},
    "peak_rss_mb": 4000.0,
    "wall_s": 120.0,
    "skipped": ["onnxruntime/float32: batch 4 iteration 2: time budget"],
}
CPU = torch.device("cpu")


def fake_results() -> list[Measurement]:
    ref = Measurement("eager", "float32", build_ms=0.0, first_render_ms=1000.0, peak_memory_mb=3000.0)
    ref.warp_ms, ref.decode_ms = [300.0, 310.0], [700.0, 690.0]
    ref.render_ms = {1: [1000.0, 1020.0], 4: [3600.0, 3800.0]}  # 900 ms/frame at batch 4
    ref.psnr_db = 200.0
    ref.mixed_ms = [4000.0, 4400.0]  # 1000 ms/frame at mixed batch 4
    ref.memory_mb_by_batch, ref.replica_memory_mb = {1: 2000.0, 4: 3000.0}, 3000.0
    fast = Measurement("fused", "bfloat16", build_ms=500.0, first_render_ms=400.0, peak_memory_mb=1500.0)
    fast.warp_ms, fast.decode_ms = [100.0], [200.0]
    fast.render_ms = {1: [300.0, 310.0], 4: [1000.0, 1100.0]}  # 250 ms/frame at batch 4
    fast.psnr_db = 45.0
    fast.mixed_ms = [1250.0]  # 312.5 ms/frame
    fast.mixed_psnr_db = 44.0
    fast.memory_mb_by_batch, fast.replica_memory_mb = {1: 1000.0, 4: 1500.0}, 1500.0
    gone = Measurement("tensorrt", "float16", status="unavailable", reason="no GPU")
    broken = Measurement("onnxruntime", "float32", status="failed", reason="RuntimeError: boom")
    return [ref, fast, gone, broken]


def test_report_from_fake_timings_follows_the_schema():
    report = build_report(fake_results(), env=ENV, config=CONFIG, common=COMMON)
    validate_report(report)
    json.dumps(report, allow_nan=False)  # strict JSON
    assert report["schema"] == SCHEMA
    assert report["reference"] == "eager/float32"
    assert report["reference_render_ms"] == pytest.approx(900.0)
    assert report["best_backend"] == "fused/bfloat16" and report["best_batch_size"] == 4
    assert report["best_render_ms"] == pytest.approx(250.0)
    assert report["best_speedup"] == pytest.approx(3.6)
    assert report["psnr_db"] == {"eager/float32": 200.0, "fused/bfloat16": 45.0}
    fast = next(e for e in report["backends"] if e["key"] == "fused/bfloat16")
    assert fast["vs_reference"]["render"] == {"1": pytest.approx(1000 / 300), "4": pytest.approx(3.6)}
    assert fast["vs_reference"]["stages"] == {"W": pytest.approx(3.0), "G": pytest.approx(3.45)}
    assert fast["fps"]["4"] == pytest.approx(4.0)
    assert fast["time_to_first_frame_ms"] == pytest.approx(100 + 500 + 400)
    assert fast["vs_reference"]["time_to_first_frame"] == pytest.approx(1100 / 1000)
    assert fast["vs_reference"]["peak_memory"] == pytest.approx(2.0)
    assert fast["mixed_render_ms"] == pytest.approx(312.5) and fast["mixed_fps"] == pytest.approx(3.2)
    assert fast["vs_reference"]["mixed_render"] == pytest.approx(3.2) and fast["mixed_psnr_db"] == 44.0
    assert fast["memory_mb_by_batch"] == {"1": 1000.0, "4": 1500.0} and fast["replica_memory_mb"] == 1500.0
    assert report["peak_rss_mb"] == 4000.0 and report["skipped"] == COMMON["skipped"]
    statuses = {e["key"]: e["status"] for e in report["backends"]}
    assert statuses == {
        "eager/float32": "ok",
        "fused/bfloat16": "ok",
        "tensorrt/float16": "unavailable",
        "onnxruntime/float32": "failed",
    }
    text = format_report(report)
    assert "fused/bfloat16" in text and "unavailable: no GPU" in text
    assert "mixed b=4" in text and "skipped onnxruntime/float32" in text


def test_report_needs_the_reference_and_validation_catches_breakage():
    with pytest.raises(ValueError, match="reference"):
        build_report(fake_results()[1:], env=ENV, config=CONFIG, common=COMMON)
    report = build_report(fake_results(), env=ENV, config=CONFIG, common=COMMON)
    del report["backends"][1]["psnr_db"]
    with pytest.raises(ValueError, match="lacks"):
        validate_report(report)
    report = build_report(fake_results(), env=ENV, config=CONFIG, common=COMMON)
    report["best_render_ms"] = None
    with pytest.raises(ValueError, match="best_render_ms"):
        validate_report(report)
    report = build_report(fake_results(), env=ENV, config=CONFIG, common=COMMON)
    report["backends"][2]["status"] = "hung"
    with pytest.raises(ValueError, match="status"):
        validate_report(report)
    report = build_report(fake_results(), env=ENV, config={**CONFIG, "budget_s": None}, common=COMMON)
    del report["config"]["mixed_batch"]
    with pytest.raises(ValueError, match="mixed_batch"):
        validate_report(report)


def test_psnr():
    import torch

    a = torch.zeros(1, 3, 4, 4)
    assert psnr_db(a, a) == 200.0
    assert psnr_db(a + 0.01, a) == pytest.approx(40.0)


def test_cli_parses_bench_options():
    from lpstudio.cli import build_parser

    argv = ["bench", "--quick", "--json", "--backends", "eager,fused", "--batch-sizes", "1,4"]
    args = build_parser().parse_args(argv)
    assert args.quick and args.json and args.backends == ["eager", "fused"] and args.batch_sizes == [1, 4]
    args = build_parser().parse_args(["bench", "--full", "--budget-s", "90", "--mixed-batch", "0"])
    assert args.full and args.budget_s == 90.0 and args.mixed_batch == 0 and not args.quick
    for bad in (["--quick", "--full"], ["--iters", "0"], ["--batch-sizes", "1,x"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", *bad])


# ------------------------------------------------------------------------------ plan, budget, progress


def keys(plan) -> list[str]:
    return [f"{n}/{str(dt).removeprefix('torch.')}" for n, dt, _ in plan.candidates]


def test_default_cpu_plan_is_small_and_bounded():
    plan = resolve(BenchOptions(), CPU)
    if plan.candidates[1][2] is None:  # this CPU has native bfloat16 kernels
        assert keys(plan) == ["eager/float32", "fused/bfloat16"]
    else:
        assert keys(plan) == ["eager/float32", "fused/bfloat16", "fused/float32"]
    assert plan.batch_sizes == (1, 4) and plan.iters == 2 and plan.mixed_batch == 2
    assert plan.budget_s == DEFAULT_BUDGET_S
    # eager/fused compile nothing per shape: build + first frame, batch 1 x2, batch 4 x2, mixed x2
    assert plan.steps_for("fused") == plan.steps_for("eager") == 1 + 2 + 2 + 2
    # compiled backends get a warm-up call per new shape (batch 4, mixed)
    assert plan.steps_for("compile") == 1 + 2 + (1 + 2) + (1 + 2)
    assert plan.steps() == sum(plan.steps_for(n) for n, _, r in plan.candidates if r is None)


def test_full_plan_sweeps_every_backend_without_a_budget():
    plan = resolve(BenchOptions(full=True), CPU)
    assert {n for n, _, _ in plan.candidates} == set(BACKENDS)
    assert plan.batch_sizes == FULL_BATCH_SIZES and plan.iters == FULL_ITERS and plan.budget_s is None
    unavailable = {f"{n}/{str(dt).removeprefix('torch.')}": r for n, dt, r in plan.candidates if r}
    assert "CUDA" in unavailable["cudagraph/float32"]
    assert resolve(BenchOptions(full=True, budget_s=60), CPU).budget_s == 60


def test_quick_plan_and_explicit_choices():
    plan = resolve(BenchOptions.quick_options(), CPU)
    assert plan.batch_sizes == (1,) and plan.iters == 1 and plan.mixed_batch is None
    plan = resolve(BenchOptions(backends=["fused"], dtypes=["float32"], batch_sizes=[4, 1, 4], mixed_batch=0), CPU)
    assert keys(plan) == ["eager/float32", "fused/float32"] and plan.batch_sizes == (1, 4) and not plan.mixed_batch
    with pytest.raises(ValueError, match="at least 1"):
        resolve(BenchOptions(batch_sizes=[0]), CPU)
    from lpstudio.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="warp-drive"):
        resolve(BenchOptions(backends=["warp-drive"]), CPU)


def test_plan_reports_bfloat16_unavailable_on_a_cpu_without_native_kernels(monkeypatch):
    """The cause of the 28-minute 'hang': bfloat16 without AVX512-BF16/AMX runs oneDNN's reference kernel."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    plan = resolve(BenchOptions(), CPU)
    reasons = {f"{n}/{str(dt).removeprefix('torch.')}": r for n, dt, r in plan.candidates}
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in reasons["fused/bfloat16"]
    assert reasons["fused/float32"] is None  # the plan falls back to float32 rather than time nothing


def test_budget_with_a_fake_clock():
    now = [100.0]
    budget = Budget(10.0, clock=lambda: now[0])
    assert budget.fits(9.0) and not budget.fits(11.0)
    now[0] = 105.0
    assert budget.elapsed_s() == 5.0 and budget.fits(5.0) and not budget.fits(5.5)
    assert budget.fits(None)
    now[0] = 111.0
    assert not budget.fits(None) and not budget.fits(0.0)
    assert Budget(None, clock=lambda: now[0]).fits(1e9)


def test_progress_counts_run_and_skipped_steps():
    notes: list[str] = []
    progress = Progress(6, enabled=False, log=notes.append)
    with progress.step("eager/float32: build + first frame"):
        pass
    progress.skip(3, "fused/bfloat16: time budget")
    progress.skip(0, "nothing")
    progress.skip(1, "")  # not applicable (e.g. quick mode's cold sample): passed, not skipped
    with pytest.raises(RuntimeError), progress.step("boom"):
        raise RuntimeError("a failing step still counts")
    progress.close()
    assert progress.done == progress.total == 6 and progress.skipped == 3
    assert notes[0] == "eager/float32: build + first frame" and "time budget" in notes[1]


def test_tiny_real_run(engine):
    """One real quick run on the session engine: the reference only, batch 1, one (cold) call.

    A zero budget skips the fused backend (listed, never built); cudagraph is unavailable on CPU.
    """
    opts = BenchOptions.quick_options(backends=["eager", "fused", "cudagraph"], dtypes=["float32"], budget_s=0)
    report = run_bench(opts, engine=engine)
    validate_report(report)
    fused = next(e for e in report["backends"] if e["backend"] == "fused")
    assert fused["status"] == "skipped" and "time budget" in fused["reason"]
    assert report["skipped"] and report["skipped"][0].startswith("fused/float32: build")
    assert report["config"]["steps"] == {"planned": 2 * 2, "skipped": 2}  # eager and fused; cudagraph has none
    assert report["peak_rss_mb"] > 0 and report["wall_s"] > 0
    json.dumps(report, allow_nan=False)
    ref = report["backends"][0]
    assert ref["key"] == "eager/float32" and ref["status"] == "ok" and ref["is_reference"]
    assert ref["stages_ms"]["W"] > 0 and ref["stages_ms"]["G"] > 0
    assert ref["render_ms"]["1"] == pytest.approx(ref["stages_ms"]["W"] + ref["stages_ms"]["G"])
    assert report["best_backend"] == "eager/float32" and report["psnr_db"]["eager/float32"] == 200.0
    assert set(report["stages_ms"]) >= {"F", "M", "stitching", "prepare_source"}
    graph = next(e for e in report["backends"] if e["backend"] == "cudagraph")
    assert graph["status"] == "unavailable"
