"""Motion templates: the driving motion of a video, saved to drive other portraits later.

Our format is a NumPy ``.npz`` of plain float arrays plus one JSON string; it
is read with ``allow_pickle=False``, so a template can never run code. Official
``.pkl`` templates (``inference.py`` writes one next to every driving video) are
read through :class:`RestrictedUnpickler`, which lets through only what a
pickled plain ndarray needs and refuses every other global.
"""

from __future__ import annotations

import io
import json
import os
import pickle
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import keypoints as K
from ..atomic import atomic_output
from ..errors import VideoError
from .driving_motion import DrivingMotion

TEMPLATE_SUFFIXES: tuple[str, ...] = (".npz", ".pkl")
FORMAT_NAME = "lpstudio-motion"
FORMAT_VERSION = 1
META_KEY = "meta"
FACE_FOUND_KEY = "face_found"
DEFAULT_TEMPLATE_FPS = Fraction(25)
"""Frame rate of an official template that does not say (official ``output_fps``)."""

FIELD_SHAPES: dict[str, tuple[int, ...]] = {
    "rotation": (3, 3),
    "exp": (K.NUM_KP, 3),
    "scale": (1,),
    "t": (3,),
    "kp": (K.NUM_KP, 3),
    "eye_ratio": (2,),
    "lip_ratio": (1,),
}
"""Per-frame shape of each template array (the first axis is the frame)."""
REQUIRED_FIELDS: tuple[str, ...] = ("rotation", "exp", "scale", "t", "kp")

_SAFE_BUILTINS = frozenset({"set", "frozenset", "complex", "bytearray", "slice", "range"})
_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")


class MotionTemplateError(VideoError):
    """A motion template cannot be read, is malformed, or is unsafe to load."""


def is_template_path(path: str | os.PathLike[str]) -> bool:
    """Whether a path names a motion template by its extension."""
    return Path(path).suffix.lower() in TEMPLATE_SUFFIXES


@dataclass(frozen=True, eq=False)
class MotionTrack:
    """Driving motion of a whole clip, as numpy arrays (float32).

    Attributes:
        arrays: field name -> (N, *FIELD_SHAPES[name]) array; ratios optional.
        fps: frame rate of the clip the motion came from.
        face_found: (N,) bool, False where the frame had no face (its motion repeats the previous one).
        source: name of the driving file, for messages.
    """

    arrays: dict[str, np.ndarray]
    fps: Fraction
    face_found: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.arrays["rotation"].shape[0])

    def motion(self, start: int, stop: int, device: torch.device | str = "cpu") -> DrivingMotion:
        """Frames ``start:stop`` as a :class:`DrivingMotion` on ``device``."""
        return DrivingMotion.from_numpy({k: v[start:stop] for k, v in self.arrays.items()}, device)

    @staticmethod
    def from_motions(
        parts: list[DrivingMotion], face_found: list[bool], fps: Fraction, source: str = ""
    ) -> MotionTrack:
        """Collect streamed chunks into one track."""
        arrays = DrivingMotion.cat(parts).to_numpy() if len(parts) > 1 else parts[0].to_numpy()
        return MotionTrack(
            {k: v.astype(np.float32) for k, v in arrays.items()}, fps, np.asarray(face_found, bool), source
        )


