"""The TFLite reader, its ONNX conversion, BlazeFace decoding and the mesh -> 106/203 mapping.

The parts that need no model file run always; the comparisons on the real MediaPipe
files (the PyTorch interpreter with the ONNX conversion, and both with the outputs of
Google's reference runtime stored in ``tests/data/tflite_reference.npz`` by
``tests/data/make_tflite_reference.py``) are skipped when ``mediapipe==0.10.21`` is not
installed (and fail under ``CI``: ``tests/test_ci_requirements.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from lpstudio.face.crop import face_rect, roll_axis_points
from lpstudio.face.mediapipe import (
    INSTALL_HINT,
    MODEL_FILES,
    Roi,
    available,
    locate_models,
    ssd_anchors,
    weighted_nms,
)
from lpstudio.face.mesh_layout import N_MESH, five_points, mesh_to_106, mesh_to_203, resample
from lpstudio.face.tflite import TFLiteError, TFLiteModel, _same_padding, parse_tflite
from lpstudio.face.tflite_onnx import tflite_to_onnx
from lpstudio.keypoints import eye_close_ratio, lip_close_ratio

needs_models = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")


def test_not_a_tflite_file_is_refused() -> None:
    with pytest.raises(TFLiteError, match="not a TensorFlow Lite model"):
        parse_tflite(b"\x00" * 64, "junk.tflite")
    with pytest.raises(TFLiteError, match="damaged or truncated"):
        parse_tflite(b"\x10\x00\x00\x00TFL3" + b"\x00" * 4, "cut.tflite")


def test_same_padding_matches_tensorflow() -> None:
    # TensorFlow: out = ceil(in / stride), total = max((out - 1) * stride + k - in, 0), the odd pixel after
    assert _same_padding(128, 5, 2) == (1, 2)
    assert _same_padding(128, 3, 1) == (1, 1)
    assert _same_padding(64, 2, 2) == (0, 0)
    assert _same_padding(7, 3, 2) == (1, 1)


def test_ssd_anchors_layout() -> None:
    a = ssd_anchors()
    assert a.shape == (896, 2)  # 16x16 cells x 2 + 8x8 cells x 6
    np.testing.assert_allclose(a[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(a[1], a[0])  # two anchors per stride-8 cell
    np.testing.assert_allclose(a[2], [1.5 / 16, 0.5 / 16])  # then the next cell to the right
    np.testing.assert_allclose(a[512:518], np.tile([[0.5 / 8, 0.5 / 8]], (6, 1)))  # six per stride-16 cell
    np.testing.assert_allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_weighted_nms_merges_overlapping_boxes_by_score() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=np.float64)
    scores = np.array([0.9, 0.3, 0.8])
    kps = np.zeros((3, 6, 2))
    kps[1] += 4.0
    b, s, k = weighted_nms(boxes, scores, kps)
    assert len(b) == 2 and s.tolist() == [0.9, 0.8]
    np.testing.assert_allclose(b[0], [0.25, 0, 10.25, 10])  # (0.9 * 0 + 0.3 * 1) / 1.2
    np.testing.assert_allclose(k[0], 1.0)
    np.testing.assert_allclose(b[1], boxes[2])


def test_roi_crop_and_projection_agree() -> None:
    """A point drawn in the photo lands where Roi.project says, rotated and mirrored alike."""
    img = np.zeros((300, 400, 3), np.uint8)
    img[148:153, 248:253] = 255  # a dot centred on pixel (250, 150)
    for angle, flip in ((0.0, False), (0.6, False), (-1.2, True)):
        roi = Roi(center=np.array([240.5, 160.5]), side=120.0, angle=angle)
        patch = roi.crop(img, 64, flip=flip)
        ys, xs = np.nonzero(patch[..., 0] > 60)
        w = patch[ys, xs, 0].astype(np.float64)
        centroid = np.array([[(xs * w).sum() / w.sum() + 0.5, (ys * w).sum() / w.sum() + 0.5]])
        np.testing.assert_allclose(roi.project(centroid, 64, flip=flip)[0], [250, 150], atol=0.6)


def _fake_mesh() -> np.ndarray:
    """A (468, 2) mesh: random points inside a face-sized box, with the mapped vertices placed sensibly."""
    from lpstudio.face import mesh_layout as L

    rng = np.random.default_rng(1)
    mesh = rng.uniform(80, 120, (N_MESH, 2))
    for line, y in ((L.EYE_L_UPPER, 95.0), (L.EYE_R_UPPER, 95.0)):
        mesh[list(line), 1] = y
    for line, y in ((L.EYE_L_LOWER, 99.0), (L.EYE_R_LOWER, 99.0)):
        mesh[list(line), 1] = y
    mesh[list(L.EYE_L_UPPER), 0] = mesh[list(L.EYE_L_LOWER), 0] = np.linspace(80, 92, 9)
    mesh[list(L.EYE_R_UPPER), 0] = mesh[list(L.EYE_R_LOWER), 0] = np.linspace(108, 120, 9)
    mesh[list(L.LIP_INNER_UPPER), 1], mesh[list(L.LIP_INNER_LOWER), 1] = 120.0, 123.0
    mesh[list(L.LIP_OUTER_UPPER), 1], mesh[list(L.LIP_OUTER_LOWER), 1] = 117.0, 127.0
    for line in (L.LIP_INNER_UPPER, L.LIP_INNER_LOWER, L.LIP_OUTER_UPPER, L.LIP_OUTER_LOWER):
        mesh[list(line), 0] = np.linspace(90, 110, 11)
    mesh[[61, 291], 1] = 122.0
    mesh[list(L.JAW_LEFT)] = np.stack([np.linspace(70, 100, 12), np.linspace(95, 140, 12)], axis=1)
    mesh[list(L.JAW_RIGHT)] = np.stack([np.linspace(130, 100, 12), np.linspace(95, 140, 12)], axis=1)
    return mesh


def test_layouts_put_eyes_lips_and_extent_where_the_crop_and_ratios_read_them() -> None:
    mesh = _fake_mesh()
    p106, p203 = mesh_to_106(mesh), mesh_to_203(mesh)
    assert p106.shape == (106, 2) and p203.shape == (203, 2)
    # the roll axis: both layouts give the same eye midpoint and lip centre
    np.testing.assert_allclose(roll_axis_points(p106), roll_axis_points(p203), atol=1.5)
    np.testing.assert_allclose(roll_axis_points(p203)[1], [100, 122], atol=1.0)  # mouth corners 61 / 291
    # corners and lid middles of the ratios: eye 4 wide (lids 95 / 99) over 12 -> 1/3; lips 3 over 20
    np.testing.assert_allclose(eye_close_ratio(p203), [[4 / 12, 4 / 12]], atol=1e-4)
    np.testing.assert_allclose(lip_close_ratio(p203), [[3 / 20]], atol=1e-4)
    # the extent reaches the chin and both jaw tops in either layout
    for pts in (p106, p203):
        assert pts[:, 1].max() == pytest.approx(140, abs=0.5)
        assert pts[:, 0].min() == pytest.approx(70, abs=0.5) and pts[:, 0].max() == pytest.approx(130, abs=0.5)
    r106, r203 = face_rect(p106), face_rect(p203)
    assert abs(r106.size - r203.size) / r106.size < 0.1


def test_five_points_prefer_iris_centres() -> None:
    mesh = _fake_mesh()
    iris = np.array([[86.0, 97.0], [114.0, 97.0]])
    five = five_points(mesh, iris)
    np.testing.assert_allclose(five[:2], iris)
    np.testing.assert_allclose(five[3:], mesh[[61, 291]], atol=1e-4)
    np.testing.assert_allclose(five_points(mesh)[:2], [[86, 97], [114, 97]], atol=0.6)  # contour means


def test_resample_keeps_ends_and_spacing() -> None:
    pts = resample(np.array([[0, 0], [10, 0], [10, 10]]), 5)
    np.testing.assert_allclose(pts, [[0, 0], [5, 0], [10, 0], [10, 5], [10, 10]])


def test_missing_folder_names_the_install_command(tmp_path) -> None:
    from lpstudio.errors import WeightsError

    with pytest.raises(WeightsError) as info:
        locate_models(tmp_path)
    assert "face_detection_short_range.tflite" in str(info.value) and "mediapipe==0.10.21" in str(info.value)


@needs_models
def test_altered_model_file_is_refused(tmp_path) -> None:
    from lpstudio.errors import WeightsError

    for key, path in locate_models().items():
        data = path.read_bytes()
        (tmp_path / path.name).write_bytes(data if key != "mesh" else data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(WeightsError, match="sha256"):
        locate_models(tmp_path)


@needs_models
@pytest.mark.parametrize("key", sorted(MODEL_FILES))
def test_onnx_conversion_matches_the_torch_interpreter(key: str) -> None:
    """Two independent executions of the same file: the PyTorch interpreter and the ONNX graph we write."""
    path = locate_models()[key]
    model = TFLiteModel(path.read_bytes(), path.name)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(tflite_to_onnx(model), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(0, 1, model.input_shapes[0]).astype(np.float32)
    ref = model(x)
    got = session.run(model.output_names, {session.get_inputs()[0].name: x})
    for r, g in zip(ref, got):
        assert r.shape == g.shape
        assert np.abs(r - g).max() <= 1e-4 * max(1.0, float(np.abs(r).max()))


REFERENCE = Path(__file__).resolve().parents[1] / "data" / "tflite_reference.npz"
REFERENCE_RTOL = 1e-4
"""Of the largest reference value: float32 sums in another order (TFLite's reference kernels vs PyTorch / ONNX
Runtime) differ by about 1e-6 of it; a wrong op (padding, layout, activation) is off by far more than 1e-4."""


def _reference(key: str) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Inputs (float, as the models take them), output names and outputs of Google's runtime for ``key``."""
    with np.load(REFERENCE) as ref:
        if str(ref[f"sha256.{key}"]) != MODEL_FILES[key].sha256:
            pytest.fail(f"{REFERENCE.name} was made from another {key} file: run tests/data/make_tflite_reference.py")
        names = [str(n) for n in ref[f"{key}.names"]]
        x = ref[f"{key}.inputs"].astype(np.float32) / ref["pixel_scale"] - np.float32(1.0)  # as the script
        return x.astype(np.float32), names, [ref[f"{key}.out{j}"] for j in range(len(names))]


