"""What the face pipeline sees in a photo, as plain data and as a picture (``lpstudio face``).

:func:`describe_faces` runs the pipeline once per face found and returns a
JSON-ready dict::

    {"faces": [{"box": [x0, y0, x1, y1], "score": s,
                "keypoints": {"left_eye": [x, y], "right_eye": [...], "nose": [...],
                              "mouth_left": [...], "mouth_right": [...]},
                "crop": {"corners": [[x, y] x 4], "center": [x, y], "size": s, "angle_deg": a},
                "eye_ratio": r, "eye_ratios": [left, right], "lip_ratio": r}, ...],
     "face_models": "mediapipe", "photo_size": [width, height], "crop_options": {"scale": 2.3, ...}}

Coordinates are photo pixels (pixel centres at integers) of the upright photo
(EXIF orientation applied). "left"/"right" are as seen in the photo:
``left_eye`` is the eye nearer the photo's left edge. ``crop`` is the square the
LivePortrait networks see (512x512 crop, corners in the order top-left,
top-right, bottom-right, bottom-left of the crop). ``eye_ratio`` and ``lip_ratio``
are the values the ``eye_ratio``/``lip_ratio`` editing parameters are measured
against (mean of both eyes, and the lip, rounded to 2 decimals as the official
app does); ``eye_ratios`` holds both eyes unrounded. Faces come largest first,
so ``faces[i]`` is ``--face-index i`` everywhere else.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from .crop import transform_points
from .pipeline import FaceCrop, FacePipeline

#: Faces described at most (each costs one landmark run); the rest are counted.
MAX_FACES: int = 32
KEYPOINT_NAMES: tuple[str, ...] = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
_DECIMALS = 2  # pixel coordinates in the report
_RATIO_DECIMALS = 4


def _pt(p: NDArray[np.floating]) -> list[float]:
    return [round(float(p[0]), _DECIMALS), round(float(p[1]), _DECIMALS)]


def crop_square(face: FaceCrop) -> dict[str, Any]:
    """The crop square in photo pixels: corners, centre, side and rotation."""
    s = float(face.image_512.shape[0])
    corners_crop = np.array([[0, 0], [s, 0], [s, s], [0, s]], dtype=np.float32) - 0.5
    corners = transform_points(corners_crop, face.M_c2o)
    centre = corners.mean(axis=0)
    top = corners[1] - corners[0]
    return {
        "corners": [_pt(c) for c in corners],
        "center": _pt(centre),
        "size": round(float(np.linalg.norm(top)), _DECIMALS),
        "angle_deg": round(math.degrees(math.atan2(float(top[1]), float(top[0]))), _DECIMALS),
    }


def face_entry(face: FaceCrop) -> dict[str, Any]:
    """One face's entry of :func:`describe_faces`."""
    kps = None
    if face.keypoints is not None:
        kps = {name: _pt(p) for name, p in zip(KEYPOINT_NAMES, np.asarray(face.keypoints))}
    return {
        "box": [round(float(v), _DECIMALS) for v in face.box[:4]],
        "score": round(float(face.box[4]), _RATIO_DECIMALS),
        "keypoints": kps,
        "crop": crop_square(face),
        "eye_ratio": face.eye_ratio_rounded,
        "eye_ratios": [round(float(v), _RATIO_DECIMALS) for v in np.asarray(face.eye_ratio).reshape(-1)],
        "lip_ratio": face.lip_ratio_rounded,
    }


def describe_faces(pipeline: FacePipeline, photo: NDArray[np.uint8], max_faces: int = MAX_FACES) -> dict[str, Any]:
    """Every face of a photo (largest first) as a JSON-ready dict (see the module docstring).

    Raises:
        FaceNotFoundError: the photo has no face (the same error as everywhere else).
    """
    found = len(pipeline.detect(photo))
    faces = [face_entry(pipeline.analyze(photo, face_index=0))]  # raises FaceNotFoundError when there is none
    faces += [face_entry(pipeline.analyze(photo, face_index=i)) for i in range(1, min(found, max_faces))]
    h, w = photo.shape[:2]
    report: dict[str, Any] = {"faces": faces, "face_models": pipeline.face_models, "photo_size": [w, h]}
    options = getattr(pipeline, "crop_options", None)
    if options is not None:
        report["crop_options"] = options.as_dict()
    if found > max_faces:
        report["faces_not_described"] = found - max_faces
    return report


_BOX = (0, 200, 255)
_CROP = (255, 200, 0)
_KP_COLOURS = ((255, 60, 60), (60, 120, 255), (60, 220, 60), (255, 0, 255), (255, 160, 0))


def draw_sheet(photo: NDArray[np.uint8], report: dict[str, Any]) -> NDArray[np.uint8]:
    """The photo with each face's box, score, key points and crop square drawn on it.

    Args:
        photo: (H, W, 3) uint8 RGB, the photo the report describes.

    Returns:
        (H, W, 3) uint8 RGB copy.
    """
    out = np.ascontiguousarray(photo.copy())
    h, w = out.shape[:2]
    line = max(1, round(max(h, w) / 500))
    dot = max(2, 2 * line)
    font = max(0.4, max(h, w) / 1200)
    for i, face in enumerate(report["faces"]):
        crop = np.round(np.asarray(face["crop"]["corners"])).astype(np.int32)
        cv2.polylines(out, [crop.reshape(-1, 1, 2)], True, _CROP, line, cv2.LINE_AA)
        x0, y0, x1, y1 = (round(v) for v in face["box"])
        cv2.rectangle(out, (x0, y0), (x1, y1), _BOX, line, cv2.LINE_AA)
        label = f"#{i} {face['score']:.2f}"
        cv2.putText(out, label, (x0, max(0, y0 - 3 * line)), cv2.FONT_HERSHEY_SIMPLEX, font, _BOX, line, cv2.LINE_AA)
        for colour, name in zip(_KP_COLOURS, KEYPOINT_NAMES):
            if face["keypoints"] is None:
                break
            x, y = face["keypoints"][name]
            cv2.circle(out, (round(x), round(y)), dot, colour, -1, cv2.LINE_AA)
    return out


__all__ = ["KEYPOINT_NAMES", "MAX_FACES", "crop_square", "describe_faces", "draw_sheet", "face_entry"]
