"""The engine never changes what it is given: building any backend (or another engine, or an ONNX export)
from the engine's networks leaves the eager engine on its golden numerics."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch

from lpstudio.backends import available_backends, build_backend
from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason

NO_NATIVE_BF16 = cpu_bfloat16_unavailable_reason()
native_bf16 = pytest.mark.skipif(NO_NATIVE_BF16 is not None, reason=f"bfloat16 refused on this CPU: {NO_NATIVE_BF16}")

pytestmark = pytest.mark.golden

REL_TOL = 1e-4
CPU = torch.device("cpu")


def module_state(module: torch.nn.Module) -> tuple[str, frozenset[tuple[str, str]], bool]:
    """(hash of every tensor's bytes, {(dtype, device)}, training flag) of a module."""
    h = hashlib.sha256()
    kinds = set()
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        kinds.add((str(t.dtype), str(t.device)))
    return h.hexdigest(), frozenset(kinds), module.training


def engine_state(engine) -> dict[str, tuple]:
    return {name: module_state(m) for name, m in engine.networks.by_official_name().items()}


def assert_golden_render(engine, golden) -> None:
    f, xs, xd = (torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))
    warped = engine.backend.warp(f, xs, xd)
    ref = golden["warp_out"]
    assert float(np.abs(warped.float().numpy() - ref).max()) <= REL_TOL * float(np.abs(ref).max())
    image = engine.backend.decode(torch.from_numpy(ref))
    ref = golden["spade_out"]
    assert float(np.abs(image.float().numpy() - ref).max()) <= REL_TOL * float(np.abs(ref).max())


def _every_available_backend() -> list[tuple[str, torch.dtype]]:
    return [(a.name, d) for a in available_backends(CPU) if a.available for d in a.dtypes]


def test_module_state_sees_a_change(engine) -> None:
    """The check below can fail: converting a copy changes its recorded state."""
    import copy

    before = module_state(engine.networks.decoder)
    assert module_state(copy.deepcopy(engine.networks.decoder).to(torch.bfloat16)) != before
    assert module_state(engine.networks.decoder) == before


def test_building_every_backend_leaves_the_eager_engine_golden(engine, golden, onnx_export_dir) -> None:
    before = engine_state(engine)
    built = []
    for name, dtype in _every_available_backend():
        options = {"export_dir": onnx_export_dir} if name in ("onnxruntime", "tensorrt") else {}
        built.append(build_backend(name, engine.networks, CPU, dtype, **options))
    assert {b.name for b in built} >= {"eager", "fused"}
    assert engine_state(engine) == before
    assert engine.backend.name == "eager" and engine.backend.warping is engine.networks.warping
    assert_golden_render(engine, golden)


@native_bf16
def test_another_engine_and_an_export_leave_the_networks_as_they_were(engine, golden, tmp_path) -> None:
    from lpstudio.engine import LivePortrait

    before = engine_state(engine)
    other = LivePortrait(engine.networks, "cpu", "bfloat16")
    assert other.networks is not engine.networks
    assert next(other.networks.decoder.parameters()).dtype == torch.bfloat16
    if importlib.util.find_spec("onnxscript") is not None:
        from lpstudio.export import export_stage

        export_stage(engine.networks, "stitching", tmp_path / "stitching.onnx", check=False)
    assert engine_state(engine) == before
    assert_golden_render(engine, golden)


def test_auto_calibration_leaves_the_eager_engine_golden(engine, golden, monkeypatch, tmp_path) -> None:
    """--backend auto builds and runs the reference and its candidates on the engine's networks:
    the engine's modules, and its golden numerics, stay as they were."""
    from lpstudio.backends.auto import ENV_CACHE_DIR, calibrate, choose_backend

    monkeypatch.setenv(ENV_CACHE_DIR, str(tmp_path))
    before = engine_state(engine)
    inputs = tuple(torch.from_numpy(golden[k]) for k in ("feature_3d", "x_s", "warp_x_d"))
    choice = calibrate(engine.networks, CPU, inputs, candidates=[("fused", torch.bfloat16)], budget_s=600.0)
    assert [t.backend for t in choice.trials] == ["eager", "fused"]
    cached = choose_backend(engine.networks, CPU, lambda: inputs, weights="isolation", engine_dtype=torch.float32,
                            candidates=[], progress=False)  # fmt: skip
    assert cached.backend == "eager"  # no candidates: the reference, built on the same networks
    assert engine_state(engine) == before
    assert engine.backend.warping is engine.networks.warping
    assert_golden_render(engine, golden)