def _assert_close(got: list[np.ndarray], want: list[np.ndarray], what: str) -> None:
    for j, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, (what, j)
        err = float(np.abs(g.astype(np.float64) - w).max())
        assert err <= REFERENCE_RTOL * max(1.0, float(np.abs(w).max())), f"{what} output {j}: off by {err:g}"


#: The files ``tflite_reference.npz`` holds outputs of (the full-range detector came later and has none: Google's
#: runtime is not installable here; its reader and conversion are checked against each other and on real photos).
REFERENCE_KEYS: tuple[str, ...] = ("detector", "iris", "mesh")


@needs_models
@pytest.mark.parametrize("key", REFERENCE_KEYS)
def test_reader_and_onnx_conversion_match_the_reference_runtime(key: str) -> None:
    """Our interpreter and ONNX graph against TFLite's reference kernels (``ai-edge-litert``) on fixed inputs."""
    inputs, names, want = _reference(key)
    path = locate_models()[key]
    model = TFLiteModel(path.read_bytes(), path.name)
    assert model.output_names == names
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(tflite_to_onnx(model), opts, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    for i, x in enumerate(inputs):
        expected = [w[i] for w in want]
        _assert_close([o[0] for o in model(x[None])], expected, f"{key} interpreter, input {i}")
        _assert_close([o[0] for o in session.run(names, {feed: x[None]})], expected, f"{key} ONNX, input {i}")
