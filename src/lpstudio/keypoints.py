"""Implicit-keypoint maths: head pose, rotations, keypoint transforms, stitching, ratios.

Conventions (those of the official implementation):

- keypoints are row vectors, rotated as ``kp @ R`` with ``R`` of shape (B,3,3);
- angles are in degrees: pitch about x, yaw about y, roll about z;
- the source keypoints are ``x_s = scale * (kp @ R_s + exp)`` with ``t[x, y]``
  added to the first two coordinates only (Eqn. 2 of the paper without t_z).
"""

from __future__ import annotations

import math

import numpy as np
import torch

NUM_KP = 21
POSE_BINS = 66
POSE_BIN_DEGREES = 3.0
POSE_OFFSET_DEGREES = 97.5
"""Pose from bins: softmax expectation of the bin index, times 3, minus 97.5 (official)."""

# 203-point landmark indices of the official eye and lip open ratios:
# (upper lid, lower lid, eye corner, eye corner) per eye; (upper lip, lower lip, mouth corners).
NUM_LMK203 = 203
LEFT_EYE_IDX = (6, 18, 0, 12)
RIGHT_EYE_IDX = (30, 42, 24, 36)
LIP_IDX = (90, 102, 48, 66)
RATIO_EPS = 1e-6
NOMINAL_EYE_RATIO = 0.35
NOMINAL_LIP_RATIO = 0.0
"""Source ratios assumed when no 203-point landmarks exist (a pre-cropped face without the
face models): eyes open, mouth closed. Only the eye/lip retargeting inputs use them."""
RATIO_DECIMALS = 2
"""The official app rounds the source ratios to 2 decimals to decide whether to retarget."""


def bins_to_degrees(logits: torch.Tensor) -> torch.Tensor:
    """Head-pose bin logits (B,66) -> angle in degrees (B,1)."""
    idx = torch.arange(logits.shape[1], device=logits.device, dtype=logits.dtype)
    prob = torch.softmax(logits, dim=1)
    return ((prob * idx).sum(dim=1) * POSE_BIN_DEGREES - POSE_OFFSET_DEGREES)[:, None]


def rotation_matrix(pitch: torch.Tensor, yaw: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """Angles in degrees, each (B,) or (B,1) -> (B,3,3) for row vectors (``kp @ R``).

    This is ``(Rz(roll) @ Ry(yaw) @ Rx(pitch))^T``.
    """
    x, y, z = (a.reshape(-1) / 180 * math.pi for a in (pitch, yaw, roll))
    one, zero = torch.ones_like(x), torch.zeros_like(x)

    def mat(*rows: torch.Tensor) -> torch.Tensor:
        return torch.stack(rows, dim=1).reshape(-1, 3, 3)

    rx = mat(one, zero, zero, zero, x.cos(), -x.sin(), zero, x.sin(), x.cos())
    ry = mat(y.cos(), zero, y.sin(), zero, one, zero, -y.sin(), zero, y.cos())
    rz = mat(z.cos(), -z.sin(), zero, z.sin(), z.cos(), zero, zero, zero, one)
    return (rz @ ry @ rx).transpose(1, 2)


def source_keypoints(
    kp: torch.Tensor, rot: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """x_s (B,21,3) from canonical kp (B,21,3), R (B,3,3), exp (B,21,3), scale (B,1), t (B,3).

    Only ``t_x, t_y`` are added, as the official implementation does for the source.
    """
    x = (kp @ rot + exp) * scale[..., None]
    return torch.cat([x[..., :2] + t[:, None, :2], x[..., 2:]], dim=-1)


def driving_keypoints(
    kp: torch.Tensor, rot: torch.Tensor, exp: torch.Tensor, scale: torch.Tensor, t: torch.Tensor, zoom: torch.Tensor
) -> torch.Tensor:
    """Edited keypoints ``x_d = zoom * scale * (kp @ R + exp) + t`` (all of t), (B,21,3).

    ``zoom`` (B,) is the ``mov_z`` parameter; ``scale`` (B,1); ``t`` (B,3).
    """
    return zoom[:, None, None] * scale[..., None] * (kp @ rot + exp) + t[:, None, :]


def stitching_input(x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
    """(B,21,3) x2 -> (B,126), the stitching MLP input."""
    return torch.cat([x_s.flatten(1), x_d.flatten(1)], dim=1)


def apply_stitching(x_d: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Add the stitching MLP output (B,65) to x_d (B,21,3): 63 offsets, then (tx, ty) to x and y."""
    n = x_d.shape[1] * 3
    moved = x_d + delta[:, :n].reshape(x_d.shape)
    return torch.cat([moved[..., :2] + delta[:, None, n : n + 2], moved[..., 2:]], dim=-1)


def retarget_input(x_s: torch.Tensor, ratios: torch.Tensor) -> torch.Tensor:
    """(B,21,3) and (B,R) ratios -> (B,63+R), the eye/lip retargeting MLP input."""
    return torch.cat([x_s.flatten(1), ratios], dim=1)


def _batched(lmk203: np.ndarray) -> np.ndarray:
    arr = np.asarray(lmk203)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1] != NUM_LMK203 or arr.shape[2] != 2:
        raise ValueError(f"ratios need (203, 2) or (B, 203, 2) landmarks, got shape {np.shape(lmk203)}")
    return arr


def _distance_ratio(lmk: np.ndarray, idx: tuple[int, int, int, int]) -> np.ndarray:
    a, b, c, d = idx
    num = np.linalg.norm(lmk[:, a] - lmk[:, b], axis=1, keepdims=True)
    return num / (np.linalg.norm(lmk[:, c] - lmk[:, d], axis=1, keepdims=True) + RATIO_EPS)


def eye_close_ratio(lmk203: np.ndarray) -> np.ndarray:
    """Eyes-open ratios (left, right) from 203-point landmarks (203,2) or (B,203,2) -> (B,2).

    Lid distance over eye width per eye (official ``calc_eye_close_ratio``).
    """
    lmk = _batched(lmk203)
    return np.concatenate([_distance_ratio(lmk, LEFT_EYE_IDX), _distance_ratio(lmk, RIGHT_EYE_IDX)], axis=1)


def lip_close_ratio(lmk203: np.ndarray) -> np.ndarray:
    """Lip-open ratio from 203-point landmarks (203,2) or (B,203,2) -> (B,1): inner-lip gap over mouth width."""
    return _distance_ratio(_batched(lmk203), LIP_IDX)


def rounded_ratios(eye: np.ndarray, lip: np.ndarray) -> tuple[float, float]:
    """The official app's neutral slider values: mean eye ratio and lip ratio, 2 decimals."""
    return round(float(np.mean(eye)), RATIO_DECIMALS), round(float(np.asarray(lip).reshape(-1)[0]), RATIO_DECIMALS)
