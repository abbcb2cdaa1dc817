"""The reference backend: the engine's own W and G modules, eager PyTorch."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import BackendBase

if TYPE_CHECKING:
    from ..nets import Networks


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
