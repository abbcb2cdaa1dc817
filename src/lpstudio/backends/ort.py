"""ONNX Runtime backends: W and G exported to ONNX (:mod:`lpstudio.export`), run by ORT.

``onnxruntime`` runs them with the CPU or CUDA execution provider (matching the
engine's device); ``tensorrt`` uses ORT's TensorRT provider, with built engines
cached on disk (``$LPSTUDIO_TRT_CACHE`` or ``~/.cache/lpstudio/tensorrt``) since
building one takes minutes. Exports are cached too (``$LPSTUDIO_ONNX_CACHE`` or
``~/.cache/lpstudio/onnx``), keyed by a hash of the weights.

Tensors cross by IO binding (torch memory on the engine's device is bound directly,
no numpy copies), and a session that did not get the provider asked for is an
error (:class:`ProviderMismatchError`), since ORT otherwise drops to the CPU quietly.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import BackendUnavailableError
from . import BackendBase

if TYPE_CHECKING:
    from ..nets import Networks

log = logging.getLogger(__name__)

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


class ProviderMismatchError(BackendUnavailableError):
    """ONNX Runtime did not give the execution provider that was asked for (or left nodes off it)."""


def check_providers(asked: Sequence[Any], got: Sequence[str], stage: str) -> None:
    """Raise :class:`ProviderMismatchError` when the first provider asked for is not among those ``got``.

    ``asked``: the providers passed to the session (names or ``(name, options)``); ``got``:
    ``session.get_providers()``. ORT drops a provider it cannot load (a missing CUDA or
    TensorRT library) without an error, and the session then quietly runs on the CPU.
    """
    wanted = [a if isinstance(a, str) else a[0] for a in asked]
    if wanted and wanted[0] not in got:
        raise ProviderMismatchError(
            f"ONNX Runtime was asked for {wanted[0]} for the {stage} stage but the session runs on "
            f"{', '.join(got) or 'nothing'} (the provider's libraries did not load)",
            hint="install the matching onnxruntime-gpu / TensorRT / CUDA libraries, or use --backend onnxruntime "
            "on the CPU, or another --backend",
        )


def node_providers(profile: Sequence[Mapping[str, Any]]) -> Counter[str]:
    """How many node runs each execution provider did, from an ORT profile (parsed JSON list of events)."""
    counts: Counter[str] = Counter()
    for event in profile:
        if event.get("cat") == "Node":
            provider = (event.get("args") or {}).get("provider")
            if provider:
                counts[provider] += 1
    return counts


def placement_warning(asked: str, counts: Mapping[str, int], stage: str) -> str | None:
    """The warning for nodes of ``stage`` that ran on another provider than ``asked`` (None: all on it)."""
    others = {p: n for p, n in counts.items() if p != asked}
    if not others:
        return None
    total = sum(counts.values())
    where = ", ".join(f"{n} on {p}" for p, n in sorted(others.items()))
    return (
        f"ONNX Runtime ran {sum(others.values())} of {total} node runs of the {stage} stage outside {asked} "
        f"({where}): that provider refused them, so this backend is slower than it should be"
    )


class ProviderPlacementWarning(RuntimeWarning):
    """Some nodes of an ONNX graph ran on a fallback provider (e.g. TensorRT refused them)."""


class OrtBackend(BackendBase):
    """W and G as two ONNX Runtime sessions, fed through IO binding.

    Inputs and outputs are bound to torch tensors' memory on the engine's device
    (CPU memory, or CUDA device pointers), so the (B,32,16,64,64) feature volume
    never goes through numpy. After the sessions are made, the providers they got
    are checked against those asked for (:func:`check_providers`), and on a GPU the
    first run is profiled to find nodes that fell back to another provider
    (:class:`ProviderPlacementWarning`, logged and kept in :attr:`placement`).
    """

    name = "onnxruntime"
    needs_warm_up = True

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
        self.providers = self._providers(device, tensorrt, dtype)
        self.placement: dict[str, dict[str, int]] = {}  # stage -> provider -> node runs (first GPU run)
        self._profiling = device.type == "cuda"
        self.sessions = {}
        for stage, path in paths.items():
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            opts.intra_op_num_threads = threads or torch.get_num_threads()
            if self._profiling:
                opts.enable_profiling = True
                opts.profile_file_prefix = str(cache / f"ort_profile_{stage}")
            session = ort.InferenceSession(str(path), opts, providers=self.providers)
            check_providers(self.providers, session.get_providers(), stage)
            self.sessions[stage] = session
        # float16 graphs keep float32 inputs and outputs (convert_float16 keep_io_types), so bindings are float32.
        self._outputs = {s: sess.get_outputs()[0] for s, sess in self.sessions.items()}

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

    def _bound(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` as a contiguous float32 tensor on the engine's device (the memory ORT reads)."""
        return t.detach().to(device=self.device, dtype=torch.float32).contiguous()

    def _run(self, stage: str, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Run one session on device tensors through IO binding; the output is a new float32 tensor."""
        session = self.sessions[stage]
        binding = session.io_binding()
        kind, index = self.device.type, self.device.index or 0
        keep = {name: self._bound(t) for name, t in inputs.items()}  # alive until the run is done
        for name, t in keep.items():
            binding.bind_input(name, kind, index, np.float32, tuple(t.shape), t.data_ptr())
        meta = self._outputs[stage]
        batch = next(iter(keep.values())).shape[0]
        shape = tuple(d if isinstance(d, int) else batch for d in meta.shape)
        out = torch.empty(shape, dtype=torch.float32, device=self.device)
        binding.bind_output(meta.name, kind, index, np.float32, shape, out.data_ptr())
        if kind == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # torch's writes land before ORT reads
            binding.synchronize_inputs()
        session.run_with_iobinding(binding)
        if kind == "cuda":
            binding.synchronize_outputs()
        if self._profiling and stage not in self.placement:
            self._check_placement(stage)
        return out

    def _check_placement(self, stage: str) -> None:
        path = Path(self.sessions[stage].end_profiling())
        try:
            counts = node_providers(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("could not read ONNX Runtime's profile %s: %s", path, exc)
            counts = Counter()
        finally:
            path.unlink(missing_ok=True)
        self.placement[stage] = dict(counts)
        asked = self.providers[0] if isinstance(self.providers[0], str) else self.providers[0][0]
        message = placement_warning(asked, counts, stage)
        if message:
            log.warning("%s", message)
            warnings.warn(message, ProviderPlacementWarning, stacklevel=3)

    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        b = x_d.shape[0]
        feed = {
            "feature_3d": feature_3d.expand(b, *feature_3d.shape[1:]),
            "x_s": x_s.expand(b, -1, -1),
            "x_d": x_d,
        }
        return self._run("warping", feed)

    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        return self._run("decoder", {"warped": warped})


def build_ort(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> OrtBackend:
    return OrtBackend(networks, device, dtype, **options)


def build_tensorrt(networks: Networks, device: torch.device, dtype: torch.dtype, **options: Any) -> OrtBackend:
    return OrtBackend(networks, device, dtype, tensorrt=True, **options)
