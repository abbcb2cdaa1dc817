"""Fixtures of the driving tests: stand-in face models, driving videos made with PyAV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from drive_helpers import write_video

from standin_models import (
    canonical_face_106,
    canonical_face_203,
    empty_det_outputs,
    put_face,
    write_detector,
    write_landmark106,
    write_landmark203,
)

CPU = ["CPUExecutionProvider"]


def _standin_dir(root: Path, with_face: bool) -> Path:
    outs = empty_det_outputs()
    if with_face:
        put_face(outs, 2, 8, 8, 0, 0.9, (96.0, 80.0, 416.0, 440.0))
    write_detector(root / "insightface/models/buffalo_l/det_10g.onnx", outs)
    write_landmark106(root / "insightface/models/buffalo_l/2d106det.onnx", canonical_face_106())
    write_landmark203(root / "liveportrait/landmark.onnx", canonical_face_203())
    return root


@pytest.fixture(scope="session")
def face_pipeline(tmp_path_factory: pytest.TempPathFactory):
    """Stand-in face models that always find one face."""
    from lpstudio.face import FacePipeline

    return FacePipeline(_standin_dir(tmp_path_factory.mktemp("face"), True), providers=CPU)


@pytest.fixture(scope="session")
def faceless_pipeline(tmp_path_factory: pytest.TempPathFactory):
    """Stand-in face models that never find a face."""
    from lpstudio.face import FacePipeline

    return FacePipeline(_standin_dir(tmp_path_factory.mktemp("noface"), False), providers=CPU)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 512x512 'portrait' (noise: the stand-in detector reports a face anyway)."""
    return np.random.default_rng(11).integers(0, 256, (512, 512, 3), dtype=np.uint8)


@pytest.fixture()
def make_video(tmp_path: Path) -> Callable[..., Path]:
    def make(frames: Sequence[np.ndarray], name: str = "driving.mp4", **kwargs) -> Path:
        return write_video(tmp_path / name, frames, **kwargs)

    return make
