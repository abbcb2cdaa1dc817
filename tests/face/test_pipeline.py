"""FacePipeline with stand-in models: face choice, coordinates, errors, large photos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from lpstudio.errors import FaceNotFoundError, ImageError, WeightsError
from lpstudio.face import FaceCrop, FacePipeline
from lpstudio.face.crop import crop_matrix, transform_points
from lpstudio.face.landmarks import eye_close_ratio, lip_close_ratio
from standin_models import canonical_face_106, canonical_face_203, empty_det_outputs, put_face

CPU = ["CPUExecutionProvider"]


def _two_faces() -> list[np.ndarray]:
    outs = empty_det_outputs()
    put_face(outs, 1, 20, 20, 0, 0.95, (300.0, 300.0, 380.0, 390.0))  # small, best score
    put_face(outs, 2, 5, 6, 1, 0.80, (60.0, 80.0, 260.0, 300.0))  # large
    return outs


@pytest.fixture()
def photo() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)


def _expected_lmk106(box: np.ndarray) -> np.ndarray:
    side = max(box[2] - box[0], box[3] - box[1])
    centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
    return centre + canonical_face_106().astype(np.float64) * 0.75 * side


def test_analyze_largest_face_by_default(standin_weights: Callable[..., Path], photo: np.ndarray) -> None:
    fp = FacePipeline(standin_weights(det_outputs=_two_faces()), providers=CPU)
    face = fp.analyze(photo)
    assert isinstance(face, FaceCrop) and face.face_index == 0
    np.testing.assert_allclose(face.all_boxes, [[60, 80, 260, 300, 0.8], [300, 300, 380, 390, 0.95]], atol=1e-4)
    np.testing.assert_array_equal(face.box, face.all_boxes[0])
    np.testing.assert_allclose(face.lmk106_photo, _expected_lmk106(face.box), atol=1e-3)
    # crop from the 106 points by the official rule
    np.testing.assert_allclose(face.M_o2c, crop_matrix(face.lmk106_photo), atol=1e-6)
    np.testing.assert_allclose(face.M_o2c @ face.M_c2o, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(face.lmk106, transform_points(face.lmk106_photo, face.M_o2c), atol=1e-4)
    np.testing.assert_allclose(face.lmk203, transform_points(face.lmk203_photo, face.M_o2c), atol=1e-3)
    assert face.image_512.shape == (512, 512, 3) and face.image_512.dtype == np.uint8
    assert face.image_256.shape == (256, 256, 3) and face.image_256.dtype == np.uint8
    assert face.M_o2c.shape == face.M_c2o.shape == (3, 3)
    assert face.lmk203.shape == (203, 2) and face.lmk106.shape == (106, 2)
    np.testing.assert_allclose(face.lmk203_256, face.lmk203 / 2)
    # ratios are similarity-invariant: equal to those of the model's own output
    unit = canonical_face_203()
    assert face.eye_ratio.shape == (1, 2) and face.lip_ratio.shape == (1, 1)
    np.testing.assert_allclose(face.eye_ratio, eye_close_ratio(unit), rtol=1e-4)
    np.testing.assert_allclose(face.lip_ratio, lip_close_ratio(unit), rtol=1e-4)
    assert face.eye_ratio_rounded == round(float(face.eye_ratio.mean()), 2)
    assert face.lip_ratio_rounded == round(float(face.lip_ratio[0, 0]), 2)
    assert face.photo_size == (512, 512)


def test_face_index_chooses_and_errors(standin_weights: Callable[..., Path], photo: np.ndarray) -> None:
    fp = FacePipeline(standin_weights(det_outputs=_two_faces()), providers=CPU)
    second = fp.analyze(photo, face_index=1)
    assert second.face_index == 1
    np.testing.assert_allclose(second.box[:4], [300, 300, 380, 390], atol=1e-4)
    np.testing.assert_allclose(second.lmk106_photo, _expected_lmk106(second.box), atol=1e-3)
    with pytest.raises(FaceNotFoundError) as info:
        fp.analyze(photo, face_index=2)
    msg = str(info.value)
    assert "Face number 2" in msg and "2 faces" in msg and "face_index from 0 to 1" in msg
    with pytest.raises(FaceNotFoundError, match="Face number -1"):
        fp.analyze(photo, face_index=-1)
    found = fp.detect(photo)
    assert len(found) == 2 and found.boxes[0, 2] - found.boxes[0, 0] == pytest.approx(200)


def test_no_face_is_a_clear_error(standin_weights: Callable[..., Path], photo: np.ndarray) -> None:
    fp = FacePipeline(standin_weights(det_outputs=empty_det_outputs()), providers=CPU)
    with pytest.raises(FaceNotFoundError) as info:
        fp.analyze(photo)
    msg = str(info.value)
    assert "No face was found" in msg and "512x512" in msg and "clearly visible" in msg
    with pytest.raises(FaceNotFoundError, match="pre-cropped image"):
        fp.landmarks203(photo)
    assert info.value.http_status == 422


def test_large_photo_analysed_small_cropped_full(standin_weights: Callable[..., Path]) -> None:
    weights = standin_weights(det_outputs=_two_faces())
    small = np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(small, 4, axis=0), 4, axis=1)  # 2560 x 2560
    fp = FacePipeline(weights, providers=CPU)
    face_big = fp.analyze(big)
    # analysed at 1280 (factor 0.5), reported in full-resolution pixels
    np.testing.assert_allclose(face_big.box[:4], (np.array([60, 80, 260, 300]) * 1280 / 512 + 0.5) * 2 - 0.5, atol=1e-2)
    assert face_big.photo_size == (2560, 2560)
    np.testing.assert_allclose(face_big.M_o2c, crop_matrix(face_big.lmk106_photo), atol=1e-5)
    # same face found when the analysis copy is the photo itself
    fp_full = FacePipeline(weights, providers=CPU, analysis_max_side=4096)
    face_full = fp_full.analyze(big)
    np.testing.assert_allclose(face_full.box[:4], face_big.box[:4], atol=1.5)


def test_landmarks203_on_precropped(standin_weights: Callable[..., Path], photo: np.ndarray) -> None:
    fp = FacePipeline(standin_weights(det_outputs=_two_faces()), providers=CPU)
    lmk = fp.landmarks203(photo)
    face = fp.analyze(photo)
    assert lmk.shape == (203, 2)
    np.testing.assert_allclose(lmk, face.lmk203_photo, atol=1e-4)


def test_accepts_gray_rgba_and_rejects_garbage(standin_weights: Callable[..., Path]) -> None:
    fp = FacePipeline(standin_weights(), providers=CPU)
    gray = np.full((512, 512), 90, np.uint8)
    assert fp.analyze(gray).image_512.shape == (512, 512, 3)
    rgba = np.zeros((512, 512, 4), np.uint8)
    assert fp.analyze(rgba).image_256.shape == (256, 256, 3)
    with pytest.raises(ImageError, match="photo has shape"):
        fp.analyze(np.zeros((5,), np.uint8))


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as info:
        FacePipeline(tmp_path / "nowhere")
    msg = str(info.value)
    assert "det_10g.onnx" in msg and "missing" in msg and "lpstudio weights download" in msg


def test_damaged_weights(standin_weights: Callable[..., Path]) -> None:
    root = standin_weights()
    (root / "liveportrait/landmark.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError) as info:
        FacePipeline(root, providers=CPU)
    msg = str(info.value)
    assert "landmark.onnx" in msg and "cannot be loaded" in msg and "lpstudio weights download" in msg


def test_from_models_matches_constructor(standin_weights: Callable[..., Path], photo: np.ndarray) -> None:
    from lpstudio.face import FaceDetector, Landmark106, Landmark203

    root = standin_weights(det_outputs=_two_faces())
    buffalo = root / "insightface/models/buffalo_l"
    fp = FacePipeline.from_models(
        FaceDetector.from_file(buffalo / "det_10g.onnx", CPU),
        Landmark106.from_file(buffalo / "2d106det.onnx", CPU),
        Landmark203.from_file(root / "liveportrait/landmark.onnx", CPU),
    )
    a, b = fp.analyze(photo), FacePipeline(root, providers=CPU).analyze(photo)
    np.testing.assert_array_equal(a.M_o2c, b.M_o2c)
    np.testing.assert_array_equal(a.image_256, b.image_256)
