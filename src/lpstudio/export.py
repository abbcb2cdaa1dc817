"""ONNX export of the engine's stages: ``lpstudio export onnx --out DIR``.

One file per stage, each with a dynamic batch axis:

- ``appearance.onnx``: ``image`` (B,3,256,256) in 0..1 -> ``feature_3d`` (B,32,16,64,64)
- ``motion.onnx``: ``image`` -> ``pitch yaw roll`` (B,66) bins, ``t`` (B,3), ``exp`` (B,63),
  ``scale`` (B,1), ``kp`` (B,63)
- ``warping.onnx``: ``feature_3d`` (B,32,16,64,64), ``x_s``, ``x_d`` (B,21,3) -> ``warped`` (B,256,64,64)
- ``decoder.onnx``: ``warped`` (B,256,64,64) -> ``image`` (B,3,512,512) in 0..1
- ``stitching.onnx``: ``x_s``, ``x_d`` (B,21,3) -> ``x_d_new`` (B,21,3)

Operators needing care:

- ``grid_sample`` on 5-D volumes (warping): exported as ONNX ``GridSample`` at
  opset :data:`OPSET` (20+), where GridSample is N-dimensional. ONNX Runtime
  1.31's CPU kernel runs the 5-D case (checked by ``tests/test_backends.py``
  against PyTorch), so no decomposition is needed; opset 16-19 GridSample is 4-D
  only, so older opsets are refused.
- ``instance_norm`` (decoder) exports as ``InstanceNormalization`` with unit scale.
- nearest upsampling and ``pixel_shuffle`` export as ``Resize`` and
  ``DepthToSpace`` (CRD mode), both supported by ORT's CPU, CUDA and TensorRT providers.

The exported graphs are traced from the float32 reference modules; a float16
copy for GPUs is made with :func:`convert_float16` (the warping module's
sampling grids are kept in float32 by blocking those nodes).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from .atomic import atomic_output
from .errors import BackendUnavailableError

if TYPE_CHECKING:
    from .nets import Networks

OPSET = 20
"""First opset whose GridSample is N-dimensional (5-D volumes in the warping module)."""
STAGES = ("appearance", "motion", "warping", "decoder", "stitching")
RENDER_STAGES = ("warping", "decoder")
BATCH = "batch"
MOTION_OUTPUTS = ("pitch", "yaw", "roll", "t", "exp", "scale", "kp")
"""motion.onnx outputs: pose bins (B,66) x3, t (B,3), exp (B,63), scale (B,1), kp (B,63)."""


class _WarpStage(nn.Module):
    """W with only the decoder input as output."""

    def __init__(self, warping: nn.Module) -> None:
        super().__init__()
        self.warping = warping

    def forward(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.warping(feature_3d, x_s, x_d).out


class _MotionStage(nn.Module):
    def __init__(self, motion: nn.Module) -> None:
        super().__init__()
        self.motion = motion

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.motion(image)
        return tuple(getattr(out, k) for k in MOTION_OUTPUTS)


class _StitchStage(nn.Module):
    def __init__(self, stitching: nn.Module) -> None:
        super().__init__()
        self.stitching = stitching

    def forward(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        from . import keypoints as K

        delta = self.stitching.stitching(K.stitching_input(x_s, x_d))
        return K.apply_stitching(x_d, delta)


def stage_specs(
    networks: Networks,
) -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...], list[str], list[str]]]:
    """Per stage: (module, example inputs at batch 1, input names, output names)."""
    num_kp = networks.warping.cfg.num_kp
    kp = torch.zeros(1, num_kp, 3)
    feature = torch.zeros(1, 32, 16, 64, 64)
    image = torch.zeros(1, 3, 256, 256)
    return {
        "appearance": (networks.appearance, (image,), ["image"], ["feature_3d"]),
        "motion": (_MotionStage(networks.motion), (image,), ["image"], list(MOTION_OUTPUTS)),
        "warping": (_WarpStage(networks.warping), (feature, kp, kp + 0.01), ["feature_3d", "x_s", "x_d"], ["warped"]),
        "decoder": (networks.decoder, (torch.zeros(1, 256, 64, 64),), ["warped"], ["image"]),
        "stitching": (_StitchStage(networks.stitching), (kp, kp + 0.01), ["x_s", "x_d"], ["x_d_new"]),
    }


def _require(module: str, extra: str = "onnx") -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise BackendUnavailableError(
            f"ONNX export needs the {module!r} package", hint=f"pip install 'liveportrait-studio[{extra}]'"
        )


def export_stage(
    networks: Networks, stage: str, path: str | os.PathLike[str], *, opset: int = OPSET, check: bool = True
) -> Path:
    """Export one stage (float32, CPU, dynamic batch) to ``path``; returns the path."""
    if opset < OPSET:
        raise ValueError(f"opset {opset} has only 4-D GridSample; the warping module needs opset >= {OPSET}")
    _require("onnx")
    _require("onnxscript")
    module, args, in_names, out_names = stage_specs(networks)[stage]
    # A float32 CPU copy: the caller's (the engine's) modules keep their device and dtype.
    module = copy.deepcopy(module).float().cpu().eval()
    batch = torch.export.Dim(BATCH, min=1, max=64)
    dynamic_shapes = tuple({0: batch} for _ in args)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(False), torch.no_grad():
        program = torch.onnx.export(
            module,
            args,
            input_names=in_names,
            output_names=out_names,
            opset_version=opset,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    with atomic_output(path) as partial:  # an existing export survives a failed or interrupted one
        program.save(str(partial))
        if check:
            import onnx

            onnx.checker.check_model(str(partial))
    return path


def export_onnx(
    networks: Networks,
    out_dir: str | os.PathLike[str],
    stages: Sequence[str] = STAGES,
    *,
    opset: int = OPSET,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Export ``stages`` into ``out_dir`` as ``<stage>.onnx``."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    out = {}
    for stage in stages:
        if log:
            log(f"exporting {stage}")
        out[stage] = export_stage(networks, stage, Path(out_dir) / f"{stage}.onnx", opset=opset)
    return out


FP16_KEEP_FLOAT32_OPS = ("GridSample", "Softmax", "Exp", "Sigmoid", "InstanceNormalization", "ReduceMean")
"""Node types left in float32 by :func:`convert_float16` (sampling positions, normalisations)."""


def convert_float16(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """A float16 copy of an exported stage with float32 inputs/outputs and sensitive ops in float32.

    Needs ``onnxconverter-common`` (its ``float16`` converter); used for GPU providers.
    """
    _require("onnxconverter_common", "onnx")
    import onnx
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    model = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(FP16_KEEP_FLOAT32_OPS))
    onnx.save(model, str(dst))
    return Path(dst)


def export_for_backend(networks: Networks, cache_dir: Path, key: str) -> dict[str, Path]:
    """The render stages' ONNX files for ``networks``, exported once into ``cache_dir/key``."""
    target = cache_dir / key
    paths = {s: target / f"{s}.onnx" for s in RENDER_STAGES}
    missing = [s for s, p in paths.items() if not p.is_file()]
    if missing:
        export_onnx(networks, target, missing)
    return paths


def weights_fingerprint(networks: Networks, stages: Sequence[str] = RENDER_STAGES) -> str:
    """A short hash of the render stages' weights (names an export cache entry)."""
    import hashlib

    h = hashlib.sha256()
    modules: dict[str, Any] = {"warping": networks.warping, "decoder": networks.decoder}
    for stage in stages:
        for name, t in modules[stage].state_dict().items():
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
