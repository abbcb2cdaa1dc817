"""SPADE decoder G: warped features -> 512x512 image."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DecoderConfig
from .layers import SPADE_LEAKY_SLOPE, SPADEResBlock


class SPADEDecoder(nn.Module):
    """(B,256,64,64) warped features -> (B,3,512,512) RGB in 0..1.

    Six SPADE residual blocks at 64x64 and 512 channels, then two upsampling
    blocks (to 128 and 256 pixels) and a 2x pixel shuffle to 512. Every block is
    modulated by the decoder input itself (the "segmentation" map of SPADE).
    """

    def __init__(self, cfg: DecoderConfig = DecoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        cin = cfg.in_channels
        wide = 2 * cin
        self.fc = nn.Conv2d(cin, wide, kernel_size=3, padding=1)
        for i in range(cfg.middle_blocks):
            self.add_module(f"G_middle_{i}", SPADEResBlock(wide, wide, cin, cfg.spade_hidden))
        self.up_0 = SPADEResBlock(wide, cin, cin, cfg.spade_hidden)
        self.up_1 = SPADEResBlock(cin, cfg.out_channels, cin, cfg.spade_hidden)
        self.conv_img = nn.Sequential(
            nn.Conv2d(cfg.out_channels, 3 * cfg.upscale**2, kernel_size=3, padding=1),
            nn.PixelShuffle(cfg.upscale),
        )

    def middle_blocks(self) -> list[SPADEResBlock]:
        return [getattr(self, f"G_middle_{i}") for i in range(self.cfg.middle_blocks)]

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature
        x = self.fc(feature)
        for block in self.middle_blocks():
            x = block(x, seg)
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg)
        return torch.sigmoid(self.conv_img(F.leaky_relu(x, SPADE_LEAKY_SLOPE)))
