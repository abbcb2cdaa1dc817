"""A stand-in renderer for measuring and testing the *service* layer (not the model).

:class:`StandInEngine` has the engine interface the server uses (``prepare_source``,
``edited_keypoints``, ``render_mixed``, ``device``, ``dtype``, ``backend``,
``nonfinite_events``) and replaces only the model's cost: preparing a photo sleeps
``prepare_ms``; a batch of W+G sleeps ``frame_ms`` per frame and returns a
deterministic picture (the source face shifted by head yaw/pitch and gaze, brighter
with a smile); an injected NaN frame goes through the engine's own non-finite guard.
Routes, sessions, admission, the worker's batching, compositing and JPEG encoding
are the real code. The model's speed is ``lpstudio bench``'s job.

Used by ``lpstudio serve --engine-factory standin_server:make_engine`` (with this folder
on ``PYTHONPATH``), by ``benchmarks/load.py`` and by the service tests.
Knobs (environment, for the factory): ``LPSTUDIO_STANDIN_FRAME_MS`` (default 4),
``LPSTUDIO_STANDIN_PREPARE_MS`` (default 50), ``LPSTUDIO_STANDIN_FACE_DIR`` (stand-in
face models for full-photo mode).
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import torch

from lpstudio import keypoints as K
from lpstudio.engine import LivePortrait, SourceState
from lpstudio.face.crop import to_network_input
from lpstudio.face.intake import LoadedImage, as_rgb_uint8, load_image
from lpstudio.params import EditParams

OUTPUT_SIZE = 512
INPUT_SIZE = 256
FEATURE_SHAPE = (1, 32, 16, 64, 64)
"""Same size as the real appearance volume (~8.4 MB in float32), so memory figures are realistic."""
PX_PER_DEGREE = 4.0
PX_PER_GAZE = 2.0
SMILE_GAIN = 0.15
BASE_CACHE = 256


class StandInEngine:
    """The engine's interface with the model's work replaced by fixed sleeps and a deterministic picture.

    Fault hooks (for tests): a frame whose ``smile`` equals ``nan_smile`` renders NaN; a
    batch with a frame whose ``smile`` equals ``raise_smile`` raises; a batch larger than
    ``oom_over`` raises CUDA's out-of-memory error.
    """

    to_uint8 = staticmethod(LivePortrait.to_uint8)  # the engine's own conversion and non-finite guard

    def __init__(
        self,
        *,
        frame_ms: float = 4.0,
        prepare_ms: float = 50.0,
        face: Any = None,
        nan_smile: float | None = None,
        raise_smile: float | None = None,
        oom_over: int | None = None,
    ) -> None:
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self.backend = SimpleNamespace(name="standin", dtype=torch.float32)
        self.face = face
        self.frame_ms = frame_ms
        self.prepare_ms = prepare_ms
        self.nan_smile = nan_smile
        self.raise_smile = raise_smile
        self.oom_over = oom_over
        self.render_lock = threading.RLock()
        self.nonfinite_events = 0
        self.batches: list[int] = []  # batch sizes, in order
        self.prepared = 0
        self._bases: OrderedDict[int, torch.Tensor] = OrderedDict()

    # ------------------------------------------------------------------ source
    def prepare_source(
        self, image: Any, *, crop: bool = True, face_index: int | None = None, lmk203: Any = None
    ) -> SourceState:
        if isinstance(image, (str, os.PathLike, bytes)):
            rgb = load_image(image).rgb
        elif isinstance(image, LoadedImage):
            rgb = image.rgb
        else:
            rgb = as_rgb_uint8(image)
        face = photo = None
        if crop:
            if self.face is None:
                from lpstudio.errors import ImageError

                raise ImageError("face cropping needs the face models", hint="use --no-crop")
            face = self.face.analyze(rgb, face_index=face_index)
            image_256 = face.image_256
            photo = rgb
        else:
            image_256 = to_network_input(rgb, INPUT_SIZE)
        time.sleep(self.prepare_ms / 1000)
        self.prepared += 1
        zeros = torch.zeros(1, 21, 3)
        one = torch.ones(1, 1)
        return SourceState(
            image_256=image_256,
            feature_3d=torch.empty(FEATURE_SHAPE).fill_(0.5),  # touched: counts in RSS like the real one
            motion=None,
            kp=zeros,
            exp=zeros,
            scale=one,
            t=torch.zeros(1, 3),
            pitch=torch.zeros(1, 1),
            yaw=torch.zeros(1, 1),
            roll=torch.zeros(1, 1),
            rotation=torch.eye(3)[None],
            x_s=zeros,
            eye_ratio=np.full((1, 2), K.NOMINAL_EYE_RATIO, np.float32),
            lip_ratio=np.full((1, 1), K.NOMINAL_LIP_RATIO, np.float32),
            face=face,
            photo=photo,
            ratios_estimated=True,
        )

    # ------------------------------------------------------------------ rendering
    def edited_keypoints(self, state: SourceState, params: Sequence[EditParams], *, stitching: bool = True):
        """(N,21,3): row 0 = (smile, head_yaw, head_pitch), row 1 = (eyeball_x, 0, 0); the rest 0."""
        x_d = torch.zeros(len(params), 21, 3)
        for i, p in enumerate(params):
            x_d[i, 0] = torch.tensor([p.smile, p.head_yaw, p.head_pitch])
            x_d[i, 1, 0] = p.eyeball_x
        return x_d

    def _base(self, state: SourceState) -> np.ndarray:
        """The source face at 512 as (512,512,3) uint8, cached per source."""
        key = id(state.image_256)
        base = self._bases.get(key)
        if base is None:
            face = getattr(state.face, "image_512", None)
            base = face if face is not None else cv2.resize(state.image_256, (OUTPUT_SIZE, OUTPUT_SIZE))
            base = np.ascontiguousarray(base)
            self._bases[key] = base
            while len(self._bases) > BASE_CACHE:
                self._bases.popitem(last=False)
        return base

    def render_mixed(self, items: Sequence[tuple[SourceState, torch.Tensor]]) -> list[np.ndarray]:
        """Frames (512,512,3) uint8: the source face moved by yaw/pitch/gaze, brighter with a smile.

        A batch with an injected NaN frame goes through the engine's own float-to-uint8
        conversion and non-finite guard (:meth:`LivePortrait.to_uint8`), which counts and logs it.
        """
        if not items:
            return []
        self.batches.append(len(items))
        smiles = [float(x[0, 0]) for _, x in items]
        if self.oom_over is not None and len(items) > self.oom_over:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        if self.raise_smile is not None and any(abs(s - self.raise_smile) < 1e-6 for s in smiles):
            raise RuntimeError("injected fault in a batch (stand-in)")
        time.sleep(self.frame_ms * len(items) / 1000)
        out = []
        for (state, x), smile in zip(items, smiles):
            dx = round(PX_PER_DEGREE * float(x[0, 1]) + PX_PER_GAZE * float(x[1, 0]))
            dy = round(PX_PER_DEGREE * float(x[0, 2]))
            moved = np.roll(self._base(state), shift=(dy, dx), axis=(0, 1))
            out.append(cv2.convertScaleAbs(moved, alpha=1 + SMILE_GAIN * smile))
        if self.nan_smile is not None and any(abs(s - self.nan_smile) < 1e-6 for s in smiles):
            images = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
            for row, smile in enumerate(smiles):
                if abs(smile - self.nan_smile) < 1e-6:
                    images[row] = float("nan")
            with self.render_lock:
                return LivePortrait._checked_uint8(self, images)  # counts and logs like the engine
        return out


def make_engine(crop: bool = False, **overrides: Any) -> StandInEngine:
    """Factory for ``lpstudio serve --engine-factory standin_server:make_engine``."""
    face = None
    face_dir = os.environ.get("LPSTUDIO_STANDIN_FACE_DIR")
    if crop:
        from lpstudio.face import FacePipeline

        if not face_dir:
            from lpstudio.errors import WeightsError

            raise WeightsError("full-photo mode of the stand-in needs LPSTUDIO_STANDIN_FACE_DIR", hint="or --no-crop")
        face = FacePipeline(Path(face_dir), ["CPUExecutionProvider"])
    kwargs: dict[str, Any] = {
        "frame_ms": float(os.environ.get("LPSTUDIO_STANDIN_FRAME_MS", "4")),
        "prepare_ms": float(os.environ.get("LPSTUDIO_STANDIN_PREPARE_MS", "50")),
        "face": face,
    }
    kwargs.update(overrides)
    return StandInEngine(**kwargs)
