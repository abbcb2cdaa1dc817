"""Face landmarks: insightface 106 points, LivePortrait 203 points, eye/lip ratios.

106 points (``insightface/models/buffalo_l/2d106det.onnx``), facts from the
official ``insightface/model_zoo/landmark.py``:

* the detection box's centre and ``1.5 x`` its longer side are mapped onto the
  model's 192x192 input by an axis-aligned similarity (black border);
* the input is RGB with the pixel values unchanged (mean 0, std 1: insightface
  picks these for this model because its graph normalises internally);
* the output (1, 212) holds x, y pairs in -1..1 over the input; pixel =
  ``(v + 1) * 96``; mapped back to the photo through the inverse similarity.

203 points (``liveportrait/landmark.onnx``), facts from the official
``src/utils/human_landmark_runner.py``:

* input: the face cropped by the crop rule with ``dsize=224, scale=1.5,
  vy=-0.1`` from the 106 points (with roll correction), RGB / 255, NCHW;
* the *third* output, (1, 406), holds x, y pairs in 0..1 of the 224 crop.

The eye and lip ratios computed from the 203 points live in
:mod:`lpstudio.keypoints` (re-exported here).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from ..keypoints import eye_close_ratio, lip_close_ratio, rounded_ratios
from ._onnx import open_session
from .crop import crop_face, transform_points

#: Number of points of each model.
N_LMK106: int = 106
N_LMK203: int = 203

#: The 106-point model sees the box centre with 1.5x its longer side.
LMK106_BOX_ENLARGE: float = 1.5
#: 2d106det input normalisation: (pixel - mean) / std.
LMK106_INPUT_MEAN: float = 0.0
LMK106_INPUT_STD: float = 1.0

#: The 203-point model's crop: side, scale and vertical shift.
LMK203_DSIZE: int = 224
LMK203_SCALE: float = 1.5
LMK203_VY: float = -0.1
#: Index of the 203-point output among the model's outputs.
LMK203_OUTPUT_INDEX: int = 2


def box_to_input_matrix(
    box: NDArray[np.floating], size: int, enlarge: float = LMK106_BOX_ENLARGE
) -> NDArray[np.float64]:
    """(2, 3) float64 matrix mapping photo pixels to the 106-model input.

    Args:
        box: (4,) ``x1, y1, x2, y2``.
        size: model input side.
    """
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    s = size / (max(x2 - x1, y2 - y1) * enlarge)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]])


class Landmark106:
    """insightface 106-point landmark model on an ONNX Runtime session."""

    def __init__(
        self,
        session: ort.InferenceSession,
        input_mean: float = LMK106_INPUT_MEAN,
        input_std: float = LMK106_INPUT_STD,
    ) -> None:
        self.session = session
        inp = session.get_inputs()[0]
        self.input_name: str = inp.name
        size = inp.shape[2]
        self.size: int = int(size) if isinstance(size, int) else 192
        self.output_name: str = session.get_outputs()[0].name
        self.mean = np.float32(input_mean)
        self.std = np.float32(input_std)

    @classmethod
    def from_file(cls, path: Path, providers: list[str] | None = None) -> Landmark106:
        return cls(open_session(path, providers))

    def __call__(self, image_rgb: NDArray[np.uint8], box: NDArray[np.floating]) -> NDArray[np.float32]:
        """106 landmarks of the face in ``box``.

        Args:
            image_rgb: (H, W, 3) uint8 photo.
            box: (4,) or (5,) detection ``x1, y1, x2, y2[, score]`` in photo pixels.

        Returns:
            (106, 2) float32 in photo pixels.
        """
        m = box_to_input_matrix(np.asarray(box), self.size)
        patch = cv2.warpAffine(image_rgb, m, (self.size, self.size), flags=cv2.INTER_LINEAR, borderValue=0)
        blob = ((patch.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)[None]
        pred = np.asarray(self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(blob)})[0])
        pts = pred[0].reshape(-1, 2)[-N_LMK106:].astype(np.float32)
        pts = (pts + 1.0) * (self.size // 2)
        back = cv2.invertAffineTransform(m)
        return transform_points(pts, back)


class Landmark203:
    """LivePortrait 203-point landmark model on an ONNX Runtime session."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_name: str = session.get_inputs()[0].name
        outs = session.get_outputs()
        if len(outs) <= LMK203_OUTPUT_INDEX:
            raise ValueError(f"203-point landmark model must have 3 outputs, this one has {len(outs)}")
        self.output_name: str = outs[LMK203_OUTPUT_INDEX].name

    @classmethod
    def from_file(cls, path: Path, providers: list[str] | None = None) -> Landmark203:
        return cls(open_session(path, providers))

    def __call__(self, image_rgb: NDArray[np.uint8], lmk106: NDArray[np.floating]) -> NDArray[np.float32]:
        """203 landmarks of the face described by its 106 points.

        Args:
            image_rgb: (H, W, 3) uint8 photo.
            lmk106: (106, 2) landmarks in photo pixels (203 points also work,
                e.g. to refine a previous result).

        Returns:
            (203, 2) float32 in photo pixels.
        """
        crop = crop_face(image_rgb, lmk106, dsize=LMK203_DSIZE, scale=LMK203_SCALE, vx=0.0, vy=LMK203_VY)
        blob = (crop.image.astype(np.float32) / np.float32(255.0)).transpose(2, 0, 1)[None]
        out = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(blob)})[0]
        pts = np.asarray(out, dtype=np.float32)[0].reshape(-1, 2) * np.float32(LMK203_DSIZE)
        return transform_points(pts, crop.M_c2o)


__all__ = ["Landmark106", "Landmark203", "eye_close_ratio", "lip_close_ratio", "rounded_ratios"]
