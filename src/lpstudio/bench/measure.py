"""Measuring for ``lpstudio bench``: build each backend, time W and G per batch size, compare with the reference.

The reference (``eager`` float32) is timed in the same run, its iterations
interleaved with every other backend's so that background load hits all of them
alike; each figure is the minimum over iterations. :func:`run_bench` hands the
measurements to :func:`.report.build_report`.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..backends import BACKENDS, Backend, BackendBase, available_backends, build_backend
from .report import REFERENCE, Measurement, build_report, dtype_name, label

DEFAULT_BATCH_SIZES = (1, 4, 8)
DEFAULT_ITERS = 3
QUICK_ITERS = 1
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


@dataclass
class BenchOptions:
    device: str = "cpu"
    backends: Sequence[str] | None = None  # None: every registered backend
    dtypes: Sequence[str] | None = None  # None: each backend's dtypes for the device
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    iters: int = DEFAULT_ITERS
    seed: int = DEFAULT_SEED
    quick: bool = False
    log: Callable[[str], None] | None = None

    @classmethod
    def quick_options(cls, **overrides: Any) -> BenchOptions:
        opts = cls(batch_sizes=(1,), iters=QUICK_ITERS, quick=True)
        for key, value in overrides.items():
            setattr(opts, key, value)
        return opts


def _candidates(opts: BenchOptions, device: torch.device) -> list[tuple[str, torch.dtype, str | None]]:
    """(backend, dtype, reason-if-unavailable) to try, reference first."""
    wanted = list(opts.backends) if opts.backends else list(BACKENDS)
    unknown = [n for n in wanted if n not in BACKENDS]
    if unknown:
        from ..errors import BackendUnavailableError

        raise BackendUnavailableError(f"unknown backend(s) {', '.join(unknown)}", hint=f"use {', '.join(BACKENDS)}")
    avail = {a.name: a for a in available_backends(device)}
    out: list[tuple[str, torch.dtype, str | None]] = [(REFERENCE[0], REFERENCE[1], None)]
    for name in wanted:
        a = avail[name]
        dtypes = a.dtypes
        if opts.dtypes:
            from ..device import resolve_dtype

            dtypes = tuple(resolve_dtype(d) for d in opts.dtypes)
        if not dtypes:
            out.append((name, torch.float32, f"no dtype of this backend runs on {device.type}"))
        for dt in dtypes:
            if (name, dt) != REFERENCE:
                out.append((name, dt, a.reason))
    return out


def run_bench(opts: BenchOptions, engine: Any = None) -> dict[str, Any]:
    """Measure everything and return the report (see :func:`build_report`).

    ``engine``: a float32 :class:`~lpstudio.engine.LivePortrait` to measure instead of
    building one on synthetic weights (tests pass their session engine).
    With ``quick`` and one iteration, the cold first call is also the batch-1 sample
    (and split into W and G), so each backend renders only once.
    """
    from ..device import resolve_device
    from ..engine import LivePortrait
    from ..params import EditParams
    from ..synthetic import synthetic_checkpoints

    log = opts.log or (lambda msg: None)
    device = resolve_device(opts.device)
    batch_sizes = sorted(set(int(b) for b in opts.batch_sizes))
    if not batch_sizes or batch_sizes[0] < 1 or opts.iters < 1:
        raise ValueError("batch sizes and iterations must be at least 1")
    t0 = time.perf_counter()
    if engine is None:
        log("building the reference engine on synthetic weights")
        engine = LivePortrait.from_checkpoints(synthetic_checkpoints(opts.seed), device, "float32")
    elif engine.dtype != torch.float32 or engine.device != device:
        raise ValueError("the benchmark engine must be float32 on the benchmarked device")
    engine_ms = (time.perf_counter() - t0) * 1000

    rng = np.random.default_rng(opts.seed)
    image = rng.integers(0, 256, (engine.cfg.input_size, engine.cfg.input_size, 3), dtype=np.uint8)
    x = engine._to_input(image)
    stage_ms: dict[str, list[float]] = {"F": [], "M": [], "stitching": [], "prepare_source": []}
    state = None
    max_b = batch_sizes[-1]
    params = [EditParams(**DRIVING_EDITS[i % len(DRIVING_EDITS)]) for i in range(max_b)]
    for _ in range(opts.iters):
        stage_ms["prepare_source"].append(_timed(device, lambda: engine.prepare_source(image, crop=False))[0])
        stage_ms["F"].append(_timed(device, lambda: engine.appearance(x))[0])
        stage_ms["M"].append(_timed(device, lambda: engine.motion(x))[0])
    state = engine.prepare_source(image, crop=False)
    x_d_raw = engine.edited_keypoints(state, params, stitching=False)
    for _ in range(opts.iters):
        stage_ms["stitching"].append(_timed(device, lambda: engine.stitch(state.x_s, x_d_raw[:1]))[0])
    x_d = engine.edited_keypoints(state, params)
    # A command's fixed cost before its first frame: build the engine, prepare the source.
    startup_ms = engine_ms + min(stage_ms["prepare_source"])

    def inputs(b: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat = state.feature_3d.expand(b, *state.feature_3d.shape[1:])
        return feat, state.x_s.expand(b, -1, -1), x_d[:b]

    reuse_cold = opts.quick and opts.iters == 1 and batch_sizes == [1]
    frames: dict[str, torch.Tensor] = {}

    def split_call(m: Measurement, backend: Backend) -> tuple[float, torch.Tensor]:
        tw, warped = _timed(device, lambda: backend.warp(*inputs(1)))
        tg, out = _timed(device, lambda: backend.decode(warped))
        m.warp_ms.append(tw)
        m.decode_ms.append(tg)
        return tw + tg, out

    # Build each backend and take its first frame (cold).
    results: list[Measurement] = []
    live: list[tuple[Measurement, Backend]] = []
    for name, dt, reason in _candidates(opts, device):
        m = Measurement(name, dtype_name(dt))
        results.append(m)
        if reason is not None:
            m.status, m.reason = "unavailable", reason
            log(f"{label(name, dt)}: unavailable ({reason})")
            continue
        log(f"{label(name, dt)}: building and rendering the first frame")
        try:
            with PeakMemory(device) as mem:
                m.build_ms, backend = _timed(device, lambda n=name, d=dt: build_backend(n, engine.networks, device, d))
                if reuse_cold and _splits_stages(backend):
                    m.first_render_ms, out = split_call(m, backend)
                    m.render_ms[1] = [m.first_render_ms]
                    frames[label(name, dt)] = out.float().cpu()
                else:
                    m.first_render_ms, _ = _timed(device, lambda be=backend: be.warp_decode(*inputs(1)))
            m.peak_memory_mb = mem.peak_mb
        except Exception as exc:  # report, don't crash: optional runtimes fail in many ways
            m.status, m.reason = "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            log(f"{label(name, dt)}: failed ({m.reason})")
            continue
        live.append((m, backend))

    # Timed runs, interleaved across backends. Batch sizes other than the first frame's (1) get one
    # untimed warm-up call each: compiled backends specialise (and CUDA graphs capture) per shape.
    for b in batch_sizes:
        if b != 1:
            for m, backend in live:
                if m.status == "ok":
                    log(f"{label(m.name, m.dtype)}: batch {b}, warm-up")
                    try:
                        backend.warp_decode(*inputs(b))
                    except Exception as exc:
                        m.status, m.reason = "failed", f"{type(exc).__name__}: {exc}"
        for it in range(opts.iters):
            for m, backend in live:
                if m.status != "ok" or (reuse_cold and m.render_ms):
                    continue
                log(f"{label(m.name, m.dtype)}: batch {b}, iteration {it + 1}/{opts.iters}")
                try:
                    with PeakMemory(device) as mem:
                        if b == 1 and _splits_stages(backend):
                            total, out = split_call(m, backend)
                        else:
                            total, out = _timed(device, lambda be=backend, n=b: be.warp_decode(*inputs(n)))
                    m.render_ms.setdefault(b, []).append(total)
                    if mem.peak_mb is not None:
                        m.peak_memory_mb = max(m.peak_memory_mb or 0.0, mem.peak_mb)
                    if b == batch_sizes[0] and it == 0:
                        frames[label(m.name, m.dtype)] = out.float().cpu()
                except Exception as exc:
                    m.status, m.reason = "failed", f"{type(exc).__name__}: {exc}"
            gc.collect()
    ref = frames.get(label(*REFERENCE))
    for m in results:
        key = label(m.name, m.dtype)
        if m.status == "ok" and ref is not None and key in frames:
            m.psnr_db = psnr_db(frames[key], ref)
            m.max_abs_err = float((frames[key] - ref).abs().max())

    env = {
        "device": str(device),
        "device_name": _device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    config = {"batch_sizes": batch_sizes, "iters": opts.iters, "seed": opts.seed, "quick": opts.quick}
    common = {
        "engine_build_ms": engine_ms,
        "startup_ms": startup_ms,
        "stages_ms": {k: min(v) for k, v in stage_ms.items() if v},
    }
    return build_report(results, env=env, config=config, common=common)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
