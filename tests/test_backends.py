"""Render backends agree with the official numerics (golden.npz) on synthetic weights.

float32 backends: max abs error <= 1e-4 x max|ref| (the golden tolerance); reduced
precision: PSNR >= 40 dB of the decoded image. Inputs and references are the golden
file's warping/decoder arrays, so no reference render is needed here.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from lpstudio.backends import BACKENDS, Backend, available_backends, build_backend
from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason
from lpstudio.bench import psnr_db
from lpstudio.errors import BackendUnavailableError

NO_NATIVE_BF16 = cpu_bfloat16_unavailable_reason()
native_bf16 = pytest.mark.skipif(NO_NATIVE_BF16 is not None, reason=f"bfloat16 refused on this CPU: {NO_NATIVE_BF16}")

REL_TOL = 1e-4
MIN_PSNR_DB = 40.0
CPU = torch.device("cpu")


def rel_err(ours: torch.Tensor, ref: np.ndarray) -> float:
    return float(np.abs(ours.detach().float().cpu().numpy() - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def golden_inputs(golden):
    return tuple(torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))


def test_registry_reports_every_backend_with_a_reason():
    avail = {a.name: a for a in available_backends("cpu")}
    assert set(avail) == set(BACKENDS)
    assert avail["eager"].available and avail["fused"].available
    assert not avail["cudagraph"].available and "CUDA" in avail["cudagraph"].reason
    assert not avail["tensorrt"].available and avail["tensorrt"].reason
    for a in avail.values():
        assert a.available == (a.reason is None)


def test_unknown_or_unavailable_backend_is_a_clear_error(engine):
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        build_backend("warp-drive", engine.networks, CPU, torch.float32)
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        build_backend("cudagraph", engine.networks, CPU, torch.float16)


def test_default_backend_is_the_engines_own_modules(engine):
    """The golden path: eager shares the engine's modules, so render == warp + decode bit for bit."""
    assert engine.backend.name == "eager" and isinstance(engine.backend, Backend)
    assert engine.backend.warping is engine.networks.warping
    assert engine.backend.decoder is engine.networks.decoder


@pytest.fixture(scope="module")
def fused32(engine):
    return build_backend("fused", engine.networks, CPU, torch.float32)


def test_fused_float32_warping_matches_golden(fused32, golden_inputs, golden):
    assert rel_err(fused32.warp(*golden_inputs), golden["warp_out"]) <= REL_TOL


def test_fused_float32_decoder_matches_golden(fused32, golden):
    out = fused32.decode(torch.from_numpy(golden["warp_out"]))
    assert out.dtype == torch.float32 and out.shape == (1, 3, 512, 512)
    assert rel_err(out, golden["spade_out"]) <= REL_TOL


def test_fused_leaves_the_engine_untouched(engine, fused32):
    assert next(engine.networks.warping.parameters()).dtype == torch.float32
    assert all(p.is_contiguous() for p in engine.networks.decoder.parameters())


@native_bf16
def test_fused_bfloat16_cpu_psnr(engine, golden_inputs, golden):
    backend = build_backend("fused", engine.networks, CPU, torch.bfloat16)
    warped = backend.warp(*golden_inputs)
    assert warped.dtype == torch.bfloat16
    image = backend.decode(warped)
    assert image.dtype == torch.float32
    assert psnr_db(image, torch.from_numpy(golden["spade_out"])) >= MIN_PSNR_DB


def test_fused_handles_a_batch_of_one_source(fused32, golden_inputs, golden):
    """The engine passes one volume expanded over the batch; each item is its own frame."""
    f, xs, xd = golden_inputs
    out = fused32.warp(f.expand(2, *f.shape[1:]), xs.expand(2, -1, -1), torch.cat([xd, xd + 0.02]))
    assert rel_err(out[:1], golden["warp_out"]) <= REL_TOL
    assert not torch.allclose(out[0], out[1])


@native_bf16
def test_engine_builds_with_a_backend(engine):
    from lpstudio.engine import LivePortrait

    other = LivePortrait(engine.networks, "cpu", "float32", backend="fused", backend_dtype="bfloat16")
    assert other.backend.name == "fused" and other.backend.dtype == torch.bfloat16


def test_compile_failure_is_loud(engine, monkeypatch):
    from lpstudio.backends.compiled import CompiledBackend, CompileFallbackWarning

    def broken(*args):
        raise RuntimeError("inductor exploded")

    backend = CompiledBackend(engine.networks, CPU, torch.bfloat16)
    monkeypatch.setattr(backend, "_decode_fn", broken)
    uncompiled = torch.full((1, 3, 512, 512), 0.5)
    monkeypatch.setattr(backend, "decoder", lambda warped: uncompiled)
    with pytest.raises(RuntimeError, match="torch.compile failed"):
        backend.decode(torch.zeros(1, 256, 64, 64))
    assert backend.fell_back is None

    backend.fallback = True
    with pytest.warns(CompileFallbackWarning, match="inductor exploded"):
        assert backend.decode(torch.zeros(1, 256, 64, 64)) is uncompiled
    assert "inductor exploded" in backend.fell_back
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert backend.decode(torch.zeros(1, 256, 64, 64)) is uncompiled  # warned once, then uncompiled


