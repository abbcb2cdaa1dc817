"""Opening the face models with ONNX Runtime: model paths, providers, sessions."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from ..errors import WeightsError

#: Model files inside the weights folder, in the official download layout.
DETECTOR_FILE: str = "insightface/models/buffalo_l/det_10g.onnx"
LANDMARK106_FILE: str = "insightface/models/buffalo_l/2d106det.onnx"
LANDMARK203_FILE: str = "liveportrait/landmark.onnx"

_DOWNLOAD_HINT = "Run `lpstudio weights download` (or point --weights at the folder that holds the official weights)."


def default_providers() -> list[str]:
    """CUDA when this ONNX Runtime build has it, always with CPU as fallback."""
    available = ort.get_available_providers()
    chosen = [p for p in ("CUDAExecutionProvider",) if p in available]
    return [*chosen, "CPUExecutionProvider"]


def model_path(weights_dir: Path, relative: str) -> Path:
    """The path of one model file, or :class:`WeightsError` if it is missing."""
    path = Path(weights_dir) / relative
    if not path.is_file():
        raise WeightsError(
            f"Face model file '{path}' is missing (expected '{relative}' inside weights folder '{weights_dir}').",
            hint=_DOWNLOAD_HINT,
        )
    return path


def open_session(path: Path, providers: list[str] | None = None) -> ort.InferenceSession:
    """An inference session for a model file; damaged files raise :class:`WeightsError`."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # errors only, for this session
    wanted = providers if providers is not None else default_providers()
    available = set(ort.get_available_providers())
    usable = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=usable)
    except Exception as exc:  # ORT raises its own exception types for bad files
        raise WeightsError(
            f"Face model file '{path}' cannot be loaded by ONNX Runtime ({type(exc).__name__}: {exc}).",
            hint="The file is probably damaged or incomplete; " + _DOWNLOAD_HINT[0].lower() + _DOWNLOAD_HINT[1:],
        ) from exc
