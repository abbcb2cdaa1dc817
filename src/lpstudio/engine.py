"""The LivePortrait engine: prepare a source once, render many parameter sets.

In the style of segment-anything's ``set_image``/``predict``: the expensive,
per-photo work (appearance volume F, motion extraction M, landmarks and
ratios) happens once in :meth:`LivePortrait.prepare_source`, which returns an
explicit :class:`SourceState`; :meth:`LivePortrait.render` then turns any
number of :class:`~lpstudio.params.EditParams` into frames, in batches, through
the warping module W and the decoder G. One loaded engine serves many sources.
"""

from __future__ import annotations

import copy
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import keypoints as K
from .backends import Backend, build_backend
from .checkpoint import MODULE_FILES, read_checkpoint
from .device import resolve_device, resolve_dtype
from .editing import edit_expression
from .errors import ImageError, NonFiniteOutputError
from .face.crop import to_network_input
from .face.intake import LoadedImage, as_rgb_uint8, load_image
from .nets import DEFAULT_CONFIG, ModelConfig, MotionOutput, Networks, WarpOutput
from .params import SPECS_BY_NAME, EditParams
from .weights import resolve_weights_dir, warn_if_synthetic

log = logging.getLogger(__name__)

AUTO_BACKEND = "auto"
CALIBRATION_FRAMES = 2
"""Frames per calibration batch: two sources mixed, as the server batches them (a planned size)."""


@dataclass(frozen=True, eq=False)
class SourceState:
    """Everything the renderer needs about one source portrait, computed once.

    Tensors live on the engine's device; ``feature_3d`` in the engine's dtype,
    keypoint quantities in float32.
    """

    image_256: np.ndarray  # (256,256,3) uint8, the network input
    feature_3d: torch.Tensor  # (1,32,16,64,64) appearance volume f_s
    motion: MotionOutput  # raw heads of M, (1,...) each
    kp: torch.Tensor  # (1,21,3) canonical keypoints
    exp: torch.Tensor  # (1,21,3) expression deformation
    scale: torch.Tensor  # (1,1)
    t: torch.Tensor  # (1,3)
    pitch: torch.Tensor  # (1,1) degrees
    yaw: torch.Tensor  # (1,1)
    roll: torch.Tensor  # (1,1)
    rotation: torch.Tensor  # (1,3,3) R_s, row-vector convention
    x_s: torch.Tensor  # (1,21,3) transformed source keypoints
    eye_ratio: np.ndarray  # (1,2) left/right eyes-open ratios (203 landmarks, else nominal)
    lip_ratio: np.ndarray  # (1,1) lip-open ratio
    face: Any = None  # the face crop (for paste-back), when the source came from a full photo
    photo: np.ndarray | None = None  # the full photo (H,W,3) uint8, when cropped from one
    paster: Any = None  # precomputed paste-back mask for ``photo`` (lpstudio.face.PasteBack)
    ratios_estimated: bool = False  # True when no landmarks existed: nominal ratios are used

    @property
    def eye_ratio_rounded(self) -> float:
        """Mean eyes-open ratio rounded to 2 decimals: an ``eye_ratio`` equal to it is no edit."""
        return K.rounded_ratios(self.eye_ratio, self.lip_ratio)[0]

    @property
    def lip_ratio_rounded(self) -> float:
        """Lip-open ratio rounded to 2 decimals: a ``lip_ratio`` equal to it is no edit."""
        return K.rounded_ratios(self.eye_ratio, self.lip_ratio)[1]

    def neutral_params(self) -> EditParams:
        """The parameter set that reproduces the source: every value neutral.

        The ratios are the source's own rounded ratios (which the engine treats as
        "no retargeting"), or ``None`` (same meaning) when outside the slider range.
        """
        return EditParams(
            eye_ratio=_in_ratio_range(self.eye_ratio_rounded), lip_ratio=_in_ratio_range(self.lip_ratio_rounded)
        )


def _in_ratio_range(value: float) -> float | None:
    spec = SPECS_BY_NAME["eye_ratio"]  # eye_ratio and lip_ratio share one range
    return value if spec.minimum <= value <= spec.maximum else None


