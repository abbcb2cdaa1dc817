"""Group photos for the tests, composed from the real photos of ``tests/data/faces`` and the bundled astronaut.

:func:`two_face_photo`: Grace Hopper and the (mirrored) astronaut side by side on a grey 560x400
canvas, faces about 90 and 55 px wide (face 0, the larger, on the left), both found by today's
MediaPipe detector (a side-by-side pair at larger sizes is not: the short-range model misses the
second face unless the faces are small enough for its tiled search).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from lpstudio.face import load_image

TESTS = Path(__file__).resolve().parent
HOPPER = TESTS / "data" / "faces" / "grace_hopper.jpg"
ASTRONAUT = TESTS.parent / "src" / "lpstudio" / "assets" / "astronaut.png"
CANVAS_GREY = 180


def two_face_photo() -> np.ndarray:
    """(400, 560, 3) uint8 RGB with two real faces side by side."""
    hopper = cv2.resize(load_image(HOPPER).rgb, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    astro = cv2.resize(load_image(ASTRONAUT).rgb, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)[:, ::-1]
    canvas = np.full((400, 560, 3), CANVAS_GREY, np.uint8)
    canvas[40 : 40 + hopper.shape[0], : hopper.shape[1]] = hopper
    canvas[60 : 60 + astro.shape[0], 270 : 270 + astro.shape[1]] = astro
    return canvas


def overlapping_faces_photo() -> np.ndarray:
    """(400, 560, 3) uint8 RGB: Grace Hopper and, close beside her, the astronaut's head (cut just below
    the chin so her helmet is not taken for a face): both faces are found and their paste-back
    regions overlap (about 4,000 pixels)."""
    hopper = cv2.resize(load_image(HOPPER).rgb, None, fx=0.45, fy=0.45, interpolation=cv2.INTER_AREA)
    astro = cv2.resize(load_image(ASTRONAUT).rgb, None, fx=0.55, fy=0.55, interpolation=cv2.INTER_AREA)[:, ::-1]
    head = astro[:150, 110:]
    canvas = np.full((400, 560, 3), CANVAS_GREY, np.uint8)
    canvas[40 : 40 + hopper.shape[0], : hopper.shape[1]] = hopper
    canvas[60 : 60 + head.shape[0], 175 : 175 + head.shape[1]] = head
    return canvas


def png_bytes(rgb: np.ndarray) -> bytes:
    """Lossless PNG bytes of an RGB array."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
