"""Driving motion: extraction, relative/absolute transfer onto a source, regions, smoothing.

Per driving frame the motion extractor M gives a head rotation ``R``, an
expression deformation ``exp``, a scale and a translation ``t`` (the official
"motion template" fields). :class:`KeypointDriver` turns them into driving
keypoints ``x_d`` for one source, the official way (``live_portrait_pipeline.py``):

relative (default), frame i against the first driving frame 0::

    R_new     = (R_i R_0^T) R_s            exp_new = exp_s + (exp_i - exp_0)
    scale_new = scale_s * scale_i/scale_0  t_new   = t_s + (t_i - t_0),  t_new[z] = 0
    P_i = scale_new * (kp_s @ R_new + exp_new) + t_new

absolute (``--absolute``): ``R_new = R_i``, chosen ``exp`` coordinates of the
driving frame, ``t_new = t_i`` (z zeroed), source scale.

The keypoints handed to the renderer are ``x_d = anchor + m * (P_i - P_base)``
where ``anchor`` is the source at rest: for a video, the source keypoints
``x_s`` (exactly the official ``P_0``, with ``t_z`` zeroed); for edits on top of a
driving motion (expression transfer), what the engine renders for the given
editing parameters (:meth:`~lpstudio.engine.LivePortrait.edited_keypoints`),
``P_base`` the same composition for "no motion"
(the first frame when relative, the source's own motion when absolute), and
``m`` the "expression-friendly" multiplier (``sqrt`` of the keypoint hull
volume ratio, official ``calc_motion_multiplier``; 1 for "pose-friendly").
For the official relative formulas this is the same motion (``P_0`` is the
source's keypoints), and it makes "no motion" *exactly* the engine's neutral
render: ``P_i - P_base`` is exactly zero when the driving frame equals the first
one, so a still video renders exactly ``x_s`` (stitched), as the official video
path does. Eye/lip retargeting deltas, stitching and the driving multiplier then
follow in the official order.

Note: the editing panel's neutral keeps the source's ``t_z`` (official
``execute_image_retargeting``), while the official video path zeroes it; each
path here follows its official counterpart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from .. import keypoints as K
from ..errors import ParamError
from ..heap import release_freed_memory

REGIONS: tuple[str, ...] = ("all", "exp", "pose", "lip", "eyes")
"""Official ``animation_region`` values: what the driving frames move."""

LIP_KEYPOINTS: tuple[int, ...] = (6, 12, 14, 17, 19, 20)
"""Implicit keypoints of the mouth (official ``animation_region == "lip"``)."""

EYES_KEYPOINTS: tuple[int, ...] = (11, 13, 15, 16, 18)
"""Implicit keypoints of the eyes (official ``animation_region == "eyes"``)."""

ABSOLUTE_EXP_COORDS: tuple[tuple[int, tuple[int, ...]], ...] = (
    *((kp, (0, 1, 2)) for kp in (1, 2, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)),
    (3, (1,)),
    (4, (1,)),
    (5, (2,)),
    (8, (2,)),
    (9, (1, 2)),
)
"""(keypoint, axes) of ``exp`` taken from the driving frame in absolute mode (the others stay the source's)."""

DRIVING_OPTIONS: tuple[str, ...] = ("expression-friendly", "pose-friendly")
"""Official ``driving_option``: expression-friendly scales the motion by the keypoint hull ratio."""

PROCESS_VARIANCE = 1e-5
"""Random-walk variance per frame of the smoothing filter (official ``process_variance``)."""

DEFAULT_SMOOTH_VARIANCE = 1e-5
"""Observation variance of ``--smooth`` given without a value (official default 3e-7 is much lighter)."""


@dataclass(frozen=True, eq=False)
class DrivingMotion:
    """Driving motion of N frames (float32 tensors on one device).

    Attributes:
        rotation: (N,3,3) head rotation ``R`` (row vectors, ``kp @ R``).
        exp: (N,21,3) expression deformation.
        scale: (N,1).
        t: (N,3) translation.
        kp: (N,21,3) canonical keypoints (kept for templates; the source's are used).
        eye_ratio: (N,2) eyes-open ratios (left, right) from landmarks, or None.
        lip_ratio: (N,1) lip-open ratio, or None.
    """

    rotation: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    t: torch.Tensor
    kp: torch.Tensor
    eye_ratio: torch.Tensor | None = None
    lip_ratio: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.rotation.shape[0])

    def _map(self, fn: Any) -> DrivingMotion:
        return DrivingMotion(
            **{f.name: None if getattr(self, f.name) is None else fn(getattr(self, f.name)) for f in fields(self)}
        )

    def rows(self, index: torch.Tensor | list[int] | slice) -> DrivingMotion:
        """The motion of some frames (index list or slice)."""
        return self._map(lambda v: v[index])

    def expand(self, n: int) -> DrivingMotion:
        """One frame (N=1) repeated n times (a view)."""
        return self._map(lambda v: v.expand(n, *v.shape[1:]))

    def to(self, device: torch.device | str) -> DrivingMotion:
        return self._map(lambda v: v.to(device))

    @staticmethod
    def cat(parts: Sequence[DrivingMotion]) -> DrivingMotion:
        """Concatenate along frames (ratios kept only if every part has them)."""
        out = {}
        for f in fields(DrivingMotion):
            values = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in values) else torch.cat(values)
        return DrivingMotion(**out)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays by field name (ratios only when present)."""
        return {f.name: getattr(self, f.name).cpu().numpy() for f in fields(self) if getattr(self, f.name) is not None}

    @staticmethod
    def from_numpy(arrays: dict[str, np.ndarray], device: torch.device | str = "cpu") -> DrivingMotion:
        """Inverse of :meth:`to_numpy` (float32, shapes checked by the caller)."""
        return DrivingMotion(
            **{
                f.name: torch.from_numpy(np.ascontiguousarray(arrays[f.name], dtype=np.float32)).to(device)
                if arrays.get(f.name) is not None
                else None
                for f in fields(DrivingMotion)
            }
        )


def motion_from_heads(raw: Any) -> DrivingMotion:
    """The raw heads of M for B frames (``MotionOutput``) -> :class:`DrivingMotion` (no ratios)."""
    pitch, yaw, roll = (K.bins_to_degrees(v) for v in (raw.pitch, raw.yaw, raw.roll))
    b = raw.exp.shape[0]
    return DrivingMotion(
        rotation=K.rotation_matrix(pitch, yaw, roll),
        exp=raw.exp.reshape(b, K.NUM_KP, 3).float(),
        scale=raw.scale.reshape(b, 1).float(),
        t=raw.t.reshape(b, 3).float(),
        kp=raw.kp.reshape(b, K.NUM_KP, 3).float(),
    )


@torch.inference_mode()
def extract_motion(engine: Any, images_256: Sequence[np.ndarray], batch_size: int) -> DrivingMotion:
    """Run M on (256,256,3) uint8 crops in fixed-size batches -> :class:`DrivingMotion` of ``len(images_256)``.

    The last batch is padded (repeating its last crop) to ``batch_size``: every
    frame goes through a batch of the same shape, so two identical crops give
    bit-identical motion wherever they sit in the video.
    """
    if not images_256:
        raise ValueError("extract_motion needs at least one image")
    parts = []
    for start in range(0, len(images_256), batch_size):
        chunk = list(images_256[start : start + batch_size])
        real = len(chunk)
        chunk += [chunk[-1]] * (batch_size - real)
        x = torch.cat([engine._to_input(img) for img in chunk])
        parts.append(motion_from_heads(engine.motion(x)).rows(slice(0, real)))
        del x
        release_freed_memory()  # a long clip's batches must not grow the heap (lpstudio/heap.py)
    return DrivingMotion.cat(parts) if len(parts) > 1 else parts[0]


def exp_mask(region: str, relative: bool, device: torch.device | str = "cpu") -> torch.Tensor:
    """(21,3) bool: the ``exp`` coordinates a region takes from the driving frames."""
    mask = torch.zeros(K.NUM_KP, 3, dtype=torch.bool, device=device)
    if region in ("all", "exp"):
        if relative:
            mask[:] = True
        else:
            for kp, axes in ABSOLUTE_EXP_COORDS:
                mask[kp, list(axes)] = True
    elif region == "lip":
        mask[list(LIP_KEYPOINTS)] = True
    elif region == "eyes":
        mask[list(EYES_KEYPOINTS)] = True
    return mask


def compose_keypoints(
    kp: torch.Tensor, rotation: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """Official video-path keypoints ``scale * (kp @ R + exp) + t`` with ``t_z = 0``: all (N,...) -> (N,21,3)."""
    t_xy = torch.cat([t[:, :2], torch.zeros_like(t[:, 2:])], dim=1)
    return scale[..., None] * (kp @ rotation + exp) + t_xy[:, None, :]


def hull_volume(points: np.ndarray) -> float:
    """Volume of the convex hull of (N,3) points; 0 for fewer than 4 points or a flat/degenerate cloud."""
    from scipy.spatial import ConvexHull, QhullError

    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(p) < 4 or not np.isfinite(p).all() or np.ptp(p, axis=0).max() == 0.0:
        return 0.0
    try:
        return float(ConvexHull(p).volume)
    except QhullError:  # all points on a plane or a line: no volume
        return 0.0


def motion_multiplier(x_s: torch.Tensor, x_d_0: torch.Tensor) -> float:
    """Expression-friendly scale: sqrt(hull volume of x_s) / sqrt(hull volume of x_d_0), both (1,21,3)."""
    source, driving = hull_volume(x_s[0].cpu().numpy()), hull_volume(x_d_0[0].cpu().numpy())
    if source <= 0.0 or driving <= 0.0:
        return 1.0
    return float(np.sqrt(source) / np.sqrt(driving))


class MotionSmoother:
    """Causal Kalman filter over the driving motion, frame by frame (streaming).

    Random-walk model per coordinate of (R, exp, scale, t) with process variance
    ``PROCESS_VARIANCE`` and the given observation variance (the official
    ``driving_smooth_observation_variance``; larger is smoother). Unlike the
    official RTS smoother (whole video at once) it only looks back, so it adds
    a little lag; a constant motion passes through unchanged, bit for bit.
    """

    _FIELDS = ("rotation", "exp", "scale", "t")

    def __init__(self, observation_variance: float, process_variance: float = PROCESS_VARIANCE) -> None:
        if observation_variance <= 0:
            raise ParamError(f"smoothing variance must be positive, got {observation_variance}")
        self.r = float(observation_variance)
        self.q = float(process_variance)
        self._x: np.ndarray | None = None
        self._p = 0.0

    def __call__(self, motion: DrivingMotion) -> DrivingMotion:
        """Smooth the next N frames (N,...) -> same shapes."""
        arrays = [getattr(motion, f).detach().cpu().numpy().reshape(len(motion), -1) for f in self._FIELDS]
        obs = np.concatenate(arrays, axis=1).astype(np.float64)
        out = np.empty_like(obs)
        for i, z in enumerate(obs):
            if self._x is None:
                self._x, self._p = z.copy(), self.r
            else:
                p_pred = self._p + self.q
                gain = p_pred / (p_pred + self.r)
                self._x = self._x + gain * (z - self._x)
                self._p = (1.0 - gain) * p_pred
            out[i] = self._x
        smoothed = {}
        col = 0
        for name, arr in zip(self._FIELDS, arrays, strict=True):
            ref = getattr(motion, name)
            chunk = out[:, col : col + arr.shape[1]].astype(np.float32).reshape(ref.shape)
            smoothed[name] = torch.from_numpy(chunk).to(ref.device)
            col += arr.shape[1]
        return replace(motion, **smoothed)


@dataclass(frozen=True)
class DriveSettings:
    """How driving motion is applied (official inference flags, our names).

    Attributes:
        relative: motion relative to the first driving frame (official ``flag_relative_motion``).
        region: what moves, one of :data:`REGIONS` (official ``animation_region``).
        driving_option: one of :data:`DRIVING_OPTIONS` (used for relative video driving).
        multiplier: motion amplitude on the final keypoints (official ``driving_multiplier``).
        stitching: run the stitching module (official ``flag_stitching``).
        retarget_eyes: add the eyes-open ratio of each driving frame via the eye retargeting MLP.
        retarget_lip: same for the lip-open ratio.
        smooth: observation variance of :class:`MotionSmoother`; 0 disables smoothing.
    """

    relative: bool = True
    region: str = "all"
    driving_option: str = "expression-friendly"
    multiplier: float = 1.0
    stitching: bool = True
    retarget_eyes: bool = False
    retarget_lip: bool = False
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.region not in REGIONS:
            raise ParamError(f"unknown region {self.region!r}", hint=f"use one of {', '.join(REGIONS)}")
        if self.driving_option not in DRIVING_OPTIONS:
            raise ParamError(
                f"unknown driving option {self.driving_option!r}", hint=f"use one of {', '.join(DRIVING_OPTIONS)}"
            )
        if not np.isfinite(self.multiplier):
            raise ParamError(f"multiplier must be a finite number, got {self.multiplier}")
        if self.smooth < 0 or not np.isfinite(self.smooth):
            raise ParamError(f"smoothing variance must be 0 (off) or positive, got {self.smooth}")


class KeypointDriver:
    """Driving keypoints x_d for one source from consecutive chunks of driving motion.

    Stateful: the first frame it sees is the relative reference (and sets the
    expression-friendly multiplier); the smoother, when on, carries over
    between chunks. ``anchor_params`` (an ``EditParams``) sets the rest pose
    (default: the source's neutral parameters).
    """

    def __init__(
        self,
        engine: Any,
        state: Any,
        settings: DriveSettings,
        *,
        sequence: bool = True,
        anchor_params: Any = None,
    ) -> None:
        self.engine = engine
        self.state = state
        self.settings = settings
        self.sequence = sequence
        if anchor_params is None:
            self.anchor = state.x_s
        else:
            self.anchor = engine.edited_keypoints(state, [anchor_params], stitching=False)
        self.reference: DrivingMotion | None = None
        self.multiplier = 1.0
        self._multiplier_set = False
        self.smoother = MotionSmoother(settings.smooth) if settings.smooth > 0 else None
        self._mask = exp_mask(settings.region, settings.relative, engine.device)
        self._pose = settings.region in ("all", "pose")

    # ------------------------------------------------------------------ compositions
    def _relative(self, m: DrivingMotion, ref: DrivingMotion) -> torch.Tensor:
        s = self.state
        if self._pose:
            # (R_i R_0^T) R_s written as R_s + ((R_i - R_0) R_0^T) R_s: exactly R_s when R_i == R_0.
            rot = s.rotation + ((m.rotation - ref.rotation) @ ref.rotation.transpose(1, 2)) @ s.rotation
            t = s.t + (m.t - ref.t)
        else:
            rot, t = s.rotation.expand(len(m), 3, 3), s.t.expand(len(m), 3)
        exp = torch.where(self._mask, s.exp + (m.exp - ref.exp), s.exp)
        scale = s.scale * (m.scale / ref.scale) if self.settings.region == "all" else s.scale.expand(len(m), 1)
        return compose_keypoints(s.kp.expand(len(m), -1, -1), rot, exp, scale, t)

    def _absolute(self, m: DrivingMotion | None, n: int) -> torch.Tensor:
        s = self.state
        if m is None:  # the source's own motion: the "no motion" base
            rot, exp, t = s.rotation.expand(n, 3, 3), s.exp.expand(n, -1, -1), s.t.expand(n, 3)
        else:
            rot = m.rotation if self._pose else s.rotation.expand(n, 3, 3)
            t = m.t if self._pose else s.t.expand(n, 3)
            exp = torch.where(self._mask, m.exp, s.exp)
        return compose_keypoints(s.kp.expand(n, -1, -1), rot, exp, s.scale.expand(n, 1), t)

    # ------------------------------------------------------------------ driving
    @torch.inference_mode()
    def __call__(self, motion: DrivingMotion) -> torch.Tensor:
        """Motion of the next N driving frames -> x_d (N,21,3), ready for ``render_keypoints``."""
        st, cfg = self.state, self.settings
        motion = motion.to(self.engine.device)
        if self.smoother is not None:
            motion = self.smoother(motion)
        n = len(motion)
        if self.reference is None:
            self.reference = motion.rows(slice(0, 1))
        if cfg.relative:
            ref = self.reference.expand(n)
            moved, base = self._relative(motion, ref), self._relative(ref, ref)
            if self.sequence and cfg.driving_option == "expression-friendly" and not self._multiplier_set:
                self.multiplier = motion_multiplier(st.x_s, base[:1])
                self._multiplier_set = True
        else:
            moved, base = self._absolute(motion, n), self._absolute(None, n)
        delta = moved - base
        if self.multiplier != 1.0:
            delta = delta * self.multiplier
        x_d = self.anchor.expand(n, -1, -1) + delta

        x_s = st.x_s.expand(n, -1, -1)
        net = self.engine.networks.stitching
        dev = self.engine.device
        if cfg.retarget_eyes and motion.eye_ratio is not None:
            src = torch.from_numpy(st.eye_ratio).to(dev).expand(n, 2)
            ratios = torch.cat([src, motion.eye_ratio[:, :1]], dim=1)  # official: the driving left eye
            x_d = x_d + net.eye(K.retarget_input(x_s, ratios)).reshape(x_d.shape)
        if cfg.retarget_lip and motion.lip_ratio is not None:
            src = torch.from_numpy(st.lip_ratio).to(dev).expand(n, 1)
            ratios = torch.cat([src, motion.lip_ratio], dim=1)
            x_d = x_d + net.lip(K.retarget_input(x_s, ratios)).reshape(x_d.shape)
        if cfg.stitching:
            x_d = self.engine.stitch(x_s, x_d)
        if cfg.multiplier != 1.0:
            x_d = x_s + (x_d - x_s) * cfg.multiplier
        return x_d
