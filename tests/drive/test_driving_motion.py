"""Driving keypoints: no motion is exactly neutral, regions, multiplier, smoothing (no rendering)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lpstudio.drive.driving_motion import (
    DRIVING_OPTIONS,
    LIP_KEYPOINTS,
    DriveSettings,
    KeypointDriver,
    MotionSmoother,
    extract_motion,
    hull_volume,
)
from lpstudio.drive.transfer import expression_keypoints, photo_motion
from lpstudio.errors import ParamError


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(3)]


@pytest.fixture(scope="module")
def state(engine, images):
    return engine.prepare_source(images[0], crop=False)


@pytest.fixture(scope="module")
def moving(engine, images):
    """Motion of two different driving frames (one batch)."""
    return extract_motion(engine, [images[1], images[2]], batch_size=2)


def neutral(engine, state, n: int, stitching: bool = True) -> torch.Tensor:
    """The official video path's rest pose: x_s (t_z zeroed), stitched onto itself."""
    x_s = state.x_s.expand(n, -1, -1)
    return engine.stitch(x_s, x_s) if stitching else x_s


def edit_neutral(engine, state, n: int = 1) -> torch.Tensor:
    """The editing panel's rest pose (keeps t_z): what expression transfer starts from."""
    return engine.edited_keypoints(state, [state.neutral_params()] * n)


@pytest.fixture(scope="module")
def still(engine, images):
    """Motion of five identical driving frames: a batch of 4, then a padded batch of 1."""
    return extract_motion(engine, [images[1]] * 5, batch_size=4)


@pytest.mark.parametrize("option", DRIVING_OPTIONS)
def test_still_frames_give_exactly_the_neutral_keypoints(engine, state, still, option: str) -> None:
    motion = still
    assert torch.equal(motion.exp[0], motion.exp[4])
    driver = KeypointDriver(engine, state, DriveSettings(driving_option=option))
    first, second = driver(motion.rows(slice(0, 4))), driver(motion.rows(slice(4, 5)))
    assert torch.equal(first, neutral(engine, state, 4))
    assert torch.equal(second, neutral(engine, state, 1))


def test_moving_frames_move_and_first_frame_stays_neutral(engine, state, moving) -> None:
    motion = moving
    x_d = KeypointDriver(engine, state, DriveSettings())(motion)
    ref = neutral(engine, state, 2)
    assert torch.equal(x_d[0], ref[0])
    assert (x_d[1] - ref[1]).abs().max() > 1e-3


def test_multiplier_scales_the_motion_around_the_source(engine, state, moving) -> None:
    motion = moving
    base = KeypointDriver(engine, state, DriveSettings(stitching=False))(motion)
    double = KeypointDriver(engine, state, DriveSettings(stitching=False, multiplier=2.0))(motion)
    torch.testing.assert_close(double, state.x_s + 2 * (base - state.x_s))


def test_lip_region_moves_only_lip_keypoints(engine, state, moving) -> None:
    motion = moving
    settings = DriveSettings(region="lip", stitching=False, driving_option="pose-friendly")
    delta = KeypointDriver(engine, state, settings)(motion) - neutral(engine, state, 2, stitching=False)
    moved = delta[1].abs().amax(dim=1) > 0
    assert set(torch.nonzero(moved).flatten().tolist()) == set(LIP_KEYPOINTS)


def test_absolute_exp_region_changes_only_the_official_expression_coordinates(engine, state, moving) -> None:
    motion = moving.rows(slice(0, 1))
    settings = DriveSettings(relative=False, region="exp", stitching=False)
    delta = KeypointDriver(engine, state, settings, sequence=False)(motion) - neutral(engine, state, 1, stitching=False)
    assert torch.equal(delta[0, 0], torch.zeros(3))  # keypoint 0 is not an expression keypoint
    assert torch.equal(delta[0, 3, 0], torch.tensor(0.0))  # keypoint 3: only y is taken
    assert delta[0, 1].abs().min() > 0 and delta[0, 3, 1].abs() > 0


def test_expression_from_the_same_photo_is_neutral(engine, state, images) -> None:
    other = photo_motion(engine, images[0], crop=False)
    for pose in (False, True):
        assert torch.equal(expression_keypoints(engine, state, other, pose=pose), edit_neutral(engine, state))
    changed = expression_keypoints(engine, state, photo_motion(engine, images[2], crop=False))
    assert not torch.equal(changed, edit_neutral(engine, state))


def test_hull_volume_matches_scipy_and_handles_coplanar_points() -> None:
    spatial = pytest.importorskip("scipy.spatial")
    rng = np.random.default_rng(0)
    for _ in range(5):
        pts = rng.normal(size=(21, 3))
        assert hull_volume(pts) == pytest.approx(spatial.ConvexHull(pts).volume, rel=1e-9)
    cube = np.array(list(itertools.product([0.0, 2.0], repeat=3)))
    cube = np.vstack([cube, [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [2.0, 1.0, 1.0]]])  # interior + on faces
    assert hull_volume(cube) == pytest.approx(8.0)
    assert hull_volume(np.zeros((21, 3))) == 0.0


def test_smoother_passes_constant_motion_bit_exactly_and_damps_jitter(moving) -> None:
    motion = moving.rows([0, 0, 0])
    smoothed = MotionSmoother(1e-4)(motion)
    assert torch.equal(smoothed.exp, motion.exp) and torch.equal(smoothed.rotation, motion.rotation)
    rng = np.random.default_rng(1)
    noisy = motion.rows([0] * 40)
    jitter = torch.from_numpy(rng.normal(0, 1e-2, (40, 21, 3)).astype(np.float32))
    from dataclasses import replace

    noisy = replace(noisy, exp=noisy.exp + jitter)
    out = MotionSmoother(1e-3)(noisy)
    assert (out.exp[10:] - motion.exp[0]).std() < 0.5 * jitter[10:].std()


def test_settings_are_validated() -> None:
    with pytest.raises(ParamError, match="region"):
        DriveSettings(region="ears")
    with pytest.raises(ParamError, match="driving option"):
        DriveSettings(driving_option="fast")
    with pytest.raises(ParamError, match="smoothing"):
        DriveSettings(smooth=-1)
