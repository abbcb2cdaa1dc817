"""Parity with the official implementation (golden.npz): every stage and every editing case.

Tolerances (shared/liveportrait/README.md): float tensors within 1e-4 of the
reference's largest magnitude; uint8 images within 2 levels. Every input comes
from the golden file, so ``LPSTUDIO_GOLDEN=other.npz pytest -m golden`` checks
any golden file of the same format.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.golden

REL_TOL = 1e-4
IMAGE_LEVELS = 2


def assert_close(name: str, ours, ref: np.ndarray) -> None:
    ours = ours.detach().float().cpu().numpy() if torch.is_tensor(ours) else np.asarray(ours, dtype=np.float64)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} != {ref.shape}"
    scale = float(np.abs(ref).max())
    err = float(np.abs(ours - ref).max())
    assert err <= REL_TOL * max(scale, 1e-12), f"{name}: max abs error {err:.3g} > {REL_TOL} x {scale:.3g}"


def test_appearance_volume(golden_state, golden):
    assert_close("feature_3d", golden_state.feature_3d, golden["feature_3d"])


@pytest.mark.parametrize("head", ["pitch", "yaw", "roll", "t", "exp", "scale", "kp"])
def test_motion_heads(golden_state, golden, head):
    assert_close(f"motion_raw_{head}", getattr(golden_state.motion, head), golden[f"motion_raw_{head}"])


@pytest.mark.parametrize("axis", ["pitch", "yaw", "roll"])
def test_pose_degrees(golden_state, golden, axis):
    assert_close(f"pose_deg_{axis}", getattr(golden_state, axis), golden[f"pose_deg_{axis}"])


def test_source_rotation_and_keypoints(golden_state, golden):
    assert_close("R_s", golden_state.rotation, golden["R_s"])
    assert_close("x_s", golden_state.x_s, golden["x_s"])


def test_source_ratios(golden_state, golden):
    assert_close("eye ratio", golden_state.eye_ratio, golden["source_eye_close_ratio"])
    assert_close("lip ratio", golden_state.lip_ratio, golden["source_lip_close_ratio"])
    assert golden_state.eye_ratio_rounded == pytest.approx(float(golden["source_eye_ratio_rounded"]), abs=1e-6)
    assert golden_state.lip_ratio_rounded == pytest.approx(float(golden["source_lip_ratio_rounded"]), abs=1e-6)


@pytest.fixture(scope="module")
def warp_out(engine, golden):
    x_d = torch.from_numpy(golden["warp_x_d"])
    return engine.warp(torch.from_numpy(golden["feature_3d"]), torch.from_numpy(golden["x_s"]), x_d)


def test_warping_module(warp_out, golden):
    assert_close("warp_out", warp_out.out, golden["warp_out"])
    assert_close("warp_occlusion_map", warp_out.occlusion_map, golden["warp_occlusion_map"])
    assert_close("warp_deformation", warp_out.deformation, golden["warp_deformation"])


def test_spade_decoder(engine, golden):
    assert_close("spade_out", engine.decode(torch.from_numpy(golden["warp_out"])), golden["spade_out"])


def test_stitching(engine, golden):
    out = engine.stitch(torch.from_numpy(golden["x_s"]), torch.from_numpy(golden["warp_x_d"]))
    assert_close("stitch_x_d_new", out, golden["stitch_x_d_new"])


def _cases(golden) -> list[dict]:
    return json.loads(str(golden["cases_json"]))


def _case_params(state, case: dict):
    case = dict(case)
    stitching = case.pop("stitching", True)
    return state.neutral_params().replace(**case), stitching


@pytest.fixture(scope="module")
def case_renders(engine, golden_state, golden):
    """Each golden case rendered once: (x_d, image) per case."""
    out = []
    for case in _cases(golden):
        params, stitching = _case_params(golden_state, case)
        x_d = engine.edited_keypoints(golden_state, [params], stitching=stitching)
        image = engine.render(golden_state, [params], stitching=stitching)[0]
        out.append((x_d, image))
    return out


def test_golden_has_cases(golden):
    assert len(_cases(golden)) >= 1


@pytest.mark.parametrize("i", range(7))
def test_editing_case(case_renders, golden, i):
    if i >= len(_cases(golden)):
        pytest.skip(f"golden file has only {len(_cases(golden))} cases")
    x_d, image = case_renders[i]
    assert_close(f"case{i}_x_d", x_d, golden[f"case{i}_x_d"])
    ref = golden[f"case{i}_image_uint8"]
    assert image.shape == ref.shape and image.dtype == np.uint8
    diff = int(np.abs(image.astype(np.int16) - ref.astype(np.int16)).max())
    assert diff <= IMAGE_LEVELS, f"case{i}: image differs by {diff} levels"


def test_cases_differ_from_each_other(case_renders):
    """Guards the test itself: distinct edits must give distinct images."""
    images = [img.astype(np.int16) for _, img in case_renders]
    for a in range(len(images)):
        for b in range(a + 1, len(images)):
            assert np.abs(images[a] - images[b]).max() > IMAGE_LEVELS


def test_batch_equals_singles(engine, golden_state, golden, case_renders):
    """A batch of N parameter sets renders exactly like N single renders."""
    chosen = [i for i, c in enumerate(_cases(golden)) if c.get("stitching", True)][:3]
    params = [_case_params(golden_state, _cases(golden)[i])[0] for i in chosen]
    batch = engine.render(golden_state, params, batch_size=len(params))
    for i, frame in zip(chosen, batch):
        single = case_renders[i][1]
        assert int(np.abs(frame.astype(np.int16) - single.astype(np.int16)).max()) <= 1
