"""What ``serve`` actually runs: the worker's mixed-source batches through every backend, the
warm-up before ready, and ``--backend auto`` as the default of the rendering commands."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from lpstudio.backends import available_backends
from lpstudio.backends.compiled import CompiledBackend
from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason
from lpstudio.engine import LivePortrait
from lpstudio.params import EditParams
from lpstudio.server.worker import RenderJob, RenderWorker

CPU = torch.device("cpu")
FUSED_DTYPE = "float32" if cpu_bfloat16_unavailable_reason() else "bfloat16"
"""The fused backend's CPU dtype here: bfloat16 where the CPU runs it natively (building it is refused elsewhere)."""
MIN_PSNR_DB = 40.0
UINT8_PEAK = 255.0
MAX_LEVEL_DIFF_F32 = 1  # float32 backends: within the golden tolerance, so at most one uint8 level apart
JOB_TIMEOUT_S = 900.0


def render_through_worker(engine: LivePortrait, jobs: list[tuple[object, EditParams]], batch_size: int) -> list:
    """One frame per job, submitted together: the worker renders the first frames as one mixed batch."""
    frames: list[np.ndarray | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    done = threading.Semaphore(0)
    batches: list[int] = []
    worker = RenderWorker(engine, batch_size)
    worker.on_batch = lambda n, seconds: batches.append(n)
    hold = threading.Event()
    worker.call(hold.wait)  # jobs queue up behind this call, so they are taken as one batch
    try:
        for i, (state, params) in enumerate(jobs):

            def on_frame(index: int, frame: np.ndarray, i: int = i) -> None:
                frames[i] = frame

            def on_done(exc: BaseException | None) -> None:
                if exc is not None:
                    errors.append(exc)
                done.release()

            worker.submit(RenderJob(state, [params], on_frame, on_done))
        hold.set()
        for _ in jobs:
            assert done.acquire(timeout=JOB_TIMEOUT_S)
    finally:
        worker.close()
    assert not errors, errors
    assert batches == [len(jobs)], f"expected one mixed batch, got {batches}"
    return frames


def psnr_uint8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(UINT8_PEAK**2 / mse)


@pytest.fixture(scope="module")
def two_sources(engine, golden):
    rgb = golden["source_rgb256"]
    first = engine.prepare_source(rgb, crop=False, lmk203=golden["lmk203"])
    mirrored = engine.prepare_source(np.ascontiguousarray(rgb[:, ::-1]), crop=False)
    return first, mirrored


@pytest.fixture(scope="module")
def mixed_jobs(two_sources):
    first, mirrored = two_sources
    return [(first, EditParams(smile=0.8)), (mirrored, EditParams(head_yaw=12.0, eyebrow=10.0))]


@pytest.fixture(scope="module")
def eager_frames(engine, mixed_jobs):
    return render_through_worker(engine, mixed_jobs, batch_size=len(mixed_jobs))


def _cpu_backends() -> list:
    params = []
    for a in available_backends(CPU):
        if not a.available or a.name == "eager":
            continue
        for dtype in a.dtypes:
            marks = [pytest.mark.slow] if a.name == "compile" else []  # compiling takes minutes on a small CPU
            params.append(pytest.param(a.name, dtype, marks=marks, id=f"{a.name}-{str(dtype)[6:]}"))
    return params


@pytest.mark.parametrize("name,dtype", _cpu_backends())
def test_worker_mixed_batches_match_eager_with_every_backend(
    engine, mixed_jobs, eager_frames, onnx_export_dir, name, dtype
) -> None:
    """Two sources in one worker batch (render_mixed), each backend against float32 eager."""
    options = {"export_dir": onnx_export_dir} if name == "onnxruntime" else {}
    other = LivePortrait(engine.networks, "cpu", "float32", backend=name, backend_dtype=dtype, backend_options=options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)  # no silent fallback (compile)
        frames = render_through_worker(other, mixed_jobs, batch_size=len(mixed_jobs))
    assert not np.array_equal(frames[0], frames[1])
    for ours, ref in zip(frames, eager_frames):
        if dtype == torch.float32:
            assert int(np.abs(ours.astype(np.int16) - ref.astype(np.int16)).max()) <= MAX_LEVEL_DIFF_F32
        else:
            assert psnr_uint8(ours, ref) >= MIN_PSNR_DB


def test_eager_mixed_batch_renders_each_source_as_alone(engine, two_sources, mixed_jobs, eager_frames) -> None:
    """The reference itself: a mixed batch gives each frame what a batch of its own source gives."""
    for (state, params), frame in zip(mixed_jobs, eager_frames):
        alone = engine.render(state, [params])[0]
        assert int(np.abs(alone.astype(np.int16) - frame.astype(np.int16)).max()) <= MAX_LEVEL_DIFF_F32


class ShapeRecorder:
    """Stands in for a compiled module: records the batch sizes it is called with; cheap output."""

    def __init__(self, out_shape: tuple[int, ...]) -> None:
        self.out_shape = out_shape
        self.batches: list[int] = []

    def __call__(self, first: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        self.batches.append(first.shape[0])
        level = first.float().flatten(1).mean(1).sigmoid()
        return level.reshape(-1, *([1] * len(self.out_shape))).expand(-1, *self.out_shape).contiguous()


def test_after_warm_up_no_batch_the_worker_uses_compiles(engine, two_sources) -> None:
    """serve's warm-up prepares batch sizes 1, 2, 4 for --batch-size 4; then batches of 3 (padded to 4),
    1 (a first frame) and 2 record no new compile event."""
    compiled = LivePortrait(
        engine.networks, "cpu", "float32", backend=CompiledBackend(engine.networks, CPU, torch.float32)
    )
    backend = compiled.backend
    backend._warp_fn = ShapeRecorder((256, 64, 64))  # each new shape here would be a compile
    backend._decode_fn = ShapeRecorder((3, 512, 512))
    events: list[tuple[str, int]] = []
    backend.events.hooks.append(lambda kind, batch: events.append((kind, batch)))

    seconds = compiled.warm_up(4)
    assert seconds > 0 and backend.plan.sizes == (1, 2, 4)
    assert sorted({b for _, b in events}) == [1, 2, 4]
    warmed = len(events)

    first, mirrored = two_sources
    jobs = [(first, EditParams(smile=0.5)), (mirrored, EditParams()), (first, EditParams(head_roll=5.0))]
    render_through_worker(compiled, jobs, batch_size=4)
    render_through_worker(compiled, jobs[:1], batch_size=4)
    render_through_worker(compiled, jobs[:2], batch_size=4)
    assert len(events) == warmed, f"compiled while a user waited: {events[warmed:]}"
    assert set(backend._warp_fn.batches) == {1, 2, 4}

    # Outside serve, a batch larger than the plan adds its size (and that compile is recorded).
    first_state = two_sources[0]
    compiled.render(first_state, [EditParams(smile=0.1 * i) for i in range(6)], batch_size=6)
    assert backend.plan.sizes == (1, 2, 4, 6) and any(batch == 6 for _, batch in events[warmed:])


def test_backends_without_warm_up_return_at_once(engine) -> None:
    assert engine.warm_up(4) == 0.0


def test_serve_warm_up_reports_progress_and_time(engine, capsys) -> None:
    from lpstudio.cli.serve import warm_up

    compiled = LivePortrait(
        engine.networks, "cpu", "float32", backend=CompiledBackend(engine.networks, CPU, torch.float32)
    )
    compiled.backend._warp_fn = ShapeRecorder((256, 64, 64))
    compiled.backend._decode_fn = ShapeRecorder((3, 512, 512))
    assert warm_up(compiled, 2) > 0
    err = capsys.readouterr().err
    assert "preparing the compile backend for batches of 1 to 2 frames" in err
    assert "warm-up done in" in err and "batch sizes 1, 2" in err
    assert "preparing compile" in err  # the tqdm bar


def test_rendering_commands_default_to_auto(monkeypatch) -> None:
    from lpstudio.cli import build_parser

    monkeypatch.delenv("LPSTUDIO_BACKEND", raising=False)
    parser = build_parser()
    assert parser.parse_args(["serve"]).backend == "auto"
    assert parser.parse_args(["animate", "x.png", "smile", "-o", "a.mp4"]).backend == "auto"
    assert parser.parse_args(["drive", "x.png", "d.mp4", "-o", "a.mp4"]).backend == "auto"
    assert parser.parse_args(["edit", "x.png", "-o", "a.png"]).backend == "eager"
    assert parser.parse_args(["serve", "--backend", "eager"]).backend == "eager"
    monkeypatch.setenv("LPSTUDIO_BACKEND", "fused")
    assert build_parser().parse_args(["serve"]).backend == "fused"


def test_load_engine_with_auto_uses_the_cached_choice(engine, synthetic_weights_dir, monkeypatch, tmp_path, capsys):
    """The CLI path of --backend auto: a cached choice for this machine is used without calibrating."""
    import argparse

    from lpstudio.backends import auto
    from lpstudio.cli.common import load_engine
    from lpstudio.export import weights_fingerprint

    monkeypatch.setenv(auto.ENV_CACHE_DIR, str(tmp_path))
    key = auto.calibration_key(CPU, weights_fingerprint(engine.networks), torch.float32)
    auto.write_cache(tmp_path / auto.CACHE_FILE, key, auto.Choice("fused", FUSED_DTYPE, 100.0, 400.0, 12.0))
    monkeypatch.setattr(auto, "calibrate", lambda *a, **k: pytest.fail("calibrated although a choice was cached"))
    args = argparse.Namespace(weights_dir=synthetic_weights_dir, device="cpu", dtype="float32", backend="auto",
                              backend_dtype=None, face_models="auto", no_download=True, recalibrate=False,
                              batch_size=2)  # fmt: skip
    loaded = load_engine(args, face=False)
    assert (loaded.backend.name, loaded.backend.dtype) == ("fused", getattr(torch, FUSED_DTYPE))
    assert loaded.backend_choice.cached
    assert f"auto backend: fused {FUSED_DTYPE} (cached calibration, 4.00x float32 eager)" in capsys.readouterr().err


@pytest.mark.slow
def test_real_compile_after_warm_up_does_not_recompile(engine, two_sources) -> None:
    """torch.compile for real (minutes on a small CPU): after warm_up(2), the worker's batches of 1 and 2
    mixed sources compile no new graph (dynamo's own counter) and record no new shape event."""
    from torch._dynamo.utils import counters

    compiled = LivePortrait(engine.networks, "cpu", "float32", backend="compile", backend_dtype="bfloat16")
    compiled.warm_up(2)
    graphs, events = counters["stats"]["unique_graphs"], compiled.backend.events.count
    first, mirrored = two_sources
    render_through_worker(compiled, [(first, EditParams(smile=0.4)), (mirrored, EditParams(wink=10.0))], 2)
    render_through_worker(compiled, [(mirrored, EditParams(head_pitch=5.0))], 2)
    assert counters["stats"]["unique_graphs"] == graphs
    assert compiled.backend.events.count == events
