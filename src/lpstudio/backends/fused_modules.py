"""Inference-only re-packings of W and G: same maths, fewer and bigger kernels.

Built from the engine's modules (which are left untouched):

- every BatchNorm that follows a convolution is folded into it
  (``w' = w * g / sqrt(var + eps)``, ``b' = (b - mean) * g / sqrt(var + eps) + beta``);
- the SPADE blocks' ``gamma`` and ``beta`` convolutions, which read the same
  input, become one convolution with twice the outputs, the ``1 +`` of
  ``x * (1 + gamma) + beta`` moved into its bias; the ``mlp_shared``
  convolutions that read the same (resized) segmentation map are merged too
  (12 in the middle blocks, 3 in each upsampling block);
- exact FLOP cuts and kernel-friendly forms (:mod:`.fused_exact`): the
  upsampling blocks' shared SPADE convolutions in polyphase form on the 64x64
  input, their instance norm at low resolution and computed once, the learned
  shortcut folded into its SPADE beta, the 7x7x7 mask convolution as 2D taps;
- activations are channels-last (NHWC / NDHWC), the layout oneDNN and cuDNN
  prefer for convolutions;
- in reduced precision the sampling grids, heatmaps, softmax, sigmoid and
  both ``grid_sample`` calls stay in float32: they decide *where* features are
  read from, and a bfloat16 coordinate is off by up to a third of a voxel.

In float32 the results match the reference within the golden tolerance (the
folds change rounding only).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..nets.decoder import SPADEDecoder
from ..nets.layers import SPADE, SPADE_LEAKY_SLOPE, SPADEResBlock
from ..nets.warping import WarpingNetwork, coordinate_grid, keypoint_heatmaps
from .fused_exact import DepthTapConv3d, UpsampledConv2d, fold_shortcut_beta, upsample2d

CONV_LEAKY_SLOPE = 0.01
"""F.leaky_relu's default slope, used after the warping module's ``third`` block."""

HW_POOL = (1, 2, 2)
"""The hourglass pools and upsamples height and width only, never depth."""


def fold_batchnorm(conv: nn.Module, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval-mode statistics), in float64 maths."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.detach().double() + bn.eps)
    shape = (-1,) + (1,) * (w.dim() - 1)
    bias = (b - bn.running_mean.detach().double()) * scale + bn.bias.detach().double()
    return (w * scale.reshape(shape)).float(), bias.float()


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=False)


class FoldedConv(nn.Module):
    """A 2D or 3D convolution (stride 1, 'same' zero padding) with explicit weight and bias."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = _param(weight)
        self.bias = None if bias is None else _param(bias)
        self.padding = tuple(k // 2 for k in weight.shape[2:])

    @classmethod
    def of(cls, conv: nn.Module, bn: nn.Module | None = None) -> FoldedConv:
        if bn is not None:
            return cls(*fold_batchnorm(conv, bn))
        return cls(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = F.conv3d if self.weight.dim() == 5 else F.conv2d
        return conv(x, self.weight, self.bias, padding=self.padding)


def pool_hw(x: torch.Tensor) -> torch.Tensor:
    """2x2 average over H and W of (B,C,D,H,W); works for dtypes avg_pool3d lacks (bfloat16 on CPU)."""
    if x.dtype == torch.float32 or x.device.type != "cpu":
        return F.avg_pool3d(x, kernel_size=HW_POOL)
    return (x[..., 0::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) * 0.25


def upsample_hw(x: torch.Tensor) -> torch.Tensor:
    """Nearest 2x upsampling of H and W of (B,C,D,H,W)."""
    return F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")


class FusedWarping(nn.Module):
    """:class:`~lpstudio.nets.warping.WarpingNetwork` re-packed for inference.

    ``forward(feature_3d (B,32,16,64,64), x_s (B,21,3), x_d (B,21,3)) -> (B,256,64,64)`` in ``dtype``.
    Convolutions run in the module's dtype; the rest in float32 (see module docs).
    """

    def __init__(self, warping: WarpingNetwork) -> None:
        super().__init__()
        dm = warping.dense_motion_network
        self.num_kp = dm.num_kp
        self.kp_variance = dm.cfg.kp_variance
        self.compress = FoldedConv.of(dm.compress, dm.norm)
        hg = dm.hourglass
        self.down = nn.ModuleList(FoldedConv.of(b.conv, b.norm) for b in hg.encoder.down_blocks)
        self.up = nn.ModuleList(FoldedConv.of(b.conv, b.norm) for b in hg.decoder.up_blocks)
        self.final = FoldedConv.of(hg.decoder.conv, hg.decoder.norm)
        self.mask = DepthTapConv3d(dm.mask.weight, dm.mask.bias)  # 7x7x7 as 7x7 2D taps: exact, faster
        self.occlusion = None if dm.occlusion is None else FoldedConv.of(dm.occlusion)
        self.third = FoldedConv.of(warping.third.conv, warping.third.norm)
        self.fourth = FoldedConv.of(warping.fourth)
        self.float32_modules = (self.compress,)  # tiny, and its output feeds grid_sample

    def to_compute(self, dtype: torch.dtype) -> FusedWarping:
        """Cast the convolutions to ``dtype``, keeping the float32 ones."""
        self.to(dtype)
        for m in self.float32_modules:
            m.float()
        return self

    @property
    def dtype(self) -> torch.dtype:
        return self.third.weight.dtype

    def hourglass(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for conv in self.down:
            skips.append(pool_hw(F.relu(conv(skips[-1]))))
        out = skips.pop()
        for conv in self.up:
            out = torch.cat([F.relu(conv(upsample_hw(out))), skips.pop()], dim=1)
        return F.relu(self.final(out))

    @staticmethod
    def _sample_per_keypoint(comp: torch.Tensor, sparse_motion: torch.Tensor) -> torch.Tensor:
        """comp (1|B,C,D,H,W), sparse_motion (B,K+1,D,H,W,3) -> (B,D,H,W,K+1,C) view of the samples.

        One ``grid_sample`` with the K+1 grids stacked along depth instead of K+1 copies of the
        volume: each output voxel still samples the same input at the same point (exact).
        """
        n, c, d, h, w = comp.shape
        b, k1 = sparse_motion.shape[:2]
        if n == 1:  # one source for the whole batch: batch and keypoints both go along depth
            out = F.grid_sample(comp, sparse_motion.reshape(1, b * k1 * d, h, w, 3), align_corners=False)
            return out.view(c, b, k1, d, h, w).permute(1, 3, 4, 5, 2, 0)
        out = F.grid_sample(comp, sparse_motion.reshape(b, k1 * d, h, w, 3), align_corners=False)
        return out.view(b, c, k1, d, h, w).permute(0, 3, 4, 5, 2, 1)

    def forward(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype
        b = x_d.shape[0]
        k1 = self.num_kp + 1
        feature = feature_3d.float()
        x_s, x_d = x_s.float(), x_d.float()
        # The source volume is usually one tensor expanded over the batch: compress it once.
        src = feature[:1] if feature.shape[0] == 1 or feature.stride(0) == 0 else feature
        comp = F.relu(self.compress(src))  # (b|1,4,D,H,W) float32
        _, c, d, h, w = comp.shape
        grid = coordinate_grid(d, h, w, x_s)  # (D,H,W,3)
        shift = (x_s - x_d)[:, :, None, None, None, :]
        sparse_motion = torch.cat([grid.expand(b, 1, d, h, w, 3), grid[None, None] + shift], dim=1)
        deformed = self._sample_per_keypoint(comp, sparse_motion)  # (B,D,H,W,K+1,4) view
        heat = keypoint_heatmaps(x_d, grid, self.kp_variance) - keypoint_heatmaps(x_s, grid, self.kp_variance)
        # The hourglass input, written once in its channels-last layout: (B,D,H,W,K+1,1+4), heatmap first.
        hg = torch.empty(b, d, h, w, k1, c + 1, dtype=dtype, device=comp.device)
        hg[..., 0, 0] = 0  # the background has no heatmap
        hg[..., 1:, 0] = heat.permute(0, 2, 3, 4, 1)
        hg[..., 1:] = deformed
        hg_in = hg.view(b, d, h, w, k1 * (c + 1)).permute(0, 4, 1, 2, 3)  # (B,110,D,H,W), NDHWC memory
        prediction = self.hourglass(hg_in)  # (B,142,D,H,W)
        mask = torch.softmax(self.mask(prediction).float(), dim=1)  # (B,K+1,D,H,W)
        # sum_k mask_k * (grid + shift_k), shift_0 = 0, is grid + sum_k>0 mask_k * shift_k as the
        # softmax sums to 1: a (K x 3) contraction instead of a (B,K+1,D,H,W,3) product.
        flow = torch.einsum("bkdhw,bkc->bdhwc", mask[:, 1:], (x_s - x_d))
        deformation = grid + flow  # (B,D,H,W,3)
        warped = F.grid_sample(feature.expand(b, *feature.shape[1:]), deformation, align_corners=False)
        warped = warped.view(b, -1, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
        out = self.fourth(F.leaky_relu(self.third(warped), CONV_LEAKY_SLOPE))
        if self.occlusion is not None:
            # (B,142,D,H,W) -> (B,142*D,H,W) channels-last (channel c*D + d) in one copy.
            pred2d = prediction.permute(0, 3, 4, 1, 2).contiguous().view(b, h, w, -1).permute(0, 3, 1, 2)
            out = out * torch.sigmoid(self.occlusion(pred2d).float()).to(dtype)
        return out


class _MergedSpade(nn.Module):
    """The modulation half of one SPADE: ``gamma|beta`` in one conv, ``1 +`` folded into the bias."""

    def __init__(self, spade: SPADE) -> None:
        super().__init__()
        g, b = spade.mlp_gamma, spade.mlp_beta
        self.channels = g.weight.shape[0]
        self.conv = FoldedConv(torch.cat([g.weight, b.weight]), torch.cat([g.bias + 1, b.bias]))

    def forward(self, x: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        """x (B,C,H,W), actv (B,hidden,H,W) -> instance_norm(x) * (1 + gamma) + beta."""
        return self.modulate(instance_norm(x), actv)

    def modulate(self, normalized: torch.Tensor, actv: torch.Tensor) -> torch.Tensor:
        """normalized (B,C,H,W), actv (B,hidden,H,W) -> normalized * (1 + gamma) + beta."""
        gamma1, beta = self.conv(actv).split(self.channels, dim=1)
        return torch.addcmul(beta, normalized, gamma1)


INSTANCE_NORM_EPS = 1e-5
"""F.instance_norm's default epsilon (the decoder's SPADE blocks use the default)."""


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Affine-free instance norm of (B,C,H,W).

    Reduced precision on CPU: group norm with one group per channel, which is the
    same normalisation; its channels-last CPU kernel accumulates in float32 and is
    several times faster than ``var_mean`` plus two element-wise passes.
    """
    if x.dtype == torch.float32 or x.device.type != "cpu":
        return F.instance_norm(x, eps=INSTANCE_NORM_EPS)
    return F.group_norm(x, x.shape[1], eps=INSTANCE_NORM_EPS)


class _FusedResBlock(nn.Module):
    """A :class:`~lpstudio.nets.layers.SPADEResBlock` whose SPADE ``mlp_shared`` outputs come from outside."""

    def __init__(self, block: SPADEResBlock) -> None:
        super().__init__()
        self.learned_shortcut = block.learned_shortcut
        self.norm_0 = _MergedSpade(block.norm_0)
        self.conv_0 = FoldedConv.of(block.conv_0)
        self.norm_1 = _MergedSpade(block.norm_1)
        self.conv_1 = FoldedConv.of(block.conv_1)
        if self.learned_shortcut:
            self.norm_s = _MergedSpade(block.norm_s)
            self.conv_s = FoldedConv.of(block.conv_s)

    @staticmethod
    def shared_convs(block: SPADEResBlock) -> list[nn.Conv2d]:
        """The block's ``mlp_shared`` convolutions in the order :meth:`forward` takes their outputs."""
        spades = [block.norm_0, block.norm_1] + ([block.norm_s] if block.learned_shortcut else [])
        return [s.mlp_shared[0] for s in spades]

    def forward(self, x: torch.Tensor, actvs: list[torch.Tensor]) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, actvs[2])) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, actvs[0]), SPADE_LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, actvs[1]), SPADE_LEAKY_SLOPE))
        return shortcut + dx


class _FusedUpBlock(nn.Module):
    """A :class:`~lpstudio.nets.layers.SPADEResBlock` applied to ``nearest_upsample(x, 2)``, run from ``x``.

    Exact rewrites (:mod:`.fused_exact`): the block input is normalised once, at low
    resolution, for both SPADEs that read it; the learned 1x1 shortcut is folded into
    its SPADE's beta convolution.
    """

    def __init__(self, block: SPADEResBlock) -> None:
        super().__init__()
        self.learned_shortcut = block.learned_shortcut
        self.norm_0 = _MergedSpade(block.norm_0)
        self.conv_0 = FoldedConv.of(block.conv_0)
        self.norm_1 = _MergedSpade(block.norm_1)
        self.conv_1 = FoldedConv.of(block.conv_1)
        if self.learned_shortcut:
            gamma = block.norm_s.mlp_gamma
            w_beta, b_beta = fold_shortcut_beta(block.conv_s, block.norm_s.mlp_beta)
            self.split_s = (gamma.weight.shape[0], w_beta.shape[0])  # (cin, cout)
            self.norm_s = FoldedConv(torch.cat([gamma.weight, w_beta]), torch.cat([gamma.bias + 1, b_beta]))
            self.conv_s = FoldedConv.of(block.conv_s)

    def forward(self, x_low: torch.Tensor, actvs: list[torch.Tensor]) -> torch.Tensor:
        """x_low (B,C,h,w), actvs [(B,hidden,2h,2w)] in :meth:`_FusedResBlock.shared_convs` order -> (B,O,2h,2w)."""
        normalized = upsample2d(instance_norm(x_low))
        if self.learned_shortcut:
            gamma1, beta = self.norm_s(actvs[2]).split(self.split_s, dim=1)
            shortcut = self.conv_s(normalized * gamma1) + beta
        else:
            shortcut = upsample2d(x_low)
        dx = self.conv_0(F.leaky_relu(self.norm_0.modulate(normalized, actvs[0]), SPADE_LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, actvs[1]), SPADE_LEAKY_SLOPE))
        return shortcut + dx


