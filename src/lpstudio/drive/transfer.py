"""Expression transfer: give a portrait the expression (and optionally the head pose) of another photo.

This is driving with a single frame in absolute mode: the other photo's
expression coordinates (official absolute ``exp`` selection) replace the
source's; with ``pose`` its head rotation and position in the crop too. It
composes with the editing parameters: the parameters set the rest pose, the
other photo's expression is applied on top.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..errors import ImageError
from ..face.crop import to_network_input
from ..face.intake import LoadedImage, as_rgb_uint8, load_image
from .driving_motion import DriveSettings, DrivingMotion, KeypointDriver, extract_motion


def photo_motion(engine: Any, image: Any, *, crop: bool = True, face_index: int | None = None) -> DrivingMotion:
    """Motion of one photo (path, bytes, array or LoadedImage) -> :class:`DrivingMotion` of 1 frame.

    With ``crop`` the face is found and cropped the way a source is (so the same
    photo gives exactly the source's own motion); otherwise the image is taken as
    a face crop and resized to 256.
    """
    if isinstance(image, (str, os.PathLike, bytes)):
        rgb = load_image(image).rgb
    elif isinstance(image, LoadedImage):
        rgb = image.rgb
    else:
        rgb = as_rgb_uint8(np.asarray(image))
    if crop:
        if engine.face is None:
            raise ImageError(
                "finding the face in the expression photo needs the face models, which this engine was built without",
                hint="pass an already-cropped face with --no-crop",
            )
        image_256 = engine.face.analyze(rgb, face_index=face_index).image_256
    else:
        image_256 = to_network_input(rgb, engine.cfg.input_size)
    return extract_motion(engine, [image_256], 1)


@torch.inference_mode()
def expression_keypoints(
    engine: Any,
    state: Any,
    other: DrivingMotion,
    *,
    pose: bool = False,
    params: Any = None,
    stitching: bool = True,
) -> torch.Tensor:
    """Driving keypoints (1,21,3) with ``other``'s expression (and pose) on ``state``.

    ``params`` (EditParams) sets the rest pose (default: the source's neutral
    parameters); transferring a photo's expression onto itself gives exactly
    the neutral keypoints.
    """
    settings = DriveSettings(relative=False, region="all" if pose else "exp", stitching=stitching)
    rest = params if params is not None else state.neutral_params()  # the editing panel's rest pose
    return KeypointDriver(engine, state, settings, sequence=False, anchor_params=rest)(other)


def render_with_expression(
    engine: Any,
    state: Any,
    other_image: Any,
    *,
    pose: bool = False,
    params: Any = None,
    stitching: bool = True,
    crop: bool = True,
) -> np.ndarray:
    """Render ``state`` with the expression of ``other_image``: (512,512,3) uint8 (not pasted back)."""
    motion = photo_motion(engine, other_image, crop=crop)
    x_d = expression_keypoints(engine, state, motion, pose=pose, params=params, stitching=stitching)
    return next(iter(engine.render_keypoints(state, x_d, batch_size=1)))
