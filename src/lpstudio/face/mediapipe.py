"""MediaPipe face models (Apache-2.0) from the ``mediapipe==0.10.21`` wheel, on ONNX Runtime.

The legacy MediaPipe face detector (BlazeFace, short range), face mesh (468
points) and iris model ship as ``.tflite`` files inside the ``mediapipe``
0.10.21 wheel (later releases ship no models). lpstudio never imports
``mediapipe``: it reads those three files from the installed distribution
(``importlib.metadata``, checked against pinned sha256 digests), converts them
to ONNX in memory (:mod:`lpstudio.face.tflite_onnx`) and runs them with ONNX
Runtime, a dependency it already has. So ``pip install --no-deps
mediapipe==0.10.21`` is enough; none of that wheel's dependencies are needed.

The processing follows MediaPipe's own graphs (``face_detection.pbtxt``,
``face_detection_short_range.pbtxt``, ``face_detection_front_detection_to_roi.pbtxt``,
``face_landmark_cpu.pbtxt``, ``face_landmark_landmarks_to_roi.pbtxt``,
``iris_landmark_cpu.pbtxt``, ``iris_landmark_left_and_right_from_face_landmarks_cpu.pbtxt``):

* detector: the photo letterboxed (centred, black border) into 128x128, RGB in
  -1..1; 896 SSD anchors (4 layers, strides 8, 16, 16, 16, 2 anchors per layer,
  fixed size, centres at cell + 0.5); outputs decoded with scale 128, scores by
  sigmoid (raw clipped to +-100), kept from 0.5, weighted non-maximum
  suppression at IoU 0.3; six key points (image-left eye, image-right eye, nose
  tip, mouth centre, image-left ear, image-right ear);
* face mesh: a rotated square region of interest, 1.5 x the longer side of the
  face box, rotated so the eye-to-eye key points are horizontal; cropped with
  edge replication to 192x192, RGB in 0..1; 468 x (x, y, z) in input pixels and a
  face-presence logit;
* iris: per eye, a square 2.3 x the longer side of the box of its two corners
  (mesh 33-133 and 362-263), rotated along them, 64x64, RGB in 0..1, the image-right
  eye mirrored; 71 eye-contour points and 5 iris points (centre first).

Two lpstudio choices go beyond MediaPipe's single-shot image mode and are named
constants here: the detector also looks in overlapping tiles when the whole
photo shows no face or only small ones (:data:`TILE_IF_FACE_BELOW`), so small
faces in a large photo are found as with the InsightFace detector (down to about
40 px in the 1280 px analysis copy, where InsightFace goes smaller); and the mesh
is run a second time in a region taken from its first result (as MediaPipe's
video mode does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from .crop import face_rect
from .detect import Detections
from .mediapipe_files import (
    INSTALL_HINT,
    MEDIAPIPE_VERSION,
    MODEL_FILES,
    available,
    locate_models,
    open_model,
)
from .mesh_layout import EYE_L_CORNERS, EYE_R_CORNERS, five_points, mesh_to_106, mesh_to_203

# ---------------------------------------------------------------- detector constants (face_detection*.pbtxt)
DET_INPUT_SIZE: int = 128
DET_STRIDES: tuple[int, ...] = (8, 16, 16, 16)
DET_ANCHORS_PER_LAYER: int = 2  # one aspect ratio (1.0) plus the interpolated scale
DET_ANCHOR_OFFSET: float = 0.5
DET_SCORE_CLIP: float = 100.0
DET_SCORE_THRESH: float = 0.5
DET_NMS_IOU: float = 0.3
DET_NUM_KEYPOINTS: int = 6
DET_BOX_COORDS: int = 4
#: Tiles are searched when the whole image shows no face, or (photos) only faces smaller than
#: ``TILE_IF_FACE_BELOW`` x its shorter side (a group photo): first tiles of half the shorter side,
#: then, only while still nothing is found, finer ones down to ``TILE_MIN_SIDE`` analysis-copy pixels
#: (with the smallest anchor, 0.1484 of the input, that finds faces from about 40 px).
TILE_MIN_SIDE: int = 256
TILE_IF_FACE_BELOW: float = 0.25
#: Tiles overlap by half their side, so every face up to half a tile lies wholly in one; a face
#: touching a tile's inner border (within this many pixels) is left to the neighbouring tile.
TILE_OVERLAP: float = 0.5
TILE_BORDER_PX: float = 2.0
#: Faces smaller than this (box side, analysis-copy pixels) are dropped: below BlazeFace's smallest
#: anchor the mesh cannot place landmarks (the pipeline then says the face is too small).
MIN_FACE_PX: float = 20.0

# ---------------------------------------------------------------- mesh and iris constants
MESH_INPUT_SIZE: int = 192
MESH_ROI_SCALE: float = 1.5  # face_detection_front_detection_to_roi / face_landmark_landmarks_to_roi
#: The second mesh pass takes its square from the landmark layout by the crop rule
#: (:func:`lpstudio.face.crop.face_rect`): side ``MESH_REFINE_SCALE`` x the layout's extent,
#: shifted up by ``MESH_REFINE_VY`` x the side. Chosen so the square matches MediaPipe's own
#: landmark ROI (1.5 x the bounding box of all 468 points, which reach the hairline while the
#: 106 layout stops at the brows): on the three test portraits that box is 1.09-1.13 x the
#: layout's extent (1.1 -> 1.5 x 1.1 = 1.65) and its centre 0.05-0.09 extents higher (-0.08 / 1.65).
MESH_REFINE_SCALE: float = 1.65
MESH_REFINE_VY: float = -0.05
MESH_POINTS: int = 468
IRIS_INPUT_SIZE: int = 64
IRIS_ROI_SCALE: float = 2.3
IRIS_CONTOUR_POINTS: int = 71
IRIS_POINTS: int = 5


@dataclass(frozen=True)
class Roi:
    """A rotated square in image pixels (continuous coordinates, pixel centres at +0.5).

    Attributes:
        center: (2,) x, y.
        side: side length.
        angle: rotation of the square's x axis in radians (clockwise on screen, y down).
    """

    center: NDArray[np.float64]
    side: float
    angle: float

    def to_input_matrix(self, size: int, flip: bool = False) -> NDArray[np.float64]:
        """(2, 3) matrix from input-tensor pixel indices to image pixel indices (for ``WARP_INVERSE_MAP``)."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        k = self.side / size
        sx = -k if flip else k
        # continuous: image = center + R @ ((u + 0.5) * k - side / 2, ...); pixel index = continuous - 0.5
        ax = np.array([c * sx, s * sx])
        ay = np.array([-s * k, c * k])
        origin = self.center - (ax + ay) * (size / 2) + (ax + ay) * 0.5 - 0.5
        return np.array([[ax[0], ay[0], origin[0]], [ax[1], ay[1], origin[1]]])

    def crop(self, image: NDArray[np.uint8], size: int, flip: bool = False) -> NDArray[np.uint8]:
        """(size, size, 3) crop with edge replication (MediaPipe's ``BORDER_REPLICATE``)."""
        m = self.to_input_matrix(size, flip)
        scale = self.side / size
        src = image
        if scale > 2.0:  # strong down-scaling: area-average first, as a plain bilinear warp aliases
            f = 1.0 / scale * 1.5
            src = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
            fx, fy = src.shape[1] / image.shape[1], src.shape[0] / image.shape[0]
            to_small = np.array([[fx, 0, 0.5 * fx - 0.5], [0, fy, 0.5 * fy - 0.5], [0, 0, 1]])
            m = (to_small @ np.vstack([m, [0, 0, 1]]))[:2]
        return cv2.warpAffine(
            src, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
        )

    def project(self, pts: NDArray[np.floating], size: int, flip: bool = False) -> NDArray[np.float64]:
        """Input-tensor coordinates (continuous, 0..size) -> image pixel coordinates (pixel centres at integers)."""
        p = np.asarray(pts, dtype=np.float64)[:, :2]
        u = (size - p[:, 0] if flip else p[:, 0]) / size - 0.5
        v = p[:, 1] / size - 0.5
        c, s = math.cos(self.angle), math.sin(self.angle)
        x = self.center[0] + self.side * (u * c - v * s) - 0.5
        y = self.center[1] + self.side * (u * s + v * c) - 0.5
        return np.stack([x, y], axis=1)


