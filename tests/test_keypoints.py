"""Keypoint maths: pose bins, rotations, transforms, stitching, ratios, editing offsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpstudio import keypoints as K
from lpstudio.editing import EXPRESSION_EDITS, EXPRESSION_ORDER, edit_expression
from lpstudio.params import EditParams


def test_bins_to_degrees_one_hot():
    logits = torch.full((3, 66), -1e4)
    for row, b in enumerate([0, 32, 65]):
        logits[row, b] = 0.0
    deg = K.bins_to_degrees(logits)
    assert deg.shape == (3, 1)
    torch.testing.assert_close(deg[:, 0], torch.tensor([-97.5, -1.5, 97.5]))


def test_rotation_matrix_is_orthonormal_and_zero_is_identity():
    r = K.rotation_matrix(torch.tensor([10.0, 0.0]), torch.tensor([-20.0, 0.0]), torch.tensor([5.0, 0.0]))
    eye = torch.eye(3).expand(2, 3, 3)
    torch.testing.assert_close(r @ r.transpose(1, 2), eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(r[1], torch.eye(3))


def test_yaw_rotates_about_y_in_row_convention():
    r = K.rotation_matrix(torch.tensor([0.0]), torch.tensor([90.0]), torch.tensor([0.0]))
    x_axis = torch.tensor([[1.0, 0.0, 0.0]])
    # Row vector times R = (Ry(90) @ column)^T: +x goes to -z.
    torch.testing.assert_close(x_axis @ r[0], torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6, rtol=0)


def test_source_keypoints_adds_only_tx_ty():
    kp = torch.zeros(1, 21, 3)
    out = K.source_keypoints(
        kp, torch.eye(3)[None], torch.zeros(1, 21, 3), torch.ones(1, 1), torch.tensor([[1.0, 2.0, 3.0]])
    )
    assert torch.all(out[..., 0] == 1) and torch.all(out[..., 1] == 2) and torch.all(out[..., 2] == 0)


def test_apply_stitching_splits_delta():
    x_d = torch.zeros(2, 21, 3)
    delta = torch.zeros(2, 65)
    delta[:, :63] = 0.5
    delta[:, 63:] = torch.tensor([1.0, -1.0])
    out = K.apply_stitching(x_d, delta)
    assert torch.all(out[..., 0] == 1.5) and torch.all(out[..., 1] == -0.5) and torch.all(out[..., 2] == 0.5)


def test_ratios_of_known_geometry():
    lmk = np.zeros((1, 203, 2), dtype=np.float32)
    lmk[0, 0], lmk[0, 12] = (0, 0), (10, 0)  # left eye width 10
    lmk[0, 6], lmk[0, 18] = (5, -2), (5, 2)  # opening 4
    lmk[0, 24], lmk[0, 36] = (20, 0), (30, 0)
    lmk[0, 30], lmk[0, 42] = (25, -1), (25, 1)
    lmk[0, 48], lmk[0, 66] = (0, 10), (20, 10)
    lmk[0, 90], lmk[0, 102] = (10, 9), (10, 14)
    np.testing.assert_allclose(K.eye_close_ratio(lmk), [[0.4, 0.2]], rtol=1e-5)
    np.testing.assert_allclose(K.lip_close_ratio(lmk), [[0.25]], rtol=1e-5)


def test_every_expression_parameter_has_an_edit():
    assert set(EXPRESSION_ORDER) == set(EXPRESSION_EDITS)


@pytest.mark.parametrize("name", EXPRESSION_ORDER)
def test_edit_moves_only_its_keypoints(name):
    exp = torch.zeros(1, 21, 3)
    value = {"mov_x": 0.1, "mov_y": 0.1, "lip_variation_zero": 0.05}.get(name, 10.0 if name != "smile" else 1.0)
    out = edit_expression(exp, [EditParams(**{name: value})])
    moved = sorted({int(i) for i in torch.nonzero(out[0].abs().sum(-1)).flatten()})
    assert set(moved) <= set(EXPRESSION_EDITS[name].keypoints())
    assert moved, f"{name} moved nothing"


def test_eyebrow_sign_selects_offset_set():
    exp = torch.zeros(1, 21, 3)
    up, down = edit_expression(exp, [EditParams(eyebrow=10), EditParams(eyebrow=-10)])
    torch.testing.assert_close(up[1], torch.tensor([0.0, 0.01, 0.0]))
    torch.testing.assert_close(down[1], torch.tensor([0.01, -0.003, 0.0]))


def test_edit_batch_independent_rows():
    exp = torch.randn(1, 21, 3)
    a, b = EditParams(smile=1.0), EditParams(wink=20.0, eyeball_x=-10)
    both = edit_expression(exp, [a, b])
    torch.testing.assert_close(both[0], edit_expression(exp, [a])[0])
    torch.testing.assert_close(both[1], edit_expression(exp, [b])[0])
