"""The ONNX Runtime backend: IO binding on torch tensors, and no silent provider fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lpstudio.backends import available_backends, build_backend
from lpstudio.backends.ort import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TRT_PROVIDER,
    ProviderMismatchError,
    check_providers,
    node_providers,
    placement_warning,
)

CPU = torch.device("cpu")
REL_TOL = 1e-4
onnx_missing = next(a.reason for a in available_backends("cpu") if a.name == "onnxruntime")


def test_asking_for_cuda_and_getting_cpu_is_an_error() -> None:
    asked = [(CUDA_PROVIDER, {"device_id": 0}), CPU_PROVIDER]
    with pytest.raises(ProviderMismatchError) as err:
        check_providers(asked, [CPU_PROVIDER], "warping")
    message = str(err.value)
    assert CUDA_PROVIDER in message and CPU_PROVIDER in message and "warping" in message
    check_providers(asked, [CUDA_PROVIDER, CPU_PROVIDER], "warping")  # got what was asked: fine
    with pytest.raises(ProviderMismatchError, match=TRT_PROVIDER):
        check_providers([(TRT_PROVIDER, {}), CUDA_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER], "decoder")


def test_nodes_refused_by_tensorrt_are_reported_from_the_profile() -> None:
    profile = [
        {"cat": "Session", "name": "model_run"},
        {"cat": "Node", "name": "trt_0", "args": {"provider": TRT_PROVIDER}},
        {"cat": "Node", "name": "GridSample_3", "args": {"provider": CUDA_PROVIDER}},
        {"cat": "Node", "name": "Shape_1", "args": {"provider": CPU_PROVIDER}},
    ]
    counts = node_providers(profile)
    assert counts == {TRT_PROVIDER: 1, CUDA_PROVIDER: 1, CPU_PROVIDER: 1}
    message = placement_warning(TRT_PROVIDER, counts, "warping")
    assert message is not None and "2 of 3" in message and CUDA_PROVIDER in message
    assert placement_warning(TRT_PROVIDER, {TRT_PROVIDER: 5}, "warping") is None


@pytest.fixture(scope="module")
def ort_backend(engine, onnx_export_dir):
    if onnx_missing:
        pytest.skip(onnx_missing)
    return build_backend("onnxruntime", engine.networks, CPU, torch.float32, export_dir=onnx_export_dir)


def test_the_session_got_the_provider_asked_for(ort_backend) -> None:
    for session in ort_backend.sessions.values():
        assert session.get_providers()[0] == CPU_PROVIDER


def test_io_binding_feeds_torch_memory_not_numpy_copies(ort_backend, golden, monkeypatch) -> None:
    """The numpy path (``session.run``) is never taken; an expanded (stride-0) volume and a
    non-contiguous decoder input are bound correctly."""

    def numpy_path(*args, **kwargs):
        raise AssertionError("session.run (numpy feeds) was called")

    for session in ort_backend.sessions.values():
        monkeypatch.setattr(session, "run", numpy_path)
    f, xs, xd = (torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))
    warped = ort_backend.warp(f.expand(2, *f.shape[1:]), xs.expand(2, -1, -1), torch.cat([xd, xd]))
    assert isinstance(warped, torch.Tensor) and warped.shape[0] == 2
    ref = golden["warp_out"]
    assert float(np.abs(warped[1:].numpy() - ref).max()) <= REL_TOL * float(np.abs(ref).max())
    strided = torch.from_numpy(golden["warp_out"]).transpose(2, 3).contiguous().transpose(2, 3)
    assert not strided.is_contiguous()
    image = ort_backend.decode(strided)
    ref = golden["spade_out"]
    assert image.device == CPU and image.dtype == torch.float32
    assert float(np.abs(image.numpy() - ref).max()) <= REL_TOL * float(np.abs(ref).max())


def test_profile_parser_reads_a_real_cpu_profile(engine, onnx_export_dir, tmp_path, golden) -> None:
    """The profile format the placement check reads is what this onnxruntime writes."""
    if onnx_missing:
        pytest.skip(onnx_missing)
    import onnxruntime as ort

    backend = build_backend("onnxruntime", engine.networks, CPU, torch.float32, export_dir=onnx_export_dir)
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(tmp_path / "profile")
    session = ort.InferenceSession(str(backend.paths["decoder"]), opts, providers=[CPU_PROVIDER])
    session.run(None, {"warped": golden["warp_out"]})
    counts = node_providers(json.loads(open(session.end_profiling(), encoding="utf-8").read()))
    assert counts and set(counts) == {CPU_PROVIDER}
    assert placement_warning(CPU_PROVIDER, counts, "decoder") is None
    assert placement_warning(CUDA_PROVIDER, counts, "decoder") is not None


@pytest.mark.gpu
def test_cuda_binding_keeps_tensors_on_the_device(tmp_path) -> None:
    reason = next(a.reason for a in available_backends("cuda") if a.name == "onnxruntime")
    if reason:
        pytest.skip(reason)
    from lpstudio.nets import Networks
    from lpstudio.synthetic import synthetic_checkpoints

    dev = torch.device("cuda")
    nets = Networks()
    nets.load_official(synthetic_checkpoints())
    nets = nets.eval().requires_grad_(False).to(dev)
    backend = build_backend("onnxruntime", nets, dev, torch.float32, export_dir=tmp_path)
    assert backend.sessions["warping"].get_providers()[0] == CUDA_PROVIDER
    f = torch.randn(2, 32, 16, 64, 64, device=dev) * 0.5
    xs = torch.randn(2, 21, 3, device=dev) * 0.3
    out = backend.warp_decode(f, xs, xs + 0.02)
    assert out.device.type == "cuda" and bool(torch.isfinite(out).all())
    assert backend.placement.get("warping"), "the first CUDA run is profiled for node placement"