def _rect_roi(
    lo: NDArray[np.float64], hi: NDArray[np.float64], start: NDArray[np.float64], end: NDArray[np.float64], scale: float
) -> Roi:
    """MediaPipe's DetectionsToRects + RectTransformation(square_long): box centre, rotation start->end."""
    d = np.asarray(end, dtype=np.float64) - np.asarray(start, dtype=np.float64)
    angle = math.atan2(d[1], d[0])
    size = np.asarray(hi) - np.asarray(lo)
    centre = (np.asarray(lo) + np.asarray(hi)) / 2 + 0.5  # pixel indices -> continuous
    return Roi(center=centre, side=float(max(size)) * scale, angle=angle)


def roi_from_detection(box: NDArray[np.floating], keypoints: NDArray[np.floating] | None) -> Roi:
    """The mesh's region for a detection: 1.5 x its longer side, eye line horizontal.

    Args:
        box: (4,) ``x1, y1, x2, y2`` pixels.
        keypoints: (6, 2) BlazeFace key points (the first two are the eyes), or None (no rotation).
    """
    b = np.asarray(box, dtype=np.float64)[:4]
    if keypoints is None:
        start, end = np.array([0.0, 0.0]), np.array([1.0, 0.0])
    else:
        start, end = np.asarray(keypoints, dtype=np.float64)[0], np.asarray(keypoints, dtype=np.float64)[1]
    return _rect_roi(b[:2], b[2:4], start, end, MESH_ROI_SCALE)


