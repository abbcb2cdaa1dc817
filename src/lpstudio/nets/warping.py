"""Warping module W: moves the source feature volume from source to driving keypoints.

The dense motion network turns the sparse keypoint motion into a dense 3D flow
field: it warps a compressed copy of the volume once per keypoint (plus once
for the background), adds Gaussian heatmaps of the keypoint displacement, and
a 3D hourglass predicts soft masks that blend those per-keypoint flows, plus a
2D occlusion map. The volume is then resampled with that flow and projected to
the decoder's 256-channel input.

Precision: the convolutions run in the module's dtype; the geometry (keypoints,
sampling grids, Gaussian heatmaps, the softmax blend of flows) and the two
``grid_sample`` calls run in float32, so reduced precision does not quantise
sampling positions (bfloat16 keeps only 8 bits of mantissa). In float32 all the
casts are no-ops.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .config import DenseMotionConfig, WarpingConfig
from .layers import ConvNormAct2d, DownBlock3d, UpBlock3d


class WarpOutput(NamedTuple):
    out: torch.Tensor  # (B,256,64,64) warped features, decoder input
    occlusion_map: torch.Tensor  # (B,1,64,64) in 0..1
    deformation: torch.Tensor  # (B,16,64,64,3) sampling grid in [-1,1], (x,y,z) order


def coordinate_grid(d: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(d,h,w,3) grid of normalised (x, y, z) coordinates in [-1, 1] (x right, y down, z in)."""

    def axis(n: int) -> torch.Tensor:
        return 2 * (torch.arange(n, device=like.device, dtype=like.dtype) / (n - 1)) - 1

    z, y, x = torch.meshgrid(axis(d), axis(h), axis(w), indexing="ij")
    return torch.stack([x, y, z], dim=-1)


def keypoint_heatmaps(kp: torch.Tensor, grid: torch.Tensor, variance: float) -> torch.Tensor:
    """Gaussian blobs: kp (B,K,3), grid (d,h,w,3) -> (B,K,d,h,w)."""
    diff = grid[None, None] - kp[:, :, None, None, None, :]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


class Hourglass3d(nn.Module):
    """U-Net over (B,C,D,H,W) volumes that pools only H and W.

    Output channels are ``block_expansion + in_channels`` (the input is the last skip).
    """

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int, max_features: int) -> None:
        super().__init__()

        def width(i: int) -> int:
            return min(max_features, block_expansion * 2**i)

        self.encoder = nn.Module()
        self.encoder.down_blocks = nn.ModuleList(
            DownBlock3d(in_channels if i == 0 else width(i), width(i + 1)) for i in range(num_blocks)
        )
        self.decoder = nn.Module()
        self.decoder.up_blocks = nn.ModuleList(
            UpBlock3d((1 if i == num_blocks - 1 else 2) * width(i + 1), width(i)) for i in reversed(range(num_blocks))
        )
        self.out_channels = block_expansion + in_channels
        self.decoder.conv = nn.Conv3d(self.out_channels, self.out_channels, kernel_size=3, padding=1)
        self.decoder.norm = nn.BatchNorm3d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.encoder.down_blocks:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.decoder.up_blocks:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return F.relu(self.decoder.norm(self.decoder.conv(out)))


class DenseMotionNetwork(nn.Module):
    """Sparse keypoint motion -> dense deformation field and occlusion map."""

    def __init__(self, cfg: DenseMotionConfig, num_kp: int, feature_channels: int, occlusion: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_kp = num_kp
        # Per keypoint (and background): a heatmap channel + the compressed features.
        in_channels = (num_kp + 1) * (cfg.compress + 1)
        self.hourglass = Hourglass3d(in_channels, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        out = self.hourglass.out_channels
        self.mask = nn.Conv3d(out, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channels, cfg.compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(cfg.compress)
        self.occlusion = nn.Conv2d(out * cfg.reshape_depth, 1, kernel_size=7, padding=3) if occlusion else None

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """feature (B,32,D,H,W), float32 keypoints (B,K,3) -> float32 deformation (B,D,H,W,3), occlusion (B,1,H,W)."""
        b = feature.shape[0]
        k1 = self.num_kp + 1
        dtype = feature.dtype
        kp_driving, kp_source = kp_driving.float(), kp_source.float()
        feature = F.relu(self.norm(self.compress(feature)))  # (B,4,D,H,W)
        _, c, d, h, w = feature.shape
        grid = coordinate_grid(d, h, w, kp_source)  # (D,H,W,3) float32

        # Where each driving-space point comes from in the source, per keypoint:
        # grid - kp_driving + kp_source; index 0 is the identity (background).
        shift = (kp_source - kp_driving)[:, :, None, None, None, :]
        per_kp = grid[None, None] + shift  # (B,K,D,H,W,3)
        sparse_motion = torch.cat([grid.expand(b, 1, d, h, w, 3), per_kp], dim=1)  # (B,K+1,D,H,W,3)

        repeated = feature.float().unsqueeze(1).expand(b, k1, c, d, h, w).reshape(b * k1, c, d, h, w)
        deformed = F.grid_sample(repeated, sparse_motion.reshape(b * k1, d, h, w, 3), align_corners=False)
        deformed = deformed.view(b, k1, c, d, h, w)

        heat = keypoint_heatmaps(kp_driving, grid, self.cfg.kp_variance) - keypoint_heatmaps(
            kp_source, grid, self.cfg.kp_variance
        )
        heat = torch.cat([heat.new_zeros(b, 1, d, h, w), heat], dim=1)  # (B,K+1,D,H,W)

        hourglass_in = torch.cat([heat.unsqueeze(2), deformed], dim=2).view(b, k1 * (c + 1), d, h, w)
        prediction = self.hourglass(hourglass_in.to(dtype))  # (B,142,D,H,W)

        mask = torch.softmax(self.mask(prediction).float(), dim=1)  # (B,K+1,D,H,W)
        deformation = (sparse_motion * mask.unsqueeze(-1)).sum(dim=1)  # (B,D,H,W,3)

        occlusion = None
        if self.occlusion is not None:
            occlusion = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)).float())
        return deformation, occlusion


class WarpingNetwork(nn.Module):
    """(f_s (B,32,16,64,64), kp_source (B,21,3), kp_driving (B,21,3)) -> :class:`WarpOutput`."""

    def __init__(self, cfg: WarpingConfig = WarpingConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.dense_motion_network = DenseMotionNetwork(
            cfg.dense_motion, cfg.num_kp, cfg.reshape_channels, cfg.estimate_occlusion_map
        )
        width = cfg.block_expansion * 2**cfg.num_down_blocks  # 256
        self.third = ConvNormAct2d(cfg.max_features, width, leaky=True)
        self.fourth = nn.Conv2d(width, width, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> WarpOutput:
        deformation, occlusion = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        warped = F.grid_sample(feature_3d.float(), deformation, align_corners=False).to(feature_3d.dtype)
        b, c, d, h, w = warped.shape  # (B,32,16,64,64)
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        if occlusion is not None:
            out = out * occlusion.to(out.dtype)
        else:
            occlusion = out.new_ones(b, 1, h, w)
        return WarpOutput(out=out, occlusion_map=occlusion, deformation=deformation)