class LivePortrait:
    """A loaded LivePortrait model on one device, serving any number of sources.

    ``backend`` picks the implementation of the per-frame work (warping W + decoder G,
    see :mod:`lpstudio.backends`): ``"eager"`` (default, the golden-parity path),
    ``"fused"``, ``"compile"``, ``"cudagraph"``, ``"onnxruntime"``, ``"tensorrt"``,
    ``"auto"`` (the fastest one that holds 40 dB on this machine, calibrated on first use
    and cached: :mod:`lpstudio.backends.auto`; :attr:`backend_choice` says what and why),
    or a ready :class:`~lpstudio.backends.Backend`. ``backend_dtype`` is its compute
    dtype (default: ``dtype``; with ``auto`` it limits the candidates to that dtype);
    ``backend_options`` go to its constructor (with ``auto``: to
    :func:`~lpstudio.backends.auto.choose_backend`, e.g. ``budget_s``, ``progress``).
    The engine converts (device, dtype, eval mode) a copy of ``networks``, so the
    caller's modules are never changed; ``take_ownership=True`` converts them in place
    instead (no second copy in memory: :func:`load_model` does this for the networks it built).
    Rendering is serialised by :attr:`render_lock`, so one engine can serve threads.
    """

    def __init__(
        self,
        networks: Networks,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        *,
        face: Any = None,
        cfg: ModelConfig = DEFAULT_CONFIG,
        backend: str | Backend = "eager",
        backend_dtype: str | torch.dtype | None = None,
        backend_options: Mapping[str, Any] | None = None,
        take_ownership: bool = False,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if not take_ownership:  # never change what the caller gave us: convert a copy
            networks = copy.deepcopy(networks)
        networks.eval().requires_grad_(False)
        networks.to(self.device)
        # The motion extractor stays in float32: the real weights overflow in fp16 there.
        for module in (networks.appearance, networks.warping, networks.decoder):
            module.to(self.dtype)
        self.networks = networks
        self.face = face
        self.render_lock = threading.RLock()
        self.nonfinite_events = 0  # frames whose network output held NaN/Inf (see to_uint8)
        self.backend_choice: Any = None  # the calibration result when built with backend="auto"
        self.backend: Backend
        if isinstance(backend, str) and backend == AUTO_BACKEND:
            bdtype_auto = None if backend_dtype is None else resolve_dtype(backend_dtype)
            self.backend = self._auto_backend(bdtype_auto, dict(backend_options or {}))
        else:
            bdtype = self.dtype if backend_dtype is None else resolve_dtype(backend_dtype)
            self.backend = build_backend(backend, networks, self.device, bdtype, **dict(backend_options or {}))

    def _auto_backend(self, dtype: torch.dtype | None, options: dict[str, Any]) -> Backend:
        """``backend="auto"``: the calibrated choice for this machine (see :mod:`lpstudio.backends.auto`)."""
        from .backends.auto import choose_backend
        from .export import weights_fingerprint

        choice = choose_backend(
            self.networks,
            self.device,
            lambda: self.example_inputs(CALIBRATION_FRAMES),
            weights=weights_fingerprint(self.networks),
            engine_dtype=self.dtype,
            dtype=dtype,
            **options,
        )
        self.backend_choice = choice
        log.info("%s", choice.summary())
        if choice.backend_instance is not None:
            return choice.backend_instance
        return build_backend(choice.backend, self.networks, self.device, choice.torch_dtype)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_checkpoints(
        cls,
        checkpoints: Mapping[str, Mapping[str, Any]],
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> LivePortrait:
        """Build from official state dicts held in memory (keyed like ``MODULE_FILES``)."""
        networks = Networks(kwargs.get("cfg", DEFAULT_CONFIG))
        networks.load_official(checkpoints)
        return cls(networks, device, dtype, take_ownership=True, **kwargs)

    # ------------------------------------------------------------------ stages
    def _to_input(self, image_256: np.ndarray) -> torch.Tensor:
        """(256,256,3) uint8 -> (1,3,256,256) float32 in 0..1 on the device."""
        x = torch.from_numpy(np.array(image_256, dtype=np.uint8, copy=True)).to(self.device)  # may be read-only
        return (x.permute(2, 0, 1)[None].float() / 255.0).clamp_(0, 1)

    @torch.inference_mode()
    def appearance(self, x: torch.Tensor) -> torch.Tensor:
        """F: (B,3,256,256) in 0..1 -> (B,32,16,64,64) in the engine dtype."""
        return self.networks.appearance(x.to(self.dtype))

    @torch.inference_mode()
    def motion(self, x: torch.Tensor) -> MotionOutput:
        """M (always float32): (B,3,256,256) -> raw heads."""
        return self.networks.motion(x.float())

    @torch.inference_mode()
    def warp(self, feature_3d: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> WarpOutput:
        """W: f_s (B,32,16,64,64), x_s and x_d (B,21,3) -> warped features (B,256,64,64) etc."""
        return self.networks.warping(feature_3d.to(self.dtype), x_s.float(), x_d.float())

    @torch.inference_mode()
    def decode(self, warped: torch.Tensor) -> torch.Tensor:
        """G: (B,256,64,64) -> (B,3,512,512) in 0..1 (float32)."""
        return self.networks.decoder(warped.to(self.dtype)).float()

    @torch.inference_mode()
    def stitch(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """Stitching: x_d (B,21,3) moved so the face blends into the source (x_s broadcast)."""
        x_s = x_s.expand_as(x_d)
        delta = self.networks.stitching.stitching(K.stitching_input(x_s, x_d))
        return K.apply_stitching(x_d, delta)

    # ------------------------------------------------------------------ source
    @torch.inference_mode()
    def prepare_source(
        self,
        image: Any,
        *,
        crop: bool = True,
        lmk203: np.ndarray | None = None,
        face_index: int | None = None,
        crop_options: Any = None,
    ) -> SourceState:
        """Run the once-per-photo work and return the :class:`SourceState`.

        ``crop_options``: crop controls for this photo (a ``CropOptions``; default the face pipeline's own).

        ``image``: a path, encoded bytes, or an RGB/gray/RGBA array or PIL image. With ``crop=True`` the
        face pipeline finds and crops the face (and the state can paste frames
        back into the photo); with ``crop=False`` the image is taken as an
        already-cropped face and resized to 256. ``lmk203`` (203,2) overrides the
        landmarks used for the eye/lip ratios.
        """
        if isinstance(image, (str, os.PathLike, bytes)):
            rgb = load_image(image).rgb
        elif isinstance(image, LoadedImage):
            rgb = image.rgb
        else:
            rgb = as_rgb_uint8(image)
        face = photo = paster = None
        if crop:
            if self.face is None:
                raise ImageError(
                    "face cropping needs the face models, which this engine was built without",
                    hint="pass crop=False (--no-crop) for an already-cropped face",
                )
            from .face import PasteBack

            face = self.face.analyze(rgb, face_index=face_index, crop=crop_options)
            photo = rgb
            paster = PasteBack.for_face(face, rgb.shape[:2])
            image_256 = face.image_256
            if lmk203 is None:
                lmk203 = face.lmk203
        else:
            image_256 = to_network_input(rgb, self.cfg.input_size)
            if lmk203 is None and self.face is not None:
                lmk203 = self.face.landmarks203(rgb)

        return self._state_from_256(image_256, lmk203, face=face, photo=photo, paster=paster)

    @torch.inference_mode()
    def _state_from_256(
        self,
        image_256: np.ndarray,
        lmk203: np.ndarray | None,
        *,
        face: Any = None,
        photo: Any = None,
        paster: Any = None,
    ) -> SourceState:
        """F and M on a (256,256,3) uint8 network input, and the source keypoints and ratios."""
        x = self._to_input(image_256)
        feature = self.appearance(x)
        raw = self.motion(x)
        n = self.cfg.motion.num_kp
        pitch, yaw, roll = (K.bins_to_degrees(v) for v in (raw.pitch, raw.yaw, raw.roll))
        rot = K.rotation_matrix(pitch, yaw, roll)
        kp = raw.kp.reshape(1, n, 3)
        exp = raw.exp.reshape(1, n, 3)
        x_s = K.source_keypoints(kp, rot, exp, raw.scale, raw.t)

        if lmk203 is not None:
            lmk = np.asarray(lmk203, dtype=np.float32)
            eye_ratio = K.eye_close_ratio(lmk).astype(np.float32)
            lip_ratio = K.lip_close_ratio(lmk).astype(np.float32)
        else:  # no landmarks (pre-cropped face, no face models): nominal open eyes, closed mouth
            eye_ratio = np.full((1, 2), K.NOMINAL_EYE_RATIO, dtype=np.float32)
            lip_ratio = np.full((1, 1), K.NOMINAL_LIP_RATIO, dtype=np.float32)
        return SourceState(
            image_256=image_256,
            feature_3d=feature,
            motion=raw,
            kp=kp,
            exp=exp,
            scale=raw.scale,
            t=raw.t,
            pitch=pitch,
            yaw=yaw,
            roll=roll,
            rotation=rot,
            x_s=x_s,
            eye_ratio=eye_ratio,
            lip_ratio=lip_ratio,
            face=face,
            photo=photo,
            paster=paster,
            ratios_estimated=lmk203 is None,
        )

    # ------------------------------------------------------------------ editing
    def _retarget_mask(self, values: list[float | None], source: float) -> torch.Tensor:
        """Rows whose target ratio is set and differs from the source's rounded ratio (official rule)."""
        return torch.tensor([v is not None and v != source for v in values], device=self.device)

    @torch.inference_mode()
    def edited_keypoints(
        self, state: SourceState, params: Sequence[EditParams], *, stitching: bool = True
    ) -> torch.Tensor:
        """Driving keypoints x_d (B,21,3) for a batch of parameter sets (official editing order).

        1. ``R_d = R(pose + head deltas)``, ``R_new = R_d R_s^T R_s``;
        2. expression offsets (:func:`lpstudio.editing.edit_expression`);
        3. ``x_d = mov_z * scale * (kp @ R_new + exp) + t``;
        4. eye and lip retargeting deltas where a ratio differs from the source's;
        5. stitching (unless ``stitching=False``).
        """
        b = len(params)
        dev = self.device

        def column(name: str) -> torch.Tensor:
            return torch.tensor([getattr(p, name) for p in params], dtype=torch.float32, device=dev)

        r_d = K.rotation_matrix(
            state.pitch.expand(b, 1) + column("head_pitch")[:, None],
            state.yaw.expand(b, 1) + column("head_yaw")[:, None],
            state.roll.expand(b, 1) + column("head_roll")[:, None],
        )
        r_s = state.rotation.expand(b, 3, 3)
        r_new = (r_d @ r_s.transpose(1, 2)) @ r_s
        exp = edit_expression(state.exp, params)
        x_d = K.driving_keypoints(
            state.kp.expand(b, -1, -1), r_new, exp, state.scale.expand(b, 1), state.t.expand(b, 3), column("mov_z")
        )

        x_s = state.x_s.expand(b, -1, -1)
        eye_values = [p.eye_ratio for p in params]
        eye_mask = self._retarget_mask(eye_values, state.eye_ratio_rounded)
        lip_values = [p.lip_ratio for p in params]
        lip_mask = self._retarget_mask(lip_values, state.lip_ratio_rounded)
        if bool(eye_mask.any()):
            target = torch.tensor([[v or 0.0] for v in eye_values], dtype=torch.float32, device=dev)
            src = torch.from_numpy(state.eye_ratio).to(dev).expand(b, 2)
            delta = self.networks.stitching.eye(K.retarget_input(x_s, torch.cat([src, target], dim=1)))
            x_d = torch.where(eye_mask[:, None, None], x_d + delta.reshape(x_d.shape), x_d)
        if bool(lip_mask.any()):
            target = torch.tensor([[v or 0.0] for v in lip_values], dtype=torch.float32, device=dev)
            src = torch.from_numpy(state.lip_ratio).to(dev).expand(b, 1)
            delta = self.networks.stitching.lip(K.retarget_input(x_s, torch.cat([src, target], dim=1)))
            x_d = torch.where(lip_mask[:, None, None], x_d + delta.reshape(x_d.shape), x_d)
        if stitching:
            x_d = self.stitch(x_s, x_d)
        return x_d

    # ------------------------------------------------------------------ rendering
    def paste_back(self, state: SourceState, frame: np.ndarray) -> np.ndarray:
        """A rendered (512,512,3) frame put back into the full photo (the frame itself without one)."""
        if state.paster is None or state.photo is None:
            return frame
        return state.paster(frame, state.photo)

    @staticmethod
    def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
        """(B,3,H,W) in 0..1 -> B arrays (H,W,3) uint8 (clipped, then truncated as the official code does).

        A frame holding NaN or Inf (a float16 overflow, a broken backend) is never turned
        into black pixels: :class:`~lpstudio.errors.NonFiniteOutputError` names the bad rows
        and carries the good frames.
        """
        images = images.float()
        finite = torch.isfinite(images.reshape(images.shape[0], -1)).all(dim=1).tolist()
        if all(finite):
            return list((images.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        clean = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=0.0)
        frames = list((clean.clamp(0, 1) * 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        bad = [i for i, ok in enumerate(finite) if not ok]
        raise NonFiniteOutputError(
            f"the renderer produced non-finite pixels (NaN/Inf) in {len(bad)} of {len(finite)} frames",
            frames=bad,
            partial=[f if ok else None for f, ok in zip(frames, finite)],
        )

    def _checked_uint8(self, images: torch.Tensor) -> list[np.ndarray]:
        """:meth:`to_uint8`, counting and logging non-finite frames with this engine's backend and dtype."""
        try:
            return self.to_uint8(images)
        except NonFiniteOutputError as exc:
            self.nonfinite_events += len(exc.frames)
            where = f"backend {self.backend.name}, dtype {str(self.backend.dtype).replace('torch.', '')}"
            log.error("non-finite render output in %d of %d frames (%s)", len(exc.frames), images.shape[0], where)
            raise NonFiniteOutputError(f"{exc.message} ({where})", frames=exc.frames, partial=exc.partial) from None

    @torch.inference_mode()
    def render_keypoints(self, state: SourceState, x_d: torch.Tensor, *, batch_size: int = 4) -> Iterator[np.ndarray]:
        """Frames (512,512,3) uint8 for driving keypoints x_d (N,21,3), warped+decoded in batches."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        for start in range(0, x_d.shape[0], batch_size):
            yield from self._checked_uint8(self.render_batch(state, x_d[start : start + batch_size]))

    @torch.inference_mode()
    def render_batch(self, state: SourceState, x_d: torch.Tensor) -> torch.Tensor:
        """One batch through the backend: x_d (B,21,3) -> images (B,3,512,512) float32 in 0..1.

        Thread-safe (holds :attr:`render_lock`): the entry point for a server that
        gathers frames of several requests into batches.
        """
        n = x_d.shape[0]
        feature = state.feature_3d.expand(n, *state.feature_3d.shape[1:])
        with self.render_lock:
            return self.backend.warp_decode(feature, state.x_s.expand(n, -1, -1), x_d.to(self.device))

    @torch.inference_mode()
    def render_mixed(self, items: Sequence[tuple[SourceState, torch.Tensor]]) -> list[np.ndarray]:
        """One batch of frames from possibly different sources: ``(state, x_d (21,3))`` pairs.

        Lets one worker gather frames across sessions into a single W+G batch.
        """
        if not items:
            return []
        feature = torch.cat([s.feature_3d for s, _ in items])
        x_s = torch.cat([s.x_s for s, _ in items])
        x_d = torch.stack([k.reshape(-1, 3) for _, k in items]).to(self.device)
        with self.render_lock:
            return self._checked_uint8(self.backend.warp_decode(feature, x_s, x_d))

    @torch.inference_mode()
    def example_inputs(self, frames: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A realistic mixed-source batch for calibration and warm-up.

        The bundled sample portrait and its mirror image (two sources, alternating
        rows, as the server mixes sessions), each frame with a different edit.
        Returns ``feature_3d`` (frames,32,16,64,64) in the engine dtype, ``x_s`` and
        ``x_d`` (frames,21,3) float32.
        """
        from importlib import resources

        path = Path(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))
        image = to_network_input(load_image(path).rgb, self.cfg.input_size)
        states = [self._state_from_256(image, None), self._state_from_256(np.ascontiguousarray(image[:, ::-1]), None)]
        rows = []
        for i in range(frames):
            state = states[i % len(states)]
            params = EditParams(smile=(i % 3) * 0.5, head_yaw=-10.0 + 7.0 * (i % 4), eyebrow=5.0 * (i % 2))
            rows.append((state, self.edited_keypoints(state, [params])[0]))
        feature = torch.cat([s.feature_3d for s, _ in rows])
        x_s = torch.cat([s.x_s for s, _ in rows])
        return feature, x_s, torch.stack([k for _, k in rows])

    def warm_up(self, max_batch: int, *, progress: bool = False) -> float:
        """Prepare every batch size a worker with ``--batch-size max_batch`` uses; returns the seconds it took.

        Sets the backend's shape plan (:class:`~lpstudio.backends.planned.ShapePlan`:
        1, 2, 4, ... up to ``max_batch``; other batches are padded to them), then runs each
        planned size once so a compiled backend compiles and a graph backend captures
        now, not in the render thread while a user waits. Backends with nothing to
        prepare (eager, fused) return at once.
        """
        import time

        from .backends.planned import ShapePlan

        plan = ShapePlan.for_batch_size(max_batch)
        set_plan = getattr(self.backend, "set_plan", None)
        if set_plan is not None:
            set_plan(plan)
        if not getattr(self.backend, "needs_warm_up", False):
            return 0.0
        start = time.perf_counter()
        inputs = self.example_inputs(plan.max_batch)
        sizes = plan.sizes
        if progress:
            import sys

            from tqdm import tqdm

            sizes = tqdm(sizes, desc=f"preparing {self.backend.name}", unit="batch size", file=sys.stderr)
        for size in sizes:
            with self.render_lock:
                self.backend.prepare(size, *inputs)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - start

    def render_iter(
        self, state: SourceState, params: Sequence[EditParams], *, batch_size: int = 4, stitching: bool = True
    ) -> Iterator[np.ndarray]:
        """Like :meth:`render`, yielding frames as each batch is done (for streaming)."""
        if not params:
            return
        x_d = self.edited_keypoints(state, params, stitching=stitching)
        yield from self.render_keypoints(state, x_d, batch_size=batch_size)

    def render(
        self, state: SourceState, params: Sequence[EditParams], *, batch_size: int = 4, stitching: bool = True
    ) -> list[np.ndarray]:
        """Render parameter sets to frames: a list of (512,512,3) uint8 RGB arrays, in order."""
        return list(self.render_iter(state, params, batch_size=batch_size, stitching=stitching))


def read_official_checkpoints(weights_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Read the five engine checkpoints from a folder in the official layout."""
    checkpoints, sources = {}, {}
    for name, rel in MODULE_FILES.items():
        path = weights_dir / rel
        checkpoints[name] = read_checkpoint(path)
        sources[name] = str(path)
    return checkpoints, sources


def load_model(
    weights_dir: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    face: bool = False,
    backend: str | Backend = "eager",
    backend_dtype: str | torch.dtype | None = None,
    backend_options: Mapping[str, Any] | None = None,
    face_models: str = "auto",
    crop_options: Any = None,
) -> LivePortrait:
    """Load the official weights (from ``weights_dir``, ``$LPSTUDIO_WEIGHTS_DIR`` or the cache).

    ``device``: ``None``/``"auto"`` picks CUDA, then MPS, then CPU. ``dtype``:
    float32 (default, the golden-parity path), float16 or bfloat16. ``face``: also
    load the face detection and landmark models so sources can be full photos;
    ``face_models`` says which (``auto``, ``insightface``, ``mediapipe``: see
    :mod:`lpstudio.face.models`); ``crop_options``: their crop controls
    (:class:`lpstudio.face.crop_options.CropOptions`, default the official values).
    ``backend``/``backend_dtype``/``backend_options``: the render backend (see :class:`LivePortrait`).
    """
    root = resolve_weights_dir(weights_dir)
    warn_if_synthetic(root)  # once per folder and process: faces come out as noise
    checkpoints, sources = read_official_checkpoints(root)
    networks = Networks()
    networks.load_official(checkpoints, sources)
    del checkpoints
    face_pipeline = None
    if face:
        from .face.models import open_face_pipeline

        face_pipeline = open_face_pipeline(face_models, root, crop_options=crop_options)
    return LivePortrait(
        networks,
        device,
        dtype,
        face=face_pipeline,
        backend=backend,
        backend_dtype=backend_dtype,
        backend_options=backend_options,
        take_ownership=True,
    )
