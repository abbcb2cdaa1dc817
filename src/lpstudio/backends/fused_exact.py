"""Exact rewrites of the fused modules: the same sums, fewer multiply-adds or better kernels.

Each rewrite below is algebra, not approximation: in exact arithmetic it gives
the reference's output; in floating point only the order of additions changes
(tests/test_fused_exact.py checks each against the reference at the golden file's
float32 tolerance, 1e-4 x max|ref|).

- :class:`UpsampledConv2d`: a 3x3 convolution of a nearest-``s``-times upsampled
  map, computed on the low-resolution map. An output pixel ``s*i + r`` reads
  upsampled rows ``s*i + r - 1 .. s*i + r + 1``, which are low-resolution rows
  ``i - 1, i`` (``r = 0``), ``i`` (``0 < r < s - 1``) or ``i, i + 1`` (``r = s - 1``):
  never more than two. So each of the ``s*s`` output phases is a 2x2
  convolution of the low-resolution map whose taps are sums of the original
  taps, and all phases are one 2x2 convolution with ``s*s`` times the outputs,
  followed by a pixel shuffle: 4 multiply-adds per output and input channel
  instead of 9 (2.25x fewer). Zero padding maps to zero padding, so borders are
  exact too. (A 3x3 convolution does *not* commute with upsampling; this is the
  polyphase form, not a swap. A 1x1 convolution, or any per-pixel map, does
  commute: ``f(up(x)) = up(f(x))``.)
- :class:`DepthTapConv3d`: a ``k x k x k`` 3D convolution as one 2D
  convolution over depth slices with the ``k`` depth taps stacked as outputs,
  then a shifted sum over the taps. Same multiply-adds; the warping module's
  7x7x7 mask convolution (22 outputs) runs several times faster in oneDNN as a
  7x7 2D convolution with 154 outputs, most of all in bfloat16.
- :func:`fold_shortcut_beta`: the SPADE block's learned shortcut is
  ``conv_s(n * (1 + gamma) + beta)`` with ``conv_s`` 1x1 and linear, so
  ``conv_s(beta)`` is one 3x3 convolution (weights ``W_s @ W_beta``) with
  ``cout`` instead of ``cin`` outputs: the beta branch shrinks by ``cin/cout``.
- Instance norm commutes with nearest upsampling (every pixel is repeated the
  same number of times, so means and variances are unchanged): the upsampling
  blocks normalise at low resolution, once for both SPADEs that read the block
  input, and upsample the result.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_3 = 3
"""The kernel size :class:`UpsampledConv2d` handles (the decoder's SPADE convolutions)."""


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone(), requires_grad=False)


def phase_taps(scale: int) -> list[tuple[int, list[list[int]]]]:
    """For each output phase ``r`` of a 3-tap kernel on an ``scale``-times upsampled axis:
    ``(start, taps)``, where ``start`` (0 or 1) is the phase's first row in the padded
    low-resolution map and ``taps[j]`` lists the original taps that fall on its row ``j`` (0 or 1).
    """
    if scale < 2:
        raise ValueError(f"upsampling scale must be at least 2, got {scale}")
    out = []
    for r in range(scale):
        base = -1 if r == 0 else 0  # the lowest low-resolution row offset this phase reads
        taps: list[list[int]] = [[], []]
        for t in range(KERNEL_3):  # tap t reads upsampled row s*i + r + t - 1
            offset = (r + t - 1) // scale  # low-resolution row offset: -1, 0 or +1
            taps[offset - base].append(t)
        out.append((base + 1, taps))
    return out


