"""Paste an animated face crop back into the full-resolution photo.

The blend weight is a soft mask we generate ourselves in crop space
(:func:`feather_mask`): fully opaque over the face and a wide surrounding area,
falling smoothly to exactly zero some pixels before the crop's border. It is
warped once into the photo (:class:`PasteBack`), after which each frame costs
one warp of the crop onto the photo region under the mask plus a blend.

Guarantees:

* the output has the photo's size, dtype and orientation;
* every photo pixel where the warped mask is 0 is returned unchanged, bit for bit;
* no black or empty region: where the crop reaches past the photo's edges the
  crop holds black padding (and the network's rendering of it), so the mask is
  also faded to 0 towards the photo's edges (:func:`photo_edge_weight`); the
  crop is warped with edge replication, so no border colour can leak in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError
from .crop import CROP_DSIZE

if TYPE_CHECKING:
    from .pipeline import FaceCrop

#: Mask shape: a superellipse ``|u|^p + |v|^p = r^p`` over the crop in -1..1 units.
MASK_POWER: float = 4.0
#: Inside this radius the animated face is used as is.
MASK_INNER: float = 0.72
#: From this radius outwards the photo is used as is (leaves about 3% of the
#: crop side as margin to the crop border).
MASK_OUTER: float = 0.94
#: Width, in crop pixels, over which the mask fades to 0 towards a photo edge
#: that cuts through the crop.
EDGE_FEATHER: float = 16.0


def feather_mask(
    size: int = CROP_DSIZE,
    inner: float = MASK_INNER,
    outer: float = MASK_OUTER,
    power: float = MASK_POWER,
) -> NDArray[np.float32]:
    """Soft blend mask for a square crop.

    Args:
        size: crop side in pixels.
        inner, outer: superellipse radii (crop half-side = 1) where the weight
            starts falling from 1 and where it reaches 0.
        power: superellipse exponent (2 = circle, larger = squarer).

    Returns:
        (size, size) float32 in 0..1, 1 in the middle, exactly 0 near the border,
        with a smoothstep (C1-continuous) transition.
    """
    if not 0.0 < inner < outer <= 1.0:
        raise ValueError(f"need 0 < inner < outer <= 1, got inner={inner}, outer={outer}")
    c = (np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0  # pixel centres in -1..1
    r = (np.abs(c)[None, :] ** power + np.abs(c)[:, None] ** power) ** (1.0 / power)
    t = np.clip((outer - r) / (outer - inner), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _smoothstep(t: NDArray[np.float64]) -> NDArray[np.float64]:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def photo_edge_weight(
    M_c2o: NDArray[np.floating],
    photo_hw: tuple[int, int],
    size: int = CROP_DSIZE,
    feather: float = EDGE_FEATHER,
) -> NDArray[np.float32]:
    """Crop-space weight that is 0 where the crop lies outside the photo.

    For every crop pixel, the distance (in crop pixels) to the nearest photo
    edge, measured inside the photo, goes through a smoothstep over ``feather``
    pixels: 1 deep inside the photo, 0 on and beyond its border.

    Args:
        M_c2o: (3, 3) crop -> photo similarity.
        photo_hw: (height, width) of the photo.
        size: crop side.

    Returns:
        (size, size) float32 in 0..1 (all ones when the crop lies inside the photo).
    """
    m = np.asarray(M_c2o, dtype=np.float64)
    crop_px_per_photo_px = 1.0 / math.sqrt(abs(np.linalg.det(m[:2, :2])))
    ys, xs = np.mgrid[:size, :size].astype(np.float64)
    px = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    py = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    h, w = photo_hw
    inside = np.minimum(np.minimum(px + 0.5, w - 0.5 - px), np.minimum(py + 0.5, h - 0.5 - py))
    return _smoothstep(inside * crop_px_per_photo_px / feather).astype(np.float32)


@dataclass(frozen=True)
class _Region:
    """Photo rows y0:y1 and columns x0:x1 touched by the mask."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def _mask_region(m_c2o: NDArray[np.float64], crop_size: int, photo_hw: tuple[int, int]) -> _Region:
    """Bounding box in the photo of the crop square, clipped, with a 2 px margin."""
    corners = np.array([[0, 0], [crop_size, 0], [crop_size, crop_size], [0, crop_size]], dtype=np.float64)
    pts = corners @ m_c2o[:2, :2].T + m_c2o[:2, 2]
    h, w = photo_hw
    x0 = max(0, math.floor(pts[:, 0].min()) - 2)
    y0 = max(0, math.floor(pts[:, 1].min()) - 2)
    x1 = min(w, math.ceil(pts[:, 0].max()) + 2)
    y1 = min(h, math.ceil(pts[:, 1].max()) + 2)
    return _Region(x0, y0, max(x0, x1), max(y0, y1))