def roi_from_layout(lmk: NDArray[np.floating]) -> Roi:
    """The mesh's region from 106/203 layout points, by the crop rule (see :data:`MESH_REFINE_SCALE`)."""
    rect = face_rect(lmk, scale=MESH_REFINE_SCALE, vx=0.0, vy=MESH_REFINE_VY)
    return Roi(center=rect.center.astype(np.float64) + 0.5, side=float(rect.size), angle=float(rect.angle))


# ---------------------------------------------------------------- detector


def ssd_anchors() -> NDArray[np.float32]:
    """(896, 2) anchor centres (x, y) in 0..1 of the 128 input, in the model's output order."""
    rows = []
    i = 0
    while i < len(DET_STRIDES):
        stride = DET_STRIDES[i]
        j = i
        while j < len(DET_STRIDES) and DET_STRIDES[j] == stride:
            j += 1
        per_cell = DET_ANCHORS_PER_LAYER * (j - i)
        fm = math.ceil(DET_INPUT_SIZE / stride)
        ys, xs = np.mgrid[:fm, :fm]
        centres = np.stack([(xs + DET_ANCHOR_OFFSET) / fm, (ys + DET_ANCHOR_OFFSET) / fm], axis=-1).reshape(-1, 2)
        rows.append(np.repeat(centres, per_cell, axis=0))
        i = j
    return np.concatenate(rows).astype(np.float32)


