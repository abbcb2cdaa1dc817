"""The face pipeline: photo -> face crop, landmarks, ratios (and back, see pasteback).

:class:`FacePipeline` strings the pieces together the way the official
``Cropper.crop_source_image`` does:

1. analyse a copy of the photo limited to 1280 px (official ``source_max_dim``);
2. detect faces (SCRFD), order them largest first, pick ``face_index`` (0);
3. 106 landmarks in the chosen box, then 203 landmarks from the 106;
4. crop 512x512 by the crop rule from the **106** landmarks, but from the
   full-resolution photo (landmarks scaled back up), and area-resize to 256;
5. eye and lip ratios from the 203 landmarks.

The crop controls (scale, shift, rotation, detection threshold) are one frozen
:class:`~lpstudio.face.crop_options.CropOptions`: the pipeline's own
(:attr:`FacePipeline.crop_options`, the official defaults unless set) or one
passed per call (``crop=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import FaceNotFoundError
from ._onnx import DETECTOR_FILE, LANDMARK106_FILE, LANDMARK203_FILE, model_path
from .crop import CROP_DSIZE, NET_INPUT_SIZE, crop_face, to_network_input, transform_points
from .crop_options import CropOptions
from .detect import Detections, FaceDetector
from .intake import ANALYSIS_MAX_SIDE, LoadedImage, as_rgb_uint8, limit_side
from .landmarks import Landmark106, Landmark203, eye_close_ratio, lip_close_ratio, rounded_ratios

_NO_FACE_HINT = (
    "Use a photo where one face is clearly visible: facing the camera, not covered, and at least about 64 pixels wide."
)


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """One analysed face of a photo.

    Coordinates are pixels; "crop" means the 512x512 crop, "photo" the
    full-resolution photo it was taken from.

    Attributes:
        image_512: (512, 512, 3) uint8 RGB crop.
        image_256: (256, 256, 3) uint8 RGB network input (area-resized crop).
        M_o2c: (3, 3) float32, photo -> crop.
        M_c2o: (3, 3) float32, crop -> photo.
        lmk203: (203, 2) float32 in crop coordinates.
        lmk106: (106, 2) float32 in crop coordinates.
        lmk203_photo, lmk106_photo: the same in photo coordinates.
        box: (5,) float32 ``x1, y1, x2, y2, score`` of the chosen face, photo coords.
        all_boxes: (N, 5) float32 every face found, largest first (same rows as ``box``).
        face_index: row of ``all_boxes`` that was chosen.
        eye_ratio: (1, 2) float eyes-open ratios (left, right).
        lip_ratio: (1, 1) float lip-open ratio.
        photo_size: (width, height) of the photo.
        keypoints: (5, 2) float32 eye centres, nose tip and mouth corners (image-left
            first) in photo coordinates, or None when the models give none.
    """

    image_512: NDArray[np.uint8]
    image_256: NDArray[np.uint8]
    M_o2c: NDArray[np.float32]
    M_c2o: NDArray[np.float32]
    lmk203: NDArray[np.float32]
    lmk106: NDArray[np.float32]
    lmk203_photo: NDArray[np.float32]
    lmk106_photo: NDArray[np.float32]
    box: NDArray[np.float32]
    all_boxes: NDArray[np.float32]
    face_index: int
    eye_ratio: NDArray[np.floating]
    lip_ratio: NDArray[np.floating]
    photo_size: tuple[int, int]
    keypoints: NDArray[np.float32] | None = None

    @property
    def lmk203_256(self) -> NDArray[np.float32]:
        """(203, 2) landmarks in network-input (256) coordinates."""
        return (self.lmk203 * np.float32(NET_INPUT_SIZE / CROP_DSIZE)).astype(np.float32)

    @property
    def eye_ratio_rounded(self) -> float:
        """Mean eye ratio rounded to 2 decimals (the official app's neutral eye slider)."""
        return rounded_ratios(self.eye_ratio, self.lip_ratio)[0]

    @property
    def lip_ratio_rounded(self) -> float:
        """Lip ratio rounded to 2 decimals (the official app's neutral lip slider)."""
        return rounded_ratios(self.eye_ratio, self.lip_ratio)[1]


class FacePipeline:
    """Face detection, landmarks and cropping with the official ONNX models.

    (:class:`lpstudio.face.models.MediaPipeFacePipeline` is the same pipeline on
    MediaPipe's models: it replaces :meth:`_landmarks`.)

    Args:
        weights_dir: folder in the official layout, holding
            ``insightface/models/buffalo_l/det_10g.onnx``,
            ``insightface/models/buffalo_l/2d106det.onnx`` and
            ``liveportrait/landmark.onnx``.
        providers: ONNX Runtime execution providers; default CUDA when
            available, else CPU.
        analysis_max_side: longest side of the copy detection and landmarks run on.
        crop_options: the crop controls (default: the official values).

    Raises:
        WeightsError: a model file is missing or cannot be loaded.
    """

    #: Which face models this pipeline runs (``lpstudio face --json`` reports it).
    face_models: str = "insightface"

    def __init__(
        self,
        weights_dir: Path,
        providers: list[str] | None = None,
        *,
        analysis_max_side: int = ANALYSIS_MAX_SIDE,
        crop_options: CropOptions | None = None,
    ) -> None:
        self.crop_options = crop_options or CropOptions()
        weights_dir = Path(weights_dir)
        paths = [model_path(weights_dir, f) for f in (DETECTOR_FILE, LANDMARK106_FILE, LANDMARK203_FILE)]
        self.detector = FaceDetector.from_file(paths[0], providers)
        self.landmark106 = Landmark106.from_file(paths[1], providers)
        self.landmark203 = Landmark203.from_file(paths[2], providers)
        self.analysis_max_side = analysis_max_side

    @classmethod
    def from_models(
        cls,
        detector: FaceDetector,
        landmark106: Landmark106,
        landmark203: Landmark203,
        *,
        analysis_max_side: int = ANALYSIS_MAX_SIDE,
        crop_options: CropOptions | None = None,
    ) -> FacePipeline:
        """A pipeline from already-built model wrappers (tests, custom sessions)."""
        self = cls.__new__(cls)
        self.crop_options = crop_options or CropOptions()
        self.detector, self.landmark106, self.landmark203 = detector, landmark106, landmark203
        self.analysis_max_side = analysis_max_side
        return self

    # ------------------------------------------------------------------ steps

    def _analysis_view(
        self, image_rgb: NDArray[np.uint8] | LoadedImage
    ) -> tuple[NDArray[np.uint8], NDArray[np.uint8], NDArray[np.float64] | None]:
        """(photo, analysis copy, analysis -> photo matrix or None when identical)."""
        photo = as_rgb_uint8(image_rgb.rgb if isinstance(image_rgb, LoadedImage) else image_rgb, name="photo")
        small, m_full2small = limit_side(photo, self.analysis_max_side)
        back = None if small is photo else np.linalg.inv(m_full2small)
        return photo, small, back

    def detect(self, image_rgb: NDArray[np.uint8] | LoadedImage, *, crop: CropOptions | None = None) -> Detections:
        """All faces in a photo, largest first, in photo pixels (may be empty).

        ``crop``: options for this call (its ``det_thresh``); default :attr:`crop_options`.
        """
        _, small, back = self._analysis_view(image_rgb)
        return _to_photo(self._detect(small, (crop or self.crop_options).det_thresh).largest_first(), back)

    def analyze(
        self,
        image_rgb: NDArray[np.uint8] | LoadedImage,
        face_index: int | None = None,
        *,
        crop: CropOptions | None = None,
    ) -> FaceCrop:
        """Find, landmark and crop one face.

        Args:
            image_rgb: (H, W, 3) uint8 RGB photo at full resolution (or a LoadedImage).
            face_index: which face, counting from the largest (0, the default).
            crop: crop controls for this call (default :attr:`crop_options`).

        Raises:
            FaceNotFoundError: no face, or no face at ``face_index``.
            ImageError: the array is not an image.
        """
        opts = crop or self.crop_options
        photo, small, back = self._analysis_view(image_rgb)
        dets = self._detect(small, opts.det_thresh).largest_first()
        h, w = photo.shape[:2]
        if len(dets) == 0:
            raise FaceNotFoundError(f"No face was found in the photo ({w}x{h} pixels).", hint=_NO_FACE_HINT)
        index = 0 if face_index is None else int(face_index)
        if not 0 <= index < len(dets):
            raise FaceNotFoundError(
                f"Face number {index} was asked for, but the photo has {len(dets)} "
                f"face{'s' if len(dets) != 1 else ''} (numbered 0 to {len(dets) - 1}, largest first).",
                hint=f"Choose a face_index from 0 to {len(dets) - 1}.",
            )
        lmk106_small, lmk203_small, kps_small = self._landmarks(small, dets, index)
        lmk106_photo = _map(lmk106_small, back)
        lmk203_photo = _map(lmk203_small, back)
        all_photo = _to_photo(dets, back)

        crop = crop_face(photo, lmk106_photo, scale=opts.scale, vx=opts.vx, vy=opts.vy, rotate=opts.rotate)
        lmk203_crop = transform_points(lmk203_photo, crop.M_o2c)
        all_boxes = all_photo.with_scores()
        return FaceCrop(
            image_512=crop.image,
            image_256=to_network_input(crop.image),
            M_o2c=crop.M_o2c,
            M_c2o=crop.M_c2o,
            lmk203=lmk203_crop,
            lmk106=crop.points,
            lmk203_photo=lmk203_photo,
            lmk106_photo=lmk106_photo,
            box=all_boxes[index].copy(),
            all_boxes=all_boxes,
            face_index=index,
            eye_ratio=eye_close_ratio(lmk203_crop),
            lip_ratio=lip_close_ratio(lmk203_crop),
            photo_size=(w, h),
            keypoints=None if kps_small is None else _map(kps_small, back),
        )

    def landmarks203(self, crop_rgb: NDArray[np.uint8] | LoadedImage) -> NDArray[np.float32]:
        """203 landmarks of the largest face of an already-cropped image.

        This is the ``--no-crop`` path: the image is used as the network input
        as is, and only needs landmarks for the eye/lip ratios.

        Returns:
            (203, 2) float32 in ``crop_rgb`` pixel coordinates.

        Raises:
            FaceNotFoundError: no face in the image.
        """
        img, small, back = self._analysis_view(crop_rgb)
        dets = self._detect(small, self.crop_options.det_thresh).largest_first()
        if len(dets) == 0:
            h, w = img.shape[:2]
            raise FaceNotFoundError(
                f"No face was found in the pre-cropped image ({w}x{h} pixels).",
                hint="Without cropping the image must already be a face crop; "
                + _NO_FACE_HINT[0].lower()
                + _NO_FACE_HINT[1:],
            )
        return _map(self._landmarks(small, dets, 0)[1], back)

    def _detect(self, image: NDArray[np.uint8], score_thresh: float | None = None) -> Detections:
        """Faces of the analysis copy (the MediaPipe pipeline searches photos more thoroughly).

        ``score_thresh``: minimum score (None: the detector's own).
        """
        if score_thresh is None:
            return self.detector.detect(image)
        return self.detector.detect(image, score_thresh=score_thresh)

    def _landmarks(
        self, image: NDArray[np.uint8], dets: Detections, index: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None]:
        """(106 points, 203 points, five key points or None) of face ``index`` of ``dets``, in ``image`` pixels."""
        lmk106 = self.landmark106(image, dets.boxes[index])
        lmk203 = self.landmark203(image, lmk106)
        kps = None if dets.keypoints is None else dets.keypoints[index]
        return lmk106, lmk203, kps


def _map(pts: NDArray[np.float32], m: NDArray[np.float64] | None) -> NDArray[np.float32]:
    return pts if m is None else transform_points(pts, m)


def _to_photo(dets: Detections, back: NDArray[np.float64] | None) -> Detections:
    """Detections from analysis-copy to photo pixel coordinates."""
    if back is None or len(dets) == 0:
        return dets
    corners = transform_points(dets.boxes.reshape(-1, 2), back).reshape(-1, 4)
    kps = None
    if dets.keypoints is not None:
        kps = transform_points(dets.keypoints.reshape(-1, 2), back).reshape(dets.keypoints.shape)
    return Detections(corners, dets.scores, kps)
