"""``--backend auto``: calibrate the backends this machine has and pick the fastest faithful one.

On first use, :func:`calibrate` renders a few frames (the caller's example batch,
several sources mixed as the server mixes them) with the float32 eager reference
and then with each candidate backend/dtype that is available here, in
:data:`PREFERENCE` order. A candidate is accepted when its frames hold at least
:data:`MIN_PSNR_DB` against the reference's; the fastest accepted one (time per
frame, after its first call, which may compile) wins, the reference itself
being the fallback. The run is bounded and failure-tolerant:

* a total time budget: once spent, the remaining candidates are skipped with that reason;
* a candidate whose first steady batch (the first batch itself for eager/fused, which
  have no compile or capture on it) is already slower than the best so far is not timed again;
* a candidate that fails to build or render is skipped with the error as its reason.

The choice is cached in ``calibration.json`` under ``$LPSTUDIO_CACHE_DIR`` (default
``~/.cache/lpstudio``), keyed by :func:`calibration_key`: the machine (CPU model and
flags, or GPU name and capability), the torch and lpstudio versions, the device,
the weights and the engine dtype. A cache that cannot be read is ignored (with a
warning) and rewritten.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import Backend, available_backends, build_backend

if TYPE_CHECKING:
    from ..nets import Networks

log = logging.getLogger(__name__)

ENV_CACHE_DIR = "LPSTUDIO_CACHE_DIR"
CACHE_FILE = "calibration.json"
CACHE_SCHEMA = 1
MIN_PSNR_DB = 40.0
REFERENCE = ("eager", torch.float32)
DEFAULT_BUDGET_S = {"cpu": 240.0, "cuda": 240.0}
"""Wall-clock budget of one calibration per device type (others: the CPU's)."""
TIMED_CALLS = 2
SECONDS_PER_MINUTE = 60
THIRD_PARTY_LOGGERS: tuple[str, ...] = ("torch", "onnxscript", "onnx_ir", "onnxruntime", "onnx")
"""Loggers quieted to ERROR during a calibration (their warnings are about export internals, not the user's run)."""
"""Timed batches per candidate after its first call (fewer when it is already losing)."""

PREFERENCE: dict[str, tuple[tuple[str, torch.dtype], ...]] = {
    "cpu": (
        ("fused", torch.bfloat16),
        ("fused", torch.float32),
        ("onnxruntime", torch.float32),
    ),
    "cuda": (
        ("cudagraph", torch.float16),
        ("cudagraph", torch.bfloat16),
        ("fused", torch.float16),
        ("compile", torch.float16),
        ("tensorrt", torch.float16),
        ("onnxruntime", torch.float16),
        ("fused", torch.bfloat16),
        ("fused", torch.float32),
    ),
}
"""Candidates tried, in this order, per device type (those not available here are left out).
Cheap, likely winners first, so a budget that runs out leaves the long shots. ``compile`` is
not a CPU candidate: there it compiles each batch shape for minutes (170 s per size measured
on a 2-core Xeon, so ``serve`` would warm up for 8 minutes more), while the fused bfloat16
modules it would compile already run at 5.6x float32 eager; ask for it with ``--backend compile``."""

Clock = Callable[[], float]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class Trial:
    """How one candidate did: ``ms_per_frame`` after its first call; ``reason`` when it was not accepted."""

    backend: str
    dtype: str
    accepted: bool = False
    ms_per_frame: float | None = None
    first_call_s: float | None = None
    psnr_db: float | None = None
    reason: str | None = None


@dataclass
class Choice:
    """The backend and dtype ``auto`` picked, and how (``backend_instance`` is the built one, when calibrated now)."""

    backend: str
    dtype: str
    ms_per_frame: float | None
    reference_ms_per_frame: float | None
    calibration_s: float
    trials: list[Trial] = field(default_factory=list)
    cached: bool = False
    backend_instance: Backend | None = None

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def summary(self) -> str:
        speed = ""
        if self.ms_per_frame and self.reference_ms_per_frame:
            speed = f", {self.reference_ms_per_frame / self.ms_per_frame:.2f}x float32 eager"
        how = "cached calibration" if self.cached else f"calibrated in {self.calibration_s:.0f} s"
        return f"auto backend: {self.backend} {self.dtype} ({how}{speed})"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("backend_instance")
        data.pop("cached")
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Choice:
        trials = [Trial(**t) for t in data.get("trials", [])]
        fields = {k: data[k] for k in ("backend", "dtype", "ms_per_frame", "reference_ms_per_frame", "calibration_s")}
        return cls(**fields, trials=trials, cached=True)


# ----------------------------------------------------------------------------- cache


def cache_dir() -> Path:
    """``$LPSTUDIO_CACHE_DIR``, else ``$XDG_CACHE_HOME/lpstudio``, else ``~/.cache/lpstudio``."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lpstudio"


def _cpu_identity() -> str:
    """CPU model name and a hash of its flags (what decides which kernels are fast)."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key.strip() in ("flags", "Features") and not flags:
                    flags = value.strip()
    except OSError:
        pass
    digest = hashlib.sha256(flags.encode()).hexdigest()[:12]
    return f"{model} [flags {digest}] x{os.cpu_count()}"


def machine_identity(device: torch.device) -> str:
    """The accelerator (GPU name and capability) or CPU that a calibration is valid for."""
    if device.type == "cuda":
        index = device.index or 0
        major, minor = torch.cuda.get_device_capability(index)
        return f"{torch.cuda.get_device_name(index)} sm{major}{minor}"
    return _cpu_identity()


def calibration_key(device: torch.device, weights: str, engine_dtype: torch.dtype) -> str:
    """One string naming everything a calibration depends on (see the module docs)."""
    from .. import __version__

    parts = {
        "machine": machine_identity(device),
        "torch": torch.__version__,
        "lpstudio": __version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "device": device.type,
        "weights": weights,
        "engine_dtype": dtype_name(engine_dtype),
    }
    return json.dumps(parts, sort_keys=True)


def read_cache(path: Path) -> dict[str, Any]:
    """The cached calibrations (key -> choice); an unreadable file is reported and treated as empty."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data.get("entries") if isinstance(data, dict) else None
        if data.get("schema") != CACHE_SCHEMA or not isinstance(entries, dict):
            raise ValueError(f"not a schema-{CACHE_SCHEMA} calibration file")
        return entries
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("ignoring the calibration cache %s (%s); it will be rewritten", path, exc)
        return {}


def write_cache(path: Path, key: str, choice: Choice) -> None:
    """Add ``choice`` under ``key`` (atomic replace; a cache that cannot be written is only a warning)."""
    entries = read_cache(path)
    entries[key] = choice.to_json()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"schema": CACHE_SCHEMA, "entries": entries}, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the calibration cache %s: %s", path, exc)


# ----------------------------------------------------------------------------- calibration


def psnr_db(ours: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR (dB, peak 1) of images (B,3,H,W) in 0..1; infinite when identical, 0 with non-finite pixels."""
    ours, ref = ours.detach().float().cpu(), ref.detach().float().cpu()
    if not bool(torch.isfinite(ours).all()):
        return 0.0
    mse = float(((ours - ref) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def default_candidates(device: torch.device) -> list[tuple[str, torch.dtype]]:
    """The :data:`PREFERENCE` entries available on ``device``, in order."""
    available = {a.name: a for a in available_backends(device)}
    order = PREFERENCE.get(device.type, PREFERENCE["cpu"])
    return [(n, d) for n, d in order if n in available and available[n].available and d in available[n].dtypes]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Progress:
    """A tqdm bar on stderr over the candidates (or nothing)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="calibrating backends", unit="backend", file=sys.stderr, leave=True)

    def step(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(label)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def calibrate(
    networks: Networks,
    device: torch.device,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    *,
    candidates: Sequence[tuple[str, torch.dtype]] | None = None,
    budget_s: float | None = None,
    timed_calls: int = TIMED_CALLS,
    clock: Clock = time.perf_counter,
    build: Callable[..., Backend] = build_backend,
    progress: bool = False,
) -> Choice:
    """Time the float32 eager reference and each candidate on ``inputs``; return the fastest faithful one.

    ``inputs``: ``feature_3d`` (B,32,16,64,64), ``x_s`` and ``x_d`` (B,21,3), B a batch
    size the caller will use. ``build(name, networks, device, dtype)`` and ``clock`` can
    be replaced (tests). The winner's built backend is in ``Choice.backend_instance``.
    """
    candidates = default_candidates(device) if candidates is None else list(candidates)
    budget = DEFAULT_BUDGET_S.get(device.type, DEFAULT_BUDGET_S["cpu"]) if budget_s is None else budget_s
    frames = inputs[2].shape[0]
    start = clock()
    bar = _Progress(1 + len(candidates), progress)
    try:
        bar.step("eager float32 (reference)")
        reference = build(REFERENCE[0], networks, device, REFERENCE[1])
        ref_out, ref_trial = _time_candidate(reference, inputs, None, 0, clock, device, frames, math.inf)
        del reference
        bar.done()
        trials = [ref_trial]
        best_trial, best_backend = ref_trial, None
        for name, dtype in candidates:
            if (name, dtype) == REFERENCE:
                continue
            label = f"{name} {dtype_name(dtype)}"
            bar.step(label)
            if clock() - start > budget:
                trials.append(Trial(name, dtype_name(dtype), reason=f"skipped: the {budget:.0f} s budget was spent"))
                bar.done()
                continue
            trial, backend = _try(name, dtype, build, networks, device, inputs, ref_out, timed_calls, clock, best_trial)
            trials.append(trial)
            log.info("calibration %s: %s", label, trial)
            if trial.accepted and trial.ms_per_frame is not None and trial.ms_per_frame < best_trial.ms_per_frame:
                best_trial, best_backend = trial, backend
            del backend
            gc.collect()
            bar.done()
    finally:
        bar.close()
    return Choice(
        best_trial.backend,
        best_trial.dtype,
        best_trial.ms_per_frame,
        ref_trial.ms_per_frame,
        clock() - start,
        trials,
        backend_instance=best_backend,
    )


def _try(
    name: str,
    dtype: torch.dtype,
    build: Callable[..., Backend],
    networks: Networks,
    device: torch.device,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ref_out: torch.Tensor,
    timed_calls: int,
    clock: Clock,
    best: Trial,
) -> tuple[Trial, Backend | None]:
    """One candidate, any failure turned into its reason."""
    try:
        backend = build(name, networks, device, dtype)
        _, trial = _time_candidate(
            backend, inputs, ref_out, timed_calls, clock, device, inputs[2].shape[0], best.ms_per_frame
        )
    except Exception as exc:  # a failing backend is skipped, never fatal
        return Trial(name, dtype_name(dtype), reason=f"failed: {type(exc).__name__}: {exc}"), None
    return trial, (backend if trial.accepted else None)


def _time_candidate(
    backend: Backend,
    inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ref_out: torch.Tensor | None,
    timed_calls: int,
    clock: Clock,
    device: torch.device,
    frames: int,
    best_ms: float,
) -> tuple[torch.Tensor, Trial]:
    """Run ``backend`` on ``inputs``: its first call, then up to ``timed_calls`` timed ones.

    A backend without a slow first call (``needs_warm_up`` false: eager, fused) counts its
    first call as a timed one, and is not run again when that is already slower than
    ``best_ms`` per frame (the reference, ``ref_out=None``, runs once).
    """
    trial = Trial(backend.name, dtype_name(backend.dtype))
    t0 = clock()
    out = backend.warp_decode(*inputs)
    _sync(device)
    trial.first_call_s = clock() - t0
    times = [] if getattr(backend, "needs_warm_up", False) else [trial.first_call_s * 1000.0 / frames]
    if ref_out is not None:
        trial.psnr_db = psnr_db(out, ref_out)
        if trial.psnr_db < MIN_PSNR_DB:
            trial.reason = f"rejected: {trial.psnr_db:.1f} dB against float32 eager (needs {MIN_PSNR_DB:.0f})"
            return out, trial
    while len(times) < timed_calls and not (times and min(times) > best_ms):
        t0 = clock()
        backend.warp_decode(*inputs)
        _sync(device)
        times.append((clock() - t0) * 1000.0 / frames)
    if not times:  # timed_calls=0 on a backend with a slow first call: its first call is all we have
        times.append(trial.first_call_s * 1000.0 / frames)
    trial.ms_per_frame = min(times)
    trial.accepted = True
    if trial.ms_per_frame > best_ms:  # already losing: not timed again
        trial.reason = f"slower than the best so far ({trial.ms_per_frame:.0f} vs {best_ms:.0f} ms/frame)"
    return out, trial


def choose_backend(
    networks: Networks,
    device: torch.device,
    make_inputs: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    *,
    weights: str,
    engine_dtype: torch.dtype,
    dtype: torch.dtype | None = None,
    recalibrate: bool = False,
    progress: bool = True,
    **calibrate_options: Any,
) -> Choice:
    """The cached choice for this machine, else a fresh :func:`calibrate` (then cached).

    ``dtype`` limits the candidates to one backend dtype (``--backend-dtype``). A cached
    choice whose backend is no longer available here is recalibrated.
    """
    key = calibration_key(device, weights, engine_dtype) + (f"|{dtype_name(dtype)}" if dtype else "")
    path = cache_dir() / CACHE_FILE
    if not recalibrate:
        entry = read_cache(path).get(key)
        if entry is not None:
            try:
                choice = Choice.from_json(entry)
                if (choice.backend, choice.torch_dtype) == REFERENCE or any(
                    c == (choice.backend, choice.torch_dtype) for c in default_candidates(device)
                ):
                    return choice
                log.warning("the cached auto choice %s %s is not available any more", choice.backend, choice.dtype)
            except (TypeError, KeyError, AttributeError) as exc:
                log.warning("ignoring a malformed calibration entry in %s: %s", path, exc)
    candidates = calibrate_options.pop("candidates", None)
    if candidates is None:
        candidates = default_candidates(device)
    if dtype is not None:
        candidates = [c for c in candidates if c[1] == dtype]
    if progress:
        print(calibration_notice(device, path, calibrate_options.get("budget_s")), file=sys.stderr)
    with quiet_third_party():
        choice = calibrate(
            networks, device, make_inputs(), candidates=candidates, progress=progress, **calibrate_options
        )
    write_cache(path, key, choice)
    return choice


def calibration_notice(device: torch.device, path: Path, budget_s: float | None = None) -> str:
    """The line that announces a first-use calibration: one time, how long at most, where it is cached."""
    budget = DEFAULT_BUDGET_S.get(device.type, DEFAULT_BUDGET_S["cpu"]) if budget_s is None else budget_s
    minutes = max(1, math.ceil(budget / SECONDS_PER_MINUTE))
    return (
        f"first use on this machine: timing the render backends to pick the fastest (one time, about {minutes} min; "
        f"the choice is cached in {path}; --backend eager skips it)"
    )


@contextlib.contextmanager
def quiet_third_party() -> Iterator[None]:
    """Other libraries' warnings stay out of the user's terminal while calibrating (restored afterwards).

    Python warnings raised outside lpstudio are ignored, and the loggers of the libraries
    a candidate backend pulls in (the ONNX exporter's "torchvision is not installed", ...)
    are raised to ERROR for the duration. Nothing is changed on import.
    """
    loggers = [logging.getLogger(name) for name in THIRD_PARTY_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"(?!lpstudio)")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
