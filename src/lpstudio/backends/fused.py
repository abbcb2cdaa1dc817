"""The fused backend: eager PyTorch on re-packed weights (:mod:`.fused_modules`), channels-last."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from . import BackendBase
from .fused_modules import FusedDecoder, FusedWarping

if TYPE_CHECKING:
    from ..nets import Networks


class FusedBackend(BackendBase):
    """:class:`.fused_modules.FusedWarping` + :class:`.fused_modules.FusedDecoder` on the device, channels-last."""

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
