"""Compiled backends: ``torch.compile`` of the fused modules, and CUDA graphs.

``torch.compile`` fuses the element-wise work between convolutions (instance
norm, modulation, activations) and, with ``freezing``, pre-packs the weights
for oneDNN. Compiling is slow (about a minute per module on a 2-core CPU) and
happens once per batch shape, so both backends run every batch at a size of their
:class:`~.planned.ShapePlan` (padded; a larger batch adds its size) and
:meth:`prepare` compiles or captures a size ahead of use (``serve`` does that for
every size its worker uses before it reports ready). Each new shape is recorded
in :attr:`events` (a :class:`~.planned.ShapeEvents`), so a compile or capture
while users wait can be seen and tested.

If compiling fails, the backend either raises (``fallback=False``, the default)
or warns with :class:`CompileFallbackWarning` and runs the fused modules
uncompiled; it never falls back silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .fused import FusedBackend
from .planned import DEFAULT_MAX_BATCH, CapturedBatch, GraphSet, ShapeEvents, ShapePlan, padded_inputs

if TYPE_CHECKING:
    from ..nets import Networks

COMPILE_OPTIONS: dict[str, Any] = {"freezing": True}
"""Inductor options: freeze parameters into constants so convolution weights are pre-packed."""


class CompileFallbackWarning(RuntimeWarning):
    """torch.compile failed and the backend runs the uncompiled fused modules instead."""


class CompiledBackend(FusedBackend):
    """:class:`~lpstudio.backends.fused.FusedBackend` with both modules through ``torch.compile``.

    :meth:`warp_decode` (the engine's path) runs each batch at a planned size with
    contiguous inputs, so one compiled graph per planned size serves one source
    expanded and several sources concatenated alike.
    """

    name = "compile"
    needs_warm_up = True

    def __init__(
        self,
        networks: Networks,
        device: torch.device,
        dtype: torch.dtype,
        *,
        fallback: bool = False,
        mode: str | None = None,
        plan: ShapePlan | None = None,
    ) -> None:
        super().__init__(networks, device, dtype)
        self.fallback = fallback
        self.fell_back: str | None = None  # the reason, once compiling failed and we fell back
        self.plan = plan or ShapePlan.for_batch_size(DEFAULT_MAX_BATCH)
        self.events = ShapeEvents()
        options = dict(COMPILE_OPTIONS) if mode is None else None
        self._warp_fn = torch.compile(self.warping, dynamic=False, mode=mode, options=options)
        self._decode_fn = torch.compile(self.decoder, dynamic=False, mode=mode, options=options)

    def set_plan(self, plan: ShapePlan) -> None:
        """Run batches at ``plan``'s sizes from now on (already compiled sizes stay compiled)."""
        self.plan = plan

    def _call(
        self, stage: str, compiled: Callable[..., torch.Tensor], eager: Callable[..., torch.Tensor], *args: Any
    ) -> Any:
        if self.fell_back is not None:
            return eager(*args)
        first = args[0]
        layout = "expanded" if first.dim() > 0 and first.shape[0] > 1 and first.stride(0) == 0 else "dense"
        self.events.record(f"compile {stage} {layout}", first.shape[0])  # dynamic=False: a new shape compiles
        try:
            return compiled(*args)
        except Exception as exc:
            if not self.fallback:
                raise RuntimeError(
                    f"torch.compile failed ({type(exc).__name__}: {exc}); "
                    "use backend 'fused', or pass fallback=True to run uncompiled with a warning"
                ) from exc
            self.fell_back = f"{type(exc).__name__}: {exc}"
            warnings.warn(
                f"torch.compile failed, running the fused modules uncompiled: {self.fell_back}",
                CompileFallbackWarning,
                stacklevel=3,
            )
            return eager(*args)

    @torch.inference_mode()
    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self._call("warp", self._warp_fn, self.warping, feature_3d, x_s, x_d)

    @torch.inference_mode()
    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        return self._call("decode", self._decode_fn, self.decoder, warped)

    @torch.inference_mode()
    def warp_decode(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Any batch (B frames, one or several sources) at the plan's sizes -> (B,3,512,512) float32."""
        if x_d.shape[0] > self.plan.max_batch:  # outside the plan (never in serve): one more size
            self.plan = self.plan.with_size(x_d.shape[0])
        outs = []
        for start, stop, size in self.plan.chunks(x_d.shape[0]):
            f, s, d = padded_inputs(feature_3d[start:stop], x_s[start:stop], x_d[start:stop], size)
            outs.append(self.decode(self.warp(f, s, d))[: stop - start])
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def prepare(self, batch: int, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> None:
        """Compile the planned size for ``batch`` frames now, on these example inputs (B,...)."""
        self.warp_decode(feature_3d[:batch], x_s[:batch], x_d[:batch])


def build_compiled(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> CompiledBackend:
    return CompiledBackend(networks, device, dtype, **options)


class CudaGraphBackend(FusedBackend):
    """The fused modules captured in CUDA graphs, one per planned batch size, and replayed.

    Each graph has static input buffers for the batch's feature volumes
    (S,32,16,64,64), x_s and x_d (S,21,3): the server's batches mix sources, so the
    volume is a full per-row buffer, not one expanded copy. A batch is copied into
    the graph of the smallest planned size that holds it (see :mod:`.planned`), the
    graph replays, and the output rows are copied out, so callers may keep what
    they get. A size is captured on first use or by :meth:`prepare` (after
    ``WARMUP_RUNS`` eager runs on a side stream).
    """

    name = "cudagraph"
    needs_warm_up = True
    WARMUP_RUNS = 2

    def __init__(
        self, networks: Networks, device: torch.device, dtype: torch.dtype, *, plan: ShapePlan | None = None
    ) -> None:
        super().__init__(networks, device, dtype)
        self._kp_shape = (networks.warping.cfg.num_kp, 3)
        self._volume: tuple[tuple[int, ...], torch.dtype] | None = None  # (32,16,64,64) and dtype of f_s buffers
        self.graphs = GraphSet(plan or ShapePlan.for_batch_size(DEFAULT_MAX_BATCH), self._capture)
        self.events = self.graphs.events

    @property
    def plan(self) -> ShapePlan:
        return self.graphs.plan

    def set_plan(self, plan: ShapePlan) -> None:
        """Run batches at ``plan``'s sizes from now on (graphs already captured are kept)."""
        self.graphs.plan = plan

    def _run(self, feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.warping(feature, x_s, x_d))

    def _capture(self, batch: int) -> CapturedBatch:
        if self._volume is None:
            raise RuntimeError("cudagraph: a capture needs an example batch (call warp_decode or prepare)")
        shape, dtype = self._volume
        static_f = torch.zeros((batch, *shape), dtype=dtype, device=self.device)
        static_s = torch.zeros(batch, *self._kp_shape, device=self.device)
        static_d = torch.zeros_like(static_s)
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(self.WARMUP_RUNS):
                self._run(static_f, static_s, static_d)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._run(static_f, static_s, static_d)
        return CapturedBatch(static_f, static_s, static_d, static_out, graph.replay)

    @torch.inference_mode()
    def warp_decode(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Any batch (B frames, one or several sources) replayed from the captured graphs -> (B,3,512,512)."""
        if self._volume is None:
            self._volume = (tuple(feature_3d.shape[1:]), feature_3d.dtype)
        if x_d.shape[0] > self.plan.max_batch:  # outside the plan (never in serve): one more size
            self.set_plan(self.plan.with_size(x_d.shape[0]))
        return self.graphs.run(feature_3d, x_s, x_d)

    @torch.inference_mode()
    def prepare(self, batch: int, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> None:
        """Capture the planned size for ``batch`` frames now (example inputs give the buffers' dtype)."""
        if self._volume is None:
            self._volume = (tuple(feature_3d.shape[1:]), feature_3d.dtype)
        self.graphs.graph(self.plan.size_for(min(batch, self.plan.max_batch)))


def build_cudagraph(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> CudaGraphBackend:
    return CudaGraphBackend(networks, device, dtype, **options)
