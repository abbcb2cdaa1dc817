"""Group photos composed at run time from the real portraits of ``tests/data/faces``.

Besides the real group photo (``real_group_photos.py``), detection recall is measured on scenes
built from the two frontal portraits we ship (the NASA astronaut, Grace Hopper) and their mirror images:
several faces side by side at one size, faces a few pixels from the photo's edges, and
overlapping faces, each pasted with a feathered oval of its head so that its own
background fades into the scene's (gray noise, or a real texture: the rocket and
sky of the astronaut photo, which holds no face). The truth is known exactly: each
face's hand-labelled eye centres (``labels.json``) moved with the portrait.

Face size here is :data:`FACE_PER_IOD` x the inter-ocular distance: about the side of
the square box the MediaPipe and InsightFace detectors draw around a frontal face.
Used by ``tests/face/test_find_every_face.py`` and ``benchmarks/face_recall.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

DATA = Path(__file__).resolve().parents[1] / "data" / "faces"
LABELS: dict = json.loads((DATA / "labels.json").read_text())["photos"]
#: Face box side over inter-ocular distance (the short-range detector's box on the two portraits: 2.38-2.48).
FACE_PER_IOD: float = 2.4
#: The portraits used (frontal faces with both eyes labelled).
FRONTAL: tuple[str, ...] = ("astronaut", "grace_hopper")
#: Head oval pasted with each face, in face sizes (half-axes x, y) and its feather (Gaussian sigma, face sizes).
HEAD_HALF_AXES: tuple[float, float] = (0.68, 0.95)
HEAD_FEATHER: float = 0.08
#: Down-shift of the head oval's centre below the eye line, in face sizes.
HEAD_CENTRE_BELOW_EYES: float = 0.12


@dataclass
class Scene:
    """A composed photo and its faces.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        eyes: per face, (2, 2) float eye centres (image-left eye first), photo pixels.
        size: per face, its size in pixels (:data:`FACE_PER_IOD` x inter-ocular distance).
        name: what the scene shows.
    """

    image: NDArray[np.uint8]
    eyes: list[NDArray[np.float64]] = field(default_factory=list)
    size: list[float] = field(default_factory=list)
    name: str = ""


def portrait(name: str, mirror: bool = False) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """(H, W, 3) uint8 portrait and its (2, 2) labelled eye centres (image-left first)."""
    from lpstudio.face import load_image

    image = load_image(DATA / LABELS[name]["file"]).rgb
    eyes = np.array([LABELS[name]["left_eye"], LABELS[name]["right_eye"]], dtype=np.float64)
    if mirror:
        image = np.ascontiguousarray(image[:, ::-1])
        eyes = np.stack([image.shape[1] - 1 - eyes[:, 0], eyes[:, 1]], axis=1)[::-1]
    return image, eyes


def background(kind: str, width: int, height: int, seed: int = 0) -> NDArray[np.uint8]:
    """``noise`` (gray with noise) or ``real`` (the rocket and sky of the astronaut photo, no face, tiled)."""
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return np.clip(128 + rng.integers(-30, 30, (height, width, 3)), 0, 255).astype(np.uint8)
    rocket, _ = portrait("astronaut")
    texture = rocket[260:, 340:]  # the rocket and the helmet: no face (tests/face/test_mediapipe_faces.py)
    reps = (height // texture.shape[0] + 1, width // texture.shape[1] + 1, 1)
    return np.ascontiguousarray(np.tile(texture, reps)[:height, :width])


def paste_face(scene: Scene, name: str, size: float, centre: tuple[float, float], mirror: bool = False) -> None:
    """Paste portrait ``name`` scaled to a ``size`` px face centred at ``centre`` (x, y), with a soft head oval."""
    image, eyes = portrait(name, mirror)
    iod = float(np.linalg.norm(eyes[1] - eyes[0]))
    k = size / (FACE_PER_IOD * iod)
    small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    eyes_small = (eyes + 0.5) * [small.shape[1] / image.shape[1], small.shape[0] / image.shape[0]] - 0.5
    mid = eyes_small.mean(axis=0) + [0.0, HEAD_CENTRE_BELOW_EYES * size]
    shift = np.asarray(centre, dtype=np.float64) - mid
    h, w = scene.image.shape[:2]
    m = np.array([[1.0, 0.0, shift[0]], [0.0, 1.0, shift[1]]])
    warped = cv2.warpAffine(small, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = np.zeros((h, w), np.float32)
    axes = (int(HEAD_HALF_AXES[0] * size), int(HEAD_HALF_AXES[1] * size))
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), axes, 0, 0, 360, 1.0, -1)
    cover = cv2.warpAffine(np.ones(small.shape[:2], np.float32), m, (w, h))  # where the portrait has pixels
    sigma = max(1.0, HEAD_FEATHER * size)
    alpha = (cv2.GaussianBlur(mask, (0, 0), sigma) * cover)[..., None]
    scene.image = (scene.image * (1 - alpha) + warped * alpha).round().astype(np.uint8)
    scene.eyes.append(eyes_small + shift)
    scene.size.append(float(size))


def row_scene(size: float, bg: str = "noise", width: int = 1280, height: int = 720, seed: int = 0) -> Scene:
    """As many faces of ``size`` px side by side as fit (at most 6), at varied heights."""
    rng = np.random.default_rng(seed)
    scene = Scene(background(bg, width, height, seed), name=f"row {size:.0f}px {bg}")
    n = int(min(6, max(2, width // (2.2 * size))))
    gap = width / n
    for i in range(n):
        y = float(rng.uniform(1.2 * size, height - 1.2 * size)) if height > 2.4 * size else height / 2
        paste_face(scene, FRONTAL[i % 2], size, ((i + 0.5) * gap, y), mirror=bool(i % 4 >= 2))
    return scene


def edge_scene(size: float, bg: str = "noise", width: int = 1280, height: int = 720, seed: int = 0) -> Scene:
    """Four faces whose boxes end a few pixels from the left, right, top and bottom edges."""
    scene = Scene(background(bg, width, height, seed), name=f"edges {size:.0f}px {bg}")
    m = 0.5 * size + 4  # face box 4 px from the edge
    spots = [(m, height * 0.35), (width - m, height * 0.6), (width * 0.3, m), (width * 0.7, height - m)]
    for i, centre in enumerate(spots):
        paste_face(scene, FRONTAL[i % 2], size, centre, mirror=i >= 2)
    return scene


def overlap_scene(size: float, bg: str = "noise", width: int = 1280, height: int = 720, seed: int = 0) -> Scene:
    """Two pairs of overlapping faces: the nearer one (1.1 x larger, pasted last) 0.9 face sizes beside
    and 0.3 below the other, so their boxes overlap and its head covers the other's cheek, not its eyes."""
    scene = Scene(background(bg, width, height, seed), name=f"overlap {size:.0f}px {bg}")
    for j, cx in enumerate((width * 0.3, width * 0.7)):
        cy = height / 2
        side = 1.0 if j == 0 else -1.0
        paste_face(scene, FRONTAL[j % 2], size, (cx - side * 0.45 * size, cy - 0.15 * size), mirror=bool(j))
        paste_face(scene, FRONTAL[(j + 1) % 2], size * 1.1, (cx + side * 0.45 * size, cy + 0.15 * size), mirror=not j)
    return scene


LAYOUTS = {"row": row_scene, "edges": edge_scene, "overlap": overlap_scene}


def match(scene: Scene, boxes: NDArray[np.floating]) -> tuple[list[bool], int]:
    """Which faces were found, and how many boxes are false positives.

    A box finds a face when it holds both its eye centres and its side is within 0.5-2 x the
    face's size; each box finds at most one face (the nearest centre) and each face one box.
    """
    found = [False] * len(scene.eyes)
    used = np.zeros(len(boxes), dtype=bool)
    for i, (eyes, size) in enumerate(zip(scene.eyes, scene.size)):
        best, best_d = -1, np.inf
        for j, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
            side = max(b[2] - b[0], b[3] - b[1])
            inside = np.all((eyes[:, 0] > b[0]) & (eyes[:, 0] < b[2]) & (eyes[:, 1] > b[1]) & (eyes[:, 1] < b[3]))
            if used[j] or not inside or not 0.5 * size <= side <= 2.0 * size:
                continue
            d = float(np.linalg.norm((b[:2] + b[2:4]) / 2 - eyes.mean(axis=0)))
            if d < best_d:
                best, best_d = j, d
        if best >= 0:
            found[i] = True
            used[best] = True
    return found, int((~used).sum())
