"""Fixed batch shapes for the backends that specialise on them (``compile``, ``cudagraph``).

``torch.compile`` (with ``dynamic=False``) compiles once per input shape and a CUDA
graph replays one captured shape, so such a backend prepares a small set of batch
sizes, a :class:`ShapePlan`, and maps every batch onto it:

* a batch of ``n`` frames runs at the smallest planned size ``>= n``; the extra rows
  are padding whose outputs are dropped (every row is computed independently, so the
  padding never changes a real frame);
* a batch larger than the largest planned size adds its size to the plan (a compile or
  capture then; never in ``serve``, whose worker never exceeds the planned ``--batch-size``);
  :meth:`ShapePlan.chunks` splits one for callers that want a fixed plan.

The server's worker takes batches of 1 to ``--batch-size`` frames (a new job's first
frame goes out in a batch of first frames), so ``ShapePlan.for_batch_size(4)`` is
``(1, 2, 4)``: a batch of 3 runs padded to 4. ``serve`` prepares every planned size
before it reports ready, so nothing is compiled or captured while a user waits;
:class:`ShapeEvents` counts each preparation so tests can check that.

:class:`GraphSet` holds one captured graph per planned size with its static input
buffers (feature volume, x_s, x_d): a batch is copied into them, the graph replays,
the output is copied out. The capture itself is injected, so the buffer logic runs
(and is tested) on CPU with a stand-in replay; :mod:`.compiled` passes the real CUDA
capture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

DEFAULT_MAX_BATCH = 4
"""The planned sizes of a backend nobody configured: ``(1, 2, 4)``, the CLI's default batch."""


@dataclass(frozen=True)
class ShapePlan:
    """The batch sizes a backend prepares, ascending; every batch runs at one of them."""

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.sizes or any(s < 1 for s in self.sizes) or list(self.sizes) != sorted(set(self.sizes)):
            raise ValueError(f"a shape plan needs ascending, distinct batch sizes >= 1, got {self.sizes}")

    @classmethod
    def for_batch_size(cls, max_batch: int) -> ShapePlan:
        """Powers of two below ``max_batch``, and ``max_batch`` itself: ``8 -> (1, 2, 4, 8)``, ``6 -> (1, 2, 4, 6)``.

        Padding costs at most 2x on the smallest batches and the plan stays short
        (each size is a compile or a capture).
        """
        if max_batch < 1:
            raise ValueError(f"the largest batch size must be >= 1, got {max_batch}")
        sizes = [1]
        while sizes[-1] * 2 < max_batch:
            sizes.append(sizes[-1] * 2)
        return cls(tuple(sorted({*sizes, max_batch})))

    def with_size(self, n: int) -> ShapePlan:
        """This plan with batch size ``n`` added."""
        return ShapePlan(tuple(sorted({*self.sizes, n})))

    @property
    def max_batch(self) -> int:
        return self.sizes[-1]

    def size_for(self, n: int) -> int:
        """The planned size a batch of ``1 <= n <= max_batch`` frames runs at."""
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"a batch of {n} frames does not fit the plan {self.sizes}; split it first")
        return next(s for s in self.sizes if s >= n)

    def chunks(self, n: int) -> list[tuple[int, int, int]]:
        """``(start, stop, planned size)`` for each chunk of a batch of ``n`` frames."""
        out = []
        for start in range(0, n, self.max_batch):
            stop = min(n, start + self.max_batch)
            out.append((start, stop, self.size_for(stop - start)))
        return out


def padded_inputs(
    feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor, size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contiguous copies with ``size`` rows: ``n`` real rows, then row 0 repeated as padding.

    ``feature_3d`` (n,32,16,64,64) (an expanded single volume is fine), ``x_s`` and
    ``x_d`` (n,21,3). Always contiguous, so a compiled graph sees one memory layout
    whether the engine passed one source expanded or several sources concatenated.
    """
    n = x_d.shape[0]

    def pad(t: torch.Tensor) -> torch.Tensor:
        t = t.expand(n, *t.shape[1:])
        out = torch.empty((size, *t.shape[1:]), dtype=t.dtype, device=t.device)
        out[:n].copy_(t)
        if size > n:
            out[n:].copy_(t[:1].expand(size - n, *t.shape[1:]))
        return out

    return pad(feature_3d), pad(x_s), pad(x_d)


ShapeHook = Callable[[str, int], None]
"""Called as ``hook(kind, batch)`` when a backend compiles or captures a new shape."""


@dataclass
class ShapeEvents:
    """Every shape a backend prepared (``(kind, batch)``), with hooks told of each new one."""

    seen: set[tuple[str, int]] = field(default_factory=set)
    hooks: list[ShapeHook] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.seen)

    def record(self, kind: str, batch: int) -> bool:
        """Note that ``kind`` ran at ``batch``; True (and hooks called) when that is new."""
        if (kind, batch) in self.seen:
            return False
        self.seen.add((kind, batch))
        for hook in list(self.hooks):
            hook(kind, batch)
        return True


@dataclass
class CapturedBatch:
    """One captured graph: static inputs ``feature`` (S,32,16,64,64), ``x_s``/``x_d`` (S,21,3),
    static ``output`` (S,3,512,512), and ``replay()`` which recomputes ``output`` from them."""

    feature: torch.Tensor
    x_s: torch.Tensor
    x_d: torch.Tensor
    output: torch.Tensor
    replay: Callable[[], None]

    @property
    def size(self) -> int:
        return self.x_d.shape[0]

    def run(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Copy ``n <= size`` rows into the static inputs, replay, return a copy of the ``n`` output rows.

        Rows past ``n`` keep what an earlier batch (or the capture's zeros) left there:
        finite values whose outputs are computed and dropped.
        """
        n = x_d.shape[0]
        if n > self.size:
            raise ValueError(f"a batch of {n} frames does not fit a graph captured for {self.size}")
        self.feature[:n].copy_(feature_3d.expand(n, *feature_3d.shape[1:]))
        self.x_s[:n].copy_(x_s.expand(n, *x_s.shape[1:]))
        self.x_d[:n].copy_(x_d)
        self.replay()
        return self.output[:n].clone()


class GraphSet:
    """One :class:`CapturedBatch` per planned size, captured on first use (or by :meth:`prepare`)."""

    def __init__(
        self, plan: ShapePlan, capture: Callable[[int], CapturedBatch], events: ShapeEvents | None = None
    ) -> None:
        self.plan = plan
        self._capture = capture
        self.events = events if events is not None else ShapeEvents()
        self.graphs: dict[int, CapturedBatch] = {}

    def graph(self, size: int) -> CapturedBatch:
        if size not in self.graphs:
            self.graphs[size] = self._capture(size)
            self.events.record("capture", size)
        return self.graphs[size]

    def prepare(self, sizes: Iterable[int] | None = None) -> None:
        """Capture every planned size (or ``sizes``) now."""
        for size in self.plan.sizes if sizes is None else sizes:
            self.graph(size)

    def run(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Any batch through the captured graphs: ``feature_3d`` (B,...), ``x_s``/``x_d`` (B,21,3) -> (B,3,512,512)."""
        n = x_d.shape[0]
        feature_3d = feature_3d.expand(n, *feature_3d.shape[1:])
        x_s = x_s.expand(n, *x_s.shape[1:])
        outs = [
            self.graph(size).run(feature_3d[start:stop], x_s[start:stop], x_d[start:stop])
            for start, stop, size in self.plan.chunks(n)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs)
