"""106/203-point landmark mapping and the eye/lip ratios."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lpstudio.face.crop import crop_matrix, invert, transform_points
from lpstudio.face.landmarks import (
    Landmark106,
    Landmark203,
    box_to_input_matrix,
    eye_close_ratio,
    lip_close_ratio,
    rounded_ratios,
)
from standin_models import canonical_face_106, canonical_face_203, write_landmark106, write_landmark203

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden.npz"
CPU = ["CPUExecutionProvider"]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=CPU)


def test_box_to_input_matrix() -> None:
    m = box_to_input_matrix(np.array([100.0, 200.0, 300.0, 360.0]), 192)
    s = 192 / (200 * 1.5)
    np.testing.assert_allclose(m, [[s, 0, 96 - s * 200], [0, s, 96 - s * 280]])


def test_landmark106_maps_model_output_to_photo(tmp_path: Path) -> None:
    v = canonical_face_106()
    model = Landmark106(_session(write_landmark106(tmp_path / "l.onnx", v)))
    assert model.size == 192 and model.input_name == "data"
    box = np.array([100.0, 120.0, 260.0, 320.0, 0.9], np.float32)
    pts = model(np.zeros((400, 400, 3), np.uint8), box)
    # (v + 1) * 96 in the 192 input, whose centre is the box centre and whose
    # side is 1.5 * the box's longer side: photo = centre + v * 0.75 * side
    expected = np.array([180.0, 220.0]) + v.astype(np.float64) * 0.75 * 200
    assert pts.shape == (106, 2) and pts.dtype == np.float32
    np.testing.assert_allclose(pts, expected, atol=1e-3)


def test_landmark106_feeds_raw_rgb(tmp_path: Path) -> None:
    v = canonical_face_106()
    model = Landmark106(_session(write_landmark106(tmp_path / "l.onnx", v, probe=True)))
    photo = np.zeros((600, 600, 3), np.uint8)
    photo[...] = (200, 100, 50)
    box = np.array([250.0, 250.0, 350.0, 350.0])
    pts = model(photo, box)
    # probe: first point = (mean R, mean G) of the input, pixel values unscaled (mean 0, std 1)
    np.testing.assert_allclose(pts[0], np.array([300.0, 300.0]) + np.array([200.0, 100.0]) * 0.75 * 100, rtol=1e-5)


def test_landmark203_maps_through_its_crop(tmp_path: Path) -> None:
    unit = canonical_face_203()
    model = Landmark203(_session(write_landmark203(tmp_path / "l.onnx", unit)))
    rng = np.random.default_rng(0)
    lmk106 = (canonical_face_106() * 80 + [300, 260]).astype(np.float32)
    photo = rng.integers(0, 255, (500, 600, 3), dtype=np.uint8)
    pts = model(photo, lmk106)
    m224 = crop_matrix(lmk106, dsize=224, scale=1.5, vx=0.0, vy=-0.1)
    np.testing.assert_allclose(transform_points(pts, m224), unit * 224, atol=2e-3)
    np.testing.assert_allclose(pts, transform_points(unit * 224, invert(m224)), atol=1e-4)


def test_landmark203_input_is_rgb_over_255(tmp_path: Path) -> None:
    model = Landmark203(_session(write_landmark203(tmp_path / "l.onnx", canonical_face_203(), probe=True)))
    photo = np.zeros((800, 800, 3), np.uint8)
    photo[...] = (204, 51, 0)
    lmk106 = (canonical_face_106() * 60 + [400, 400]).astype(np.float32)  # its 224 crop lies inside the photo
    pts = model(photo, lmk106)
    m224 = crop_matrix(lmk106, dsize=224, scale=1.5, vx=0.0, vy=-0.1)
    np.testing.assert_allclose(transform_points(pts[:1], m224)[0], np.array([204, 51]) / 255 * 224, atol=2e-3)


def test_landmark203_needs_three_outputs(tmp_path: Path) -> None:
    path = write_landmark106(tmp_path / "one_output.onnx", canonical_face_106())
    with pytest.raises(ValueError, match="3 outputs"):
        Landmark203(_session(path))


def test_ratios_match_official_golden() -> None:
    with np.load(GOLDEN) as g:
        lmk, eye_ref, lip_ref = g["lmk203"], g["source_eye_close_ratio"], g["source_lip_close_ratio"]
        eye_r, lip_r = float(g["source_eye_ratio_rounded"]), float(g["source_lip_ratio_rounded"])
    eye, lip = eye_close_ratio(lmk), lip_close_ratio(lmk)
    assert eye.shape == (1, 2) and lip.shape == (1, 1)
    np.testing.assert_allclose(eye, eye_ref, rtol=1e-6)
    np.testing.assert_allclose(lip, lip_ref, rtol=1e-6)
    assert rounded_ratios(eye, lip) == (pytest.approx(eye_r), pytest.approx(lip_r))


def test_ratio_definition_and_eps() -> None:
    lmk = np.zeros((203, 2))
    lmk[0], lmk[12] = [0, 0], [10, 0]  # left eye width 10
    lmk[6], lmk[18] = [5, -1], [5, 2]  # left lids 3 apart
    lmk[24], lmk[36] = [20, 0], [30, 0]
    lmk[48], lmk[66] = [0, 10], [0, 10]  # zero-width mouth: eps keeps it finite
    lmk[90], lmk[102] = [0, 0], [0, 1e-6]
    eye, lip = eye_close_ratio(lmk), lip_close_ratio(lmk)
    np.testing.assert_allclose(eye, [[3 / (10 + 1e-6), 0.0]])
    np.testing.assert_allclose(lip, [[1.0]])
    batch = eye_close_ratio(np.stack([lmk, lmk * 2]))
    assert batch.shape == (2, 2)
    with pytest.raises(ValueError, match="203"):
        eye_close_ratio(np.zeros((106, 2)))