def _merged_conv(convs: list[nn.Conv2d]) -> FoldedConv:
    return FoldedConv(torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]))


def _upsampled_merged_conv(convs: list[nn.Conv2d], scale: int) -> UpsampledConv2d:
    return UpsampledConv2d(torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs]), scale)


UPSAMPLE = 2
"""Each of the decoder's two upsampling blocks doubles height and width (nearest)."""


class FusedDecoder(nn.Module):
    """:class:`~lpstudio.nets.decoder.SPADEDecoder` re-packed: ``(B,256,64,64) -> (B,3,512,512)`` float32."""

    def __init__(self, decoder: SPADEDecoder) -> None:
        super().__init__()
        self.hidden = decoder.cfg.spade_hidden
        self.upscale = decoder.cfg.upscale
        self.fc = FoldedConv.of(decoder.fc)
        middle = decoder.middle_blocks()
        self.middle = nn.ModuleList(_FusedResBlock(b) for b in middle)
        self.middle_shared = _merged_conv([c for b in middle for c in _FusedResBlock.shared_convs(b)])
        # The up blocks' shared SPADE convolutions read the decoder input upsampled 2x and 4x:
        # computed from the 64x64 input in polyphase form (exact, 2.25x fewer multiply-adds).
        self.up = nn.ModuleList(_FusedUpBlock(b) for b in (decoder.up_0, decoder.up_1))
        self.up_shared = nn.ModuleList(
            _upsampled_merged_conv(_FusedResBlock.shared_convs(b), UPSAMPLE**i)
            for i, b in enumerate((decoder.up_0, decoder.up_1), start=1)
        )
        self.conv_img = FoldedConv.of(decoder.conv_img[0])

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    def _actvs(self, shared: nn.Module, seg: torch.Tensor) -> list[torch.Tensor]:
        return list(F.relu(shared(seg)).split(self.hidden, dim=1))

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature.to(self.dtype).contiguous(memory_format=torch.channels_last)
        x = self.fc(seg)
        actvs = self._actvs(self.middle_shared, seg)
        for i, block in enumerate(self.middle):
            x = block(x, actvs[2 * i : 2 * i + 2])
        for block, shared in zip(self.up, self.up_shared):
            x = block(x, self._actvs(shared, seg))  # shared: upsampled seg from the 64x64 one
        x = self.conv_img(F.leaky_relu(x, SPADE_LEAKY_SLOPE))
        return torch.sigmoid(F.pixel_shuffle(x.float(), self.upscale))
