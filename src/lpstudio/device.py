"""Choosing the device and the floating-point type."""

from __future__ import annotations

import torch

from .errors import BackendUnavailableError

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def best_device() -> torch.device:
    """CUDA if present, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` -> :func:`best_device`; otherwise checked to exist here."""
    if device is None or (isinstance(device, str) and device == "auto"):
        return best_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise BackendUnavailableError(f"unknown device {device!r}", hint="use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "device 'cuda' was asked for, but PyTorch sees no CUDA GPU here", hint="use --device cpu"
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BackendUnavailableError(
                "device 'mps' was asked for, but it is not available here", hint="use --device cpu"
            )
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A dtype name (float32, float16, bfloat16 and short forms) -> ``torch.dtype``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise BackendUnavailableError(f"unsupported dtype {dtype}", hint="use float32, float16 or bfloat16")
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise BackendUnavailableError(f"unknown dtype {dtype!r}", hint="use float32, float16 or bfloat16") from None
