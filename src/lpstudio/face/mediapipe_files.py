"""MediaPipe's face model files: found inside the installed ``mediapipe==0.10.21`` wheel, checked, opened.

The four ``.tflite`` files are read from the wheel's installed files through
``importlib.metadata`` (``mediapipe`` itself is never imported), checked against
pinned sha256 digests, converted to ONNX by our own converter
(:mod:`.tflite_onnx`) and run on ONNX Runtime.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import onnxruntime as ort

from ..errors import WeightsError
from .tflite import TFLiteError, TFLiteModel
from .tflite_onnx import tflite_to_onnx

#: The distribution and release whose wheel carries the model files.
MEDIAPIPE_DISTRIBUTION: str = "mediapipe"
MEDIAPIPE_VERSION: str = "0.10.21"
#: How to install it without any of its dependencies (lpstudio imports none of them).
INSTALL_HINT: str = (
    f'pip install --no-deps "mediapipe=={MEDIAPIPE_VERSION}" (or pip install "liveportrait-studio[mediapipe]")'
)


@dataclass(frozen=True)
class ModelFile:
    """One model file inside the wheel: its path there and sha256."""

    path: str
    sha256: str


#: The model files used, with the sha256 of the files in the 0.10.21 wheels.
MODEL_FILES: dict[str, ModelFile] = {
    "detector": ModelFile(
        "mediapipe/modules/face_detection/face_detection_short_range.tflite",
        "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8",
    ),
    # the full-range detector (faces up to about 5 m; MediaPipe's face_detection_full_range.pbtxt)
    "detector_full": ModelFile(
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
    ),
    "mesh": ModelFile(
        "mediapipe/modules/face_landmark/face_landmark.tflite",
        "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814",
    ),
    "iris": ModelFile(
        "mediapipe/modules/iris_landmark/iris_landmark.tflite",
        "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f",
    ),
}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def installed_version() -> str | None:
    """The installed ``mediapipe`` distribution's version, or None (never imports it)."""
    try:
        return metadata.version(MEDIAPIPE_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _unavailable(why: str) -> WeightsError:
    return WeightsError(
        f"The MediaPipe face models are not available: {why}.",
        hint=f"Install them with: {INSTALL_HINT}. lpstudio reads only the model files from that wheel.",
    )


def locate_models(folder: Path | None = None, *, verify: bool = True) -> dict[str, Path]:
    """Paths of the model files of :data:`MODEL_FILES`.

    Args:
        folder: a folder holding ``face_detection_short_range.tflite``,
            ``face_detection_full_range_sparse.tflite``, ``face_landmark.tflite``
            and ``iris_landmark.tflite`` (e.g. extracted
            from the wheel); when None, the installed ``mediapipe`` distribution.
        verify: check each file's sha256 against :data:`MODEL_FILES`.

    Raises:
        WeightsError: not installed, another version, a file missing or altered.
    """
    paths: dict[str, Path] = {}
    if folder is not None:
        for key, f in MODEL_FILES.items():
            paths[key] = Path(folder) / Path(f.path).name
    else:
        version = installed_version()
        if version is None:
            raise _unavailable(f"the '{MEDIAPIPE_DISTRIBUTION}' package is not installed")
        if version != MEDIAPIPE_VERSION:
            raise _unavailable(
                f"'{MEDIAPIPE_DISTRIBUTION}' {version} is installed, but only {MEDIAPIPE_VERSION} ships these "
                "model files (later releases ship none)"
            )
        dist = metadata.distribution(MEDIAPIPE_DISTRIBUTION)
        for key, f in MODEL_FILES.items():
            paths[key] = Path(str(dist.locate_file(f.path)))
    for key, path in paths.items():
        if not path.is_file():
            raise _unavailable(f"model file '{path}' is missing")
        if verify:
            digest = _sha256(path)
            if digest != MODEL_FILES[key].sha256:
                raise _unavailable(f"model file '{path}' has sha256 {digest}, expected {MODEL_FILES[key].sha256}")
    return paths


def available(folder: Path | None = None) -> bool:
    """Whether :func:`locate_models` would succeed (files present; digests not checked)."""
    try:
        locate_models(folder, verify=False)
    except WeightsError:
        return False
    return True


def open_model(path: Path, providers: list[str] | None = None) -> tuple[ort.InferenceSession, TFLiteModel]:
    """Read a ``.tflite`` file, convert it to ONNX and open an ONNX Runtime session (CPU)."""
    try:
        model = TFLiteModel(path.read_bytes(), path.name)
        blob = tflite_to_onnx(model)
    except (OSError, TFLiteError) as exc:
        raise WeightsError(
            f"MediaPipe model file '{path}' cannot be used: {exc}.",
            hint=f"Reinstall the package: {INSTALL_HINT} --force-reinstall",
        ) from exc
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(blob, sess_options=opts, providers=providers or ["CPUExecutionProvider"])
    return session, model


# ---------------------------------------------------------------- regions of interest