def weighted_nms(
    boxes: NDArray[np.float64], scores: NDArray[np.float64], kps: NDArray[np.float64], iou: float = DET_NMS_IOU
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """MediaPipe's WEIGHTED suppression: each cluster (IoU > ``iou`` with its best box)
    becomes one detection whose coordinates are the score-weighted mean; the score is the best one.

    Args:
        boxes: (N, 4) ``x1, y1, x2, y2``; scores: (N,); kps: (N, K, 2).

    Returns:
        The merged boxes, scores and key points, best score first.
    """
    order = np.argsort(-scores, kind="stable")
    out_b, out_s, out_k = [], [], []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        best = order[0]
        x1 = np.maximum(boxes[best, 0], boxes[order, 0])
        y1 = np.maximum(boxes[best, 1], boxes[order, 1])
        x2 = np.minimum(boxes[best, 2], boxes[order, 2])
        y2 = np.minimum(boxes[best, 3], boxes[order, 3])
        inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
        union = area[best] + area[order] - inter
        overlap = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        member = overlap > iou
        member[0] = True
        idx = order[member]
        w = scores[idx] / scores[idx].sum()
        out_b.append((boxes[idx] * w[:, None]).sum(axis=0))
        out_k.append((kps[idx] * w[:, None, None]).sum(axis=0))
        out_s.append(scores[best])
        order = order[~member]
    k = kps.shape[1] if kps.ndim == 3 else DET_NUM_KEYPOINTS
    return (
        np.asarray(out_b, dtype=np.float64).reshape(-1, 4),
        np.asarray(out_s, dtype=np.float64),
        np.asarray(out_k, dtype=np.float64).reshape(-1, k, 2),
    )


def merge_passes(found: list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]) -> Detections:
    """Detections of several passes (each: boxes (N, 4), scores (N,), keypoints (N, 6, 2) in photo pixels)
    merged by MediaPipe's weighted NMS, faces under ``MIN_FACE_PX`` dropped."""
    boxes = np.concatenate([f[0] for f in found]).reshape(-1, 4)
    scores = np.concatenate([f[1] for f in found])
    kps = np.concatenate([f[2].reshape(-1, DET_NUM_KEYPOINTS, 2) for f in found])
    if scores.size:
        boxes, scores, kps = weighted_nms(boxes, scores, kps)
        big = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_FACE_PX
        boxes, scores, kps = boxes[big], scores[big], kps[big]
    return Detections(boxes.astype(np.float32), scores.astype(np.float32), kps.astype(np.float32))


