"""Face crops of driving frames, streamed.

The official code crops a driving video with a *fixed* square (the average of
every frame's landmark box, official ``crop_driving_video``) so that head
translation and zoom stay visible to the motion extractor. Averaging needs the
whole video in memory; here the square is fixed by the first frame that has a
face, which keeps frames streaming and has the same effect. Every frame is
still searched for a face (frames without one are reported), and its 203
landmarks give the eye/lip ratios for retargeting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .. import keypoints as K
from ..face.crop import CROP_DSIZE, crop_matrix, to_network_input, transform_points, warp_to_crop
from ..face.crop_options import DRIVING_CROP_SCALE, DRIVING_CROP_VX, DRIVING_CROP_VY, CropOptions
from ..face.intake import limit_side

__all__ = ["DRIVING_CROP_SCALE", "DRIVING_CROP_VX", "DRIVING_CROP_VY", "DrivingCrop", "DrivingCropper"]


@dataclass(frozen=True, eq=False)
class DrivingCrop:
    """One driving frame, ready for the motion extractor.

    Attributes:
        image_256: (256,256,3) uint8 network input.
        eye_ratio: (1,2) eyes-open ratios, or None without landmarks.
        lip_ratio: (1,1) lip-open ratio, or None.
    """

    image_256: NDArray[np.uint8]
    eye_ratio: NDArray[np.float32] | None = None
    lip_ratio: NDArray[np.float32] | None = None


class DrivingCropper:
    """Crop driving frames with a face pipeline (``lpstudio.face.FacePipeline``).

    ``precropped``: frames are already face crops; they are only resized, and
    searched for landmarks when ``landmarks`` is True (eye/lip retargeting).
    ``crop``: the crop controls (``driving_scale/vx/vy``, ``det_thresh``); default the face pipeline's own.
    """

    def __init__(
        self,
        face: object | None,
        *,
        precropped: bool = False,
        landmarks: bool = False,
        crop: CropOptions | None = None,
    ) -> None:
        self.face = face
        self.precropped = precropped
        self.landmarks = landmarks
        self.crop = crop or getattr(face, "crop_options", None) or CropOptions()
        self.m_o2c: NDArray[np.float32] | None = None  # the fixed square, set by the first face

    def _lmk203(self, frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """203 landmarks of the largest face in photo coordinates, or None when there is none."""
        face = self.face
        small, m_full2small = limit_side(frame, face.analysis_max_side)  # type: ignore[attr-defined]
        thresh = self.crop.det_thresh
        detect = face.detector.detect  # type: ignore[attr-defined]
        dets = (detect(small) if thresh is None else detect(small, score_thresh=thresh)).largest_first()
        if len(dets) == 0:
            return None
        pick = self._pick(dets.boxes, np.linalg.inv(m_full2small) if small is not frame else None)
        lmk106 = face.landmark106(small, dets.boxes[pick])  # type: ignore[attr-defined]
        lmk203 = face.landmark203(small, lmk106)  # type: ignore[attr-defined]
        if small is not frame:
            lmk203 = transform_points(lmk203, np.linalg.inv(m_full2small))
        return lmk203

    def _pick(self, boxes: NDArray[np.float32], small_to_frame: NDArray[np.float64] | None) -> int:
        """Which of the detected faces to follow: boxes (N,4) in analysis pixels, largest first; the largest.

        ``small_to_frame`` (3,3) maps analysis pixels to frame pixels (None: the same). Subclasses that
        follow one face over time (the source-video tracker) override this.
        """
        return 0

    @staticmethod
    def _ratios(lmk203: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        return K.eye_close_ratio(lmk203).astype(np.float32), K.lip_close_ratio(lmk203).astype(np.float32)

    def __call__(self, frame: NDArray[np.uint8]) -> DrivingCrop | None:
        """(H,W,3) uint8 RGB frame -> :class:`DrivingCrop`, or None when the frame has no face."""
        if self.precropped:
            image = to_network_input(frame, filter="linear")  # official: plain bilinear resize
            if not self.landmarks or self.face is None:
                return DrivingCrop(image)
            lmk = self._lmk203(frame)
            if lmk is None:
                return None
            return DrivingCrop(image, *self._ratios(lmk))
        if self.face is None:
            raise ValueError("cropping driving frames needs a face pipeline")
        lmk = self._lmk203(frame)
        if lmk is None:
            return None
        if self.m_o2c is None:
            c = self.crop
            self.m_o2c = crop_matrix(
                lmk, dsize=CROP_DSIZE, scale=c.driving_scale, vx=c.driving_vx, vy=c.driving_vy, rotate=False
            )
        crop = warp_to_crop(frame, self.m_o2c, CROP_DSIZE)
        eye, lip = self._ratios(transform_points(lmk, self.m_o2c))
        return DrivingCrop(to_network_input(crop), eye, lip)
