"""Measuring for ``lpstudio bench``: build each backend, time W and G per batch size, compare with the reference.

The reference (``eager`` float32) is timed in the same run, its iterations
interleaved with every other backend's so that background load hits all of them
alike; each figure is the minimum over iterations. The server's path
(``engine.render_mixed``: distinct sources in one batch) is timed as its own
mode. What runs is the plan (:mod:`.plan`), within its time budget.
:func:`run_bench` hands the measurements to :func:`.report.build_report`.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..backends import Backend, BackendBase, build_backend
from .plan import MIXED_SOURCES, REPLICA_BATCH, BenchOptions, Budget, Plan, Progress, resolve
from .report import REFERENCE, Measurement, build_report, dtype_name, label

DEFAULT_SEED = 1234
PSNR_PEAK = 1.0
"""Frames are compared as float images in 0..1."""
PSNR_CAP_DB = 200.0
"""Identical frames have infinite PSNR; JSON has no infinity, so it is reported as this."""
MEMORY_SAMPLE_S = 0.005
DRIVING_EDITS: tuple[dict[str, float], ...] = (
    {"head_yaw": 12.0},
    {"smile": 0.8},
    {"head_pitch": -8.0, "eyebrow": 15.0},
    {"wink": 20.0},
    {"head_roll": 6.0, "lip_variation_three": 60.0},
    {"mov_z": 1.1},
    {"eyeball_x": -20.0},
    {"head_yaw": -15.0, "smile": 0.4},
)
"""Driving parameter sets cycled to fill a batch (any edits would do; these move the face)."""


def psnr_db(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR in dB of images in 0..1 (capped at :data:`PSNR_CAP_DB`)."""
    mse = float(((ours.double() - ref.double()) ** 2).mean())
    return PSNR_CAP_DB if mse == 0 else min(PSNR_CAP_DB, 10 * math.log10(PSNR_PEAK**2 / mse))


class PeakMemory:
    """Peak memory while a block runs: CUDA allocator peak, or resident set size sampled on Linux."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_mb: float | None = None
        self.start_mb: float | None = None  # CUDA: allocated when the block started
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def rss_mb() -> float | None:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except (OSError, ValueError, IndexError):
            return None

    def _sample(self) -> None:
        while not self._stop.wait(MEMORY_SAMPLE_S):
            now = self.rss_mb()
            if now is not None:
                self.peak_mb = max(self.peak_mb or 0.0, now)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_mb = torch.cuda.memory_allocated(self.device) / 2**20
        elif self.rss_mb() is not None:
            self.peak_mb = self.rss_mb()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            now = self.rss_mb()
            if now is not None:
                self.peak_mb = max(self.peak_mb or 0.0, now)


def peak_rss_mb() -> float | None:
    """The process's resident-set high-water mark (getrusage), MB; None where unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _allocated_mb(device: torch.device) -> float | None:
    return torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return (time.perf_counter() - t0) * 1000, out


def _splits_stages(backend: Backend) -> bool:
    """Whether warp_decode is just warp then decode (so W + G timings make up a render)."""
    return type(backend).warp_decode is BackendBase.warp_decode


def _error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


