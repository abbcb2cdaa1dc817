"""bfloat16 on CPU only where oneDNN has native kernels (else a bench 'hang' of hours): detection and refusal."""

from __future__ import annotations

import pytest
import torch

from lpstudio.backends import available_backends, build_backend
from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason, cpu_flags
from lpstudio.errors import BackendUnavailableError

SAPPHIRE_RAPIDS = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
SKYLAKE = frozenset({"avx2", "avx512f", "avx512bw"})
LAPTOP = frozenset({"avx2", "fma"})


def test_native_flags_allow_bfloat16():
    assert cpu_bfloat16_unavailable_reason(SAPPHIRE_RAPIDS, env={}) is None
    assert cpu_bfloat16_unavailable_reason(frozenset({"fp", "asimd", "bf16"}), env={}) is None  # Arm


@pytest.mark.parametrize("flags", [SKYLAKE, LAPTOP])
def test_cpus_without_bf16_instructions_are_refused(flags):
    reason = cpu_bfloat16_unavailable_reason(flags, env={})
    assert reason is not None and "AVX512-BF16" in reason and "float32" in reason


@pytest.mark.parametrize("cap", ["AVX2", "avx512_core", "AVX512_CORE_VNNI"])
def test_a_onednn_isa_cap_below_bf16_is_refused(cap):
    reason = cpu_bfloat16_unavailable_reason(SAPPHIRE_RAPIDS, env={"ONEDNN_MAX_CPU_ISA": cap})
    assert reason is not None and f"ONEDNN_MAX_CPU_ISA={cap.upper()}" in reason


@pytest.mark.parametrize("cap", ["AVX512_CORE_BF16", "AVX512_CORE_AMX", "ALL"])
def test_a_onednn_isa_cap_with_bf16_is_fine(cap):
    assert cpu_bfloat16_unavailable_reason(SAPPHIRE_RAPIDS, env={"DNNL_MAX_CPU_ISA": cap}) is None


def test_cpuinfo_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    assert cpu_flags(info) == frozenset({"fpu", "avx2", "avx512_bf16"})
    assert cpu_flags(tmp_path / "missing") is None


def test_registry_and_build_refuse_bfloat16_without_native_kernels(engine, monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    fused = next(a for a in available_backends("cpu") if a.name == "fused")
    assert fused.available and torch.bfloat16 not in fused.dtypes and torch.float32 in fused.dtypes
    assert dict(fused.dropped_dtypes)[torch.bfloat16].startswith("ONEDNN_MAX_CPU_ISA=AVX2")
    with pytest.raises(BackendUnavailableError, match="bfloat16 on cpu: ONEDNN_MAX_CPU_ISA"):
        build_backend("fused", engine.networks, torch.device("cpu"), torch.bfloat16)
    assert build_backend("fused", engine.networks, torch.device("cpu"), torch.float32).dtype == torch.float32
