"""Motion of a video-to-video drive: the official source-video rules, on keypoint-sized arrays.

With a video as the source (official ``flag_is_source_video``), frame ``i`` of
the output combines source frame ``i``'s own motion with driving frame ``i``'s,
against a reference driving frame ``r`` (official: the first, ``r = 0``)::

    exp_i = exp_s,i + (exp_d,i - exp_d,r)          (relative)   exp_d,i  (absolute)
    R_i   = (R_d,i R_d,r^T) R_s,i                  (relative)   R_d,i    (absolute)
    scale_i = scale_s,i    t_i = t_s,i (absolute: t_d,i)   t_z = 0

Both sequences ``exp_i`` and ``R_i`` are smoothed over the whole clip with a
Kalman RTS smoother (official ``smooth`` with ``driving_smooth_observation_variance``),
unlike the photo path there is no expression-friendly multiplier, and the
expression coordinates taken are the official source-video selection
(:data:`~lpstudio.drive.driving_motion.ABSOLUTE_EXP_COORDS` for ``all``/``exp``,
the lip or eye keypoints for ``lip``/``eyes``; ``exp`` and ``lip``/``eyes`` keep
the source frame's rotation). Everything here is (N, 21, 3)-sized per frame, so a
clip of any length costs a few hundred bytes per frame, never frames.

The keypoints handed to the renderer are ``x_d,i = rest_i + (P(new) - P(own))``
where ``P(own)`` composes source frame ``i``'s own motion, so nothing moving
gives exactly ``rest_i``. ``rest_i`` is by default the editing panel's rest pose
of frame ``i`` (what ``lpstudio edit`` renders with no change, which keeps the
source's ``t_z`` as the official ``execute_image_retargeting`` does), so a still
driving video without smoothing re-renders each source frame exactly as ``edit``
does; ``rest="official"`` uses ``x_s,i`` (``t_z`` zeroed) and is then the
official formula up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import keypoints as K
from ..errors import ParamError
from .driving_motion import PROCESS_VARIANCE, DriveSettings, DrivingMotion, compose_keypoints, exp_mask

SMOOTH_OBSERVATION_VARIANCE = 3e-7
"""Observation variance of the source-video smoother (official ``driving_smooth_observation_variance``)."""

INITIAL_STATE_VARIANCE = 1.0
"""Prior variance of the smoother's first state (pykalman's default ``initial_state_covariance``, identity)."""

LIP_NORMALIZE_THRESHOLD = 0.03
"""Source lip-open ratio from which ``--normalize-lip`` closes the lips first (official ``lip_normalize_threshold``)."""

SOURCE_EYE_RETARGETING_THRESHOLD = 0.18
"""First-frame eyes-open ratio below which the eyes count as closed (official
``source_video_eye_retargeting_threshold``)."""

SOURCE_EYE_OPEN_TARGET = 0.39
"""Eyes-open ratio every frame is retargeted to when the first frame's eyes are closed (the official value)."""

REST_POSES: tuple[str, ...] = ("edit", "official")
"""What an unmoved frame renders: the editing panel's rest pose (keeps ``t_z``) or the official video path's."""

REFERENCE_AUTO = "auto"
"""``--reference-frame auto``: the driving frame whose expression is nearest the source's (:func:`auto_reference`)."""


