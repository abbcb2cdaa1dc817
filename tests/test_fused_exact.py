"""The fused backend's exact rewrites (backends/fused_exact.py), each against the reference modules.

Every rewrite is algebra, so it must match the reference at the golden file's float32
tolerance (1e-4 x max|ref|) on golden data; random-input checks add other shapes,
scales and borders.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lpstudio.backends.fused_exact import (
    DepthTapConv3d,
    UpsampledConv2d,
    fold_shortcut_beta,
    phase_taps,
    polyphase_weight,
)
from lpstudio.backends.fused_modules import FusedDecoder, _FusedResBlock, _FusedUpBlock, instance_norm

REL_TOL = 1e-4  # tests/test_golden.py's tolerance


def assert_golden_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    err = float((ours.float() - ref.float()).abs().max())
    scale = float(ref.abs().max())
    assert scale > 0 and err <= REL_TOL * scale, f"max abs error {err:.3g} > {REL_TOL} x {scale:.3g}"


def up(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=float(scale), mode="nearest")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_phase_taps_cover_each_tap_once(scale):
    phases = phase_taps(scale)
    assert len(phases) == scale
    for start, taps in phases:
        assert start in (0, 1) and sorted(taps[0] + taps[1]) == [0, 1, 2]
    assert phases[0] == (0, [[0], [1, 2]])  # the first phase reaches one row up
    assert phases[-1] == (1, [[0, 1], [2]])  # the last one row down
    with pytest.raises(ValueError, match="scale"):
        phase_taps(1)


def test_polyphase_weights_keep_the_tap_sums():
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    pw = polyphase_weight(w, 2).view(2, 2, 3, 2, 2, 2)
    for ry in range(2):
        for rx in range(2):
            torch.testing.assert_close(pw[ry, rx].sum(dim=(-1, -2)), w.sum(dim=(-1, -2)))
    with pytest.raises(ValueError, match="3x3"):
        polyphase_weight(torch.randn(3, 2, 5, 5), 2)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsampled_conv_equals_conv_of_upsampled(scale, channels_last):
    torch.manual_seed(scale)
    x = torch.randn(2, 5, 7, 6)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(4, 5, 3, 3), torch.randn(4)
    ref = F.conv2d(up(x, scale), w, b, padding=1)
    assert_golden_close(UpsampledConv2d(w, b, scale)(x), ref)


def test_upsampled_conv_in_bfloat16_convolves_the_upsampled_map():
    torch.manual_seed(4)
    x, w, b = torch.randn(1, 5, 6, 6), torch.randn(4, 5, 3, 3), torch.randn(4)
    m = UpsampledConv2d(w, b, 2).to(torch.bfloat16)
    ref = F.conv2d(up(x, 2), w, b, padding=1)
    torch.testing.assert_close(m(x.bfloat16()).float(), ref, atol=0.15, rtol=0.05)


def test_upsampled_conv_is_not_a_plain_swap():
    """Guards the test above: conv-then-upsample differs, so the polyphase form is doing the work."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 3, 6, 6), torch.randn(2, 3, 3, 3)
    swapped = up(F.conv2d(x, w, padding=1), 2)
    assert float((swapped - F.conv2d(up(x, 2), w, padding=1)).abs().max()) > 0.1


def test_depth_tap_conv_equals_conv3d():
    torch.manual_seed(1)
    x = torch.randn(2, 5, 6, 8, 9).contiguous(memory_format=torch.channels_last_3d)
    w, b = torch.randn(3, 5, 7, 7, 7), torch.randn(3)
    assert_golden_close(DepthTapConv3d(w, b)(x), F.conv3d(x, w, b, padding=3))
    with pytest.raises(ValueError, match="odd"):
        DepthTapConv3d(torch.randn(3, 5, 2, 3, 3), None)


def test_instance_norm_commutes_with_nearest_upsampling():
    torch.manual_seed(2)
    x = torch.randn(2, 6, 8, 8) * 3 + 1
    assert_golden_close(up(instance_norm(x), 2), instance_norm(up(x, 2)))
    low = x.bfloat16().contiguous(memory_format=torch.channels_last)  # group-norm path of reduced precision
    torch.testing.assert_close(instance_norm(low).float(), F.instance_norm(low.float()), atol=0.05, rtol=0.02)


# ----------------------------------------------------------------- on golden data, float32


@pytest.fixture(scope="module")
def decoder(engine):
    return engine.networks.decoder