class BlazeFaceDetector:
    """MediaPipe's short-range face detector (``face_detection_short_range.tflite``).

    Args:
        session: ONNX Runtime session of the converted model.
        score_thresh: minimum score.

    ``input_size`` and :meth:`make_anchors` are what another BlazeFace model changes
    (:class:`lpstudio.face.fullrange.FullRangeDetector`).
    """

    #: Side of the square model input (letterboxed photo); also the decoding scale of boxes.
    input_size: int = DET_INPUT_SIZE

    def __init__(self, session: ort.InferenceSession, score_thresh: float = DET_SCORE_THRESH) -> None:
        self.session = session
        self.input_name: str = session.get_inputs()[0].name
        outs = {o.name: tuple(o.shape) for o in session.get_outputs()}
        self.reg_name = next(n for n, s in outs.items() if s[-1] == DET_BOX_COORDS + 2 * DET_NUM_KEYPOINTS)
        self.cls_name = next(n for n, s in outs.items() if s[-1] == 1)
        self.anchors = self.make_anchors()
        self.score_thresh = score_thresh

    def make_anchors(self) -> NDArray[np.float32]:
        """(A, 2) anchor centres in 0..1 of the input, in the model's output order."""
        return ssd_anchors()

    def _run(
        self, image: NDArray[np.uint8], score_thresh: float | None = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """One letterboxed pass: raw boxes, scores and key points in ``image`` pixels (before suppression).

        ``score_thresh``: minimum score (default :attr:`score_thresh`).
        """
        h, w = image.shape[:2]
        size = self.input_size
        s = size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
        canvas = np.zeros((size, size, 3), np.uint8)
        px, py = (size - nw) // 2, (size - nh) // 2
        canvas[py : py + nh, px : px + nw] = cv2.resize(image, (nw, nh), interpolation=interp)
        x = (canvas.astype(np.float32) / np.float32(127.5) - np.float32(1.0))[None]
        reg, cls = self.session.run([self.reg_name, self.cls_name], {self.input_name: x})
        raw = np.asarray(cls, dtype=np.float64).reshape(-1)
        score = 1.0 / (1.0 + np.exp(-np.clip(raw, -DET_SCORE_CLIP, DET_SCORE_CLIP)))
        hit = score >= (self.score_thresh if score_thresh is None else score_thresh)
        r = np.asarray(reg, dtype=np.float64).reshape(-1, DET_BOX_COORDS + 2 * DET_NUM_KEYPOINTS)[hit]
        a = self.anchors[hit].astype(np.float64)
        scale = float(size)  # x_scale = y_scale = w_scale = h_scale = the input side in both graphs
        cx = r[:, 0] / scale + a[:, 0]
        cy = r[:, 1] / scale + a[:, 1]
        bw, bh = r[:, 2] / scale, r[:, 3] / scale
        kx = r[:, 4::2] / scale + a[:, :1]
        ky = r[:, 5::2] / scale + a[:, 1:2]
        # tensor units (0..1 of the input) -> image pixel indices
        nx = lambda v: (v * size - px) / (nw / w) - 0.5  # noqa: E731
        ny = lambda v: (v * size - py) / (nh / h) - 0.5  # noqa: E731
        boxes = np.stack([nx(cx - bw / 2), ny(cy - bh / 2), nx(cx + bw / 2), ny(cy + bh / 2)], axis=1)
        kps = np.stack([nx(kx), ny(ky)], axis=-1)
        return boxes, score[hit], kps

    def _tiles(self, image: NDArray[np.uint8], side: int) -> list[tuple[int, int, int, int]]:
        h, w = image.shape[:2]
        step = max(1, int(side * (1.0 - TILE_OVERLAP)))
        xs = list(range(0, max(1, w - side) + 1, step))
        ys = list(range(0, max(1, h - side) + 1, step))
        if xs[-1] + side < w:
            xs.append(w - side)
        if ys[-1] + side < h:
            ys.append(h - side)
        return [(x, y, min(w, x + side), min(h, y + side)) for y in ys for x in xs]

    def _tile_pass(
        self, image: NDArray[np.uint8], side: int, score_thresh: float | None = None
    ) -> list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]]:
        """Detections of every tile of one level, in image pixels, without faces cut by an inner tile border."""
        h, w = image.shape[:2]
        out = []
        m = TILE_BORDER_PX
        for x0, y0, x1, y1 in self._tiles(image, side):
            b, s, k = self._run(image[y0:y1, x0:x1], score_thresh)
            if not s.size:
                continue
            inner = ((b[:, 0] > m) | (x0 == 0)) & ((b[:, 1] > m) | (y0 == 0))
            inner &= ((b[:, 2] < x1 - x0 - 1 - m) | (x1 == w)) & ((b[:, 3] < y1 - y0 - 1 - m) | (y1 == h))
            shift = np.array([x0, y0], dtype=np.float64)
            out.append((b[inner] + np.tile(shift, 2), s[inner], k[inner] + shift))
        return out

    def detect(
        self, image_rgb: NDArray[np.uint8], thorough: bool = False, *, score_thresh: float | None = None
    ) -> Detections:
        """Faces in an RGB image, best score first.

        The whole image is searched first, then overlapping tiles when it shows
        no face, or (``thorough``) only small ones (see :data:`TILE_IF_FACE_BELOW`);
        faces under :data:`MIN_FACE_PX` are dropped. Video frames use the default
        (one pass when a face is in view); photos are analysed thoroughly.

        Args:
            image_rgb: (H, W, 3) uint8.
            thorough: also search tiles when the faces found are small (group photos).
            score_thresh: minimum score for this call (default :attr:`score_thresh`).

        Returns:
            :class:`~lpstudio.face.detect.Detections` with boxes (N, 4) and
            key points (N, 6, 2) in image pixels.
        """
        h, w = image_rgb.shape[:2]
        found = [self._run(image_rgb, score_thresh)]

        def largest() -> float:
            sides = [np.maximum(f[0][:, 2] - f[0][:, 0], f[0][:, 3] - f[0][:, 1]).max() for f in found if f[1].size]
            return float(max(sides)) if sides else 0.0

        side = min(h, w) // 2
        small_faces = largest() < (TILE_IF_FACE_BELOW * min(h, w) if thorough else 1.0)
        if max(h, w) > TILE_MIN_SIDE and small_faces:
            found += self._tile_pass(image_rgb, max(side, TILE_MIN_SIDE), score_thresh)
            while largest() == 0.0 and side > TILE_MIN_SIDE:
                side = max(side // 2, TILE_MIN_SIDE)
                found += self._tile_pass(image_rgb, side, score_thresh)
        return merge_passes(found)


# ---------------------------------------------------------------- mesh and iris


@dataclass(frozen=True, eq=False)
class MeshResult:
    """One face mesh in image pixels.

    Attributes:
        points: (468, 3) float32 x, y (pixels) and z (same scale, relative depth).
        presence: face-presence probability of the mesh model.
        iris: (2, 5, 2) float32 iris points (centre first) of the image-left and
            image-right eye, or None.
        roi: the region the mesh was computed in.
    """

    points: NDArray[np.float32]
    presence: float
    iris: NDArray[np.float32] | None
    roi: Roi

    @property
    def iris_centres(self) -> NDArray[np.float32] | None:
        """(2, 2) iris centres (image-left eye first), or None."""
        return None if self.iris is None else self.iris[:, 0]


class FaceMesh:
    """The face mesh and iris models.

    Args:
        mesh_session, iris_session: ONNX Runtime sessions of the converted models
            (iris may be None: eye centres then come from the eye contours).
    """

    def __init__(self, mesh_session: ort.InferenceSession, iris_session: ort.InferenceSession | None) -> None:
        self.mesh = mesh_session
        self.mesh_input = mesh_session.get_inputs()[0].name
        outs = {o.name: tuple(o.shape) for o in mesh_session.get_outputs()}
        self.mesh_points = next(n for n, s in outs.items() if s[-1] == 3 * MESH_POINTS)
        self.mesh_flag = next(n for n, s in outs.items() if s[-1] == 1)
        self.iris = iris_session
        if iris_session is not None:
            self.iris_input = iris_session.get_inputs()[0].name
            iouts = {o.name: tuple(o.shape) for o in iris_session.get_outputs()}
            self.iris_points = next(n for n, s in iouts.items() if s[-1] == 3 * IRIS_POINTS)

    def __call__(self, image: NDArray[np.uint8], roi: Roi, iris: bool = True) -> MeshResult:
        """Mesh (and, with ``iris``, the irises) of the face in ``roi``."""
        patch = roi.crop(image, MESH_INPUT_SIZE)
        x = (patch.astype(np.float32) / np.float32(255.0))[None]
        pts, flag = self.mesh.run([self.mesh_points, self.mesh_flag], {self.mesh_input: x})
        raw = np.asarray(pts, dtype=np.float64).reshape(MESH_POINTS, 3)
        xy = roi.project(raw, MESH_INPUT_SIZE)
        z = raw[:, 2:3] * (roi.side / MESH_INPUT_SIZE)
        points = np.hstack([xy, z]).astype(np.float32)
        presence = float(1.0 / (1.0 + math.exp(-float(np.asarray(flag).reshape(-1)[0]))))
        irises = self._irises(image, points) if iris and self.iris is not None else None
        return MeshResult(points=points, presence=presence, iris=irises, roi=roi)

    def _irises(self, image: NDArray[np.uint8], mesh: NDArray[np.float32]) -> NDArray[np.float32]:
        out = []
        for (a, b), flip in ((EYE_L_CORNERS, False), (EYE_R_CORNERS, True)):
            p, q = mesh[a, :2].astype(np.float64), mesh[b, :2].astype(np.float64)
            roi = _rect_roi(np.minimum(p, q), np.maximum(p, q), p, q, IRIS_ROI_SCALE)
            patch = roi.crop(image, IRIS_INPUT_SIZE, flip=flip)
            x = (patch.astype(np.float32) / np.float32(255.0))[None]
            (iris,) = self.iris.run([self.iris_points], {self.iris_input: x})  # type: ignore[union-attr]
            out.append(roi.project(np.asarray(iris, dtype=np.float64).reshape(IRIS_POINTS, 3), IRIS_INPUT_SIZE, flip))
        return np.asarray(out, dtype=np.float32)


# ---------------------------------------------------------------- the pipeline's components


class MeshLandmark106:
    """First mesh pass from a detection, as the 106-point layout (``FacePipeline.landmark106``)."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh

    def run(
        self, image_rgb: NDArray[np.uint8], box: NDArray[np.floating], keypoints: NDArray[np.floating] | None = None
    ) -> MeshResult:
        return self.mesh(image_rgb, roi_from_detection(np.asarray(box), keypoints), iris=False)

    def __call__(
        self, image_rgb: NDArray[np.uint8], box: NDArray[np.floating], keypoints: NDArray[np.floating] | None = None
    ) -> NDArray[np.float32]:
        """(106, 2) float32 photo pixels for the face in ``box`` (``keypoints``: BlazeFace's, for the roll)."""
        return mesh_to_106(self.run(image_rgb, box, keypoints).points)


class MeshLandmark203:
    """Second mesh pass in a square from earlier landmarks, as the 203-point layout (``FacePipeline.landmark203``)."""

    def __init__(self, mesh: FaceMesh) -> None:
        self.mesh = mesh

    def run(self, image_rgb: NDArray[np.uint8], lmk: NDArray[np.floating]) -> MeshResult:
        return self.mesh(image_rgb, roi_from_layout(lmk), iris=False)

    def __call__(self, image_rgb: NDArray[np.uint8], lmk: NDArray[np.floating]) -> NDArray[np.float32]:
        """(203, 2) float32 photo pixels, refining landmarks ``lmk`` ((106, 2) or (203, 2))."""
        return mesh_to_203(self.run(image_rgb, lmk).points)


class MediaPipeModels:
    """The three MediaPipe models, converted and opened once.

    Args:
        folder: where the ``.tflite`` files are (default: the installed wheel).
        providers: ONNX Runtime providers (default CPU: these models are tiny).
    """

    def __init__(self, folder: Path | None = None, providers: list[str] | None = None) -> None:
        paths = locate_models(folder)
        cpu = providers or ["CPUExecutionProvider"]
        det, _ = open_model(paths["detector"], cpu)
        mesh, _ = open_model(paths["mesh"], cpu)
        iris, _ = open_model(paths["iris"], cpu)
        self.paths = paths
        self.detector = BlazeFaceDetector(det)
        self.mesh = FaceMesh(mesh, iris)

    def refine(
        self, image_rgb: NDArray[np.uint8], box: NDArray[np.floating], keypoints: NDArray[np.floating] | None
    ) -> MeshResult:
        """Both mesh passes for one detection: the final mesh (with irises)."""
        first = self.mesh(image_rgb, roi_from_detection(np.asarray(box), keypoints), iris=False)
        return self.mesh(image_rgb, roi_from_layout(mesh_to_106(first.points)))


def layouts(mesh: MeshResult) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """(106-point layout, 203-point layout, five points) of a mesh, all in its pixels."""
    return mesh_to_106(mesh.points), mesh_to_203(mesh.points), five_points(mesh.points, mesh.iris_centres)


__all__ = [
    "INSTALL_HINT",
    "MEDIAPIPE_VERSION",
    "MODEL_FILES",
    "BlazeFaceDetector",
    "FaceMesh",
    "MediaPipeModels",
    "MeshLandmark106",
    "MeshLandmark203",
    "MeshResult",
    "Roi",
    "available",
    "layouts",
    "locate_models",
    "roi_from_detection",
    "roi_from_layout",
    "ssd_anchors",
    "weighted_nms",
]
