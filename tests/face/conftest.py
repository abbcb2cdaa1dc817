"""Fixtures of the face tests (the stand-in model builders live in standin_models.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from standin_models import (
    canonical_face_106,
    canonical_face_203,
    empty_det_outputs,
    put_face,
    write_detector,
    write_landmark106,
    write_landmark203,
)


@pytest.fixture()
def standin_weights(tmp_path: Path) -> Callable[..., Path]:
    """Factory: write the three stand-ins in the official layout, return the folder."""

    def make(
        det_outputs: list[np.ndarray] | None = None,
        lmk106: np.ndarray | None = None,
        lmk203: np.ndarray | None = None,
        probe: bool = False,
    ) -> Path:
        root = tmp_path / "weights"
        if det_outputs is None:
            det_outputs = empty_det_outputs()
            put_face(det_outputs, 2, 8, 8, 0, 0.9, (96.0, 80.0, 416.0, 440.0))
        write_detector(root / "insightface/models/buffalo_l/det_10g.onnx", det_outputs)
        write_landmark106(
            root / "insightface/models/buffalo_l/2d106det.onnx",
            canonical_face_106() if lmk106 is None else lmk106,
            probe=probe,
        )
        write_landmark203(
            root / "liveportrait/landmark.onnx", canonical_face_203() if lmk203 is None else lmk203, probe
        )
        return root

    return make
