"""Reading the official checkpoints safely and mapping them onto our modules.

Official files are plain ``torch.save`` state dicts (the stitching file holds
three of them). We read them with ``weights_only=True`` (no code is ever
unpickled), map the keys with :func:`checkpoint_filter_fn` (strip the
DataParallel ``module.`` and the ``detector.`` prefixes, fold spectral
normalisation into plain weights) and load them strictly. Every failure is a
:class:`~lpstudio.errors.WeightsError` naming the file and what to do.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import WeightsError

DOWNLOAD_HINT = (
    "run `lpstudio weights download` (or pass --weights-dir pointing to the official pretrained_weights/ folder)"
)

# Official modules and their files, relative to a weights folder in the official layout.
MODULE_FILES: dict[str, str] = {
    "appearance_feature_extractor": "liveportrait/base_models/appearance_feature_extractor.pth",
    "motion_extractor": "liveportrait/base_models/motion_extractor.pth",
    "warping_module": "liveportrait/base_models/warping_module.pth",
    "spade_generator": "liveportrait/base_models/spade_generator.pth",
    "stitching_retargeting_module": "liveportrait/retargeting_models/stitching_retargeting_module.pth",
}

_PREFIXES_TO_STRIP: tuple[str, ...] = ("module.", "detector.")
_SPECTRAL_SUFFIXES = ("_orig", "_u", "_v")


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load one official checkpoint file with ``weights_only=True``.

    Raises :class:`WeightsError` for a missing file, a file that is truncated or is not
    a PyTorch checkpoint, and a file that would need to unpickle code (refused).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file not found: {path}", hint=DOWNLOAD_HINT)
    if path.stat().st_size == 0:
        raise WeightsError(f"weight file is empty: {path}", hint=f"delete it and {DOWNLOAD_HINT}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"refused to load {path}: it asks to run code when unpickled, which a weight file never needs "
            f"({str(exc).splitlines()[0] if str(exc) else 'unsafe pickle'})",
            hint=f"do not use this file; {DOWNLOAD_HINT}",
        ) from None
    except Exception as exc:  # torch raises many types for damaged files (zip, EOF, index errors...)
        raise WeightsError(
            f"cannot read {path}: it is truncated or not a PyTorch checkpoint ({type(exc).__name__})",
            hint=f"check it with `lpstudio weights verify`, then delete it and {DOWNLOAD_HINT}",
        ) from None
    if not isinstance(obj, Mapping):
        raise WeightsError(
            f"{path} holds a {type(obj).__name__}, not a state dict", hint=f"delete it and {DOWNLOAD_HINT}"
        )
    return dict(obj)


def fold_spectral_norm(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each ``X.weight_orig/_u/_v`` triple with the plain ``X.weight`` it stands for.

    In eval mode PyTorch's spectral norm divides ``weight_orig`` by
    ``sigma = u . (W v)`` with ``W = weight_orig`` reshaped to (out, -1), using the
    stored ``u`` and ``v`` (no power iteration); we do the same once at load time.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.endswith("weight_orig"):
            base = key[: -len("_orig")]
            u, v = state_dict.get(base + "_u"), state_dict.get(base + "_v")
            if u is None or v is None:
                out[key] = value  # left as is: reported as an unexpected key
                continue
            sigma = torch.dot(u, torch.mv(value.reshape(value.shape[0], -1), v))
            out[base] = value / sigma
        elif key.endswith(("weight_u", "weight_v")) and (key[:-2] + "_orig") in state_dict:
            continue
        else:
            out[key] = value
    return out


def checkpoint_filter_fn(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Map an official state dict onto our modules' keys (prefixes stripped, spectral norm folded)."""
    renamed: dict[str, Any] = {}
    for key, value in state_dict.items():
        new = key
        for prefix in _PREFIXES_TO_STRIP:
            if new.startswith(prefix):
                new = new[len(prefix) :]
        renamed[new] = value
    return fold_spectral_norm(renamed)


def _describe(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_dict_strict(module: nn.Module, official: Mapping[str, Any], source: str) -> None:
    """Filter ``official`` and load it into ``module``; every key must match, with its shape."""
    bad_values = [k for k, v in official.items() if not isinstance(v, torch.Tensor)]
    if bad_values:
        raise WeightsError(
            f"{source}: entries that are not tensors: {_describe(sorted(bad_values))}",
            hint=f"this is not an official LivePortrait checkpoint; {DOWNLOAD_HINT}",
        )
    state = checkpoint_filter_fn(official)
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_describe(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_describe(unexpected)}")
        raise WeightsError(
            f"{source} does not match the official LivePortrait model ({'; '.join(parts)})",
            hint=f"is it the right file (human model, not animals)? {DOWNLOAD_HINT}",
        )
    for k, v in expected.items():
        # Like PyTorch itself, accept a 1-element 1-d tensor for a scalar (old BatchNorm
        # checkpoints saved num_batches_tracked that way).
        if v.dim() == 0 and tuple(state[k].shape) == (1,):
            state[k] = state[k].reshape(())
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if wrong:
        raise WeightsError(f"{source} has tensors of the wrong shape: {_describe(wrong)}", hint=DOWNLOAD_HINT)
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    module.load_state_dict(state, strict=True)


def split_stitching_checkpoint(obj: Mapping[str, Any], source: str) -> dict[str, Mapping[str, Any]]:
    """The stitching file holds three state dicts; return them under our names."""
    from .nets.stitching import StitchingRetargeting

    parts: dict[str, Mapping[str, Any]] = {}
    for ours, theirs in StitchingRetargeting.CHECKPOINT_KEYS.items():
        part = obj.get(theirs)
        if not isinstance(part, Mapping):
            raise WeightsError(
                f"{source} has no {theirs!r} entry (it holds: {_describe(sorted(map(str, obj)))})",
                hint=f"this is not the official stitching_retargeting_module.pth; {DOWNLOAD_HINT}",
            )
        parts[ours] = part
    return parts
