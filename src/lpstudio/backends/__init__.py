"""Render backends: interchangeable implementations of warping W + decoder G.

Rendering a frame is ``decode(warp(f_s, x_s, x_d))``; that is about 1.23 TFLOP and
almost all of the time. A :class:`Backend` does exactly that step, and nothing
else, so the engine can swap implementations at build time::

    engine = LivePortrait.from_checkpoints(ckpts, "cpu", backend="fused", backend_dtype="bfloat16")

Backends (see :data:`BACKENDS`):

``eager``
    The reference: the engine's own modules, float32 by default. Bit-identical
    to :meth:`LivePortrait.warp` + :meth:`LivePortrait.decode` (the golden path).
``fused``
    Eager PyTorch on re-packed weights: BatchNorm folded into convolutions,
    sibling convolutions merged, channels-last layouts; any dtype, with the
    numerically sensitive steps (sampling grids, softmax, sigmoid) in float32.
``compile``
    ``torch.compile`` of the fused modules (needs a C++ compiler on CPU).
``cudagraph``
    The fused modules captured in CUDA graphs, one per planned batch size, with
    static buffers for mixed-source batches (CUDA only; see :mod:`.planned`).
``onnxruntime`` / ``tensorrt``
    ONNX exports of W and G run by ONNX Runtime (CPU or CUDA provider), or by its
    TensorRT provider with an engine cache on disk. Optional installs.

``auto`` (:mod:`.auto`, not a backend of its own) calibrates the available ones on
this machine and picks the fastest that holds 40 dB against float32 eager.

A backend that cannot run here is reported by :func:`available_backends` with the
reason; :func:`build_backend` raises :class:`~lpstudio.errors.BackendUnavailableError`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from ..errors import BackendUnavailableError

if TYPE_CHECKING:
    from ..nets import Networks


@runtime_checkable
class Backend(Protocol):
    """One implementation of the per-frame work W + G.

    Inputs: ``feature_3d`` (B,32,16,64,64) appearance volume (any float dtype; a
    B=1 tensor expanded to B is fine), ``x_s`` and ``x_d`` (B,21,3) float32
    keypoints. Implementations are called under the engine's render lock, so
    they need not be re-entrant.
    """

    name: str
    device: torch.device
    dtype: torch.dtype

    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """W: -> warped features (B,256,64,64), decoder input, in the backend's dtype."""
        ...

    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        """G: (B,256,64,64) -> (B,3,512,512) float32 in 0..1."""
        ...

    def warp_decode(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """W then G: -> (B,3,512,512) float32 in 0..1."""
        ...


class BackendBase:
    """Shared plumbing: ``warp_decode`` is ``decode(warp(...))``."""

    name = "base"
    needs_warm_up = False
    """True when the first batch of a shape is slow (a compile, a graph capture, allocations):
    ``serve`` then runs every batch size it will use once before it reports ready."""

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = device
        self.dtype = dtype

    def prepare(self, batch: int, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> None:
        """Get ready for batches of ``batch`` frames: by default render one on the example inputs (B,...)."""
        self.warp_decode(feature_3d[:batch], x_s[:batch], x_d[:batch])

    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def warp_decode(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.decode(self.warp(feature_3d, x_s, x_d))

    def __repr__(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"<{type(self).__name__} {self.name} {self.device} {dtype}>"


@dataclass(frozen=True)
class BackendSpec:
    """How to check for and build one backend.

    ``module``/``factory`` name a function ``(networks, device, dtype, **options) -> Backend``;
    ``check`` returns ``None`` when the backend can run on the device, else the reason.
    ``dtypes`` maps a device type to the dtypes worth benchmarking there.
    """

    name: str
    module: str
    factory: str
    check: Callable[[torch.device], str | None]
    dtypes: dict[str, tuple[torch.dtype, ...]]
    description: str

    def build(self, networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> Backend:
        reason = self.check(device)
        if reason is not None:
            raise BackendUnavailableError(f"backend {self.name!r} is not available on {device}: {reason}")
        reason = dtype_unavailable_reason(device, dtype)
        if reason is not None:
            raise BackendUnavailableError(
                f"backend {self.name!r} in {str(dtype).removeprefix('torch.')} on {device}: {reason}",
                hint="use --backend-dtype float32",
            )
        factory = getattr(importlib.import_module(self.module, __name__), self.factory)
        return factory(networks, device, dtype, **options)


def _always(device: torch.device) -> str | None:
    return None


def dtype_unavailable_reason(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``dtype`` cannot run at speed on ``device`` (None: it can): bfloat16 on a CPU without native kernels."""
    if device.type == "cpu" and dtype == torch.bfloat16:
        from .cpu_support import cpu_bfloat16_unavailable_reason

        return cpu_bfloat16_unavailable_reason()
    return None


def _check_compile(device: torch.device) -> str | None:
    if not hasattr(torch, "compile"):
        return "this PyTorch has no torch.compile"
    if device.type == "cpu":
        import shutil

        if shutil.which("g++") is None and shutil.which("c++") is None:
            return "torch.compile on CPU needs a C++ compiler (g++), none found"
    if device.type == "mps":
        return "torch.compile is not supported for MPS here"
    return None


def _check_cudagraph(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    return None


def _check_ort(device: torch.device) -> str | None:
    from .ort import ort_unavailable_reason

    return ort_unavailable_reason(device, tensorrt=False)


def _check_trt(device: torch.device) -> str | None:
    from .ort import ort_unavailable_reason

    return ort_unavailable_reason(device, tensorrt=True)


_CPU_FAST = (torch.float32, torch.bfloat16)
_GPU_FAST = (torch.float32, torch.float16, torch.bfloat16)

BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "eager",
            ".eager",
            "build_eager",
            _always,
            {"cpu": (torch.float32,), "cuda": _GPU_FAST, "mps": (torch.float32, torch.float16)},
            "reference: the engine's modules as they are (golden-parity path in float32)",
        ),
        BackendSpec(
            "fused",
            ".fused",
            "build_fused",
            _always,
            {"cpu": _CPU_FAST, "cuda": _GPU_FAST, "mps": (torch.float32, torch.float16)},
            "eager on folded/merged weights, channels-last, sensitive steps in float32",
        ),
        BackendSpec(
            "compile",
            ".compiled",
            "build_compiled",
            _check_compile,
            {"cpu": _CPU_FAST, "cuda": _GPU_FAST},
            "torch.compile of the fused modules",
        ),
        BackendSpec(
            "cudagraph",
            ".compiled",
            "build_cudagraph",
            _check_cudagraph,
            {"cuda": (torch.float16, torch.bfloat16)},
            "fused modules replayed from CUDA graphs, one per batch size",
        ),
        BackendSpec(
            "onnxruntime",
            ".ort",
            "build_ort",
            _check_ort,
            {"cpu": (torch.float32,), "cuda": (torch.float32, torch.float16)},
            "ONNX exports of W and G on ONNX Runtime (CPU or CUDA provider)",
        ),
        BackendSpec(
            "tensorrt",
            ".ort",
            "build_tensorrt",
            _check_trt,
            {"cuda": (torch.float16,)},
            "ONNX exports on ONNX Runtime's TensorRT provider (engine cache on disk)",
        ),
    )
}


@dataclass(frozen=True)
class BackendAvailability:
    """Whether one backend can run on a device, and if not, why.

    ``dtypes``: those worth running there; ``dropped_dtypes``: dtype -> why it was left out
    (bfloat16 on a CPU without native bfloat16 kernels).
    """

    name: str
    available: bool
    reason: str | None
    dtypes: tuple[torch.dtype, ...]
    dropped_dtypes: tuple[tuple[torch.dtype, str], ...] = ()


def available_backends(device: str | torch.device = "cpu") -> list[BackendAvailability]:
    """Every registered backend with its availability on ``device`` (nothing is built)."""
    dev = torch.device(device)
    out = []
    for spec in BACKENDS.values():
        try:
            reason = spec.check(dev)
        except Exception as exc:  # a broken optional install is a reason, not a crash
            reason = f"{type(exc).__name__}: {exc}"
        dtypes, dropped = [], []
        for dt in spec.dtypes.get(dev.type, ()):
            why = dtype_unavailable_reason(dev, dt)
            if why is None:
                dtypes.append(dt)
            else:
                dropped.append((dt, why))
        out.append(BackendAvailability(spec.name, reason is None, reason, tuple(dtypes), tuple(dropped)))
    return out


def build_backend(
    name: str | Backend, networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any
) -> Backend:
    """Build backend ``name`` for ``networks`` (which it never modifies) on ``device`` in ``dtype``."""
    if not isinstance(name, str):
        return name
    try:
        spec = BACKENDS[name]
    except KeyError:
        raise BackendUnavailableError(f"unknown backend {name!r}", hint=f"use one of {', '.join(BACKENDS)}") from None
    return spec.build(networks, device, dtype, **options)