def polyphase_weight(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """(O,C,3,3) -> (scale*scale*O,C,2,2) in float64: the 2x2 kernels of every output phase.

    Output channel ``(ry * scale + rx) * O + o`` is phase ``(ry, rx)`` of output ``o``
    (phase-major, so that in channels-last memory each phase's outputs are contiguous).
    """
    if weight.shape[-2:] != (KERNEL_3, KERNEL_3):
        raise ValueError(f"polyphase form is for 3x3 kernels, got {tuple(weight.shape[-2:])}")
    w = weight.detach().double()
    phases = phase_taps(scale)
    o, c = w.shape[:2]
    out = torch.zeros(scale, scale, o, c, 2, 2, dtype=torch.float64, device=w.device)
    for ry, (_, rows) in enumerate(phases):
        for rx, (_, cols) in enumerate(phases):
            for jy in range(2):
                for jx in range(2):
                    for ty in rows[jy]:
                        for tx in cols[jx]:
                            out[ry, rx, :, :, jy, jx] += w[:, :, ty, tx]
    return out.reshape(scale * scale * o, c, 2, 2)


POLYPHASE_DTYPES = (torch.float32,)
"""Dtypes :class:`UpsampledConv2d` runs in polyphase form. In bfloat16 on CPU (AMX) the copies
that interleave the phases cost more than the multiply-adds saved (measured at the decoder's
up_1 shapes: 257 ms direct vs 388 ms polyphase in bfloat16; 1299 ms vs 929 ms in float32)."""


class UpsampledConv2d(nn.Module):
    """``conv3x3(nearest_upsample(x, scale))`` from the low-resolution ``x``, exactly (see module docs).

    ``forward(x (B,C,h,w)) -> (B,O,scale*h,scale*w)`` channels-last; polyphase in
    :data:`POLYPHASE_DTYPES`, else the plain convolution of the upsampled map.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.out_channels = weight.shape[0]
        self.weight = _param(polyphase_weight(weight, scale).float().contiguous(memory_format=torch.channels_last))
        self.bias = None if bias is None else _param(bias.detach().float().repeat(scale * scale))
        self.direct_weight = _param(weight.detach().float())
        self.direct_bias = None if bias is None else _param(bias.detach().float())
        self.starts = [start for start, _ in phase_taps(scale)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype not in POLYPHASE_DTYPES:
            up = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
            return F.conv2d(up, self.direct_weight, self.direct_bias, padding=1)
        b, _, h, w = x.shape
        s, o = self.scale, self.out_channels
        z = F.conv2d(x, self.weight, self.bias, padding=1)  # (B,s*s*O,h+1,w+1)
        z = z.permute(0, 2, 3, 1).reshape(b, h + 1, w + 1, s, s, o)  # a view when z is channels-last
        out = z.new_empty(b, h, s, w, s, o)  # NHWC memory of the (B,O,s*h,s*w) result
        for ry, sy in enumerate(self.starts):
            for rx, sx in enumerate(self.starts):
                out[:, :, ry, :, rx] = z[:, sy : sy + h, sx : sx + w, ry, rx]
        return out.view(b, s * h, s * w, o).permute(0, 3, 1, 2)


class DepthTapConv3d(nn.Module):
    """A 'same'-padded ``k x k x k`` conv3d as one 2D conv over depth slices plus a shifted sum (see module docs).

    ``forward(x (B,C,D,H,W)) -> (B,O,D,H,W)``; ``x`` is best channels-last (NDHWC), whose
    memory is already the (B*D,C,H,W) channels-last batch of slices.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        o, c, kd, kh, kw = weight.shape
        if kd % 2 == 0 or kh % 2 == 0 or kw % 2 == 0:
            raise ValueError(f"'same' padding needs odd kernel sizes, got {tuple(weight.shape[2:])}")
        self.out_channels, self.depth_taps = o, kd
        self.padding = (kh // 2, kw // 2)
        stacked = weight.detach().permute(2, 0, 1, 3, 4).reshape(kd * o, c, kh, kw)  # tap-major outputs
        self.weight = _param(stacked.contiguous(memory_format=torch.channels_last))
        self.bias = None if bias is None else _param(bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        k, o = self.depth_taps, self.out_channels
        slices = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        z = F.conv2d(slices, self.weight, padding=self.padding).view(b, d, k, o, h, w)
        # out[d] = sum_t z[d + t - k//2, tap t]; slices outside the volume are zero padding.
        half = k // 2
        out = z[:, :, half].clone()
        for t in range(k):
            shift = t - half
            if shift == 0:
                continue
            lo, hi = max(0, -shift), min(d, d - shift)  # output depths whose input depth d+shift exists
            if lo < hi:
                out[:, lo:hi] += z[:, lo + shift : hi + shift, t]
        if self.bias is not None:
            out = out + self.bias.view(1, 1, o, 1, 1)
        return out.permute(0, 2, 1, 3, 4)  # (B,O,D,H,W), NDHWC memory


def fold_shortcut_beta(conv_s: nn.Conv2d, beta: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight (cout,hidden,3,3) and bias (cout,) of ``conv_s(beta(a))``: ``conv_s`` is 1x1 without bias."""
    if conv_s.weight.shape[-2:] != (1, 1) or conv_s.bias is not None:
        raise ValueError("only a bias-free 1x1 shortcut folds into the SPADE beta")
    ws = conv_s.weight.detach().double()[:, :, 0, 0]  # (cout,cin)
    wb = beta.weight.detach().double()  # (cin,hidden,3,3)
    bb = beta.bias.detach().double() if beta.bias is not None else torch.zeros(wb.shape[0], dtype=torch.float64)
    return torch.einsum("oc,chkl->ohkl", ws, wb).float(), (ws @ bb).float()


def upsample2d(x: torch.Tensor, scale: int = 2) -> torch.Tensor:
    """Nearest upsampling of (B,C,H,W) by an integer factor, keeping channels-last."""
    return F.interpolate(x, scale_factor=float(scale), mode="nearest")
