"""MediaPipe's full-range face detector, and the search that finds every face of a photo.

The short-range BlazeFace model (:class:`~lpstudio.face.mediapipe.BlazeFaceDetector`)
is made for selfies: a face must fill a good part of its 128x128 input. The same
``mediapipe==0.10.21`` wheel ships the full-range model
(``face_detection_full_range_sparse.tflite``, faces up to about 5 m from the
camera), whose facts come from MediaPipe's ``face_detection_full_range.pbtxt``
and the shared ``face_detection.pbtxt``:

* input 192x192 (letterboxed, RGB in -1..1, as the short-range model);
* one SSD anchor layer: stride 4 (a 48x48 grid), one anchor per cell
  (``interpolated_scale_aspect_ratio: 0``), fixed size, centres at cell + 0.5,
  2304 anchors;
* outputs decoded with scale 192 (``x_scale``..``h_scale``), scores by sigmoid
  (clipped to +-100), kept from ``min_score_thresh: 0.6``; weighted suppression
  at IoU 0.3; the same six key points.

:class:`FaceSearch` (the photo search, ``thorough``) runs both models on the whole
photo, then both on overlapping tiles, and merges everything with MediaPipe's weighted
suppression (:mod:`lpstudio.face.search_merge`, which also decides which merged faces are
kept by what saw them). A tile sees a face
:data:`TILE_FACE_SCALE` times larger than the whole photo does, so faces down to
:data:`SMALLEST_FACE_PX` pixels of the analysis copy (1280 px) are found; faces
cut by a tile's inner border are left to the neighbouring tile. Video frames keep the
short-range model's one pass (:meth:`BlazeFaceDetector.detect <lpstudio.face.mediapipe.BlazeFaceDetector.detect>`).
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from .detect import Detections
from .mediapipe import DET_ANCHOR_OFFSET, BlazeFaceDetector
from .search_merge import FULL_SCORE_THRESH, PASS_THRESH, PassFound, PassKind, merge_search

# ---------------------------------------------------------------- face_detection_full_range.pbtxt
FULL_INPUT_SIZE: int = 192
FULL_STRIDE: int = 4
# FULL_SCORE_THRESH (min_score_thresh: 0.6) lives in search_merge, which merges by it

# ---------------------------------------------------------------- lpstudio's photo search
#: Side of the full-range tiles relative to the smallest face sought (a 40 px face in a tile of
#: 6 x 40 = 240 px is 32 px of the 192 input, which the model finds reliably).
TILE_FACE_SCALE: float = 6.0
#: The smallest face (box side, analysis-copy pixels) the tiles are made for.
SMALLEST_FACE_PX: float = 40.0
#: Tiles overlap by this fraction of their side, so every face up to half a tile lies wholly in one.
TILE_OVERLAP: float = 0.5
#: A face cut by a tile's inner border (within this many pixels) is left to the neighbouring tile.
TILE_BORDER_PX: float = 2.0
#: Smallest tile of the short-range model's pass (pixels; its smallest anchor then spans about 40 px).
SHORT_TILE_MIN: int = 256


class FullRangeDetector(BlazeFaceDetector):
    """MediaPipe's full-range face detector (``face_detection_full_range_sparse.tflite``).

    Same decoding as the short-range model (see :class:`BlazeFaceDetector`), with
    the full-range input size, anchors and threshold.

    Args:
        session: ONNX Runtime session of the converted model.
        score_thresh: minimum score (MediaPipe's 0.6 by default).
    """

    input_size = FULL_INPUT_SIZE

    def __init__(self, session: ort.InferenceSession, score_thresh: float = FULL_SCORE_THRESH) -> None:
        super().__init__(session, score_thresh)

    def make_anchors(self) -> NDArray[np.float32]:
        """(2304, 2) anchor centres (x, y) in 0..1 of the 192 input, row by row."""
        fm = math.ceil(FULL_INPUT_SIZE / FULL_STRIDE)
        ys, xs = np.mgrid[:fm, :fm]
        centres = np.stack([(xs + DET_ANCHOR_OFFSET) / fm, (ys + DET_ANCHOR_OFFSET) / fm], axis=-1)
        return centres.reshape(-1, 2).astype(np.float32)


def tile_grid(width: int, height: int, side: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, int, int, int]]:
    """Overlapping square tiles ``(x0, y0, x1, y1)`` covering a ``width`` x ``height`` image.

    The last row and column are moved back to end at the image's edge, so every pixel is
    covered; an image smaller than ``side`` is one tile.
    """
    step = max(1, int(side * (1.0 - overlap)))

    def starts(n: int) -> list[int]:
        out = list(range(0, max(1, n - side) + 1, step))
        if out[-1] + side < n:
            out.append(n - side)
        return out

    return [(x, y, min(width, x + side), min(height, y + side)) for y in starts(height) for x in starts(width)]


Found = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


class FaceSearch:
    """Every face of a photo: both MediaPipe detectors on the whole photo and the full-range one on tiles.

    Args:
        short: the short-range detector (close, large faces; its own tiles when nothing else is found).
        full: the full-range detector.
        smallest_face: smallest face side sought, in analysis-copy pixels.
    """

    def __init__(
        self, short: BlazeFaceDetector, full: FullRangeDetector, *, smallest_face: float = SMALLEST_FACE_PX
    ) -> None:
        self.short, self.full = short, full
        self.smallest_face = smallest_face

    def _tiles(self, image: NDArray[np.uint8], score_thresh: float | None) -> list[Found]:
        h, w = image.shape[:2]
        side = int(round(self.smallest_face * TILE_FACE_SCALE))
        if max(h, w) <= side * (1.0 + TILE_OVERLAP):
            return []  # the whole photo already shows such a face large enough
        # a threshold set by the user (--det-thresh) holds in tiles too; by default the model's own
        # (search_merge decides which faces seen only in tiles are kept)
        thresh = PASS_THRESH[PassKind.FULL_TILES] if score_thresh is None else score_thresh
        out: list[Found] = []
        m = TILE_BORDER_PX
        for x0, y0, x1, y1 in tile_grid(w, h, side):
            b, s, k = self.full._run(image[y0:y1, x0:x1], thresh)
            keep = s >= thresh
            keep &= ((b[:, 0] > m) | (x0 == 0)) & ((b[:, 1] > m) | (y0 == 0))
            keep &= ((b[:, 2] < x1 - x0 - 1 - m) | (x1 == w)) & ((b[:, 3] < y1 - y0 - 1 - m) | (y1 == h))
            if keep.any():
                shift = np.array([x0, y0], dtype=np.float64)
                out.append((b[keep] + np.tile(shift, 2), s[keep], k[keep] + shift))
        return out

    def _short_tiles(self, image: NDArray[np.uint8], score_thresh: float | None) -> list[Found]:
        """The short-range model on tiles of half the photo's shorter side (at least :data:`SHORT_TILE_MIN`):
        it sees partly hidden faces (a neighbour's head over a cheek) that the full-range model misses."""
        h, w = image.shape[:2]
        side = max(min(h, w) // 2, SHORT_TILE_MIN)
        if max(h, w) <= side:
            return []
        return self.short._tile_pass(
            image, side, PASS_THRESH[PassKind.SHORT_TILES] if score_thresh is None else score_thresh
        )

    def detect(self, image_rgb: NDArray[np.uint8], *, score_thresh: float | None = None) -> Detections:
        """Every face of an RGB photo, best score first.

        Args:
            image_rgb: (H, W, 3) uint8 (the analysis copy).
            score_thresh: minimum score of every pass, every face seen at it kept (None: each
                model's own, and :func:`~lpstudio.face.search_merge.merge_search` keeps what enough saw).

        Returns:
            :class:`~lpstudio.face.detect.Detections`: boxes (N, 4), scores (N,), key points (N, 6, 2).
        """
        t = score_thresh
        found = [PassFound(PassKind.FULL_WHOLE, *self.full._run(image_rgb, t))]
        found.append(PassFound(PassKind.SHORT_WHOLE, *self.short._run(image_rgb, t)))
        found += [PassFound(PassKind.FULL_TILES, *f) for f in self._tiles(image_rgb, t)]
        found += [PassFound(PassKind.SHORT_TILES, *f) for f in self._short_tiles(image_rgb, t)]
        if not any(f.scores.size for f in found):  # last resort: the short-range model's own tiles
            short = self.short.detect(image_rgb, thorough=True, score_thresh=t)
            kp = np.asarray(short.keypoints, dtype=np.float64)
            found.append(
                PassFound(PassKind.SHORT_WHOLE, short.boxes.astype(np.float64), short.scores.astype(np.float64), kp)
            )
        return merge_search(found, score_thresh=t)


__all__ = [
    "FULL_INPUT_SIZE",
    "FULL_SCORE_THRESH",
    "FULL_STRIDE",
    "SMALLEST_FACE_PX",
    "FaceSearch",
    "FullRangeDetector",
    "tile_grid",
]
