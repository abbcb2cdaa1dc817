"""Motion extractor M: ConvNeXt-V2-tiny predicting keypoints, head pose and expression."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import MotionConfig
from .layers import CONVNEXT_LN_EPS, ChannelsFirstLayerNorm, GlobalResponseNorm


class MotionOutput(NamedTuple):
    """Raw heads of the motion extractor, for a batch of B images."""

    pitch: torch.Tensor  # (B,66) bin logits
    yaw: torch.Tensor  # (B,66)
    roll: torch.Tensor  # (B,66)
    t: torch.Tensor  # (B,3) translation
    exp: torch.Tensor  # (B,63) expression deformation, 21 keypoints x 3
    scale: torch.Tensor  # (B,1)
    kp: torch.Tensor  # (B,63) canonical keypoints, 21 x 3


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> MLP (4x) with GELU and GRN -> residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=CONVNEXT_LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GlobalResponseNorm(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)  # (B,H,W,C)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class MotionExtractor(nn.Module):
    """(B,3,256,256) RGB in 0..1 -> :class:`MotionOutput`.

    The official checkpoint nests this network under ``detector.``; the loader
    strips that prefix.
    """

    HEADS: tuple[str, ...] = ("kp", "scale", "pitch", "yaw", "roll", "t", "exp")

    def __init__(self, cfg: MotionConfig = MotionConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        dims = cfg.dims
        stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, dims[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(dims[0])
        )
        self.downsample_layers = nn.ModuleList([stem])
        for a, b in zip(dims, dims[1:]):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(a), nn.Conv2d(a, b, kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(
            nn.Sequential(*(ConvNeXtBlock(dim) for _ in range(depth))) for dim, depth in zip(dims, cfg.depths)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=CONVNEXT_LN_EPS)
        width = dims[-1]
        n3 = 3 * cfg.num_kp
        self.fc_kp = nn.Linear(width, n3)
        self.fc_scale = nn.Linear(width, 1)
        self.fc_pitch = nn.Linear(width, cfg.num_bins)
        self.fc_yaw = nn.Linear(width, cfg.num_bins)
        self.fc_roll = nn.Linear(width, cfg.num_bins)
        self.fc_t = nn.Linear(width, 3)
        self.fc_exp = nn.Linear(width, n3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) -> (B,768) pooled, normalised features."""
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        return self.norm(x.mean(dim=(-2, -1)))

    def forward(self, image: torch.Tensor) -> MotionOutput:
        f = self.features(image)
        return MotionOutput(
            pitch=self.fc_pitch(f),
            yaw=self.fc_yaw(f),
            roll=self.fc_roll(f),
            t=self.fc_t(f),
            exp=self.fc_exp(f),
            scale=self.fc_scale(f),
            kp=self.fc_kp(f),
        )
