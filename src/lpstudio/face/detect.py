"""SCRFD face detection (insightface ``det_10g.onnx``): pre-processing, decoding, NMS.

The detector is anchor-free per feature level: every cell of a stride-``s``
grid carries ``A`` anchor points at the cell's top-left corner ``(x*s, y*s)``;
the network predicts, per anchor point, a face score, the distances (in units
of ``s``) from the point to the four box sides, and optionally five keypoints
as offsets (in units of ``s``).

Facts taken from the official code (``insightface/model_zoo/scrfd.py`` and
``LivePortrait/src/utils/cropper.py``, ``face_analysis_diy.py``, ``crop_config.py``):

* the photo is resized, keeping its aspect ratio, to fit a 512x512 canvas and
  placed at its top-left corner over black (``det_size=(512, 512)``);
* input is RGB, ``(pixel - 127.5) / 128``, NCHW float32;
* the number of outputs gives the layout: 6 or 9 outputs are 3 levels (strides
  8, 16, 32) with 2 anchors per cell, 10 or 15 are 5 levels (8 ... 128) with
  one anchor; 9 and 15 include keypoints. Outputs come as all score maps, then
  all box maps, then all keypoint maps, each (K*A, C) or (1, K*A, C);
* score threshold 0.1 (``CropConfig.det_thresh``), NMS IoU threshold 0.4,
  areas with the "+1" pixel convention, boxes kept while IoU <= 0.4;
* faces are then ordered largest box area first (``direction="large-small"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from ._onnx import open_session

#: Side of the square canvas the detector runs on (official ``det_size``).
DET_INPUT_SIZE: int = 512
#: Minimum face score (official ``CropConfig.det_thresh``).
DET_SCORE_THRESH: float = 0.1
#: Boxes overlapping a better one by more than this IoU are dropped (SCRFD default).
DET_NMS_THRESH: float = 0.4
#: Input normalisation of SCRFD: (pixel - mean) / std.
DET_INPUT_MEAN: float = 127.5
DET_INPUT_STD: float = 128.0


@dataclass(frozen=True)
class HeadLayout:
    """How a SCRFD model's outputs are organised."""

    strides: tuple[int, ...]
    anchors_per_cell: int
    has_keypoints: bool


#: Output count -> layout (official ``SCRFD._init_vars``).
_LAYOUTS: dict[int, HeadLayout] = {
    6: HeadLayout((8, 16, 32), 2, False),
    9: HeadLayout((8, 16, 32), 2, True),
    10: HeadLayout((8, 16, 32, 64, 128), 1, False),
    15: HeadLayout((8, 16, 32, 64, 128), 1, True),
}


@dataclass(frozen=True, eq=False)
class Detections:
    """Faces found in one image, best score first (after NMS).

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in image pixels.
        scores: (N,) float32 in 0..1.
        keypoints: (N, 5, 2) float32 (eyes, nose, mouth corners) or None.
    """

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    keypoints: NDArray[np.float32] | None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def take(self, order: NDArray[np.intp]) -> Detections:
        """The detections re-ordered / subset by index."""
        kps = None if self.keypoints is None else self.keypoints[order]
        return Detections(self.boxes[order], self.scores[order], kps)

    def largest_first(self) -> Detections:
        """Ordered by box area, largest first; ties keep score order."""
        return self.take(order_by_area(self.boxes))

    def with_scores(self) -> NDArray[np.float32]:
        """(N, 5) float32 ``x1, y1, x2, y2, score`` rows."""
        return np.hstack([self.boxes, self.scores[:, None]]).astype(np.float32)


def letterbox(image: NDArray[np.uint8], size: int = DET_INPUT_SIZE) -> tuple[NDArray[np.uint8], float]:
    """Fit an image into a ``size x size`` black canvas at the top-left corner.

    Args:
        image: (H, W, 3) uint8.

    Returns:
        ``(canvas, scale)``: (size, size, 3) uint8 and canvas px / image px.
    """
    h, w = image.shape[:2]
    if h / w > 1.0:
        new_h, new_w = size, int(size / (h / w))
    else:
        new_w, new_h = size, int(size * (h / w))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    scale = new_h / h
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h))
    return canvas, scale