@pytest.mark.slow
@native_bf16
def test_compile_bfloat16_cpu_psnr(engine, golden_inputs, golden):
    backend = build_backend("compile", engine.networks, CPU, torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)
        image = backend.warp_decode(*golden_inputs)
    assert psnr_db(image, torch.from_numpy(golden["spade_out"])) >= MIN_PSNR_DB


# ----------------------------------------------------------------------------- ONNX

onnx_missing = next(a.reason for a in available_backends("cpu") if a.name == "onnxruntime")


@pytest.fixture(scope="module")
def ort_backend(engine, onnx_export_dir):
    if onnx_missing:
        pytest.skip(onnx_missing)
    return build_backend("onnxruntime", engine.networks, CPU, torch.float32, export_dir=onnx_export_dir)


def test_onnx_warping_with_5d_gridsample_matches_golden(ort_backend, golden_inputs, golden):
    """ORT's GridSample (opset 20) on 5-D volumes reproduces grid_sample: no decomposition needed."""
    assert rel_err(ort_backend.warp(*golden_inputs), golden["warp_out"]) <= REL_TOL


def test_onnx_decoder_matches_golden(ort_backend, golden):
    out = ort_backend.decode(torch.from_numpy(golden["warp_out"]))
    assert rel_err(out, golden["spade_out"]) <= REL_TOL


def test_onnx_export_uses_nd_gridsample_at_opset_20(ort_backend):
    import onnx

    from lpstudio.export import OPSET

    model = onnx.load(str(ort_backend.paths["warping"]))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= OPSET == 20
    ops = {n.op_type for n in model.graph.node}
    for fn in model.functions:  # the exporter may wrap ops in local functions
        ops |= {n.op_type for n in fn.node}
    assert "GridSample" in ops
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert len(dims) == 5 and isinstance(dims[0], str)  # 5-D input with a dynamic batch axis


def test_export_refuses_opsets_with_4d_only_gridsample(engine, tmp_path):
    from lpstudio.export import export_stage

    with pytest.raises(ValueError, match="opset"):
        export_stage(engine.networks, "warping", tmp_path / "w.onnx", opset=17)


# ----------------------------------------------------------------------------- CUDA


@pytest.fixture(scope="module")
def cuda_networks():
    from lpstudio.nets import Networks
    from lpstudio.synthetic import synthetic_checkpoints

    nets = Networks()
    nets.load_official(synthetic_checkpoints())
    return nets.eval().requires_grad_(False).cuda()


@pytest.fixture(scope="module")
def cuda_reference(cuda_networks):
    torch.manual_seed(0)
    dev = torch.device("cuda")
    f = torch.randn(1, 32, 16, 64, 64, device=dev) * 0.5
    xs = torch.randn(1, 21, 3, device=dev) * 0.3
    xd = xs + torch.randn(1, 21, 3, device=dev) * 0.03
    ref = build_backend("eager", cuda_networks, dev, torch.float32).warp_decode(f, xs, xd)
    return (f, xs, xd), ref


@pytest.mark.gpu
@pytest.mark.parametrize(
    "name,dtype",
    [
        ("fused", torch.float32),
        ("fused", torch.float16),
        ("fused", torch.bfloat16),
        ("cudagraph", torch.float16),
        ("compile", torch.float16),
    ],
)
def test_cuda_backends(cuda_networks, cuda_reference, name, dtype):
    inputs, ref = cuda_reference
    backend = build_backend(name, cuda_networks, torch.device("cuda"), dtype)
    out = backend.warp_decode(*inputs)
    out2 = backend.warp_decode(*inputs)  # a replayed graph gives the same frames
    torch.testing.assert_close(out, out2)
    if dtype == torch.float32:
        assert float((out - ref).abs().max()) <= REL_TOL * float(ref.abs().max())
    else:
        assert psnr_db(out, ref) >= MIN_PSNR_DB


@pytest.mark.gpu
@pytest.mark.parametrize("name,dtype", [("onnxruntime", torch.float32), ("tensorrt", torch.float16)])
def test_cuda_ort_backends(cuda_networks, cuda_reference, name, dtype, tmp_path):
    reason = next(a.reason for a in available_backends("cuda") if a.name == name)
    if reason:
        pytest.skip(reason)
    inputs, ref = cuda_reference
    backend = build_backend(name, cuda_networks, torch.device("cuda"), dtype, export_dir=tmp_path)
    out = backend.warp_decode(*inputs).to(ref.device)
    assert psnr_db(out, ref) >= MIN_PSNR_DB
