"""Crop geometry: where the face square lies in a photo and how to warp it out.

The networks were trained on faces cropped by one rule, so ours reproduces it
exactly (checked against ``tests/data/crop_golden.npz``):

1. Two points cancel the head roll: the midpoint of the two eye centres and
   the lip centre (:func:`roll_axis_points`). The unit vector from the first to
   the second is the crop's *down* axis ``uy``; ``ux`` is ``uy`` turned 90
   degrees so that ``(ux, uy)`` is a right-handed image frame.
2. All landmarks are expressed in that rotated frame around their mean; their
   bounding box gives the centre and the side (the larger extent, squared),
   which is multiplied by ``scale``.
3. The centre is shifted by ``vx * side`` along ``ux`` and ``vy * side`` along
   ``uy`` (``vy < 0`` moves the square up to include the forehead).
4. The similarity transform maps that square onto ``dsize x dsize``.

Arithmetic is done in float32 in the same order as the official
implementation so that the matrices agree to float32 rounding; the returned
3x3 matrices are float32 like the official ones.

Constants come from the official ``src/config/crop_config.py`` (``scale``,
``vx_ratio``, ``vy_ratio``, ``dsize``) and ``src/utils/cropper.py`` (256 network
input by area resize) and ``src/utils/human_landmark_runner.py`` (the 203-point
landmark model's own 224 crop with scale 1.5, vy -0.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

F32 = np.float32

#: Side of the face crop in pixels (official ``CropConfig.dsize``).
CROP_DSIZE: int = 512
#: Face square side relative to the landmark extent (official ``CropConfig.scale``).
CROP_SCALE: float = 2.3
#: Horizontal shift of the square, in units of its side (official ``vx_ratio``).
CROP_VX: float = 0.0
#: Vertical shift of the square, in units of its side; negative is up (official ``vy_ratio``).
CROP_VY: float = -0.125
#: Side of the image the LivePortrait networks take (the 512 crop, area-resized).
NET_INPUT_SIZE: int = 256

#: Index groups of the landmark layouts used for the roll axis:
#: (left-eye points, right-eye points, the two lip points).
_AXIS_INDICES: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[int, int]]] = {
    106: ((33, 35, 40, 39), (87, 89, 94, 93), (52, 61)),  # insightface 2d106det
    203: ((0, 6, 12, 18), (24, 30, 36, 42), (48, 66)),  # LivePortrait landmark.onnx
}

#: Below this length the eye-to-lip vector is treated as degenerate (no rotation).
_MIN_AXIS_LENGTH: float = 1e-3


@dataclass(frozen=True, eq=False)
class FaceRect:
    """A rotated square around a face, in photo pixel coordinates.

    Attributes:
        center: (2,) float32 x, y of the square's centre.
        size: side length in pixels.
        angle: rotation of the square's x axis in radians, clockwise positive
            in image coordinates (y down).
        ux, uy: (2,) float32 unit vectors of the square's x and y axes.
    """

    center: NDArray[np.float32]
    size: float
    angle: float
    ux: NDArray[np.float32]
    uy: NDArray[np.float32]

    def corners(self) -> NDArray[np.float32]:
        """(4, 2) corners: top-left, top-right, bottom-right, bottom-left."""
        h = F32(self.size / 2)
        signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=F32)
        return (self.center + signs[:, :1] * h * self.ux + signs[:, 1:] * h * self.uy).astype(F32)


@dataclass(frozen=True, eq=False)
class CropResult:
    """A face crop and the transforms between photo and crop.

    Attributes:
        image: (dsize, dsize, C) uint8 crop.
        M_o2c: (3, 3) float32, photo (original) pixel coords -> crop pixel coords.
        M_c2o: (3, 3) float32, the inverse.
        points: (N, 2) float32, the input landmarks in crop coordinates.
    """

    image: NDArray[np.uint8]
    M_o2c: NDArray[np.float32]
    M_c2o: NDArray[np.float32]
    points: NDArray[np.float32]


def roll_axis_points(pts: NDArray[np.floating]) -> NDArray[np.float32]:
    """The two points whose direction defines "down" for a face.

    Args:
        pts: (106, 2) or (203, 2) landmarks.

    Returns:
        (2, 2) float32: row 0 is the midpoint of both eye centres, row 1 the lip centre.
    """
    pts = np.asarray(pts, dtype=F32)
    try:
        left, right, lips = _AXIS_INDICES[pts.shape[0]]
    except KeyError:
        raise ValueError(f"landmarks must have 106 or 203 points, got array of shape {pts.shape}") from None
    eye_l = pts[list(left)].mean(axis=0)
    eye_r = pts[list(right)].mean(axis=0)
    eyes = (eye_l + eye_r) / F32(2)
    lip = (pts[lips[0]] + pts[lips[1]]) / F32(2)
    return np.stack([eyes, lip]).astype(F32)


def face_rect(
    pts: NDArray[np.floating],
    scale: float = CROP_SCALE,
    vx: float = CROP_VX,
    vy: float = CROP_VY,
) -> FaceRect:
    """The rotated face square of a landmark set (steps 1-3 of the module doc).

    Args:
        pts: (106, 2) or (203, 2) landmarks in photo coordinates.
        scale: side multiplier over the landmark extent.
        vx, vy: centre shift along the square's x / y axis, in units of the side.
    """
    pts = np.asarray(pts, dtype=F32)
    axis = roll_axis_points(pts)
    uy = axis[1] - axis[0]
    length = float(np.linalg.norm(uy))
    if length <= _MIN_AXIS_LENGTH:
        uy = np.array([0.0, 1.0], dtype=F32)
    else:
        uy = (uy / F32(length)).astype(F32)
    ux = np.array([uy[1], -uy[0]], dtype=F32)
    angle = math.acos(float(ux[0]))
    if ux[1] < 0:
        angle = -angle

    rot = np.stack([ux, uy])  # rows: the square's axes
    mean = pts.mean(axis=0)
    local = (pts - mean) @ rot.T
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = (lo + hi) / F32(2)
    side = F32(max(hi - lo)) * F32(scale)
    center = mean + ux * mid[0] + uy * mid[1]
    center = center + ux * (F32(vx) * side) + uy * (F32(vy) * side)
    return FaceRect(center=center.astype(F32), size=float(side), angle=angle, ux=ux, uy=uy)


def crop_matrix(
    pts: NDArray[np.floating],
    dsize: int = CROP_DSIZE,
    scale: float = CROP_SCALE,
    vx: float = CROP_VX,
    vy: float = CROP_VY,
    rotate: bool = True,
) -> NDArray[np.float32]:
    """Photo -> crop similarity transform for a landmark set.

    Args:
        pts: (106, 2) or (203, 2) landmarks in photo coordinates.
        dsize: crop side in pixels.
        scale, vx, vy: see :func:`face_rect`.
        rotate: cancel the head roll; when False the square stays axis-aligned
            (same centre and side).

    Returns:
        (3, 3) float32 ``M_o2c``; crop coords = ``M_o2c @ [x, y, 1]``.
    """
    rect = face_rect(pts, scale=scale, vx=vx, vy=vy)
    s = F32(dsize) / F32(rect.size)
    half = dsize / 2
    cx, cy = rect.center
    if rotate:
        c, si = math.cos(rect.angle), math.sin(rect.angle)
    else:
        c, si = 1.0, 0.0
    m = np.array(
        [
            [s * c, s * si, half - s * (c * cx + si * cy)],
            [-s * si, s * c, half - s * (-si * cx + c * cy)],
            [0.0, 0.0, 1.0],
        ],
        dtype=F32,
    )
    return m


def invert(m: NDArray[np.floating]) -> NDArray[np.float32]:
    """Inverse of a (3, 3) affine matrix, float32 like the official ``M_c2o``."""
    return np.linalg.inv(np.asarray(m, dtype=F32)).astype(F32)


def transform_points(pts: NDArray[np.floating], m: NDArray[np.floating]) -> NDArray[np.float32]:
    """Apply the affine part of a (2, 3) or (3, 3) matrix to (N, 2) points."""
    pts = np.asarray(pts, dtype=F32)
    m = np.asarray(m, dtype=F32)
    return (pts @ m[:2, :2].T + m[:2, 2]).astype(F32)


#: When the photo -> crop scale is below this, the photo is first shrunk with
#: area averaging so the final bilinear warp does not alias. The official
#: pipeline never needs this (it limits photos to 1280 px); the golden cases
#: all stay above it and therefore take the plain warp.
_ANTIALIAS_BELOW_SCALE: float = 0.5


def warp_to_crop(
    image: NDArray[np.uint8],
    M_o2c: NDArray[np.floating],
    dsize: int = CROP_DSIZE,
) -> NDArray[np.uint8]:
    """Warp a photo into the crop with bilinear sampling and black borders.

    Args:
        image: (H, W, C) uint8 photo.
        M_o2c: (3, 3) or (2, 3) photo -> crop matrix.
        dsize: crop side.

    Returns:
        (dsize, dsize, C) uint8.

    For strong down-scaling (a face of thousands of pixels) the part of the photo
    under the crop is first area-resized, so the result matches what a smaller
    photo would give instead of aliasing.
    """
    m = np.asarray(M_o2c, dtype=np.float64)[:2]
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    if scale < _ANTIALIAS_BELOW_SCALE:
        image, m = _shrink_under_crop(image, m, dsize, scale)
    return cv2.warpAffine(image, m, (dsize, dsize), flags=cv2.INTER_LINEAR)


def _shrink_under_crop(
    image: NDArray[np.uint8], m: NDArray[np.float64], dsize: int, scale: float
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Cut the photo region under the crop, area-resize it to about crop scale.

    Returns the smaller image and the matching (2, 3) matrix into the crop.
    """
    full = np.vstack([m, [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(full)
    corners = np.array([[0, 0, 1], [dsize, 0, 1], [dsize, dsize, 1], [0, dsize, 1]], dtype=np.float64)
    src = corners @ inv[:2].T
    h, w = image.shape[:2]
    margin = 2.0 / scale
    x0 = int(max(0, math.floor(src[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(src[:, 1].min() - margin)))
    x1 = int(min(w, math.ceil(src[:, 0].max() + margin)))
    y1 = int(min(h, math.ceil(src[:, 1].max() + margin)))
    if x1 - x0 < 2 or y1 - y0 < 2:  # crop entirely outside the photo: plain warp gives black
        return image, m
    roi = image[y0:y1, x0:x1]
    k = min(1.0, scale * 1.25)  # leave the final warp a gentle down-scale at most
    nw, nh = max(1, round((x1 - x0) * k)), max(1, round((y1 - y0) * k))
    small = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
    kx, ky = nw / (x1 - x0), nh / (y1 - y0)
    # small pixel centre i maps to roi coordinate (i + 0.5) / k - 0.5
    to_roi = np.array([[1 / kx, 0, 0.5 / kx - 0.5 + x0], [0, 1 / ky, 0.5 / ky - 0.5 + y0], [0, 0, 1]], dtype=np.float64)
    return small, (full @ to_roi)[:2]


def crop_face(
    image: NDArray[np.uint8],
    pts: NDArray[np.floating],
    dsize: int = CROP_DSIZE,
    scale: float = CROP_SCALE,
    vx: float = CROP_VX,
    vy: float = CROP_VY,
    rotate: bool = True,
) -> CropResult:
    """Crop a face from a photo by the official rule.

    Args:
        image: (H, W, C) uint8 photo.
        pts: (106, 2) or (203, 2) landmarks in photo coordinates.
        dsize, scale, vx, vy, rotate: see :func:`crop_matrix`.
    """
    m_o2c = crop_matrix(pts, dsize=dsize, scale=scale, vx=vx, vy=vy, rotate=rotate)
    return CropResult(
        image=warp_to_crop(image, m_o2c, dsize),
        M_o2c=m_o2c,
        M_c2o=invert(m_o2c),
        points=transform_points(pts, m_o2c),
    )


RESIZE_FILTERS: tuple[str, ...] = ("area", "linear")
"""How :func:`to_network_input` resamples: ``area`` shrinks by pixel-area averaging (the official
source crop, 512 -> 256) and enlarges bilinearly; ``linear`` is always bilinear (the official
resize of an already-cropped driving frame)."""


def to_network_input(
    image: NDArray[np.uint8], size: int = NET_INPUT_SIZE, *, filter: str = "area"
) -> NDArray[np.uint8]:
    """Resize a face crop (H,W,C) to the networks' input: (size, size, C) uint8; the image itself when it fits.

    The one resize to network input for every path (source crops, pre-cropped sources, driving
    frames); ``filter`` is one of :data:`RESIZE_FILTERS`.
    """
    if filter not in RESIZE_FILTERS:
        raise ValueError(f"filter must be one of {RESIZE_FILTERS}, got {filter!r}")
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    shrink = filter == "area" and min(h, w) > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
