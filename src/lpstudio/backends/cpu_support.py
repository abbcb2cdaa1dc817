"""Whether this CPU runs bfloat16 convolutions natively.

Why it matters: oneDNN (PyTorch's CPU convolutions) has fast bfloat16 kernels
only on CPUs with AVX512-BF16 or AMX-BF16 (x86) or the BF16 extension (Arm).
Elsewhere it falls back to its reference kernel. Measured here with
``ONEDNN_MAX_CPU_ISA=AVX2`` (a CPU without them): one 512->512 3x3 convolution
at 64x64 took 91 s in bfloat16 against 0.2 s in float32, so the decoder's first
bfloat16 frame would take hours: that was the "hang" of ``lpstudio bench`` at
"fused/bfloat16: building and rendering the first frame". With AVX512 but no
BF16 instructions it is about 4x slower than float32; with AMX, 5x faster.
So a bfloat16 backend on CPU is refused with this reason instead of running.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
"""cpuinfo flags (x86) / features (Arm) of instructions oneDNN uses for bfloat16 convolutions."""
ISA_ENV_VARS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
"""Environment variables that cap the instruction set oneDNN may use."""
BF16_ISA_MARKERS = ("BF16", "AMX", "FP16", "AVX10", "ALL", "DEFAULT")
"""oneDNN ISA names (e.g. AVX512_CORE_BF16, AVX512_CORE_AMX) that include native bfloat16 kernels."""


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags from /proc/cpuinfo (None where it cannot be read, e.g. macOS)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return None


def cpu_bfloat16_unavailable_reason(
    flags: frozenset[str] | None = None, env: dict[str, str] | None = None
) -> str | None:
    """None when bfloat16 convolutions run natively on this CPU, else a one-line reason.

    ``flags`` and ``env`` default to /proc/cpuinfo and ``os.environ`` (tests pass their own).
    """
    env = dict(os.environ) if env is None else env
    for var in ISA_ENV_VARS:
        cap = env.get(var, "").strip().upper()
        if cap and not any(marker in cap for marker in BF16_ISA_MARKERS):
            return (
                f"{var}={cap} keeps oneDNN off its bfloat16 instructions, so bfloat16 convolutions would run "
                "its reference kernel (hundreds of times slower than float32)"
            )
    if flags is None:
        flags = cpu_flags()
    if flags is None:  # no cpuinfo: ask PyTorch (which only checks for AVX512 on x86)
        if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return None
        return f"this CPU ({platform.machine()}) has no bfloat16 convolution kernels in oneDNN"
    if flags & NATIVE_BF16_FLAGS:
        return None
    return (
        "this CPU has no AVX512-BF16/AMX-BF16 instructions: oneDNN would run bfloat16 convolutions on its "
        "reference kernel (measured 400x slower than float32); use float32"
    )
