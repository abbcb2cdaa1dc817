"""MediaPipe's 468-point face mesh in the landmark layouts the LivePortrait code uses.

The official crop rule, the eye/lip ratios and the driving-video crop take the
InsightFace 106-point or the LivePortrait 203-point layout. This module builds
arrays in those layouts from a face mesh, so that every consumer
(:mod:`lpstudio.face.crop`, :mod:`lpstudio.keypoints`, ``drive/crop.py``) runs
unchanged. What each consumer reads, and therefore what the mapping must get
right:

* the crop (:func:`lpstudio.face.crop.face_rect`): the two eye centres (mean of
  four points per eye: 106 indices 33, 35, 40, 39 and 87, 89, 94, 93; 203
  indices 0, 6, 12, 18 and 24, 30, 36, 42), the lip centre (mean of the two
  mouth corners: 106 indices 52, 61; 203 indices 48, 66), and the extent of *all*
  points in the roll-corrected frame (which sets the square's centre and size);
* the eye ratios: 203 indices 6-18 (mid upper lid to mid lower lid) over 0-12
  (eye corners), per eye; the lip ratio: 203 indices 90-102 (inner lips,
  middle) over 48-66 (mouth corners);
* the paste-back mask: nothing (it is a fixed soft square in crop space, see
  :mod:`lpstudio.face.pasteback`); only the crop's transform.

**106 layout** (InsightFace ``2d106det``), by part, with the mesh vertices
placed there (mesh numbering as in MediaPipe's ``face_mesh_connections``;
"image-left" is the subject's right):

=============  ==================================  =====================================
106 indices    part                                mesh source
=============  ==================================  =====================================
0              chin                                152
1, 9-16, 2-8   image-left jaw, top to chin         face oval 127 -> 152, resampled (16)
17, 25-32,     image-right jaw, top to chin        face oval 356 -> 152, resampled (16)
18-24
33-42          image-left eye: 35/39 corners,      33 / 133 corners, 160, 158 upper lid,
               41/40 upper lid, 37/42 lower lid,   144, 153 lower lid, 145, 7, 159, 154
               33 lower-lid middle; 34, 36, 38
43-51          image-left brow                     70, 46, 53, 52, 65, 63, 105, 107, 66
52-71          mouth: 52/61 corners, outer and     61 / 291; outer and inner lip rings
               inner lips
72-86          nose: bridge, tip, nostril row      168, 197, 5, 45, 220, 115, 275, 440,
                                                   98, 97, 2, 344, 327, 326, 4
87-96          image-right eye (mirror of 33-42)   374 lower-lid middle, 263 / 362 ...
97-105         image-right brow                    285, 295, 282, 283, 300, 336, 296, 334, 293
=============  ==================================  =====================================

The part assignment follows InsightFace's published 106-point markup (the
indices LivePortrait reads are used exactly as it reads them: corners 35/39,
89/93, upper lid 40/94, mouth corners 52/61). Within a part, points not read
by any consumer only need to lie on that part.

**203 layout** (LivePortrait ``landmark.onnx``): only the indices above are
documented by their use in the official code, so the mapping fixes those and
fills the rest with the mesh's brows, nose and jaw (which give the landmark
extent the driving-video crop relies on):

* 0-23 image-left eye: 0-12 the upper lid from corner 33 to corner 133
  (resampled along the lid, 6 = its middle), 12-23 the lower lid back (18 = its
  middle); 24-47 the image-right eye the same way (corners 362, 263);
* 48-107 mouth: 48-66 the outer upper lip from corner 61 to corner 291,
  66-83 the outer lower lip back, 84-96 the inner upper lip (90 = middle),
  96-107 the inner lower lip back (102 = middle);
* 108-161 the jaw contour (face oval 127 -> 152 -> 356, 54 points),
  162-187 both brows (13 points each along upper then lower edge),
  188-202 the nose (as in the 106 layout).

Polylines are resampled by arc length, so the named middles are the middles
of the lids and lips whatever the mesh's point spacing.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

#: Number of points of the MediaPipe face mesh (without iris points).
N_MESH: int = 468

# ---------------------------------------------------------------- mesh polylines (face_mesh_connections)
#: Face oval from the image-left tragion region down to the chin and up the other side.
JAW_LEFT: tuple[int, ...] = (127, 234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152)
JAW_RIGHT: tuple[int, ...] = (356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152)
#: Eyes: upper and lower lid from the image-left corner to the image-right corner.
EYE_L_UPPER: tuple[int, ...] = (33, 246, 161, 160, 159, 158, 157, 173, 133)
EYE_L_LOWER: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133)
EYE_R_UPPER: tuple[int, ...] = (362, 398, 384, 385, 386, 387, 388, 466, 263)
EYE_R_LOWER: tuple[int, ...] = (362, 382, 381, 380, 374, 373, 390, 249, 263)
#: Eye corners used for the iris regions (MediaPipe's iris graph): image-left eye, image-right eye.
EYE_L_CORNERS: tuple[int, int] = (33, 133)
EYE_R_CORNERS: tuple[int, int] = (362, 263)
#: Brows: upper and lower edge, image-left to image-right.
BROW_L_UPPER: tuple[int, ...] = (70, 63, 105, 66, 107)
BROW_L_LOWER: tuple[int, ...] = (46, 53, 52, 65, 55)
BROW_R_UPPER: tuple[int, ...] = (336, 296, 334, 293, 300)
BROW_R_LOWER: tuple[int, ...] = (285, 295, 282, 283, 276)
#: Lips from the image-left corner (61 outer, 78 inner) to the image-right corner (291, 308).
LIP_OUTER_UPPER: tuple[int, ...] = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
LIP_OUTER_LOWER: tuple[int, ...] = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LIP_INNER_UPPER: tuple[int, ...] = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIP_INNER_LOWER: tuple[int, ...] = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
#: Nose points: bridge (168, 197, 5), tip (4), alae and the nostril row.
NOSE: tuple[int, ...] = (168, 197, 5, 45, 220, 115, 275, 440, 98, 97, 2, 344, 327, 326, 4)
#: Single points of the five-point summary.
NOSE_TIP: int = 1
MOUTH_LEFT: int = 61
MOUTH_RIGHT: int = 291

# ---------------------------------------------------------------- 106 layout
#: 106 index -> mesh vertex, for the points that are single vertices.
# fmt: off
_MAP106: dict[int, int] = {
    0: 152,
    # image-left eye (35/39 corners, 41/40 upper lid, 37/42 lower lid, 33 lower-lid middle)
    35: 33, 39: 133, 41: 160, 40: 158, 37: 144, 42: 153, 33: 145, 34: 7, 36: 159, 38: 154,
    # image-right eye, mirrored (89/93 corners, 95/94 upper lid, 91/96 lower lid, 87 lower-lid middle)
    89: 362, 93: 263, 95: 385, 94: 387, 91: 380, 96: 373, 87: 374, 88: 249, 90: 386, 92: 381,
    # image-left brow
    43: 70, 44: 46, 45: 53, 46: 52, 47: 65, 48: 63, 49: 105, 50: 107, 51: 66,
    # image-right brow
    97: 285, 98: 295, 99: 282, 100: 283, 101: 300, 102: 336, 103: 296, 104: 334, 105: 293,
    # mouth: corners 52/61, outer ring, inner ring
    52: 61, 61: 291, 64: 40, 63: 37, 71: 0, 67: 267, 68: 270, 58: 321, 59: 314, 53: 17, 56: 84, 55: 91,
    65: 78, 66: 81, 62: 13, 70: 311, 69: 308, 57: 402, 60: 14, 54: 178,
}
# fmt: on
#: Nose: 106 indices 72-86 in the order of :data:`NOSE`.
_NOSE106: tuple[int, ...] = tuple(range(72, 87))
#: Jaw: the image-left side top to chin is 1, 9..16, 2..8 (then 0); the image-right side 17, 25..32, 18..24.
_JAW106_LEFT: tuple[int, ...] = (1, 9, 10, 11, 12, 13, 14, 15, 16, 2, 3, 4, 5, 6, 7, 8)
_JAW106_RIGHT: tuple[int, ...] = (17, 25, 26, 27, 28, 29, 30, 31, 32, 18, 19, 20, 21, 22, 23, 24)

# ---------------------------------------------------------------- 203 layout
N203_EYE_HALF: int = 12  # points from one eye corner to the other along one lid
N203_JAW: int = 54
N203_BROW: int = 13
_JAW203 = slice(108, 108 + N203_JAW)
_BROW203_L = slice(162, 162 + N203_BROW)
_BROW203_R = slice(175, 175 + N203_BROW)
_NOSE203 = slice(188, 203)


def resample(points: NDArray[np.floating], n: int) -> NDArray[np.float64]:
    """``n`` points equally spaced by arc length along a polyline, ends included.

    Args:
        points: (K, 2) polyline vertices.
        n: number of points wanted (>= 2).

    Returns:
        (n, 2) float64.
    """
    pts = np.asarray(points, dtype=np.float64)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    if cum[-1] <= 0.0:
        return np.repeat(pts[:1], n, axis=0)
    t = np.linspace(0.0, cum[-1], n)
    return np.stack([np.interp(t, cum, pts[:, 0]), np.interp(t, cum, pts[:, 1])], axis=1)


def _check(mesh: NDArray[np.floating]) -> NDArray[np.float64]:
    arr = np.asarray(mesh, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < N_MESH or arr.shape[1] < 2:
        raise ValueError(f"expected (468, 2+) face-mesh points, got shape {arr.shape}")
    return arr[:, :2]


def mesh_to_106(mesh: NDArray[np.floating]) -> NDArray[np.float32]:
    """The 106-point layout from a face mesh (see the module docstring).

    Args:
        mesh: (468, 2) or (468, 3) mesh points (pixels; z is ignored).

    Returns:
        (106, 2) float32 in the same coordinates.
    """
    m = _check(mesh)
    out = np.zeros((106, 2), dtype=np.float64)
    for i, v in _MAP106.items():
        out[i] = m[v]
    out[list(_NOSE106)] = m[list(NOSE)]
    left = resample(m[list(JAW_LEFT)], 17)  # top ... chin
    right = resample(m[list(JAW_RIGHT)], 17)
    out[list(_JAW106_LEFT)] = left[:16]
    out[list(_JAW106_RIGHT)] = right[:16]
    out[0] = (left[16] + right[16]) / 2
    return out.astype(np.float32)


def _ring(upper: tuple[int, ...], lower: tuple[int, ...], m: NDArray[np.float64], half: int) -> NDArray[np.float64]:
    """A closed contour: ``half + 1`` points along ``upper`` (corner to corner),
    then ``half - 1`` points back along ``lower`` (corners not repeated)."""
    top = resample(m[list(upper)], half + 1)
    bottom = resample(m[list(lower)], half + 1)[::-1]
    return np.concatenate([top, bottom[1:-1]])


def mesh_to_203(mesh: NDArray[np.floating]) -> NDArray[np.float32]:
    """The 203-point layout from a face mesh (see the module docstring).

    Args:
        mesh: (468, 2) or (468, 3) mesh points.

    Returns:
        (203, 2) float32.
    """
    m = _check(mesh)
    out = np.zeros((203, 2), dtype=np.float64)
    out[0:24] = _ring(EYE_L_UPPER, EYE_L_LOWER, m, N203_EYE_HALF)
    out[24:48] = _ring(EYE_R_UPPER, EYE_R_LOWER, m, N203_EYE_HALF)
    outer = resample(m[list(LIP_OUTER_UPPER)], 19)  # 48 ... 66
    out[48:67] = outer
    out[67:84] = resample(m[list(LIP_OUTER_LOWER)], 19)[::-1][1:-1]
    # inner lips: corners 84 and 96 are the inner corners (78, 308)
    out[84:97] = resample(m[list(LIP_INNER_UPPER)], 13)
    out[97:108] = resample(m[list(LIP_INNER_LOWER)], 13)[::-1][1:-1]
    left = resample(m[list(JAW_LEFT)], N203_JAW // 2 + 1)[:-1]  # top ... just above the chin
    right = resample(m[list(JAW_RIGHT)], N203_JAW // 2)[::-1]  # chin ... top
    out[_JAW203] = np.concatenate([left, right])
    out[_BROW203_L] = resample(np.concatenate([m[list(BROW_L_UPPER)], m[list(BROW_L_LOWER)][::-1]]), N203_BROW)
    out[_BROW203_R] = resample(np.concatenate([m[list(BROW_R_UPPER)], m[list(BROW_R_LOWER)][::-1]]), N203_BROW)
    out[_NOSE203] = m[list(NOSE)]
    return out.astype(np.float32)


def five_points(mesh: NDArray[np.floating], iris_centres: NDArray[np.floating] | None = None) -> NDArray[np.float32]:
    """Eye centres, nose tip and mouth corners, image-left first (InsightFace's order).

    Args:
        mesh: (468, 2+) mesh points.
        iris_centres: (2, 2) iris centres (image-left eye, image-right eye); without
            them the eye centre is the mean of the eye's contour.

    Returns:
        (5, 2) float32: left eye, right eye, nose tip, mouth left, mouth right.
    """
    m = _check(mesh)
    if iris_centres is not None:
        eyes = np.asarray(iris_centres, dtype=np.float64)[:2, :2]
    else:
        left = m[list(EYE_L_UPPER + EYE_L_LOWER[1:-1])].mean(axis=0)
        right = m[list(EYE_R_UPPER + EYE_R_LOWER[1:-1])].mean(axis=0)
        eyes = np.stack([left, right])
    return np.vstack([eyes, m[[NOSE_TIP, MOUTH_LEFT, MOUTH_RIGHT]]]).astype(np.float32)
