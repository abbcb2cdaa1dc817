"""Crop geometry parity with the official implementation (tests/data/crop_golden.npz)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lpstudio.face.crop import crop_face, to_network_input

DEFAULT_GOLDEN = Path(__file__).resolve().parents[1] / "data" / "crop_golden.npz"


def _golden_path() -> Path:
    return Path(os.environ.get("LPSTUDIO_CROP_GOLDEN", str(DEFAULT_GOLDEN)))


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    path = _golden_path()
    if not path.is_file():
        pytest.fail(f"crop golden file {path} is missing (set LPSTUDIO_CROP_GOLDEN or restore tests/data)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _cases(golden: dict[str, np.ndarray]) -> list[int]:
    return sorted(int(k[4 : k.index("_")]) for k in golden if k.endswith("_lmk106"))


def _assert_image_close(ours: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert ours.shape == ref.shape and ours.dtype == ref.dtype, what
    diff = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    assert diff.max() <= 1, f"{what}: max diff {diff.max()}"
    assert np.count_nonzero(diff) <= 20, f"{what}: {np.count_nonzero(diff)} channels differ"


@pytest.mark.golden
def test_golden_has_cases(golden: dict[str, np.ndarray]) -> None:
    assert len(_cases(golden)) >= 3


@pytest.mark.golden
@pytest.mark.parametrize("case", [0, 1, 2])
def test_crop_matches_official(golden: dict[str, np.ndarray], case: int) -> None:
    p = f"case{case}_"
    res = crop_face(golden["image"], golden[p + "lmk106"], rotate=bool(golden[p + "flag_do_rot"]))
    np.testing.assert_allclose(res.M_o2c, golden[p + "M_o2c"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.M_c2o, golden[p + "M_c2o"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.points, golden[p + "pt_crop"], rtol=0, atol=1e-3)
    _assert_image_close(res.image, golden[p + "img_crop"], f"case {case} crop")
    _assert_image_close(to_network_input(res.image), golden[p + "img_crop_256"], f"case {case} 256 input")