def rts_smooth(obs: np.ndarray, observation_variance: float, process_variance: float = PROCESS_VARIANCE) -> np.ndarray:
    """Kalman filter + Rauch-Tung-Striebel smoother of (N, D) observations -> (N, D) smoothed means.

    The official model (``utils/filter.py``): a random walk per coordinate,
    identity transition and observation, ``process_variance`` and
    ``observation_variance`` times identity, the first observation as the
    initial mean and :data:`INITIAL_STATE_VARIANCE` as its variance. Every
    coordinate has the same scalar variances, so the gains are scalars shared by
    all D coordinates and the work is O(N D). A constant sequence comes back unchanged.
    """
    if observation_variance <= 0 or not np.isfinite(observation_variance):
        raise ParamError(f"smoothing variance must be positive, got {observation_variance}")
    z = np.asarray(obs, dtype=np.float64)
    n = z.shape[0]
    if n == 0:
        return z.copy()
    x_f = np.empty_like(z)  # filtered means
    p_f = np.empty(n)  # filtered variances
    p_p = np.empty(n)  # predicted variances (p_p[0]: the prior)
    x, p = z[0].copy(), INITIAL_STATE_VARIANCE
    for i in range(n):
        if i > 0:
            p = p + process_variance
        p_p[i] = p
        gain = p / (p + observation_variance)
        x = x + gain * (z[i] - x)
        p = (1.0 - gain) * p
        x_f[i], p_f[i] = x, p
    out = np.empty_like(z)
    out[-1] = x_f[-1]
    for i in range(n - 2, -1, -1):
        g = p_f[i] / p_p[i + 1]
        out[i] = x_f[i] + g * (out[i + 1] - x_f[i])  # predicted mean of i+1 is the filtered mean of i
    return out


def parse_reference(text: str, option: str = "--reference-frame") -> int | str:
    """A reference frame as typed: a frame number (0 or more) or ``auto`` (:data:`REFERENCE_AUTO`).

    Raises:
        ParamError: anything else, naming ``option``.
    """
    text = text.strip().lower()
    if text == REFERENCE_AUTO:
        return REFERENCE_AUTO
    try:
        value = int(text)
    except ValueError:
        raise ParamError(f"{option} must be a frame number or auto, got {text[:20]!r}") from None
    if value < 0:
        raise ParamError(f"{option} must be 0 or more, got {value}")
    return value


def auto_reference(driving_exp: torch.Tensor, source_exp: torch.Tensor) -> int:
    """The driving frame to be relative to: nearest the source's neutral expression.

    Metric: Euclidean distance over all 21x3 expression coordinates between
    driving frame ``i``'s ``exp`` (N, 21, 3) and the first source frame's
    ``exp`` (1, 21, 3) (the source's rest expression); the smallest wins, the
    earliest on ties. The official rule "the first driving frame must be
    neutral" becomes "the most neutral driving frame is the reference".
    """
    d = (driving_exp.reshape(len(driving_exp), -1) - source_exp.reshape(1, -1)).double().norm(dim=1)
    return int(torch.argmin(d).item())


def resolve_reference(reference: int | str, driving: DrivingMotion, source: DrivingMotion) -> int:
    """``--reference-frame``: a frame number of the driving clip or ``auto``. Raises ParamError when out of range."""
    if reference == REFERENCE_AUTO:
        return auto_reference(driving.exp, source.exp[:1])
    try:
        index = int(reference)
    except (TypeError, ValueError):
        raise ParamError(f"--reference-frame must be a frame number or auto, got {reference!r}") from None
    if not 0 <= index < len(driving):
        raise ParamError(
            f"--reference-frame {index} is outside the driving clip used ({len(driving)} frames)",
            hint=f"use a frame from 0 to {len(driving) - 1}, or auto",
        )
    return index


@dataclass(frozen=True)
class V2VMotion:
    """How the driving motion is applied to a source video.

    Attributes:
        settings: region, relative/absolute, retargeting, stitching, multiplier (``smooth`` unused here).
        smooth: observation variance of the whole-clip smoother; 0 turns it off.
        reference: driving frame of the relative motion, or ``"auto"``.
        normalize_lip: close the source's lips first (official ``flag_normalize_lip``).
        source_eye_retargeting: hold every frame's eyes at the first frame's openness
            (official ``flag_source_video_eye_retargeting``).
        rest: what a frame renders when nothing moves, one of :data:`REST_POSES`: ``"edit"`` (default)
            the editing panel's rest pose, so a still driving clip renders each frame exactly as
            ``lpstudio edit`` does; ``"official"`` the official video path's ``x_s`` (``t_z`` zeroed).
    """

    settings: DriveSettings = DriveSettings()
    smooth: float = SMOOTH_OBSERVATION_VARIANCE
    reference: int | str = 0
    normalize_lip: bool = False
    source_eye_retargeting: bool = False
    rest: str = "edit"

    def __post_init__(self) -> None:
        if self.rest not in REST_POSES:
            raise ParamError(f"unknown rest pose {self.rest!r}", hint=f"use one of {', '.join(REST_POSES)}")
        if self.smooth < 0 or not np.isfinite(self.smooth):
            raise ParamError(f"smoothing variance must be 0 (off) or positive, got {self.smooth}")


