"""Real group photos with hand-labelled face boxes (``tests/data/faces/group_photos.json``).

Unlike :mod:`group_scenes` (photos composed at run time), these are real photos we may ship
(public domain, provenance in ``tests/data/faces/README.md``). Each face has a box drawn by
hand; a detection finds a face when its box overlaps the label with IoU >= :data:`MIN_IOU`.
Faces marked ``occluded`` (half hidden or more) are counted but not required, and a box on
one is not a false positive. Used by ``tests/face/test_group_photo.py`` and
``benchmarks/face_recall.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
LABELS_FILE = DATA / "group_photos.json"
#: A detection finds a labelled face when their boxes overlap at least this much (intersection over union).
MIN_IOU: float = 0.5
#: Faces turned in the picture plane by more than this (lying on their side, upside down) are not required.
MAX_REQUIRED_ROLL_DEG: float = 45.0


@dataclass
class GroupPhoto:
    """A real group photo and its labelled faces.

    Attributes:
        name: key in the labels file.
        image: (H, W, 3) uint8 RGB, upright.
        boxes: (N, 4) float64 face boxes ``x0, y0, x1, y1`` in pixels of ``image``.
        names: N names, in the order of ``boxes``.
        occluded: (N,) bool, True for faces half hidden or more (counted, not required).
        roll_deg: (N,) float, how far each face is turned in the picture plane (0 upright, 180 upside down).
    """

    name: str
    image: NDArray[np.uint8]
    boxes: NDArray[np.float64]
    names: list[str]
    occluded: NDArray[np.bool_]
    roll_deg: NDArray[np.float64]

    @property
    def required(self) -> NDArray[np.bool_]:
        """(N,) bool: the faces a detector must find (visible and within :data:`MAX_REQUIRED_ROLL_DEG` of upright)."""
        return ~self.occluded & (np.abs(self.roll_deg) <= MAX_REQUIRED_ROLL_DEG)

    def scaled(self, factor: float) -> GroupPhoto:
        """The same photo resized by ``factor`` (area interpolation), with its boxes scaled to match."""
        if factor == 1.0:
            return self
        h, w = self.image.shape[:2]
        size = (round(w * factor), round(h * factor))
        image = cv2.resize(self.image, size, interpolation=cv2.INTER_AREA)
        scale = np.array([size[0] / w, size[1] / h] * 2)
        return GroupPhoto(self.name, image, self.boxes * scale, self.names, self.occluded, self.roll_deg)

    def face_sizes(self) -> NDArray[np.float64]:
        """(N,) side of each labelled box (the larger of width and height), in pixels."""
        return np.maximum(self.boxes[:, 2] - self.boxes[:, 0], self.boxes[:, 3] - self.boxes[:, 1])


def load_group_photos() -> list[GroupPhoto]:
    """Every photo of the labels file, decoded with the project's own loader (EXIF orientation applied)."""
    from lpstudio.face import load_image

    photos = []
    for name, entry in json.loads(LABELS_FILE.read_text())["photos"].items():
        faces = entry["faces"]
        photos.append(
            GroupPhoto(
                name=name,
                image=load_image(DATA / entry["file"]).rgb,
                boxes=np.array([f["box"] for f in faces], dtype=np.float64),
                names=[f["name"] for f in faces],
                occluded=np.array([bool(f.get("occluded", False)) for f in faces]),
                roll_deg=np.array([float(f.get("roll_deg", 0.0)) for f in faces]),
            )
        )
    return photos


def box_iou(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """(N, M) intersection over union of (N, 4) boxes ``a`` and (M, 4) boxes ``b`` (``x0, y0, x1, y1``)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :4]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match_photo(photo: GroupPhoto, boxes: NDArray[np.floating]) -> tuple[NDArray[np.float64], int]:
    """Best IoU of each labelled face, and the number of false positives.

    Pairs are made greedily, highest IoU first, each face and each box used once, pairs below
    :data:`MIN_IOU` never made. A box left over is a false positive unless it overlaps a face
    that is not required (half hidden, or lying on its side) by :data:`MIN_IOU`.

    Returns:
        (N,) IoU of the box paired with each face (0 when none), and the false-positive count.
    """
    iou = box_iou(photo.boxes, boxes)
    best = np.zeros(len(photo.boxes))
    used_face = np.zeros(len(photo.boxes), dtype=bool)
    used_box = np.zeros(iou.shape[1], dtype=bool)
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < MIN_IOU:
            break
        if used_face[i] or used_box[j]:
            continue
        best[i], used_face[i], used_box[j] = iou[i, j], True, True
    spare = ~used_box
    optional = ~photo.required
    if optional.any() and spare.any():
        spare &= ~(iou[optional] >= MIN_IOU).any(axis=0)
    return best, int(spare.sum())