@pytest.fixture(scope="module")
def seg(golden):
    return torch.from_numpy(golden["warp_out"])  # (1,256,64,64): the decoder input and SPADE map


@pytest.mark.parametrize("block,scale", [("up_0", 2), ("up_1", 4)])
def test_golden_polyphase_shared_spade_convs(decoder, seg, block, scale):
    convs = _FusedResBlock.shared_convs(getattr(decoder, block))
    weight, bias = torch.cat([c.weight for c in convs]), torch.cat([c.bias for c in convs])
    with torch.no_grad():
        ref = F.conv2d(up(seg, scale), weight, bias, padding=1)
        ours = UpsampledConv2d(weight, bias, scale)(seg)
    assert_golden_close(ours, ref)


@pytest.mark.parametrize("block", ["up_0", "up_1"])
def test_golden_up_block_low_res_norm_and_folded_shortcut(decoder, seg, block):
    """The whole up-block rewrite (low-res instance norm, once; conv_s folded into beta) vs the reference block."""
    ref_block = getattr(decoder, block)
    cin = ref_block.norm_0.mlp_gamma.weight.shape[0]
    with torch.no_grad():
        x_low = F.conv2d(seg, torch.randn(cin, seg.shape[1], 1, 1, generator=torch.Generator().manual_seed(3)) / 16)
        x_hr, seg_x = up(x_low, 2), up(seg, 2)
        ref = ref_block(x_hr, seg_x)
        fused = _FusedUpBlock(ref_block).eval()
        actvs = [F.relu(c(seg_x)) for c in _FusedResBlock.shared_convs(ref_block)]
        ours = fused(x_low, actvs)
    assert_golden_close(ours, ref)


def test_golden_folded_shortcut_alone(decoder, seg):
    blk = decoder.up_1
    with torch.no_grad():
        actv = F.relu(blk.norm_s.mlp_shared[0](seg))
        w, b = fold_shortcut_beta(blk.conv_s, blk.norm_s.mlp_beta)
        assert w.shape[0] == blk.conv_s.weight.shape[0] < blk.norm_s.mlp_beta.weight.shape[0]  # fewer outputs
        assert_golden_close(F.conv2d(actv, w, b, padding=1), blk.conv_s(blk.norm_s.mlp_beta(actv)))
    with pytest.raises(ValueError, match="1x1"):
        fold_shortcut_beta(blk.conv_0, blk.norm_s.mlp_beta)


def test_golden_fused_decoder_float32(decoder, golden, seg):
    """All decoder rewrites together against the official output (as test_backends, without the backend)."""
    with torch.no_grad():
        out = FusedDecoder(decoder).eval()(seg)
    assert_golden_close(out, torch.from_numpy(golden["spade_out"]))


def test_golden_mask_conv_as_depth_taps(engine, golden):
    """The 7x7x7 mask convolution on the reference hourglass output of the golden inputs."""
    dm = engine.networks.warping.dense_motion_network
    seen: dict[str, torch.Tensor] = {}
    handle = dm.hourglass.register_forward_hook(lambda mod, args, out: seen.setdefault("prediction", out))
    try:
        engine.warp(*(torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d")))
    finally:
        handle.remove()
    pred = seen["prediction"].contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad():
        assert_golden_close(DepthTapConv3d(dm.mask.weight, dm.mask.bias)(pred), dm.mask(pred))


def test_golden_fused_warping_single_and_mixed_sources(engine, golden):
    """W with one grid_sample over stacked keypoint grids and the softmax-sum-to-1 flow: golden parity,
    with the source expanded over a batch and with distinct sources in one batch (the server's path)."""
    from lpstudio.backends.fused_modules import FusedWarping

    f, xs, xd = (torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))
    ref = torch.from_numpy(golden["warp_out"])
    warping = FusedWarping(engine.networks.warping).eval()
    with torch.no_grad():
        assert_golden_close(warping(f, xs, xd), ref)
        other = engine.networks.warping(f * 0.5, xs, xd + 0.02).out
        mixed = warping(torch.cat([f, f * 0.5]), xs.expand(2, -1, -1), torch.cat([xd, xd + 0.02]))
        expanded = warping(f.expand(2, *f.shape[1:]), xs.expand(2, -1, -1), torch.cat([xd, xd + 0.02]))
    assert_golden_close(mixed[:1], ref)
    assert_golden_close(mixed[1:], other)
    assert_golden_close(expanded[:1], ref)
    assert not torch.allclose(expanded[0], expanded[1])