def _smoothed(values: torch.Tensor, variance: float) -> torch.Tensor:
    if variance <= 0 or len(values) < 2:
        return values
    flat = values.reshape(len(values), -1).cpu().numpy()
    out = rts_smooth(flat, variance).astype(np.float32).reshape(values.shape)
    return torch.from_numpy(out).to(values.device)


def keypoint_deltas(
    source: DrivingMotion, driving: DrivingMotion, motion: V2VMotion, *, held: bool = False
) -> torch.Tensor:
    """(N, 21, 3) offsets ``P(new) - P(own)`` of absolute or held driving, to add to each source frame's ``x_s``.

    Args:
        source: motion of the N source frames used.
        driving: motion of the N driving frames, or of 1 frame with ``held``.
        motion: the rules.
        held: one driving frame (an image or a one-frame template) held over the whole video: its
            expression coordinates (absolute selection) replace the source's, the video keeps its own
            head motion; nothing is smoothed.
    """
    cfg = motion.settings
    n = len(source)
    s = source
    pose = cfg.region in ("all", "pose")
    if held:
        d = driving.expand(n)
        mask = exp_mask("exp" if cfg.region in ("all", "pose") else cfg.region, False, s.exp.device)
        if cfg.region == "pose":
            mask = torch.zeros_like(mask)
        exp = torch.where(mask, d.exp, s.exp)
        rot, t = s.rotation, s.t
    else:  # absolute (relative driving: relative_deltas)
        exp_seq = _smoothed(driving.exp, motion.smooth)
        mask = _source_video_mask(cfg.region, s.exp.device)
        exp = torch.where(mask, exp_seq, s.exp)
        rot = _smoothed(driving.rotation, motion.smooth) if pose else s.rotation
        t = driving.t if pose else s.t
    p_new = compose_keypoints(s.kp, rot, exp, s.scale, t)
    p_own = compose_keypoints(s.kp, s.rotation, s.exp, s.scale, s.t)
    return p_new - p_own


def _source_video_mask(region: str, device: torch.device | str) -> torch.Tensor:
    """(21, 3) bool: expression coordinates a source-video drive takes (official selection; none for pose)."""
    if region == "pose":
        return torch.zeros(K.NUM_KP, 3, dtype=torch.bool, device=device)
    return exp_mask(region, False, device)


def relative_deltas(source: DrivingMotion, driving: DrivingMotion, reference: int, motion: V2VMotion) -> torch.Tensor:
    """(N, 21, 3) offsets of relative driving (source, driving: N frames each) against driving frame ``reference``."""
    cfg = motion.settings
    s, d = source, driving
    ref = d.rows(slice(reference, reference + 1)).expand(len(d))
    exp_sum = s.exp + (d.exp - ref.exp)
    if motion.smooth > 0:
        exp_sum = _smoothed(exp_sum, motion.smooth)
    exp = torch.where(_source_video_mask(cfg.region, s.exp.device), exp_sum, s.exp)
    if cfg.region in ("all", "pose"):
        # (R_d,i R_d,r^T) R_s,i written as R_s,i + ((R_d,i - R_d,r) R_d,r^T) R_s,i: exactly R_s,i when R_d,i == R_d,r
        rot = s.rotation + ((d.rotation - ref.rotation) @ ref.rotation.transpose(1, 2)) @ s.rotation
        if motion.smooth > 0:
            rot = _smoothed(rot, motion.smooth)
    else:
        rot = s.rotation
    p_new = compose_keypoints(s.kp, rot, exp, s.scale, s.t)
    p_own = compose_keypoints(s.kp, s.rotation, s.exp, s.scale, s.t)
    return p_new - p_own