def to_blob(canvas_rgb: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(S, S, 3) uint8 RGB -> (1, 3, S, S) float32 normalised detector input."""
    x = (canvas_rgb.astype(np.float32) - np.float32(DET_INPUT_MEAN)) / np.float32(DET_INPUT_STD)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def anchor_centers(height: int, width: int, stride: int, anchors: int) -> NDArray[np.float32]:
    """(height * width * anchors, 2) anchor points ``(x, y)`` in canvas pixels.

    Row-major over the grid (y outer, x inner), each cell's point repeated
    ``anchors`` times consecutively, matching the network's output order.
    """
    ys, xs = np.mgrid[:height, :width]
    pts = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * np.float32(stride)
    return np.repeat(pts, anchors, axis=0)


def distances_to_boxes(points: NDArray[np.float32], dist: NDArray[np.float32]) -> NDArray[np.float32]:
    """(N, 2) points and (N, 4) left/top/right/bottom distances -> (N, 4) boxes."""
    return np.stack(
        [
            points[:, 0] - dist[:, 0],
            points[:, 1] - dist[:, 1],
            points[:, 0] + dist[:, 2],
            points[:, 1] + dist[:, 3],
        ],
        axis=-1,
    )


def offsets_to_keypoints(points: NDArray[np.float32], offs: NDArray[np.float32]) -> NDArray[np.float32]:
    """(N, 2) points and (N, 2K) x/y offsets -> (N, K, 2) keypoints."""
    return points[:, None, :] + offs.reshape(offs.shape[0], offs.shape[1] // 2, 2)


def nms(boxes: NDArray[np.floating], scores: NDArray[np.floating], iou_thresh: float = DET_NMS_THRESH) -> list[int]:
    """Greedy non-maximum suppression.

    Areas use the inclusive-pixel "+1" convention of the official detector; a
    box survives while its IoU with every kept, better box is ``<= iou_thresh``.

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2``.
        scores: (N,).

    Returns:
        Indices of kept boxes, best score first.
    """
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[iou <= iou_thresh]
    return keep


def order_by_area(boxes: NDArray[np.floating]) -> NDArray[np.intp]:
    """Indices sorting boxes by area, largest first (stable for equal areas)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.argsort(-area, kind="stable")


def decode(
    outputs: list[NDArray[np.float32]],
    layout: HeadLayout,
    canvas_size: tuple[int, int],
    score_thresh: float = DET_SCORE_THRESH,
) -> Detections:
    """Turn raw SCRFD outputs into canvas-pixel detections above the threshold.

    Args:
        outputs: the model outputs in model order (scores..., boxes..., keypoints...).
        layout: the model's head layout.
        canvas_size: (height, width) of the network input.
        score_thresh: minimum score.

    Returns:
        Unsorted, un-suppressed detections in canvas pixels.
    """
    n = len(layout.strides)
    boxes, scores, kpss = [], [], []
    for level, stride in enumerate(layout.strides):
        score = _squeeze_batch(outputs[level]).reshape(-1)
        dist = _squeeze_batch(outputs[level + n]).reshape(-1, 4) * np.float32(stride)
        pts = anchor_centers(canvas_size[0] // stride, canvas_size[1] // stride, stride, layout.anchors_per_cell)
        if pts.shape[0] != score.shape[0]:
            raise ValueError(
                f"detector output {level} has {score.shape[0]} anchors, expected {pts.shape[0]} "
                f"for a {canvas_size[1]}x{canvas_size[0]} input at stride {stride}"
            )
        hit = score >= score_thresh
        scores.append(score[hit])
        boxes.append(distances_to_boxes(pts[hit], dist[hit]))
        if layout.has_keypoints:
            offs = _squeeze_batch(outputs[level + 2 * n])
            offs = offs.reshape(offs.shape[0], -1) * np.float32(stride)
            kpss.append(offsets_to_keypoints(pts[hit], offs[hit]))
    return Detections(
        boxes=np.concatenate(boxes).astype(np.float32),
        scores=np.concatenate(scores).astype(np.float32),
        keypoints=np.concatenate(kpss).astype(np.float32) if layout.has_keypoints else None,
    )


def _squeeze_batch(arr: NDArray[np.float32]) -> NDArray[np.float32]:
    """Outputs of batched models are (1, N, C); unbatched ones (N, C)."""
    arr = np.asarray(arr, dtype=np.float32)
    return arr[0] if arr.ndim == 3 else arr


class FaceDetector:
    """SCRFD face detector on an ONNX Runtime session.

    Args:
        session: a session of ``det_10g.onnx`` (or a model with the same interface).
        input_size: canvas side, used when the model's input size is dynamic.
        score_thresh, nms_thresh: see the module constants.
    """

    def __init__(
        self,
        session: ort.InferenceSession,
        input_size: int = DET_INPUT_SIZE,
        score_thresh: float = DET_SCORE_THRESH,
        nms_thresh: float = DET_NMS_THRESH,
    ) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name: str = inp.name
        shape = inp.shape
        fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
        self.input_hw: tuple[int, int] = (int(shape[2]), int(shape[3])) if fixed else (input_size, input_size)
        if self.input_hw[0] != self.input_hw[1]:
            raise ValueError(f"detector input must be square, model has {self.input_hw}")
        self.output_names: list[str] = [o.name for o in session.get_outputs()]
        try:
            self.layout = _LAYOUTS[len(self.output_names)]
        except KeyError:
            raise ValueError(
                f"not a SCRFD detector: {len(self.output_names)} outputs (expected 6, 9, 10 or 15)"
            ) from None
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh

    @classmethod
    def from_file(cls, path: Path, providers: list[str] | None = None) -> FaceDetector:
        return cls(open_session(path, providers))

    def detect(self, image_rgb: NDArray[np.uint8], *, score_thresh: float | None = None) -> Detections:
        """Find faces in an RGB image.

        Args:
            image_rgb: (H, W, 3) uint8.
            score_thresh: minimum score for this call (default :attr:`score_thresh`).

        Returns:
            Detections in image pixels, best score first, after NMS.
        """
        canvas, scale = letterbox(image_rgb, self.input_hw[0])
        outs = self.session.run(self.output_names, {self.input_name: to_blob(canvas)})
        thresh = self.score_thresh if score_thresh is None else score_thresh
        raw = decode(list(outs), self.layout, self.input_hw, thresh)
        if len(raw) == 0:
            return raw
        boxes = raw.boxes / np.float32(scale)
        kps = None if raw.keypoints is None else raw.keypoints / np.float32(scale)
        found = Detections(boxes.astype(np.float32), raw.scores, kps)
        keep = np.asarray(nms(found.boxes, found.scores, self.nms_thresh), dtype=np.intp)
        return found.take(keep)
