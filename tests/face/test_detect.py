"""SCRFD decoding, NMS and face ordering, checked exactly with a stand-in detector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lpstudio.face.detect import (
    DET_SCORE_THRESH,
    FaceDetector,
    HeadLayout,
    anchor_centers,
    decode,
    letterbox,
    nms,
    order_by_area,
    to_blob,
)
from standin_models import empty_det_outputs, put_face, write_detector


def _detector(tmp_path: Path, outs: list[np.ndarray]) -> FaceDetector:
    path = write_detector(tmp_path / "det_10g.onnx", outs)
    return FaceDetector(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))


def test_anchor_centers_order() -> None:
    pts = anchor_centers(4, 5, 8, 2)
    assert pts.shape == (40, 2) and pts.dtype == np.float32
    # cell (x=3, y=2), second anchor -> row (2*5+3)*2+1
    assert pts[(2 * 5 + 3) * 2 + 1].tolist() == [24.0, 16.0]
    assert pts[0].tolist() == pts[1].tolist() == [0.0, 0.0]


def test_letterbox_tall_and_wide() -> None:
    tall = np.full((600, 300, 3), 200, np.uint8)
    canvas, scale = letterbox(tall, 512)
    assert scale == pytest.approx(512 / 600)
    assert canvas.shape == (512, 512, 3)
    assert (canvas[:, :256] == 200).all() and (canvas[:, 256:] == 0).all()
    wide = np.full((100, 400, 3), 9, np.uint8)
    canvas, scale = letterbox(wide, 512)
    assert scale == pytest.approx(128 / 100)
    assert (canvas[:128] == 9).all() and (canvas[128:] == 0).all()


def test_blob_is_rgb_normalised_nchw() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 255, 127, 0
    blob = to_blob(img)
    assert blob.shape == (1, 3, 2, 2) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0, :, 0, 0], [(255 - 127.5) / 128, (127 - 127.5) / 128, -127.5 / 128])


def test_decode_exact_boxes_keypoints_and_threshold() -> None:
    outs = empty_det_outputs()
    put_face(outs, 0, 20, 30, 1, 0.95, (140.0, 220.0, 190.0, 275.0))
    put_face(outs, 2, 8, 8, 0, DET_SCORE_THRESH, (96.0, 80.0, 416.0, 440.0))  # exactly at threshold: kept
    put_face(outs, 1, 5, 5, 0, 0.09, (60.0, 60.0, 100.0, 100.0))  # below: dropped
    layout = HeadLayout((8, 16, 32), 2, True)
    dets = decode(outs, layout, (512, 512))
    assert len(dets) == 2
    order = np.argsort(-dets.scores)
    np.testing.assert_allclose(dets.boxes[order], [[140, 220, 190, 275], [96, 80, 416, 440]], atol=1e-4)
    assert dets.keypoints is not None
    np.testing.assert_allclose(dets.keypoints[order[0], 0], [140, 220], atol=1e-4)
    np.testing.assert_allclose(dets.keypoints[order[0], 4], [190, 275], atol=1e-4)
    # batched (1, N, C) outputs decode the same
    batched = decode([o[None] for o in outs], layout, (512, 512))
    np.testing.assert_array_equal(batched.boxes, dets.boxes)


def test_nms_plus_one_convention_and_boundary() -> None:
    a = [0, 0, 9, 9]  # area 100 with the +1 convention
    inside = [0, 0, 9, 3]  # area 40 inside a: IoU exactly 0.4 -> kept
    shifted = [1, 0, 10, 9]  # IoU 90/110 -> dropped
    far = [50, 50, 60, 60]
    boxes = np.array([a, inside, shifted, far], np.float32)
    scores = np.array([0.9, 0.5, 0.8, 0.3], np.float32)
    assert nms(boxes, scores, 0.4) == [0, 1, 3]
    assert nms(boxes, scores, 0.39) == [0, 3]


def test_order_by_area_is_stable() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 20, 20], [5, 5, 15, 15]], np.float32)
    assert order_by_area(boxes).tolist() == [1, 0, 2]


def test_detector_end_to_end(tmp_path: Path) -> None:
    outs = empty_det_outputs()
    put_face(outs, 1, 16, 16, 0, 0.99, (236.0, 236.0, 276.0, 276.0))  # small, best score
    put_face(outs, 1, 17, 16, 1, 0.70, (238.0, 236.0, 278.0, 276.0))  # duplicate of it: suppressed
    put_face(outs, 2, 4, 6, 0, 0.60, (40.0, 100.0, 200.0, 300.0))  # large
    det = _detector(tmp_path, outs)
    photo = np.zeros((480, 640, 3), np.uint8)  # letterboxed at scale 0.8
    found = det.detect(photo)
    assert len(found) == 2
    np.testing.assert_allclose(found.scores, [0.99, 0.60], rtol=1e-6)
    np.testing.assert_allclose(found.boxes[0], np.array([236, 236, 276, 276]) / 0.8, atol=1e-3)
    np.testing.assert_allclose(found.boxes[1], np.array([40, 100, 200, 300]) / 0.8, atol=1e-3)
    assert found.keypoints is not None and found.keypoints.shape == (2, 5, 2)
    big_first = found.largest_first()
    np.testing.assert_allclose(big_first.boxes[0], np.array([40, 100, 200, 300]) / 0.8, atol=1e-3)
    assert big_first.with_scores().shape == (2, 5)


def test_detector_no_faces(tmp_path: Path) -> None:
    det = _detector(tmp_path, empty_det_outputs())
    found = det.detect(np.zeros((100, 100, 3), np.uint8))
    assert len(found) == 0 and found.boxes.shape == (0, 4)


def test_not_a_scrfd_model(tmp_path: Path) -> None:
    from onnx import TensorProto, helper

    import standin_models

    inp = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    path = standin_models._save(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [inp], [out]),
        tmp_path / "m.onnx",
    )
    with pytest.raises(ValueError, match="1 outputs"):
        FaceDetector(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
