"""How the every-face search merges its passes, and which merged faces it keeps (issue 21).

:class:`~lpstudio.face.fullrange.FaceSearch` runs four kinds of pass over a photo: the
full-range and the short-range BlazeFace model on the whole photo, and each of them on
overlapping tiles. Their raw detections are merged here by MediaPipe's weighted
suppression (``face_detection.pbtxt``: ``WEIGHTED``, IoU 0.3), keeping track of which raw
detections went into each merged face, and a merged face is then kept by what saw it:

* **a whole-photo pass** at its model's own threshold (full range 0.6,
  ``face_detection_full_range.pbtxt``; short range 0.5, ``face_detection_short_range.pbtxt``);
* **the short-range tiles** at that model's own threshold 0.5, with at least
  :data:`SHORT_TILE_MIN_HITS` raw detections or one and the full-range tiles' agreement (at
  that model's own 0.6), key points laid out like a face (:func:`face_like`), and not in the
  head of a face more than twice its size (:func:`_in_head`). The short-range search alone
  (``BlazeFaceDetector.detect(thorough=True)``) keeps such faces; it is what finds faces on
  their side or upside down, which the full-range model misses. A lone raw hit at 0.5 drew a
  box on no face in the Situation Room photo (x0.90, x0.60), and the same model saw a "face"
  in the badge of a cap above a face 2.5 times larger (composed scenes, 240 px);
* **tiles only, and sure**: a best score of :data:`TILE_SCORE_THRESH` and six key points
  laid out like a face (:func:`face_like`): a forearm with a hand scored 0.77 in the
  full-range tiles with both "ears" above its "eyes".

Before, every pass was cut at its own threshold first (tiles at 0.75), so faces that only the
short-range tiles saw at 0.5-0.75 were lost, although the short-range search alone keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np
from numpy.typing import NDArray

from .detect import Detections
from .mediapipe import DET_NMS_IOU, DET_NUM_KEYPOINTS, DET_SCORE_THRESH, MIN_FACE_PX

#: Full-range model's own threshold (``face_detection_full_range.pbtxt``: ``min_score_thresh: 0.6``).
FULL_SCORE_THRESH: float = 0.6
#: Score a face seen only in tiles must reach to be kept on its own (with a face-like key-point layout).
TILE_SCORE_THRESH: float = 0.75
#: Raw detections of the short-range tiles (at that model's own threshold) that keep a face.
SHORT_TILE_MIN_HITS: int = 2
#: A face kept only by weak tile hits is dropped when it is under this fraction of the side of a face kept
#: before it and mostly (over :data:`IN_HEAD_MIN`) within that face's head: its box grown by
#: :data:`HEAD_GROWTH` x its side on every side (hair, hat, ears, chin). Neighbours of a group photo are of
#: similar size; a much smaller "face" in someone's head is a part of it.
SMALLER_FACE_RATIO: float = 0.5
HEAD_GROWTH: float = 0.75
IN_HEAD_MIN: float = 0.5
#: Key points: image-left eye, image-right eye, nose tip, mouth centre, image-left ear, image-right ear.
KP_EYE_L, KP_EYE_R, KP_NOSE, KP_MOUTH, KP_EAR_L, KP_EAR_R = range(DET_NUM_KEYPOINTS)
#: Highest the ears' mean may sit above the eye line, in eye distances (measured on the detections of
#: the labelled faces of tests/data/faces, upright to upside down: from 0.26 above to 0.9 below; the
#: forearm of the ISS photo: 0.38 above).
EAR_RISE_MAX: float = 0.3


class PassKind(IntEnum):
    """Which pass a raw detection comes from."""

    FULL_WHOLE = 0
    SHORT_WHOLE = 1
    FULL_TILES = 2
    SHORT_TILES = 3


#: The lowest score each pass reports (what its model's own graph keeps).
PASS_THRESH: dict[PassKind, float] = {
    PassKind.FULL_WHOLE: FULL_SCORE_THRESH,
    PassKind.SHORT_WHOLE: DET_SCORE_THRESH,
    PassKind.FULL_TILES: FULL_SCORE_THRESH,
    PassKind.SHORT_TILES: DET_SCORE_THRESH,
}


@dataclass(frozen=True)
class PassFound:
    """Raw detections of one pass, in photo pixels.

    Attributes:
        kind: the pass.
        boxes: (N, 4) float64 ``x0, y0, x1, y1``.
        scores: (N,) float64.
        keypoints: (N, 6, 2) float64.
    """

    kind: PassKind
    boxes: NDArray[np.float64]
    scores: NDArray[np.float64]
    keypoints: NDArray[np.float64]


def face_like(keypoints: NDArray[np.floating]) -> bool:
    """Whether six key points ((6, 2), BlazeFace's order) are laid out like a face, at any roll.

    In the frame of the eye line (x from the image-left to the image-right eye, y a quarter turn
    on, towards the mouth of an upright face; BlazeFace's points turn with the face): the nose
    and the mouth lie below the eyes, the mouth below the nose, and the ears not more than
    :data:`EAR_RISE_MAX` eye distances above the eye line.
    """
    k = np.asarray(keypoints, dtype=np.float64).reshape(DET_NUM_KEYPOINTS, 2)
    axis = k[KP_EYE_R] - k[KP_EYE_L]
    dist = float(np.hypot(*axis))
    if dist <= 0.0:
        return False
    u = axis / dist
    down = np.array([-u[1], u[0]])
    centre = (k[KP_EYE_L] + k[KP_EYE_R]) / 2.0
    depth = (k - centre) @ down / dist
    ears = (depth[KP_EAR_L] + depth[KP_EAR_R]) / 2.0
    return bool(0.0 < depth[KP_NOSE] < depth[KP_MOUTH] and ears >= -EAR_RISE_MAX)


def _in_head(box: NDArray[np.float64], kept: list[NDArray[np.float64]]) -> bool:
    """Whether ``box`` (4,) lies in the head of a kept face (boxes (4,)) over twice its size (see
    :data:`SMALLER_FACE_RATIO`, :data:`HEAD_GROWTH`, :data:`IN_HEAD_MIN`)."""
    side = float(max(box[2] - box[0], box[3] - box[1]))
    area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-12)
    for other in kept:
        big = float(max(other[2] - other[0], other[3] - other[1]))
        if side >= SMALLER_FACE_RATIO * big:
            continue
        grow = HEAD_GROWTH * big
        w = min(box[2], other[2] + grow) - max(box[0], other[0] - grow)
        h = min(box[3], other[3] + grow) - max(box[1], other[1] - grow)
        if w > 0 and h > 0 and w * h / area > IN_HEAD_MIN:
            return True
    return False


def _keep(
    kinds: NDArray[np.int64],
    scores: NDArray[np.float64],
    leader_kps: NDArray[np.float64],
    box: NDArray[np.float64],
    kept: list[NDArray[np.float64]],
) -> bool:
    """Whether a merged face is kept, from the passes and scores of its raw detections (module docstring).

    ``leader_kps``: (6, 2) key points of its best raw detection; ``box``: (4,) its merged box;
    ``kept``: the boxes kept so far (better scores).
    """
    whole = ((kinds == PassKind.FULL_WHOLE) & (scores >= FULL_SCORE_THRESH)) | (
        (kinds == PassKind.SHORT_WHOLE) & (scores >= DET_SCORE_THRESH)
    )
    if whole.any():
        return True
    if not face_like(leader_kps):
        return False
    if scores.max() >= TILE_SCORE_THRESH:
        return True
    hits = int(((kinds == PassKind.SHORT_TILES) & (scores >= DET_SCORE_THRESH)).sum())
    both = hits > 0 and bool(((kinds == PassKind.FULL_TILES) & (scores >= FULL_SCORE_THRESH)).any())
    return (hits >= SHORT_TILE_MIN_HITS or both) and not _in_head(box, kept)


def merge_search(found: list[PassFound], score_thresh: float | None = None) -> Detections:
    """The passes' raw detections merged by weighted suppression, each merged face kept or not by what saw it.

    Args:
        found: every pass's raw detections (each at or above its :data:`PASS_THRESH`).
        score_thresh: a threshold set by the user: every merged face with a raw detection at or
            above it is kept (None: the rules of the module docstring).

    Returns:
        :class:`~lpstudio.face.detect.Detections`, best score first: boxes (N, 4), scores (N,),
        key points (N, 6, 2); faces under ``MIN_FACE_PX`` dropped.
    """
    boxes = np.concatenate([f.boxes for f in found] + [np.zeros((0, 4))]).reshape(-1, 4)
    scores = np.concatenate([f.scores for f in found] + [np.zeros(0)])
    kps = np.concatenate([f.keypoints.reshape(-1, DET_NUM_KEYPOINTS, 2) for f in found])
    kinds = np.concatenate([np.full(len(f.scores), int(f.kind), dtype=np.int64) for f in found])
    out_b, out_s, out_k = [], [], []
    order = np.argsort(-scores, kind="stable")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.size:
        best = order[0]
        lo = np.maximum(boxes[best, :2], boxes[order, :2])
        hi = np.minimum(boxes[best, 2:], boxes[order, 2:])
        inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
        union = area[best] + area[order] - inter
        member = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0) > DET_NMS_IOU
        member[0] = True
        idx = order[member]
        order = order[~member]
        w = scores[idx] / scores[idx].sum()
        box = (boxes[idx] * w[:, None]).sum(axis=0)
        if score_thresh is None and not _keep(kinds[idx], scores[idx], kps[best], box, out_b):
            continue
        out_b.append(box)
        out_k.append((kps[idx] * w[:, None, None]).sum(axis=0))
        out_s.append(scores[best])
    b = np.asarray(out_b, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(out_s, dtype=np.float64)
    k = np.asarray(out_k, dtype=np.float64).reshape(-1, DET_NUM_KEYPOINTS, 2)
    big = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) >= MIN_FACE_PX
    return Detections(b[big].astype(np.float32), s[big].astype(np.float32), k[big].astype(np.float32))


__all__ = [
    "EAR_RISE_MAX",
    "HEAD_GROWTH",
    "IN_HEAD_MIN",
    "PASS_THRESH",
    "SHORT_TILE_MIN_HITS",
    "SMALLER_FACE_RATIO",
    "TILE_SCORE_THRESH",
    "PassFound",
    "PassKind",
    "face_like",
    "merge_search",
]
