"""``lpstudio bench``: the JSON report follows docs/BENCH.md (fake timings + one tiny real run)."""

from __future__ import annotations

import json

import pytest

from lpstudio.bench import (
    SCHEMA,
    BenchOptions,
    Measurement,
    build_report,
    format_report,
    psnr_db,
    run_bench,
    validate_report,
)

ENV = {"device": "cpu", "device_name": "test", "torch": "x", "threads": 2, "platform": "p", "python": "3"}
CONFIG = {"batch_sizes": [1, 4], "iters": 2, "seed": 1, "quick": False}
COMMON = {"engine_build_ms": 50.0, "startup_ms": 100.0, "stages_ms": {"F": 5.0, "M": 6.0, "stitching": 0.1}}


def fake_results() -> list[Measurement]:
    ref = Measurement("eager", "float32", build_ms=0.0, first_render_ms=1000.0, peak_memory_mb=3000.0)
    ref.warp_ms, ref.decode_ms = [300.0, 310.0], [700.0, 690.0]
    ref.render_ms = {1: [1000.0, 1020.0], 4: [3600.0, 3800.0]}  # 900 ms/frame at batch 4
    ref.psnr_db = 200.0
    fast = Measurement("fused", "bfloat16", build_ms=500.0, first_render_ms=400.0, peak_memory_mb=1500.0)
    fast.warp_ms, fast.decode_ms = [100.0], [200.0]
    fast.render_ms = {1: [300.0, 310.0], 4: [1000.0, 1100.0]}  # 250 ms/frame at batch 4
    fast.psnr_db = 45.0
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
    statuses = {e["key"]: e["status"] for e in report["backends"]}
    assert statuses == {
        "eager/float32": "ok",
        "fused/bfloat16": "ok",
        "tensorrt/float16": "unavailable",
        "onnxruntime/float32": "failed",
    }
    text = format_report(report)
    assert "fused/bfloat16" in text and "unavailable: no GPU" in text


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


def test_tiny_real_run(engine):
    """One real quick run on the session engine: the reference only, batch 1, one (cold) call."""
    opts = BenchOptions.quick_options(backends=["eager", "cudagraph"])
    report = run_bench(opts, engine=engine)
    validate_report(report)
    json.dumps(report, allow_nan=False)
    ref = report["backends"][0]
    assert ref["key"] == "eager/float32" and ref["status"] == "ok" and ref["is_reference"]
    assert ref["stages_ms"]["W"] > 0 and ref["stages_ms"]["G"] > 0
    assert ref["render_ms"]["1"] == pytest.approx(ref["stages_ms"]["W"] + ref["stages_ms"]["G"])
    assert report["best_backend"] == "eager/float32" and report["psnr_db"]["eager/float32"] == 200.0
    assert set(report["stages_ms"]) >= {"F", "M", "stitching", "prepare_source"}
    graph = next(e for e in report["backends"] if e["backend"] == "cudagraph")
    assert graph["status"] == "unavailable"
