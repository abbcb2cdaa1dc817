"""Fixtures of the driving tests: stand-in face models, driving videos made with PyAV."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from drive_helpers import write_video

from standin_models import empty_det_outputs, write_face_models

CPU = ["CPUExecutionProvider"]


def _standin_dir(root: Path, with_face: bool) -> Path:
    return write_face_models(root, det_outputs=None if with_face else empty_det_outputs())


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