def clip_deltas(
    source: DrivingMotion, driving: DrivingMotion, motion: V2VMotion, *, held: bool = False
) -> tuple[torch.Tensor, int | None]:
    """(N, 21, 3) offsets for the whole clip and the reference frame used (None when not relative).

    ``source`` and ``driving`` must already have the clip's N frames (``driving`` 1 frame with ``held``).
    """
    if held:
        return keypoint_deltas(source, driving, motion, held=True), None
    if len(source) != len(driving):
        raise ValueError(f"source ({len(source)}) and driving ({len(driving)}) frames differ")
    if motion.settings.relative:
        reference = resolve_reference(motion.reference, driving, source)
        return relative_deltas(source, driving, reference, motion), reference
    return keypoint_deltas(source, driving, motion), None


def eye_target(first_eye_ratio: np.ndarray) -> float:
    """Target eyes-open ratio of ``--source-eye-retargeting`` from the first frame's (1, 2) ratios.

    The mean of both eyes; when below :data:`SOURCE_EYE_RETARGETING_THRESHOLD` (eyes closed on the first
    frame) :data:`SOURCE_EYE_OPEN_TARGET` instead (official rule).
    """
    mean = float(np.asarray(first_eye_ratio, dtype=np.float64).reshape(-1)[:2].mean())
    return SOURCE_EYE_OPEN_TARGET if mean < SOURCE_EYE_RETARGETING_THRESHOLD else mean


def finish_keypoints(
    engine: object,
    x_s: torch.Tensor,
    x_d: torch.Tensor,
    motion: V2VMotion,
    *,
    source_eye: torch.Tensor | None,
    source_lip: torch.Tensor | None,
    driving_eye: torch.Tensor | None,
    driving_lip: torch.Tensor | None,
    eye_goal: float | None,
) -> torch.Tensor:
    """Retargeting, stitching, before-animation deltas and the multiplier, in the official order.

    Args:
        engine: the engine (its stitching/retargeting networks and ``stitch``).
        x_s: (B, 21, 3) each source frame's keypoints; x_d: (B, 21, 3) moved keypoints.
        source_eye: (B, 2) and source_lip: (B, 1) the source frames' ratios, or None without landmarks.
        driving_eye: (B, 2) and driving_lip: (B, 1) the driving frames' ratios, or None.
        eye_goal: :func:`eye_target` of the first source frame (with ``source_eye_retargeting``).

    Returns:
        (B, 21, 3) keypoints for the renderer.
    """
    cfg = motion.settings
    net = engine.networks.stitching  # type: ignore[attr-defined]
    b = x_d.shape[0]
    if cfg.retarget_eyes and driving_eye is not None and source_eye is not None:
        eyes = torch.cat([source_eye, driving_eye[:, :1]], dim=1)  # official: the driving left eye
        x_d = x_d + net.eye(K.retarget_input(x_s, eyes)).reshape(x_d.shape)
    if cfg.retarget_lip and driving_lip is not None and source_lip is not None:
        x_d = x_d + net.lip(K.retarget_input(x_s, torch.cat([source_lip, driving_lip], dim=1))).reshape(x_d.shape)
    if cfg.stitching:
        x_d = engine.stitch(x_s, x_d)  # type: ignore[attr-defined]
    before_animation = not cfg.retarget_eyes and not cfg.retarget_lip  # official Algorithm 1 branches
    if before_animation and motion.normalize_lip and cfg.relative and source_lip is not None:
        closing = source_lip[:, 0] >= LIP_NORMALIZE_THRESHOLD
        if bool(closing.any()):
            target = torch.cat([source_lip, torch.zeros_like(source_lip)], dim=1)
            delta = net.lip(K.retarget_input(x_s, target)).reshape(x_d.shape)
            x_d = torch.where(closing[:, None, None], x_d + delta, x_d)
    if before_animation and motion.source_eye_retargeting and source_eye is not None and eye_goal is not None:
        goal = torch.full((b, 1), eye_goal, dtype=source_eye.dtype, device=source_eye.device)
        x_d = x_d + net.eye(K.retarget_input(x_s, torch.cat([source_eye, goal], dim=1))).reshape(x_d.shape)
    if cfg.multiplier != 1.0:
        x_d = x_s + (x_d - x_s) * cfg.multiplier
    return x_d
