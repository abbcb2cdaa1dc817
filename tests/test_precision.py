"""Reduced-precision engines: the plain ``dtype=`` path runs on CPU and stays close to float32."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from lpstudio.backends.cpu_support import cpu_bfloat16_unavailable_reason
from lpstudio.engine import LivePortrait

NO_NATIVE_BF16 = cpu_bfloat16_unavailable_reason()
native_bf16 = pytest.mark.skipif(NO_NATIVE_BF16 is not None, reason=f"bfloat16 refused on this CPU: {NO_NATIVE_BF16}")

MIN_PSNR_DB = 40.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@native_bf16
@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_reduced_precision_engine_matches_float32(engine, golden, dtype):
    low = LivePortrait(copy.deepcopy(engine.networks), device="cpu", dtype=dtype)  # never touch the shared engine
    params = []
    frames = {}
    for name, eng in (("float32", engine), (dtype, low)):
        state = eng.prepare_source(golden["source_rgb256"], crop=False, lmk203=golden["lmk203"])
        params = [state.neutral_params().replace(smile=1.0, head_yaw=10.0)]
        frames[name] = eng.render(state, params)[0]
        assert state.motion.kp.dtype.is_floating_point and str(state.motion.kp.dtype) == "torch.float32"
    assert psnr(frames["float32"], frames[dtype]) >= MIN_PSNR_DB
    assert not np.array_equal(frames["float32"], frames[dtype])  # it really ran in reduced precision
