"""Shared fixtures: golden data, synthetic weights (generated once per session), engines."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from standin_models import (
    canonical_face_106,
    canonical_face_203,
    empty_det_outputs,
    put_face,
    write_detector,
    write_landmark106,
    write_landmark203,
)

DATA = Path(__file__).parent / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: use --runslow")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    """The official implementation's outputs ($LPSTUDIO_GOLDEN, else tests/data/golden.npz)."""
    path = Path(os.environ.get("LPSTUDIO_GOLDEN", DATA / "golden.npz"))
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def weights_seed(golden: dict[str, np.ndarray]) -> int:
    return int(golden["weights_seed"])


@pytest.fixture(scope="session")
def synthetic_weights_dir(tmp_path_factory: pytest.TempPathFactory, weights_seed: int) -> Path:
    """Synthetic weights in the official file layout, written once per test session."""
    from lpstudio.synthetic import write_synthetic_weights

    return write_synthetic_weights(tmp_path_factory.mktemp("weights"), seed=weights_seed)


@pytest.fixture(scope="session")
def engine(synthetic_weights_dir: Path):
    """A float32 CPU engine loaded from the synthetic files through the real loader."""
    from lpstudio.engine import load_model

    return load_model(synthetic_weights_dir, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def golden_state(engine, golden):
    """The golden source prepared once (pre-cropped, golden landmarks)."""
    return engine.prepare_source(golden["source_rgb256"], crop=False, lmk203=golden["lmk203"])


@pytest.fixture()
def standin_weights(tmp_path: Path) -> Callable[..., Path]:
    """Factory: stand-ins of the three official face models (known outputs), official layout; returns the folder."""

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
