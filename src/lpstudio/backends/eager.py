"""Eager PyTorch backends: the reference and the fused re-packing."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import BackendBase
from .fused import FusedDecoder, FusedWarping

if TYPE_CHECKING:
    from ..engine import Networks


class EagerBackend(BackendBase):
    """The engine's own W and G modules, called exactly as :meth:`LivePortrait.warp`/``decode`` do.

    With the engine's dtype this shares the engine's modules (no copy) and is
    bit-identical to the golden path; another dtype gets a converted copy.
    """

    name = "eager"

    def __init__(self, warping: nn.Module, decoder: nn.Module, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        self.warping = warping
        self.decoder = decoder

    @torch.inference_mode()
    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        # Keypoints stay float32: the warping module does its geometry in float32.
        return self.warping(feature_3d.to(self.dtype), x_s.float(), x_d.float()).out

    @torch.inference_mode()
    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        return self.decoder(warped.to(self.dtype)).float()


def _module_dtype(module: nn.Module) -> torch.dtype:
    return next(module.parameters()).dtype


def build_eager(networks: Networks, device: torch.device, dtype: torch.dtype) -> EagerBackend:
    warping, decoder = networks.warping, networks.decoder
    if _module_dtype(warping) != dtype or next(warping.parameters()).device != device:
        warping = copy.deepcopy(warping).to(device=device, dtype=dtype)
        decoder = copy.deepcopy(decoder).to(device=device, dtype=dtype)
    return EagerBackend(warping, decoder, device, dtype)


class FusedBackend(BackendBase):
    """:class:`~lpstudio.backends.fused.FusedWarping` + :class:`~lpstudio.backends.fused.FusedDecoder`."""

    name = "fused"

    def __init__(self, networks: Networks, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(device, dtype)
        with torch.no_grad():
            self.warping = FusedWarping(networks.warping).to(device).to_compute(dtype).eval()
            self.decoder = FusedDecoder(networks.decoder).to(device=device, dtype=dtype).eval()
        if device.type in ("cpu", "cuda"):
            self._channels_last()

    def _channels_last(self) -> None:
        for module in self.warping.modules():
            if hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 5:
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last_3d)
        for module in [*self.warping.modules(), *self.decoder.modules()]:
            if hasattr(module, "weight") and module.weight is not None and module.weight.dim() == 4:
                module.weight.data = module.weight.data.contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return self.warping(feature_3d, x_s, x_d)

    @torch.inference_mode()
    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        return self.decoder(warped)


def build_fused(networks: Networks, device: torch.device, dtype: torch.dtype) -> FusedBackend:
    return FusedBackend(networks, device, dtype)