class PasteBack:
    """Precomputed paste-back of crops into one photo.

    Args:
        M_c2o: (3, 3) crop (``crop_size`` px) -> photo px transform.
        photo_hw: (height, width) of the photo that will receive the frames.
        crop_size: side of the crop ``M_c2o`` refers to (512 in the pipeline).
        mask: (S, S) float weights in crop space (any S; resized to the crop);
            defaults to :func:`feather_mask`.

    Attributes:
        alpha: (h, w, 1) float32 weights over the photo region that changes.
    """

    def __init__(
        self,
        M_c2o: NDArray[np.floating],
        photo_hw: tuple[int, int],
        crop_size: int = CROP_DSIZE,
        mask: NDArray[np.floating] | None = None,
    ) -> None:
        self.photo_hw = (int(photo_hw[0]), int(photo_hw[1]))
        self.crop_size = int(crop_size)
        self.M_c2o = np.asarray(M_c2o, dtype=np.float64)
        crop_mask = feather_mask(self.crop_size) if mask is None else np.asarray(mask, dtype=np.float32)
        if crop_mask.shape != (self.crop_size, self.crop_size):
            crop_mask = cv2.resize(crop_mask, (self.crop_size, self.crop_size), interpolation=cv2.INTER_LINEAR)
        crop_mask = crop_mask * photo_edge_weight(self.M_c2o, self.photo_hw, self.crop_size)
        self.region = _mask_region(self.M_c2o, self.crop_size, self.photo_hw)
        shift = np.array([[1, 0, -self.region.x0], [0, 1, -self.region.y0], [0, 0, 1]], dtype=np.float64)
        self._m_roi = (shift @ self.M_c2o)[:2]
        if self.region.width == 0 or self.region.height == 0:
            self.alpha = np.zeros((0, 0, 1), np.float32)
        else:
            warped = cv2.warpAffine(
                np.clip(crop_mask, 0.0, 1.0),
                self._m_roi,
                (self.region.width, self.region.height),
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=0.0,
            )
            self.alpha = np.clip(warped, 0.0, 1.0)[..., None].astype(np.float32)

    @classmethod
    def for_face(cls, face: FaceCrop, photo_hw: tuple[int, int] | None = None) -> PasteBack:
        """Paste-back into the photo a :class:`~lpstudio.face.pipeline.FaceCrop` came from."""
        hw = photo_hw if photo_hw is not None else (face.photo_size[1], face.photo_size[0])
        return cls(face.M_c2o, hw, crop_size=face.image_512.shape[0])

    def __call__(self, frame: NDArray[np.uint8], photo: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Blend one animated crop into a copy of the photo.

        Args:
            frame: (S, S, 3) uint8 animated crop; S may differ from the crop size
                (e.g. 256 or 512), it is scaled to it.
            photo: (H, W, 3) uint8, the size given at construction.

        Returns:
            (H, W, 3) uint8 new array.
        """
        out = np.array(photo, dtype=np.uint8, copy=True)
        self.paste_into(frame, out)
        return out

    def paste_into(self, frame: NDArray[np.uint8], photo: NDArray[np.uint8]) -> None:
        """Like :meth:`__call__` but writes into ``photo`` in place (for video loops)."""
        if photo.shape[:2] != self.photo_hw or photo.ndim != 3 or photo.shape[2] != 3:
            raise ImageError(
                f"paste-back photo has shape {photo.shape}, expected {self.photo_hw + (3,)}.",
                hint="Paste into the same full-resolution photo the face was analysed in.",
            )
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[0] != frame.shape[1] or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ImageError(
                f"paste-back frame has shape {frame.shape} and type {frame.dtype}, expected (S, S, 3) uint8.",
                hint="Pass the animated crop as an RGB uint8 image.",
            )
        if self.alpha.size == 0:
            return
        m = self._m_roi
        if frame.shape[0] != self.crop_size:
            k = self.crop_size / frame.shape[0]
            m = m @ np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5], [0, 0, 1]], dtype=np.float64)
        r = self.region
        warped = cv2.warpAffine(frame, m, (r.width, r.height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        roi = photo[r.y0 : r.y1, r.x0 : r.x1]
        a = self.alpha
        blend = roi.astype(np.float32) * (1.0 - a) + warped.astype(np.float32) * a
        blended = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
        np.copyto(roi, blended, where=a > 0.0)


def paste_back(
    frame_512: NDArray[np.uint8],
    face: FaceCrop,
    photo: NDArray[np.uint8],
    paster: PasteBack | None = None,
) -> NDArray[np.uint8]:
    """Blend one animated crop into the photo the face was analysed in.

    Args:
        frame_512: (512, 512, 3) uint8 animated crop (other square sizes are scaled).
        face: the analysis result, giving the crop -> photo transform.
        photo: (H, W, 3) uint8 full-resolution photo.
        paster: a :class:`PasteBack` made for this face and photo, to reuse its
            precomputed mask across many frames.

    Returns:
        (H, W, 3) uint8 new array.
    """
    photo = np.asarray(photo)
    p = paster if paster is not None else PasteBack.for_face(face, photo.shape[:2])
    return p(frame_512, photo)
