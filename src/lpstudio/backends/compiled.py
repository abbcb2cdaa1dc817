"""Compiled backends: ``torch.compile`` of the fused modules, and CUDA graphs.

``torch.compile`` fuses the element-wise work between convolutions (instance
norm, modulation, activations) and, with ``freezing``, pre-packs the weights
for oneDNN. Compiling is slow (about a minute per module on a 2-core CPU) and
happens on the first call for each batch size. If compiling fails, the backend
either raises (``fallback=False``, the default) or warns with
:class:`CompileFallbackWarning` and runs the fused modules uncompiled; it never
falls back silently.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from .fused import FusedBackend

if TYPE_CHECKING:
    from ..nets import Networks

COMPILE_OPTIONS: dict[str, Any] = {"freezing": True}
"""Inductor options: freeze parameters into constants so convolution weights are pre-packed."""


class CompileFallbackWarning(RuntimeWarning):
    """torch.compile failed and the backend runs the uncompiled fused modules instead."""


class CompiledBackend(FusedBackend):
    """:class:`~lpstudio.backends.eager.FusedBackend` with both modules through ``torch.compile``."""

    name = "compile"

    def __init__(
        self,
        networks: Networks,
        device: torch.device,
        dtype: torch.dtype,
        *,
        fallback: bool = False,
        mode: str | None = None,
    ) -> None:
        super().__init__(networks, device, dtype)
        self.fallback = fallback
        self.fell_back: str | None = None  # the reason, once compiling failed and we fell back
        options = dict(COMPILE_OPTIONS) if mode is None else None
        self._warp_fn = torch.compile(self.warping, dynamic=False, mode=mode, options=options)
        self._decode_fn = torch.compile(self.decoder, dynamic=False, mode=mode, options=options)

    def _call(self, compiled: Callable[..., torch.Tensor], eager: Callable[..., torch.Tensor], *args: Any) -> Any:
        if self.fell_back is not None:
            return eager(*args)
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
        return self._call(self._warp_fn, self.warping, feature_3d, x_s, x_d)

    @torch.inference_mode()
    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        return self._call(self._decode_fn, self.decoder, warped)


def build_compiled(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> CompiledBackend:
    return CompiledBackend(networks, device, dtype, **options)


class CudaGraphBackend(FusedBackend):
    """The fused modules captured once per batch size in a CUDA graph and replayed.

    Inputs are copied into static buffers and the output copied out, so callers
    may keep what they get. The source volume is captured expanded from one
    copy, as the engine passes it. Graphs are built lazily on the first call for
    each batch size (after ``WARMUP_RUNS`` eager runs on a side stream).
    """

    name = "cudagraph"
    WARMUP_RUNS = 2

    def __init__(self, networks: Networks, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(networks, device, dtype)
        self._kp_shape = (networks.warping.cfg.num_kp, 3)
        self._graphs: dict[int, tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]] = {}

    def _run(self, feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.warping(feature.expand(x_d.shape[0], *feature.shape[1:]), x_s, x_d))

    def _capture(
        self, batch: int, feature: torch.Tensor
    ) -> tuple[torch.cuda.CUDAGraph, tuple[torch.Tensor, ...], torch.Tensor]:
        static_f = torch.zeros_like(feature[:1])
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
        return graph, (static_f, static_s, static_d), static_out

    @torch.inference_mode()
    def warp_decode(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        batch = x_d.shape[0]
        if feature_3d.shape[0] != 1 and feature_3d.stride(0) != 0:
            return super().warp_decode(feature_3d, x_s, x_d)  # several sources in one batch: not captured
        if batch not in self._graphs:
            self._graphs[batch] = self._capture(batch, feature_3d)
        graph, (static_f, static_s, static_d), static_out = self._graphs[batch]
        static_f.copy_(feature_3d[:1])
        static_s.copy_(x_s.expand(batch, -1, -1))
        static_d.copy_(x_d)
        graph.replay()
        return static_out.clone()


def build_cudagraph(networks: Networks, device: torch.device, dtype: torch.dtype) -> CudaGraphBackend:
    return CudaGraphBackend(networks, device, dtype)