class _Run:
    """One benchmark run's state: the engine, inputs, plan, budget and progress."""

    def __init__(self, opts: BenchOptions, plan: Plan, engine: Any, device: torch.device, budget: Budget) -> None:
        from ..params import EditParams

        self.plan, self.engine, self.device = plan, engine, device
        self.budget = budget
        self.skipped: list[str] = []
        rng = np.random.default_rng(opts.seed)
        size = engine.cfg.input_size
        self.images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(MIXED_SOURCES)]
        max_b = max(plan.batch_sizes[-1], plan.mixed_batch or 0)
        self.params = [EditParams(**DRIVING_EDITS[i % len(DRIVING_EDITS)]) for i in range(max_b)]
        self.state = engine.prepare_source(self.images[0], crop=False)
        self.x_d = engine.edited_keypoints(self.state, self.params)
        self.mixed_items: list[tuple[Any, torch.Tensor]] = []
        self.progress: Progress | None = None

    def inputs(self, b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = self.state.feature_3d
        return feat.expand(b, *feat.shape[1:]), self.state.x_s.expand(b, -1, -1), self.x_d[:b]

    def prepare_mixed(self) -> None:
        """One frame per item, sources cycled: what the server's worker batches across sessions."""
        if not self.plan.mixed_batch:
            return
        states = [self.state] + [self.engine.prepare_source(im, crop=False) for im in self.images[1:]]
        for i in range(self.plan.mixed_batch):
            st = states[i % len(states)]
            self.mixed_items.append((st, self.engine.edited_keypoints(st, [self.params[i]])[0]))

    def estimate_s(self, m: Measurement, ref: Measurement, batch: int) -> float | None:
        """Predicted seconds of one call of ``m`` at ``batch`` (from its own, else the reference's, times)."""
        for src in (m, ref):
            per_frame = [min(ts) / b for b, ts in src.render_ms.items() if ts]
            if per_frame:
                return min(per_frame) * batch / 1000
            if src.first_render_ms is not None:
                return src.first_render_ms * batch / 1000
        return None

    def allow(self, what: str, estimate_s: float | None, steps: int = 1) -> bool:
        """Whether a step predicted to take ``estimate_s`` fits the budget; if not, ``steps`` are skipped."""
        if self.budget.fits(estimate_s):
            return True
        spent = self.budget.elapsed_s()
        predicted = "unknown" if estimate_s is None else f"{estimate_s:.0f} s"
        why = f"{what}: time budget {self.plan.budget_s:.0f} s ({spent:.0f} s spent, step predicted {predicted})"
        self.skipped.append(why)
        assert self.progress is not None
        self.progress.skip(steps, why)
        return False


def run_bench(opts: BenchOptions, engine: Any = None) -> dict[str, Any]:
    """Measure the plan for ``opts`` and return the report (see :func:`.report.build_report`).

    ``engine``: a float32 :class:`~lpstudio.engine.LivePortrait` to measure instead of
    building one on synthetic weights (tests pass their session engine).
    With ``quick`` and one iteration, the cold first call is also the batch-1 sample
    (and split into W and G), so each backend renders only once. The reference's
    first frame and first batch-1 sample run whatever the budget (a report needs them).
    """
    from ..device import resolve_device
    from ..engine import LivePortrait
    from ..synthetic import synthetic_checkpoints

    log = opts.log or (lambda msg: None)
    device = resolve_device(opts.device)
    plan = resolve(opts, device)
    wall0 = time.perf_counter()
    budget = Budget(plan.budget_s)  # the whole run, engine build included
    t0 = time.perf_counter()
    if engine is None:
        log("building the reference engine on synthetic weights")
        engine = LivePortrait.from_checkpoints(synthetic_checkpoints(opts.seed), device, "float32")
    elif engine.dtype != torch.float32 or engine.device != device:
        raise ValueError("the benchmark engine must be float32 on the benchmarked device")
    engine_ms = (time.perf_counter() - t0) * 1000
    engine_mb = _allocated_mb(device)

    run = _Run(opts, plan, engine, device, budget)
    image = run.images[0]
    x = engine._to_input(image)
    stage_ms: dict[str, list[float]] = {"F": [], "M": [], "stitching": [], "prepare_source": []}
    x_d_raw = engine.edited_keypoints(run.state, run.params[:1], stitching=False)
    for _ in range(plan.iters):
        stage_ms["prepare_source"].append(_timed(device, lambda: engine.prepare_source(image, crop=False))[0])
        stage_ms["F"].append(_timed(device, lambda: engine.appearance(x))[0])
        stage_ms["M"].append(_timed(device, lambda: engine.motion(x))[0])
        stage_ms["stitching"].append(_timed(device, lambda: engine.stitch(run.state.x_s, x_d_raw))[0])
    # A command's fixed cost before its first frame: build the engine, prepare the source.
    startup_ms = engine_ms + min(stage_ms["prepare_source"])
    run.prepare_mixed()

    progress = run.progress = Progress(plan.steps(), enabled=opts.progress, log=log)
    try:
        results, frames = _measure(run, opts, engine_mb)
    finally:
        progress.close()

    ref = frames.get(label(*REFERENCE))
    ref_mixed = frames.get("mixed:" + label(*REFERENCE))
    for m in results:
        key = label(m.name, m.dtype)
        if m.status == "ok" and ref is not None and key in frames:
            m.psnr_db = psnr_db(frames[key], ref)
            m.max_abs_err = float((frames[key] - ref).abs().max())
        if m.status == "ok" and ref_mixed is not None and "mixed:" + key in frames:
            m.mixed_psnr_db = psnr_db(frames["mixed:" + key], ref_mixed)

    env = {
        "device": str(device),
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    config = {
        "batch_sizes": list(plan.batch_sizes),
        "iters": plan.iters,
        "seed": opts.seed,
        "quick": opts.quick,
        "full": opts.full,
        "budget_s": plan.budget_s,
        "mixed_batch": plan.mixed_batch,
        "mixed_sources": min(MIXED_SOURCES, plan.mixed_batch or 0),
        "replica_batch": min(REPLICA_BATCH, plan.batch_sizes[-1]),
        "steps": {"planned": progress.total, "skipped": progress.skipped},
    }
    common = {
        "engine_build_ms": engine_ms,
        "startup_ms": startup_ms,
        "stages_ms": {k: min(v) for k, v in stage_ms.items() if v},
        "peak_rss_mb": peak_rss_mb(),
        "wall_s": time.perf_counter() - wall0,
        "skipped": run.skipped,
    }
    return build_report(results, env=env, config=config, common=common)


def _measure(
    run: _Run, opts: BenchOptions, engine_mb: float | None
) -> tuple[list[Measurement], dict[str, torch.Tensor]]:
    """Build every candidate, then the interleaved timed calls, then the mixed mode."""
    plan, device, progress = run.plan, run.device, run.progress
    assert progress is not None
    reuse_cold = opts.quick and plan.iters == 1 and plan.batch_sizes == (1,)
    frames: dict[str, torch.Tensor] = {}

    def split_call(m: Measurement, backend: Backend) -> tuple[float, torch.Tensor]:
        tw, warped = _timed(device, lambda: backend.warp(*run.inputs(1)))
        tg, out = _timed(device, lambda: backend.decode(warped))
        m.warp_ms.append(tw)
        m.decode_ms.append(tg)
        return tw + tg, out

    results: list[Measurement] = []
    live: list[tuple[Measurement, Backend]] = []
    weights_mb: dict[str, float] = {}
    ref_m: Measurement | None = None
    for name, dt, reason in plan.candidates:
        m = Measurement(name, dtype_name(dt))
        results.append(m)
        ref_m = ref_m or m
        key = label(name, dt)
        if reason is not None:
            m.status, m.reason = "unavailable", reason
            progress.note(f"{key}: unavailable ({reason})")
            continue
        per_backend = plan.steps_for(name)
        if m is not ref_m and not run.allow(f"{key}: build", run.estimate_s(m, ref_m, 1), per_backend):
            m.status, m.reason = "skipped", run.skipped[-1]
            continue
        with progress.step(f"{key}: build + first frame"):
            try:
                before = _allocated_mb(device)
                with PeakMemory(device) as mem:
                    m.build_ms, backend = _timed(
                        device, lambda n=name, d=dt: build_backend(n, run.engine.networks, device, d)
                    )
                    after = _allocated_mb(device)
                    if before is not None and after is not None:
                        weights_mb[key] = after - before
                    if reuse_cold and _splits_stages(backend):
                        m.first_render_ms, out = split_call(m, backend)
                        m.render_ms[1] = [m.first_render_ms]
                        frames[key] = out.float().cpu()
                    else:
                        m.first_render_ms, _ = _timed(device, lambda be=backend: be.warp_decode(*run.inputs(1)))
                m.peak_memory_mb = mem.peak_mb
            except Exception as exc:  # report, don't crash: optional runtimes fail in many ways
                m.status, m.reason = "failed", _error(exc)
                progress.note(f"{key}: failed ({m.reason})")
                progress.skip(per_backend - 1, f"{key} failed")
                continue
        live.append((m, backend))
    assert ref_m is not None

    def record(m: Measurement, b: int, mem: PeakMemory) -> None:
        if mem.peak_mb is None:
            return
        m.peak_memory_mb = max(m.peak_memory_mb or 0.0, mem.peak_mb)
        m.memory_mb_by_batch[b] = max(m.memory_mb_by_batch.get(b, 0.0), mem.peak_mb)
        if mem.start_mb is not None:  # CUDA: activations above what was allocated before the call
            m.activation_mb_by_batch[b] = max(m.activation_mb_by_batch.get(b, 0.0), mem.peak_mb - mem.start_mb)

    def call(m: Measurement, backend: Backend, b: int, it: int) -> None:
        key = label(m.name, m.dtype)
        with progress.step(f"{key}: batch {b}, iteration {it + 1}/{plan.iters}"):
            try:
                with PeakMemory(device) as mem:
                    if b == 1 and _splits_stages(backend):
                        total, out = split_call(m, backend)
                    else:
                        total, out = _timed(device, lambda: backend.warp_decode(*run.inputs(b)))
                m.render_ms.setdefault(b, []).append(total)
                record(m, b, mem)
                if b == plan.batch_sizes[0] and it == 0:
                    frames[key] = out.float().cpu()
            except Exception as exc:
                m.status, m.reason = "failed", _error(exc)

    # Timed runs, interleaved across backends. Batch sizes other than the first frame's (1) get one
    # untimed warm-up call each where the backend specialises (compiles, captures) per shape.
    for b in plan.batch_sizes:
        ready: set[int] = set()
        for m, backend in live:
            key = label(m.name, m.dtype)
            if b != 1 and plan.warms_up(m.name):
                if m.status != "ok":
                    progress.skip(1, "")
                    continue
                if not run.allow(f"{key}: batch {b} warm-up", run.estimate_s(m, ref_m, b)):
                    continue
                with progress.step(f"{key}: batch {b}, warm-up"):
                    try:
                        backend.warp_decode(*run.inputs(b))
                    except Exception as exc:
                        m.status, m.reason = "failed", _error(exc)
            if m.status == "ok":
                ready.add(id(m))
        for it in range(plan.iters):
            for m, backend in live:
                key = label(m.name, m.dtype)
                if id(m) not in ready or m.status != "ok" or (reuse_cold and m.render_ms):
                    progress.skip(1, "")
                    continue
                exempt = m is ref_m and b == plan.batch_sizes[0] and it == 0
                if exempt or run.allow(f"{key}: batch {b} iteration {it + 1}", run.estimate_s(m, ref_m, b)):
                    call(m, backend, b, it)
    _measure_mixed(run, live, ref_m, frames, record)
    for m, _ in live:
        key = label(m.name, m.dtype)
        _replica(m, plan, engine_mb, weights_mb.get(key, 0.0) if m is not ref_m else 0.0)
    return results, frames


def _engine_for(engine: Any, backend: Backend) -> Any:
    """An engine sharing ``engine``'s networks that renders through ``backend`` (for its render_mixed)."""
    from ..engine import LivePortrait

    return LivePortrait(
        engine.networks, engine.device, engine.dtype, cfg=engine.cfg, backend=backend, take_ownership=True
    )


def _measure_mixed(
    run: _Run,
    live: list[tuple[Measurement, Backend]],
    ref_m: Measurement,
    frames: dict[str, torch.Tensor],
    record: Callable[[Measurement, int, PeakMemory], None],
) -> None:
    """The server's path: ``engine.render_mixed`` over distinct sources in one batch, uint8 frames out."""
    plan, device, progress = run.plan, run.device, run.progress
    assert progress is not None
    mb = plan.mixed_batch
    if not mb:
        return
    engines: dict[int, Any] = {}
    for m, backend in live:
        key = label(m.name, m.dtype)
        warm = plan.warms_up(m.name)
        if m.status != "ok":
            progress.skip(warm + plan.iters, "")
            continue
        if not run.allow(f"{key}: mixed batch {mb} warm-up", run.estimate_s(m, ref_m, mb), warm + plan.iters):
            continue
        try:
            engines[id(m)] = _engine_for(run.engine, backend)
            if warm:
                with progress.step(f"{key}: mixed sources, batch {mb}, warm-up"):
                    engines[id(m)].render_mixed(run.mixed_items)
        except Exception as exc:
            m.status, m.reason = "failed", f"mixed sources: {_error(exc)}"
            engines.pop(id(m), None)
            progress.skip(plan.iters, "")
    for it in range(plan.iters):
        for m, _ in live:
            key = label(m.name, m.dtype)
            eng = engines.get(id(m))
            if eng is None:  # its steps were counted when it was skipped or failed
                continue
            if m.status != "ok":
                progress.skip(1, "")
                continue
            if not run.allow(f"{key}: mixed batch {mb} iteration {it + 1}", run.estimate_s(m, ref_m, mb)):
                continue
            with progress.step(f"{key}: mixed sources, batch {mb}, iteration {it + 1}/{plan.iters}"):
                try:
                    with PeakMemory(device) as mem:
                        ms, out = _timed(device, lambda e=eng: e.render_mixed(run.mixed_items))
                    m.mixed_ms.append(ms)
                    record(m, mb, mem)
                    if it == 0:
                        frames["mixed:" + key] = torch.from_numpy(np.stack(out)).float() / 255
                except Exception as exc:
                    m.status, m.reason = "failed", f"mixed sources: {_error(exc)}"


def _replica(m: Measurement, plan: Plan, engine_mb: float | None, weights_mb: float) -> None:
    """Memory one server replica needs at the replica batch size.

    CUDA: the engine's networks + this backend's own weights + the allocator's peak above
    that during a call. CPU: the process's resident set during the call (it also holds
    the other backends built in this run, so it is an upper bound).
    """
    rb = min(REPLICA_BATCH, plan.batch_sizes[-1])
    if rb in m.activation_mb_by_batch and engine_mb is not None:
        m.replica_memory_mb = engine_mb + weights_mb + m.activation_mb_by_batch[rb]
    else:
        m.replica_memory_mb = m.memory_mb_by_batch.get(rb)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
