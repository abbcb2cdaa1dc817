"""Deterministic synthetic weights in the official format.

They let tests and ``lpstudio bench`` run the real loading code and the full
numerics without the real download. The values are noise: they produce no face.

Fill rule for each tensor (the project's reference rule, from the key's last
component and its shape), with ``numpy.random.default_rng(seed * 1_000_003 +
crc32("module/key"))``:

- ``num_batches_tracked``: int64 0
- ``running_mean``: normal(0, 0.1); ``running_var``: 1 + uniform(0, 0.5)
- ``weight``/``weight_orig`` with 2+ dims: normal(0, 1/sqrt(fan_in)), fan_in = prod(shape[1:])
- ``weight`` with 1 dim: 1 + normal(0, 0.1)
- ``bias``: normal(0, 0.02); ``gamma``/``beta`` (GRN): normal(0, 0.1)
- ``weight_u``/``weight_v``: leading left/right singular vectors of ``weight_orig``
  reshaped to (out, -1), signs chosen so that ``u.sum() >= 0``

All float tensors are float32. The stitching file holds ``retarget_shoulder``,
``retarget_mouth`` and ``retarget_eye`` state dicts with ``module.`` prefixes.
"""

from __future__ import annotations

import json
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import MODULE_FILES
from .nets.stitching import StitchingRetargeting

DEFAULT_SEED = 1234
SEED_MULTIPLIER = 1_000_003

_BASE_MODULES = ("appearance_feature_extractor", "motion_extractor", "warping_module", "spade_generator")


@lru_cache(maxsize=1)
def official_manifest() -> dict[str, dict[str, list[int]]]:
    """Every key and shape of the official state dicts, per module (in official key order)."""
    text = resources.files("lpstudio").joinpath("data/manifest.json").read_text(encoding="utf-8")
    return json.loads(text)


def _fill(seed: int, module: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    leaf = key.rsplit(".", 1)[-1]
    rng = np.random.default_rng(seed * SEED_MULTIPLIER + zlib.crc32(f"{module}/{key}".encode()))
    if leaf == "num_batches_tracked":
        return np.array(0, dtype=np.int64)
    if leaf == "running_mean":
        return rng.normal(0, 0.1, shape)
    if leaf == "running_var":
        return 1 + rng.uniform(0, 0.5, shape)
    if leaf in ("weight", "weight_orig") and len(shape) >= 2:
        return rng.normal(0, 1 / np.sqrt(int(np.prod(shape[1:]))), shape)
    if leaf == "weight":
        return 1 + rng.normal(0, 0.1, shape)
    if leaf == "bias":
        return rng.normal(0, 0.02, shape)
    if leaf in ("gamma", "beta"):
        return rng.normal(0, 0.1, shape)
    raise ValueError(f"no fill rule for {module}/{key}")


def synthetic_state_dict(module: str, seed: int = DEFAULT_SEED) -> dict[str, torch.Tensor]:
    """One module's synthetic state dict (official keys and order), e.g. ``"warping_module"``."""
    shapes = official_manifest()[module]
    arrays: dict[str, np.ndarray] = {}
    for key, shape in shapes.items():
        if not key.endswith(("weight_u", "weight_v")):
            arrays[key] = _fill(seed, module, key, tuple(shape))
    for key in shapes:
        if key.endswith(".weight_u"):
            base = key[: -len("_u")]
            w = arrays[base + "_orig"]
            u, _, vt = np.linalg.svd(w.reshape(w.shape[0], -1).astype(np.float64), full_matrices=False)
            u0, v0 = u[:, 0], vt[0]
            if u0.sum() < 0:
                u0, v0 = -u0, -v0
            arrays[base + "_u"], arrays[base + "_v"] = u0, v0
    out = {}
    for key in shapes:
        arr = arrays[key]
        dtype = np.int64 if arr.dtype == np.int64 else np.float32
        out[key] = torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))
    return out


def synthetic_checkpoints(seed: int = DEFAULT_SEED) -> dict[str, Any]:
    """All five official checkpoints in memory, keyed like :data:`lpstudio.checkpoint.MODULE_FILES`."""
    ckpts: dict[str, Any] = {m: synthetic_state_dict(m, seed) for m in _BASE_MODULES}
    stitch = {}
    for ours, theirs in StitchingRetargeting.CHECKPOINT_KEYS.items():
        sd = synthetic_state_dict(f"stitching_retargeting_module.{ours}", seed)
        stitch[theirs] = {"module." + k: v for k, v in sd.items()}
    ckpts["stitching_retargeting_module"] = stitch
    return ckpts


def write_synthetic_weights(out_dir: Path, seed: int = DEFAULT_SEED) -> Path:
    """Write the synthetic checkpoints as files in the official layout under ``out_dir``."""
    out_dir = Path(out_dir)
    for name, obj in synthetic_checkpoints(seed).items():
        path = out_dir / MODULE_FILES[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(obj, path)
    return out_dir
