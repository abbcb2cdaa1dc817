"""Stand-in ONNX models with the official models' interfaces and known outputs.

Each builder writes a tiny model whose input/output names and shapes are those
of the official file (``det_10g.onnx``: input ``input.1`` (1, 3, ?, ?), nine
outputs ``448 ... 500`` of shapes (K*2, 1|4|10) for strides 8/16/32;
``2d106det.onnx``: input ``data`` (N, 3, 192, 192), output ``fc1`` (N, 212);
``landmark.onnx``: input ``input`` (1, 3, 224, 224), three outputs, the third
(1, 406)). Outputs are constants, optionally with a "probe" part computed from
the input (per-channel means) so pre-processing can be checked too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DET_OUTPUT_NAMES = ["448", "471", "494", "451", "474", "497", "454", "477", "500"]
STRIDES = (8, 16, 32)
ANCHORS = 2
OPSET = 17


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32), name))


def det_level_sizes(canvas: int = 512) -> list[int]:
    return [(canvas // s) ** 2 * ANCHORS for s in STRIDES]


def empty_det_outputs(canvas: int = 512) -> list[np.ndarray]:
    """All-zero SCRFD outputs (scores, boxes, keypoints per level) for a canvas."""
    sizes = det_level_sizes(canvas)
    return (
        [np.zeros((n, 1), np.float32) for n in sizes]
        + [np.zeros((n, 4), np.float32) for n in sizes]
        + [np.zeros((n, 10), np.float32) for n in sizes]
    )


def anchor_index(level: int, gx: int, gy: int, anchor: int, canvas: int = 512) -> int:
    """Row of an anchor in a level's output: row-major grid, 2 anchors per cell."""
    width = canvas // STRIDES[level]
    return (gy * width + gx) * ANCHORS + anchor


def put_face(
    outs: list[np.ndarray],
    level: int,
    gx: int,
    gy: int,
    anchor: int,
    score: float,
    box: tuple[float, float, float, float],
    canvas: int = 512,
) -> None:
    """Make the stand-in detector report ``box`` (canvas px) at one anchor."""
    s = STRIDES[level]
    i = anchor_index(level, gx, gy, anchor, canvas)
    cx, cy = gx * s, gy * s
    outs[level][i, 0] = score
    outs[level + 3][i] = np.array([cx - box[0], cy - box[1], box[2] - cx, box[3] - cy]) / s
    kps = np.array(
        [[box[0], box[1]], [box[2], box[1]], [(box[0] + box[2]) / 2] * 2, [box[0], box[3]], [box[2], box[3]]]
    )
    outs[level + 6][i] = ((kps - [cx, cy]) / s).reshape(-1)


def write_detector(path: Path, outputs: list[np.ndarray]) -> Path:
    """SCRFD stand-in returning ``outputs`` whatever the input."""
    inp = helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "h", "w"])
    nodes, outs = [], []
    for name, arr in zip(DET_OUTPUT_NAMES, outputs, strict=True):
        nodes.append(_const(name, arr))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(arr.shape)))
    return _save(helper.make_graph(nodes, "scrfd_standin", [inp], outs), path)


def _probe_then_const(input_name: str, out_name: str, const: np.ndarray, probe: bool) -> list[onnx.NodeProto]:
    """Nodes computing ``out_name``: ``const`` (1, D), whose first 3 values are
    replaced by the input's per-channel means when ``probe`` is set."""
    if not probe:
        return [_const(out_name, const)]
    return [
        helper.make_node("ReduceMean", [input_name], ["means4"], axes=[2, 3], keepdims=0),
        _const("rest", const[:, 3:]),
        helper.make_node("Concat", ["means4", "rest"], [out_name], axis=1),
    ]