# ---------------------------------------------------------------------- our format
def save_motion(path: str | os.PathLike[str], track: MotionTrack) -> Path:
    """Write a track as ``.npz`` (plain arrays + JSON metadata, no pickle).

    The template replaces ``path`` only once complete; a failure leaves an earlier template there as it was.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise MotionTemplateError(f"cannot write {path}: motion templates are saved as .npz", hint="name it *.npz")
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "n_frames": len(track),
        "fps": f"{track.fps.numerator}/{track.fps.denominator}",
        "source": track.source,
        "faceless_frames": int((~track.face_found).sum()),
    }
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in track.arrays.items()}
    with atomic_output(path, error=MotionTemplateError) as partial, open(partial, "wb") as fh:
        np.savez_compressed(fh, **arrays, **{FACE_FOUND_KEY: track.face_found, META_KEY: np.array(json.dumps(meta))})
    return path


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    missing = [k for k in REQUIRED_FIELDS if k not in arrays]
    if missing:
        raise MotionTemplateError(f"cannot use {path}: the template lacks {', '.join(missing)}")
    n = arrays["rotation"].shape[0] if arrays["rotation"].ndim else 0
    if n == 0:
        raise MotionTemplateError(f"cannot use {path}: the template has no frames")
    out = {}
    for name, value in arrays.items():
        if name not in FIELD_SHAPES:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise MotionTemplateError(f"cannot use {path}: {name} is not numeric (dtype {arr.dtype})")
        want = (n, *FIELD_SHAPES[name])
        if arr.size != int(np.prod(want)):
            raise MotionTemplateError(f"cannot use {path}: {name} has shape {arr.shape}, expected {want}")
        arr = arr.reshape(want).astype(np.float32)
        if not np.isfinite(arr).all():
            raise MotionTemplateError(f"cannot use {path}: {name} holds NaN or infinite values")
        out[name] = arr
    return out


def _load_npz(path: Path) -> MotionTrack:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except ValueError as exc:  # an object array (would need pickle)
        raise MotionTemplateError(
            f"cannot use {path}: it holds pickled objects, which are never loaded", hint="re-save it with --save-motion"
        ) from exc
    except (OSError, EOFError, KeyError) as exc:
        raise MotionTemplateError(f"cannot read {path}: not a valid .npz file ({exc})") from exc
    try:
        meta = json.loads(str(arrays.pop(META_KEY)))
    except (KeyError, json.JSONDecodeError) as exc:
        raise MotionTemplateError(
            f"cannot use {path}: no lpstudio motion metadata", hint="make templates with `lpstudio drive --save-motion`"
        ) from exc
    if meta.get("format") != FORMAT_NAME or int(meta.get("version", 0)) > FORMAT_VERSION:
        raise MotionTemplateError(
            f"cannot use {path}: format {meta.get('format')!r} version {meta.get('version')} is not supported",
            hint="update lpstudio, or re-create the template",
        )
    face_found = arrays.pop(FACE_FOUND_KEY, None)
    checked = _check_arrays(path, arrays)
    n = checked["rotation"].shape[0]
    face_found = np.ones(n, bool) if face_found is None else np.asarray(face_found, bool).reshape(n)
    try:
        fps = Fraction(meta.get("fps", "25"))
    except (ValueError, ZeroDivisionError):
        fps = DEFAULT_TEMPLATE_FPS
    return MotionTrack(checked, fps if fps > 0 else DEFAULT_TEMPLATE_FPS, face_found, str(meta.get("source", "")))


# ---------------------------------------------------------------------- official .pkl
class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for plain data: dicts, lists, numbers, strings and numpy arrays.

    ``find_class`` resolves only the globals a pickled ndarray needs
    (``numpy.core.multiarray._reconstruct`` and ``scalar``, ``numpy.ndarray``,
    ``numpy.dtype``, and ``numpy.core.numeric._frombuffer`` for protocol 5),
    latin-1 bytes of old protocols and a few harmless builtin containers; any
    other global (``os.system``, ``builtins.eval``, a class...) is refused, so loading can
    never run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in _NUMPY_MODULES and name in ("_reconstruct", "scalar"):
            return getattr(_numpy_multiarray(), name)
        if module in ("numpy.core.numeric", "numpy._core.numeric") and name == "_frombuffer":  # protocol 5
            return _numpy_numeric()._frombuffer
        if module == "numpy" and name in ("ndarray", "dtype"):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":  # how protocols 0-2 store bytes
            return _latin1_bytes
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain arrays and containers are allowed")


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """The only use of ``_codecs.encode`` a plain pickle makes: bytes stored as latin-1 text."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_numeric() -> Any:
    try:
        from numpy._core import numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import numeric  # type: ignore[no-redef]
    return numeric


