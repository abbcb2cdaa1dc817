"""Shared fixtures: golden data, synthetic weights (generated once per session), engines."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from standin_models import write_face_models

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


@pytest.fixture(scope="session", autouse=True)
def reference_backend_and_private_cache(tmp_path_factory: pytest.TempPathFactory):
    """CLI runs in tests default to the eager reference (no first-use calibration; tests of
    ``--backend auto`` ask for it) and the calibration cache is a temporary folder, never ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LPSTUDIO_BACKEND", "eager")
        mp.setenv("LPSTUDIO_CACHE_DIR", str(tmp_path_factory.mktemp("lpstudio_cache")))
        yield


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
def onnx_export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export cache per test session (exports are keyed by the weights' fingerprint)."""
    return tmp_path_factory.mktemp("onnx")


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

    def make(**kwargs) -> Path:
        return write_face_models(tmp_path / "weights", **kwargs)

    return make