def write_landmark106(path: Path, normalized: np.ndarray, probe: bool = False) -> Path:
    """2d106det stand-in: ``fc1`` = (1, 212) ``normalized`` (x, y in -1..1)."""
    inp = helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 192, 192])
    out = helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", 212] if probe else [1, 212])
    nodes = _probe_then_const("data", "fc1", normalized.reshape(1, 212), probe)
    return _save(helper.make_graph(nodes, "lmk106_standin", [inp], [out]), path)


def write_landmark203(path: Path, unit: np.ndarray, probe: bool = False) -> Path:
    """landmark.onnx stand-in: third output = (1, 406) ``unit`` (x, y in 0..1 of 224)."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])
    outs = [
        helper.make_tensor_value_info("out_a", TensorProto.FLOAT, [1, 214]),
        helper.make_tensor_value_info("out_b", TensorProto.FLOAT, [1, 262]),
        helper.make_tensor_value_info("landmarks", TensorProto.FLOAT, [1, 406] if not probe else ["N", 406]),
    ]
    nodes = [_const("out_a", np.zeros((1, 214))), _const("out_b", np.zeros((1, 262)))]
    nodes += _probe_then_const("input", "landmarks", unit.reshape(1, 406), probe)
    return _save(helper.make_graph(nodes, "lmk203_standin", [inp], outs), path)


def canonical_face_106() -> np.ndarray:
    """(106, 2) float32 landmark layout of a real face (from the crop golden file),
    normalised to -0.6..0.6 around its centre: a plausible 2d106det output."""
    path = Path(__file__).resolve().parent / "data" / "crop_golden.npz"
    with np.load(path) as data:
        pts = data["case1_lmk106"].astype(np.float64)
    c = (pts.min(0) + pts.max(0)) / 2
    half = (pts.max(0) - pts.min(0)).max() / 2
    return ((pts - c) / half * 0.6).astype(np.float32)


def canonical_face_203() -> np.ndarray:
    """(203, 2) float32 points in 0.2..0.8 with open eyes/lips for the ratio pairs."""
    rng = np.random.default_rng(7)
    pts = rng.uniform(0.3, 0.7, size=(203, 2))
    # left eye: corners 0, 12; lids 6, 18. right eye: 24, 36 / 30, 42. mouth: 48, 66 / 90, 102
    for a, b, c, d, x0 in ((0, 12, 6, 18, 0.35), (24, 36, 30, 42, 0.65)):
        pts[a], pts[b] = [x0 - 0.06, 0.4], [x0 + 0.06, 0.4]
        pts[c], pts[d] = [x0, 0.38], [x0, 0.42]
    pts[48], pts[66] = [0.4, 0.65], [0.6, 0.65]
    pts[90], pts[102] = [0.5, 0.63], [0.5, 0.68]
    return pts.astype(np.float32)


DEFAULT_FACE_BOX = (96.0, 80.0, 416.0, 440.0)
"""Where the default stand-in detector reports its one face (detector canvas pixels)."""


def one_face_outputs(box: tuple[float, float, float, float] = DEFAULT_FACE_BOX) -> list[np.ndarray]:
    """Detector outputs with a single face at ``box``."""
    outs = empty_det_outputs()
    put_face(outs, 2, 8, 8, 0, 0.9, box)
    return outs


def write_face_models(
    root: Path,
    det_outputs: list[np.ndarray] | None = None,
    lmk106: np.ndarray | None = None,
    lmk203: np.ndarray | None = None,
    probe: bool = False,
) -> Path:
    """Write stand-ins of the three official face models in the official layout under ``root``.

    Defaults: one face at :data:`DEFAULT_FACE_BOX` and the canonical landmark layouts.
    """
    write_detector(
        root / "insightface/models/buffalo_l/det_10g.onnx", one_face_outputs() if det_outputs is None else det_outputs
    )
    write_landmark106(
        root / "insightface/models/buffalo_l/2d106det.onnx",
        canonical_face_106() if lmk106 is None else lmk106,
        probe=probe,
    )
    write_landmark203(root / "liveportrait/landmark.onnx", canonical_face_203() if lmk203 is None else lmk203, probe)
    return root
