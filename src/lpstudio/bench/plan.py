"""What ``lpstudio bench`` runs: the default and ``--full`` plans, the time budget and the progress bar.

The default plan is sized to finish in a few minutes on a 2-core CPU: the
reference and the fused backend in bfloat16 (float32 where the CPU has no
native bfloat16 kernels), batch sizes 1 and 4, two iterations, plus the
server's path (two distinct sources in one batch). ``--full`` is the long sweep: every
registered backend in each of its dtypes, batch sizes 1, 4 and 8, three
iterations. A time budget bounds either: a step whose predicted time would go
past it is skipped and listed in the report, never started.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..backends import BACKENDS, available_backends
from .report import REFERENCE

DEFAULT_PLANS: dict[str, tuple[tuple[str, torch.dtype], ...]] = {
    "cpu": (("fused", torch.bfloat16),),
    "cuda": (
        ("fused", torch.float16),
        ("fused", torch.bfloat16),
        ("cudagraph", torch.float16),
        ("cudagraph", torch.bfloat16),
    ),
    "mps": (("fused", torch.float32), ("fused", torch.float16)),
}
"""Backends besides the reference that the default plan times, per device type."""
DEFAULT_FALLBACK: dict[str, tuple[str, torch.dtype]] = {"cpu": ("fused", torch.float32)}
"""Timed instead when none of the device's default plan can run (a CPU without native bfloat16)."""
DEFAULT_MIXED_BATCH: dict[str, int] = {"cpu": 2}
"""Batch size of the mixed-sources mode by default (elsewhere: the largest batch size)."""
DEFAULT_BATCH_SIZES: dict[str, tuple[int, ...]] = {"cpu": (1, 4), "cuda": (1, 4, 8), "mps": (1, 4)}
FULL_BATCH_SIZES = (1, 4, 8)
DEFAULT_ITERS = 2
FULL_ITERS = 3
QUICK_ITERS = 1
DEFAULT_BUDGET_S = 600.0
"""Default time budget of a run (not of ``--full``, which has none unless given)."""
MIXED_SOURCES = 4
"""Distinct sources cycled over the batch in the server-path (mixed) mode."""
SHAPE_AGNOSTIC = frozenset({"eager", "fused"})
"""Backends that neither compile nor capture per input shape: no untimed warm-up call per batch size."""
REPLICA_BATCH = 8
"""Batch size at which memory per replica is reported (the largest measured, if smaller)."""


@dataclass
class BenchOptions:
    """What to measure. ``None`` fields take the plan's defaults (see :func:`resolve`)."""

    device: str = "cpu"
    backends: Sequence[str] | None = None  # None: the default plan (or, with full, every registered backend)
    dtypes: Sequence[str] | None = None  # None: the plan's / each backend's dtypes for the device
    batch_sizes: Sequence[int] | None = None
    iters: int | None = None
    seed: int = 1234
    quick: bool = False
    full: bool = False
    budget_s: float | None = None  # None: DEFAULT_BUDGET_S, or unlimited with full; 0 or less: reference only
    mixed_batch: int | None = None  # None: the largest batch size (if >= 2); 0: no mixed mode
    log: Callable[[str], None] | None = None
    progress: bool = False  # a tqdm bar on stderr

    @classmethod
    def quick_options(cls, **overrides: Any) -> BenchOptions:
        opts = cls(batch_sizes=(1,), iters=QUICK_ITERS, quick=True)
        for key, value in overrides.items():
            setattr(opts, key, value)
        return opts


@dataclass(frozen=True)
class Plan:
    """The resolved run: candidates (backend, dtype, reason-if-unavailable), reference first."""

    candidates: tuple[tuple[str, torch.dtype, str | None], ...]
    batch_sizes: tuple[int, ...]
    iters: int
    mixed_batch: int | None
    budget_s: float | None

    @staticmethod
    def warms_up(name: str) -> bool:
        """Whether backend ``name`` gets an untimed warm-up call per new shape (it compiles or captures)."""
        return name not in SHAPE_AGNOSTIC

    def steps_for(self, name: str) -> int:
        """Steps of one backend: build + first frame, warm-ups (if :meth:`warms_up`), timed calls."""
        warm = self.warms_up(name)
        steps = 1 + sum((b != 1 and warm) + self.iters for b in self.batch_sizes)
        if self.mixed_batch:
            steps += warm + self.iters
        return steps

    def steps(self) -> int:
        """Steps of every runnable candidate (reference included)."""
        return sum(self.steps_for(name) for name, _, reason in self.candidates if reason is None)


