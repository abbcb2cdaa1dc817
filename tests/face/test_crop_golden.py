"""Crop geometry parity with the official implementation (tests/data/crop_golden.npz).

The matrices must match to 1e-5; the pixels may differ by the bilinear rounding of the OpenCV
release users get (``opencv-python-headless`` is not pinned): at most :data:`MAX_LEVELS` levels
on at most :data:`MAX_DIFFERING_FRACTION` of the channels. A crop off by 0.05 pixel already puts
a sixth of the channels off and some by 6 or more levels, so the tolerance hides no wrong crop.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from lpstudio.face.crop import crop_face, to_network_input

DEFAULT_GOLDEN = Path(__file__).resolve().parents[1] / "data" / "crop_golden.npz"
MAX_LEVELS = 2
"""Largest per-channel difference: OpenCV 5.0 matches the golden exactly, 5.1 is one level off on 79-83 channels
of a 512x512 crop (its bilinear rounding); 2 leaves room for one more such change and none for a wrong crop."""
MAX_DIFFERING_FRACTION = 0.001
"""At most 0.1% of the channels may differ (786 of a 512x512x3 crop; OpenCV 5.1 needs about 0.01%)."""
WRONG_SHIFTS_PX = (0.05, 0.5, 1.0)
"""Horizontal shifts of the crop matrix the image check must refuse (0.05 px: the smallest tried that changes
about 17% of the channels)."""


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
    assert diff.max() <= MAX_LEVELS, f"{what}: max diff {diff.max()} levels (at most {MAX_LEVELS})"
    allowed = int(MAX_DIFFERING_FRACTION * diff.size)
    assert np.count_nonzero(diff) <= allowed, f"{what}: {np.count_nonzero(diff)} channels differ (at most {allowed})"


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


@pytest.mark.golden
@pytest.mark.parametrize("shift", WRONG_SHIFTS_PX)
def test_image_tolerance_refuses_a_shifted_crop(golden: dict[str, np.ndarray], shift: float) -> None:
    """The pixel tolerance alone (matrices aside) catches a crop matrix moved by a fraction of a pixel."""
    from lpstudio.face.crop import warp_to_crop

    for case in _cases(golden)[:3]:
        p = f"case{case}_"
        wrong = golden[p + "M_o2c"].astype(np.float64).copy()
        wrong[0, 2] += shift
        with pytest.raises(AssertionError, match="max diff|channels differ"):
            _assert_image_close(warp_to_crop(golden["image"], wrong), golden[p + "img_crop"], f"case {case}")


def test_strong_downscale_is_antialiased_and_aligned() -> None:
    """A face thousands of pixels wide is area-averaged, not aliased, and lands in the same place."""
    from lpstudio.face.crop import crop_matrix, warp_to_crop

    with np.load(_golden_path()) as g:
        lmk = g["case0_lmk106"].astype(np.float32)
    k = 8.0  # the same face in an 8x larger photo
    big_lmk = (lmk + 0.5) * k - 0.5
    m = crop_matrix(big_lmk)
    assert np.sqrt(abs(np.linalg.det(m[:2, :2]))) < 0.5  # takes the antialiasing path
    yy, xx = np.mgrid[:4096, :4096]
    smooth = np.stack([xx // 16, yy // 16, (xx + yy) // 32], axis=-1).astype(np.uint8)
    plain = cv2.warpAffine(smooth, m[:2], (512, 512), flags=cv2.INTER_LINEAR)
    ours = warp_to_crop(smooth, m)
    valid = plain.sum(axis=2) > 0
    assert np.abs(ours.astype(int) - plain.astype(int))[valid].mean() < 1.0  # same geometry
    noise = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    aliased = cv2.warpAffine(noise, m[:2], (512, 512), flags=cv2.INTER_LINEAR)
    assert warp_to_crop(noise, m)[valid].std() < 0.5 * aliased[valid].std()
