"""Which face models the pipeline runs: InsightFace + LivePortrait, or MediaPipe.

=============  ======================================================  ====================
choice         models                                                  licence
=============  ======================================================  ====================
insightface    InsightFace ``det_10g`` (SCRFD) + ``2d106det``, and     InsightFace: non-
               LivePortrait's 203-point ``landmark.onnx`` (downloaded  commercial research
               with the official weights)                              only
mediapipe      MediaPipe BlazeFace short and full range + face mesh    Apache-2.0
               + iris
               (files of the ``mediapipe==0.10.21`` wheel)
auto           InsightFace when its files are in the weights folder,
               else MediaPipe when installed, else an error naming both
=============  ======================================================  ====================

Both give the same :class:`~lpstudio.face.pipeline.FaceCrop` (same crop rule,
same ratios, same errors for no face or a wrong face index), so everything
downstream (editing, paste-back, video driving, the web app) is the same.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ..errors import WeightsError
from ._onnx import DETECTOR_FILE, LANDMARK106_FILE, LANDMARK203_FILE
from .crop_options import CropOptions
from .detect import Detections
from .fullrange import FaceSearch, FullRangeDetector
from .intake import ANALYSIS_MAX_SIDE
from .mediapipe import INSTALL_HINT, MediaPipeModels, MeshLandmark106, MeshLandmark203, available, layouts
from .mediapipe_files import open_model
from .pipeline import FacePipeline

#: The values of ``--face-models``.
FACE_MODEL_CHOICES: tuple[str, ...] = ("auto", "insightface", "mediapipe")
INSIGHTFACE_FILES: tuple[str, ...] = (DETECTOR_FILE, LANDMARK106_FILE, LANDMARK203_FILE)


class MediaPipeFacePipeline(FacePipeline):
    """:class:`~lpstudio.face.pipeline.FacePipeline` on MediaPipe's models.

    ``detector`` is BlazeFace (key points: six, see :mod:`lpstudio.face.mediapipe`),
    ``landmark106`` runs the mesh in the detection's region and ``landmark203``
    refines it in a region from those landmarks (so code that calls the two
    steps itself, like the driving-video cropper, gets the refined mesh);
    :meth:`analyze` does both passes with the detection's eye key points for
    the roll, and adds iris centres as the eye key points. Photos are searched
    for every face (:class:`~lpstudio.face.fullrange.FaceSearch`: the short- and
    full-range detectors on the whole photo, the full-range one on tiles); ``detector.detect``, which
    the driving-video cropper calls per frame, searches tiles only when the whole
    frame shows no face, so a frame with a face in view costs one detector pass.

    Args:
        folder: folder holding the three ``.tflite`` files (default: the installed wheel).
        providers: ONNX Runtime providers (default CPU).
        analysis_max_side: longest side of the copy detection and landmarks run on.
        crop_options: the crop controls (default: the official values).
    """

    face_models = "mediapipe"

    def __init__(
        self,
        folder: Path | None = None,
        providers: list[str] | None = None,
        *,
        analysis_max_side: int = ANALYSIS_MAX_SIDE,
        crop_options: CropOptions | None = None,
    ) -> None:
        self.crop_options = crop_options or CropOptions()
        self.models = MediaPipeModels(folder, providers)
        full, _ = open_model(self.models.paths["detector_full"], providers or ["CPUExecutionProvider"])
        self.search = FaceSearch(self.models.detector, FullRangeDetector(full))
        self._last_search: tuple[tuple, Detections] | None = None
        self.detector = self.models.detector  # type: ignore[assignment]
        self.landmark106 = MeshLandmark106(self.models.mesh)  # type: ignore[assignment]
        self.landmark203 = MeshLandmark203(self.models.mesh)  # type: ignore[assignment]
        self.analysis_max_side = analysis_max_side

    def _detect(self, image: NDArray[np.uint8], score_thresh: float | None = None) -> Detections:
        """The photo search, remembered for the last photo: describing or cropping each face of a
        group photo in turn (``analyze(photo, face_index=i)``) searches it once, not once per face."""
        key = (image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest(), score_thresh)
        last = self._last_search
        if last is not None and last[0] == key:
            return last[1]
        found = self.search.detect(image, score_thresh=score_thresh)
        self._last_search = (key, found)  # one tuple, replaced whole: safe to read from another thread
        return found

    def _landmarks(
        self, image: NDArray[np.uint8], dets: Detections, index: int
    ) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None]:
        kps = None if dets.keypoints is None else dets.keypoints[index]
        return layouts(self.models.refine(image, dets.boxes[index], kps))


def insightface_present(weights_dir: Path | None) -> bool:
    """Whether the three InsightFace/LivePortrait face model files are in ``weights_dir``."""
    return weights_dir is not None and all((Path(weights_dir) / f).is_file() for f in INSIGHTFACE_FILES)


def resolve_face_models(choice: str, weights_dir: Path | None) -> str:
    """``"insightface"`` or ``"mediapipe"`` for a ``--face-models`` value.

    Raises:
        ValueError: not one of :data:`FACE_MODEL_CHOICES`.
        WeightsError: ``auto`` and neither set of models is there.
    """
    if choice not in FACE_MODEL_CHOICES:
        raise ValueError(f"face models must be one of {', '.join(FACE_MODEL_CHOICES)}, got {choice!r}")
    if choice != "auto":
        return choice
    if insightface_present(weights_dir):
        return "insightface"
    if available():
        return "mediapipe"
    where = f"in the weights folder '{weights_dir}'" if weights_dir is not None else "(no weights folder)"
    raise WeightsError(
        f"No face models found: the InsightFace face models are not {where} and MediaPipe's are not installed.",
        hint=f"Either run `lpstudio weights download` (InsightFace; non-commercial use only) or {INSTALL_HINT} "
        "(MediaPipe; Apache-2.0, commercial use allowed). Photos that are already face crops need none: --no-crop.",
    )


def open_face_pipeline(
    choice: str = "auto",
    weights_dir: Path | None = None,
    providers: list[str] | None = None,
    *,
    crop_options: CropOptions | None = None,
) -> FacePipeline:
    """The face pipeline for a ``--face-models`` choice.

    Args:
        choice: ``auto``, ``insightface`` or ``mediapipe``.
        weights_dir: the folder with the official files (InsightFace models inside).
        providers: ONNX Runtime providers.
        crop_options: the crop controls (default: the official values).

    Raises:
        WeightsError: the chosen models are missing or damaged.
    """
    kind = resolve_face_models(choice, weights_dir)
    if kind == "mediapipe":
        return MediaPipeFacePipeline(providers=providers, crop_options=crop_options)
    if weights_dir is None:
        raise WeightsError(
            "The InsightFace face models need a weights folder.",
            hint="Pass --weights-dir, or choose --face-models mediapipe.",
        )
    return FacePipeline(Path(weights_dir), providers, crop_options=crop_options)