def _resolve_dtypes(names: Sequence[str]) -> tuple[torch.dtype, ...]:
    from ..device import resolve_dtype

    return tuple(resolve_dtype(d) for d in names)


def resolve(opts: BenchOptions, device: torch.device) -> Plan:
    """The plan for ``opts`` on ``device`` (see module docs); raises on bad sizes or unknown backends."""
    kind = device.type
    if opts.batch_sizes is not None:
        batch_sizes = tuple(sorted({int(b) for b in opts.batch_sizes}))
    else:
        batch_sizes = FULL_BATCH_SIZES if opts.full else DEFAULT_BATCH_SIZES.get(kind, (1,))
    iters = opts.iters if opts.iters is not None else (FULL_ITERS if opts.full else DEFAULT_ITERS)
    if not batch_sizes or batch_sizes[0] < 1 or iters < 1:
        raise ValueError("batch sizes and iterations must be at least 1")
    mixed = opts.mixed_batch
    if mixed is None:
        mixed = batch_sizes[-1] if opts.full or opts.quick else DEFAULT_MIXED_BATCH.get(kind, batch_sizes[-1])
    if mixed is not None and mixed < 2:
        mixed = None
    budget = opts.budget_s if opts.budget_s is not None else (None if opts.full else DEFAULT_BUDGET_S)

    avail = {a.name: a for a in available_backends(device)}
    wanted_dtypes = _resolve_dtypes(opts.dtypes) if opts.dtypes else None
    pairs: list[tuple[str, torch.dtype | None]] = []
    if opts.backends is None and not opts.full:
        pairs = [(n, dt) for n, dt in DEFAULT_PLANS.get(kind, ()) if wanted_dtypes is None or dt in wanted_dtypes]
    else:
        wanted = list(opts.backends) if opts.backends else list(BACKENDS)
        unknown = [n for n in wanted if n not in BACKENDS]
        if unknown:
            from ..errors import BackendUnavailableError

            raise BackendUnavailableError(f"unknown backend(s) {', '.join(unknown)}", hint=f"use {', '.join(BACKENDS)}")
        for name in wanted:
            a = avail[name]
            listed = wanted_dtypes or (a.dtypes + tuple(dt for dt, _ in a.dropped_dtypes))
            pairs += [(name, dt) for dt in listed] if listed else [(name, None)]
    out: list[tuple[str, torch.dtype, str | None]] = [(REFERENCE[0], REFERENCE[1], None)]
    for name, dt in pairs:
        a = avail[name]
        if dt is None:
            out.append((name, torch.float32, a.reason or f"no dtype of this backend runs on {kind}"))
            continue
        if (name, dt) == REFERENCE:
            continue
        dropped = dict(a.dropped_dtypes)
        out.append((name, dt, a.reason if a.reason is not None else dropped.get(dt)))
    fallback = DEFAULT_FALLBACK.get(kind)
    default_plan = opts.backends is None and not opts.full and opts.dtypes is None
    if default_plan and fallback and all(r is not None for _, _, r in out[1:]):
        out.append((fallback[0], fallback[1], avail[fallback[0]].reason))
    return Plan(tuple(out), batch_sizes, iters, mixed, budget)


class Budget:
    """Wall-clock budget of a run; :meth:`fits` says whether a step predicted to take ``estimate_s`` still fits."""

    def __init__(self, limit_s: float | None, clock: Callable[[], float] = time.perf_counter) -> None:
        self.limit_s = limit_s
        self._clock = clock
        self._start = clock()

    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def fits(self, estimate_s: float | None) -> bool:
        if self.limit_s is None:
            return True
        return self.elapsed_s() + (estimate_s or 0.0) <= self.limit_s


class Progress:
    """Counts the plan's steps; draws a tqdm bar on stderr when enabled, else passes notes to ``log``."""

    def __init__(self, total: int, *, enabled: bool, log: Callable[[str], None] | None) -> None:
        self.total = total
        self.done = 0
        self.skipped = 0
        self._log = log or (lambda msg: None)
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=sys.stderr, unit="step", dynamic_ncols=True, leave=True)

    def note(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(f"bench: {msg}", file=sys.stderr)
        else:
            self._log(msg)

    @contextmanager
    def step(self, desc: str) -> Iterator[None]:
        if self._bar is not None:
            self._bar.set_description(desc, refresh=True)
        else:
            self._log(desc)
        try:
            yield
        finally:
            self._advance(1)

    def skip(self, n: int, why: str) -> None:
        """Count ``n`` steps as passed without running; with a reason (the budget) they count as skipped."""
        if n <= 0:
            return
        if why:
            self.skipped += n
            self.note(f"skipped {n} step(s): {why}")
        self._advance(n)

    def _advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