def _numpy_multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return multiarray


def restricted_load(data: bytes, name: str = "<bytes>") -> Any:
    """Unpickle plain data with :class:`RestrictedUnpickler`; refuse object arrays too."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise MotionTemplateError(
            f"refused to load {name}: it is not a plain-data template ({exc})",
            hint="only load templates from people you trust; re-create it from the driving video",
        ) from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, ImportError) as exc:
        raise MotionTemplateError(f"cannot read {name}: not a valid template pickle ({exc})") from exc
    _check_plain(obj, name)
    return obj


def _check_plain(obj: Any, name: str, depth: int = 0) -> None:
    if depth > 8:
        raise MotionTemplateError(f"cannot use {name}: the template is nested too deeply")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, name, depth + 1)
            _check_plain(v, name, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_plain(v, name, depth + 1)
    elif isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise MotionTemplateError(f"refused to load {name}: it holds an object array")
    elif not isinstance(obj, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        raise MotionTemplateError(f"refused to load {name}: unexpected {type(obj).__name__} in the template")


def _stack(path: Path, items: list[Any], key: str) -> np.ndarray:
    try:
        return np.stack([np.asarray(it, dtype=np.float32).reshape(-1) for it in items])
    except (ValueError, TypeError) as exc:
        raise MotionTemplateError(f"cannot use {path}: {key} entries are not numeric arrays ({exc})") from exc


def _load_pkl(path: Path) -> MotionTrack:
    obj = restricted_load(path.read_bytes(), str(path))
    if not isinstance(obj, dict) or not isinstance(obj.get("motion"), list) or not obj["motion"]:
        raise MotionTemplateError(f"cannot use {path}: not an official LivePortrait motion template (no 'motion' list)")
    frames = obj["motion"]
    if not all(isinstance(f, dict) for f in frames):
        raise MotionTemplateError(f"cannot use {path}: 'motion' entries are not dicts")
    key_r = "R" if "R" in frames[0] else "R_d"  # older official templates
    names = {"rotation": key_r, "exp": "exp", "scale": "scale", "t": "t", "kp": "kp"}
    arrays = {}
    for ours, theirs in names.items():
        if any(theirs not in f for f in frames):
            raise MotionTemplateError(f"cannot use {path}: a motion entry lacks {theirs!r}")
        arrays[ours] = _stack(path, [f[theirs] for f in frames], theirs)
    for ours, keys in (("eye_ratio", ("c_eyes_lst", "c_d_eyes_lst")), ("lip_ratio", ("c_lip_lst", "c_d_lip_lst"))):
        values = next((obj[k] for k in keys if k in obj), None)
        if isinstance(values, list) and len(values) == len(frames):
            arrays[ours] = _stack(path, values, keys[0])
    checked = _check_arrays(path, arrays)
    fps_value = obj.get("output_fps", None)
    try:
        fps = Fraction(fps_value).limit_denominator(1001) if fps_value else DEFAULT_TEMPLATE_FPS
    except (TypeError, ValueError):
        fps = DEFAULT_TEMPLATE_FPS
    return MotionTrack(checked, fps if fps > 0 else DEFAULT_TEMPLATE_FPS, np.ones(len(frames), bool), path.name)


def load_motion(path: str | os.PathLike[str]) -> MotionTrack:
    """Read a motion template (``.npz`` of ours, or an official ``.pkl`` through the restricted loader)."""
    path = Path(path)
    if not path.is_file():
        raise MotionTemplateError(f"cannot read {path}: no such file", hint="check the path")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path)
    if suffix == ".pkl":
        return _load_pkl(path)
    raise MotionTemplateError(f"cannot read {path}: templates are .npz (or official .pkl) files")
