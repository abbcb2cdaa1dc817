"""Building blocks shared by the LivePortrait networks.

Attribute names follow the official checkpoints' keys, so a state dict maps onto
these modules without renaming (see :mod:`lpstudio.checkpoint`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SPADE_LEAKY_SLOPE = 0.2
"""Negative slope of the leaky ReLUs in the SPADE decoder (official constant)."""
CONVNEXT_LN_EPS = 1e-6
GRN_EPS = 1e-6


class ConvNormAct2d(nn.Module):
    """3x3 conv -> BatchNorm -> ReLU (or leaky ReLU, slope 0.01); keeps the resolution."""

    def __init__(self, cin: int, cout: int, *, leaky: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(cout)
        self.leaky = leaky

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.leaky_relu(x) if self.leaky else F.relu(x)


class DownBlock2d(ConvNormAct2d):
    """3x3 conv -> BatchNorm -> ReLU -> 2x2 average pool: halves H and W."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), kernel_size=2)


class ConvNormAct3d(nn.Module):
    """3x3x3 conv -> BatchNorm3d -> ReLU on a (B,C,D,H,W) volume."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock3d(ConvNormAct3d):
    """Conv block, then halve H and W (depth kept): (B,C,D,H,W) -> (B,C',D,H/2,W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if y.dtype == torch.bfloat16 and y.device.type == "cpu":
            # PyTorch has no bfloat16 CPU kernel for avg_pool3d: pool in float32 (exact for a mean of 4).
            return F.avg_pool3d(y.float(), kernel_size=(1, 2, 2)).to(y.dtype)
        return F.avg_pool3d(y, kernel_size=(1, 2, 2))


class UpBlock3d(ConvNormAct3d):
    """Nearest 2x upsampling of H and W, then the conv block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class ResBlock3d(nn.Module):
    """Pre-activation residual block: x + conv(relu(bn(conv(relu(bn(x))))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm3d(channels)
        self.conv1 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = nn.BatchNorm3d(channels)
        self.conv2 = nn.Conv3d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of a (B,C,H,W) tensor (ConvNeXt stem/downsampling)."""

    def __init__(self, channels: int, eps: float = CONVNEXT_LN_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on a channels-last (B,H,W,C) tensor."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + GRN_EPS)
        return self.gamma * (x * nx) + self.beta + x


class SPADE(nn.Module):
    """Spatially adaptive normalisation: instance-norm x, modulate by maps predicted from ``seg``.

    ``x`` (B,C,H,W), ``seg`` (B,S,h,w) resized to (H,W) with nearest neighbour.
    """

    def __init__(self, channels: int, seg_channels: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(seg_channels, hidden, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x)
        if seg.shape[-2:] != x.shape[-2:]:
            seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """Residual block of the SPADE decoder; a 1x1 learned shortcut when channels change.

    The official convolutions are spectrally normalised; the checkpoint loader folds
    the normalisation into plain weights, so these are ordinary convolutions.
    """

    def __init__(self, cin: int, cout: int, seg_channels: int, hidden: int = 128) -> None:
        super().__init__()
        cmid = min(cin, cout)
        self.learned_shortcut = cin != cout
        self.norm_0 = SPADE(cin, seg_channels, hidden)
        self.conv_0 = nn.Conv2d(cin, cmid, kernel_size=3, padding=1)
        self.norm_1 = SPADE(cmid, seg_channels, hidden)
        self.conv_1 = nn.Conv2d(cmid, cout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.norm_s = SPADE(cin, seg_channels, hidden)
            self.conv_s = nn.Conv2d(cin, cout, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), SPADE_LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), SPADE_LEAKY_SLOPE))
        return shortcut + dx


class MLP(nn.Sequential):
    """Linear/ReLU stack; children are numbered like the official ``mlp`` Sequential."""

    def __init__(self, input_size: int, hidden_sizes: tuple[int, ...], output_size: int) -> None:
        layers: list[nn.Module] = []
        width = input_size
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, output_size))
        super().__init__(*layers)
