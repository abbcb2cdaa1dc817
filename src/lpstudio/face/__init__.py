"""The face pipeline: image intake, detection, landmarks, cropping, paste-back.

Typical use::

    from lpstudio.face import FacePipeline, load_image, PasteBack

    photo = load_image("portrait.jpg")            # upright RGB uint8, full resolution
    faces = FacePipeline(weights_dir)              # the official ONNX models
    face = faces.analyze(photo.rgb)                # largest face; face_index=1 for the next
    net_input = face.image_256                     # (256, 256, 3) uint8
    paster = PasteBack.for_face(face)              # precomputed soft mask
    result = paster(animated_512, photo.rgb)       # full-resolution photo with the new face
"""

from __future__ import annotations

from .crop import CROP_DSIZE, CROP_SCALE, CROP_VX, CROP_VY, NET_INPUT_SIZE, CropResult, crop_face
from .detect import Detections, FaceDetector
from .intake import ANALYSIS_MAX_SIDE, LoadedImage, as_rgb_uint8, load_image
from .landmarks import Landmark106, Landmark203, eye_close_ratio, lip_close_ratio, rounded_ratios
from .pasteback import PasteBack, feather_mask, paste_back
from .pipeline import FaceCrop, FacePipeline

__all__ = [
    "ANALYSIS_MAX_SIDE",
    "CROP_DSIZE",
    "CROP_SCALE",
    "CROP_VX",
    "CROP_VY",
    "NET_INPUT_SIZE",
    "CropResult",
    "Detections",
    "FaceCrop",
    "FaceDetector",
    "FacePipeline",
    "Landmark106",
    "Landmark203",
    "LoadedImage",
    "PasteBack",
    "as_rgb_uint8",
    "crop_face",
    "eye_close_ratio",
    "feather_mask",
    "lip_close_ratio",
    "load_image",
    "paste_back",
    "rounded_ratios",
]
