"""ONNX Runtime backends: W and G exported to ONNX (:mod:`lpstudio.export`), run by ORT.

``onnxruntime`` runs them with the CPU or CUDA execution provider (matching the
engine's device); ``tensorrt`` uses ORT's TensorRT provider, with built engines
cached on disk (``$LPSTUDIO_TRT_CACHE`` or ``~/.cache/lpstudio/tensorrt``) since
building one takes minutes. Exports are cached too (``$LPSTUDIO_ONNX_CACHE`` or
``~/.cache/lpstudio/onnx``), keyed by a hash of the weights.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendUnavailableError
from . import BackendBase

if TYPE_CHECKING:
    from ..nets import Networks

ENV_ONNX_CACHE = "LPSTUDIO_ONNX_CACHE"
ENV_TRT_CACHE = "LPSTUDIO_TRT_CACHE"
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TRT_PROVIDER = "TensorrtExecutionProvider"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lpstudio"


def onnx_cache_dir() -> Path:
    return Path(os.environ.get(ENV_ONNX_CACHE) or _cache_root() / "onnx")


def trt_cache_dir() -> Path:
    return Path(os.environ.get(ENV_TRT_CACHE) or _cache_root() / "tensorrt")


def ort_unavailable_reason(device: torch.device, *, tensorrt: bool) -> str | None:
    """Why ORT (or its TensorRT provider) cannot run on ``device``; ``None`` when it can."""
    for module, extra in (("onnxruntime", "onnx"), ("onnx", "onnx"), ("onnxscript", "onnx")):
        if importlib.util.find_spec(module) is None:
            return f"the {module!r} package is not installed (pip install 'liveportrait-studio[{extra}]')"
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if tensorrt:
        if device.type != "cuda":
            return "the TensorRT provider needs a CUDA device"
        if TRT_PROVIDER not in providers:
            return f"this onnxruntime has no {TRT_PROVIDER} (install onnxruntime-gpu with TensorRT)"
        return None
    if device.type == "cuda" and CUDA_PROVIDER not in providers:
        return f"this onnxruntime has no {CUDA_PROVIDER} (install onnxruntime-gpu)"
    if device.type not in ("cpu", "cuda"):
        return f"no ONNX Runtime provider wired up for {device.type}"
    return None


def _fp16_copy(path: Path, convert: Any) -> Path:
    target = path.with_suffix(".fp16.onnx")
    return target if target.is_file() else convert(path, target)


class OrtBackend(BackendBase):
    """W and G as two ONNX Runtime sessions; tensors cross as numpy arrays (host memory)."""

    name = "onnxruntime"

    def __init__(
        self,
        networks: Networks,
        device: torch.device,
        dtype: torch.dtype,
        *,
        tensorrt: bool = False,
        export_dir: str | os.PathLike[str] | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__(device, dtype)
        reason = ort_unavailable_reason(device, tensorrt=tensorrt)
        if reason:
            raise BackendUnavailableError(reason)
        if dtype not in (torch.float32, torch.float16):
            raise BackendUnavailableError(f"the ONNX Runtime backend runs float32 or float16, not {dtype}")
        if dtype == torch.float16 and device.type == "cpu":
            raise BackendUnavailableError("float16 ONNX graphs are for GPU providers; use float32 on CPU")
        import onnxruntime as ort

        from ..export import convert_float16, export_for_backend, weights_fingerprint

        if tensorrt:
            self.name = "tensorrt"
        key = weights_fingerprint(networks)
        cache = Path(export_dir) if export_dir is not None else onnx_cache_dir()
        paths = export_for_backend(networks, cache, key)
        if dtype == torch.float16 and not tensorrt:  # TensorRT does its own fp16 from the fp32 graph
            paths = {s: _fp16_copy(p, convert_float16) for s, p in paths.items()}
        self.paths = paths
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        self.providers = self._providers(device, tensorrt, dtype)
        # float16 graphs keep float32 inputs and outputs (convert_float16 keep_io_types), so feeds are float32.
        self.sessions = {s: ort.InferenceSession(str(p), opts, providers=self.providers) for s, p in paths.items()}

    @staticmethod
    def _providers(device: torch.device, tensorrt: bool, dtype: torch.dtype) -> list[Any]:
        dev_id = device.index or 0
        if tensorrt:
            cache = trt_cache_dir()
            cache.mkdir(parents=True, exist_ok=True)
            trt = {
                "device_id": dev_id,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache),
                "trt_timing_cache_enable": True,
                "trt_fp16_enable": dtype == torch.float16,
            }
            return [(TRT_PROVIDER, trt), (CUDA_PROVIDER, {"device_id": dev_id}), CPU_PROVIDER]
        if device.type == "cuda":
            return [(CUDA_PROVIDER, {"device_id": dev_id}), CPU_PROVIDER]
        return [CPU_PROVIDER]

    @staticmethod
    def _np(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().float().cpu().numpy())

    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        b = x_d.shape[0]
        feed = {
            "feature_3d": self._np(feature_3d.expand(b, *feature_3d.shape[1:])),
            "x_s": self._np(x_s.expand(b, -1, -1)),
            "x_d": self._np(x_d),
        }
        (out,) = self.sessions["warping"].run(None, feed)
        return torch.from_numpy(out)

    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        (img,) = self.sessions["decoder"].run(None, {"warped": self._np(warped)})
        return torch.from_numpy(img).float().to(self.device)


def build_ort(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> OrtBackend:
    return OrtBackend(networks, device, dtype, **options)


def build_tensorrt(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> OrtBackend:
    return OrtBackend(networks, device, dtype, tensorrt=True, **options)
