"""Appearance feature extractor F: the source image as a 3D feature volume."""

from __future__ import annotations

import torch
from torch import nn

from .config import AppearanceConfig
from .layers import ConvNormAct2d, DownBlock2d, ResBlock3d


class AppearanceFeatureExtractor(nn.Module):
    """(B,3,256,256) RGB in 0..1 -> (B,32,16,64,64) appearance feature volume ``f_s``."""

    def __init__(self, cfg: AppearanceConfig = AppearanceConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.first = ConvNormAct2d(cfg.image_channels, cfg.block_expansion)
        widths = [min(cfg.max_features, cfg.block_expansion * 2**i) for i in range(cfg.num_down_blocks + 1)]
        self.down_blocks = nn.ModuleList(DownBlock2d(a, b) for a, b in zip(widths, widths[1:]))
        self.second = nn.Conv2d(widths[-1], cfg.max_features, kernel_size=1)
        self.resblocks_3d = nn.Sequential()
        for i in range(cfg.num_resblocks):
            self.resblocks_3d.add_module(f"3dr{i}", ResBlock3d(cfg.reshape_channels))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.first(image)
        for block in self.down_blocks:
            x = block(x)
        x = self.second(x)  # (B,512,64,64)
        b, _, h, w = x.shape
        volume = x.view(b, self.cfg.reshape_channels, self.cfg.reshape_depth, h, w)
        return self.resblocks_3d(volume)
