"""Depth-ordered paste-back of several faces, and one render batch per frame (stand-in renderer)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpstudio.errors import ImageError
from lpstudio.face.composite import GroupPaste, depth_order
from lpstudio.face.pasteback import PasteBack
from lpstudio.group.render import render_group
from lpstudio.params import EditParams

BLOCK = 8
"""Side of the blocks of the dark-patch check."""


def _m_c2o(center: tuple[float, float], side_px: float, crop: int = 512) -> np.ndarray:
    k = side_px / crop
    return np.array([[k, 0, center[0] - side_px / 2], [0, k, center[1] - side_px / 2], [0, 0, 1]], np.float64)


def _no_dark_patch(out: np.ndarray, floor: int, box: tuple[int, int, int, int]) -> None:
    """Every BLOCK x BLOCK block inside ``box`` keeps a mean at least ``floor`` (no black blended in)."""
    x0, y0, x1, y1 = box
    region = out[y0:y1, x0:x1].astype(np.float64).mean(axis=2)
    for by in range(0, region.shape[0] - BLOCK + 1, BLOCK):
        for bx in range(0, region.shape[1] - BLOCK + 1, BLOCK):
            mean = region[by : by + BLOCK, bx : bx + BLOCK].mean()
            assert mean >= floor, f"dark block at ({x0 + bx}, {y0 + by}) of mean {mean:.1f}"


def test_depth_order_is_smallest_first() -> None:
    assert depth_order([[0, 0, 10, 10], [0, 0, 30, 30], [0, 0, 20, 20]]) == [0, 2, 1]


def test_overlapping_faces_larger_on_top_no_seam_no_dark_patch() -> None:
    """Two crops that overlap: the larger face wins where it is opaque, every face box stays bright,
    and pixels outside both masks are the photo's, bit for bit."""
    rng = np.random.default_rng(3)
    photo = rng.integers(150, 230, (300, 420, 3), dtype=np.uint8)
    big = PasteBack(_m_c2o((170.0, 150.0), 220.0), photo.shape[:2])
    small = PasteBack(_m_c2o((280.0, 150.0), 160.0), photo.shape[:2])
    boxes = [[230, 110, 330, 190], [100, 80, 240, 220]]  # small first: given out of depth order
    group = GroupPaste([small, big], boxes)
    assert group.order == [0, 1]
    frame_small = np.full((512, 512, 3), 120, np.uint8)
    frame_big = np.full((512, 512, 3), 200, np.uint8)
    out = group([frame_small, frame_big], photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    # the big face's opaque core is all the big face, even where the small crop reaches
    cx, cy = 200, 150  # inside both crops, in the big one's core
    assert out[cy, cx].tolist() == [200, 200, 200]
    cover = group.coverage()
    np.testing.assert_array_equal(out[cover == 0], photo[cover == 0])
    for x0, y0, x1, y1 in boxes:
        _no_dark_patch(out, 110, (x0, y0, x1, y1))
    # no seam: neighbouring pixels never jump by more than the frames and photo differ
    step = np.abs(np.diff(out.astype(np.int16), axis=1)).max()
    assert step <= max(int(np.abs(np.diff(photo.astype(np.int16), axis=1)).max()), 80) + 2
    # the same faces pasted the other way round give the same picture: the order is by depth, not by list
    np.testing.assert_array_equal(GroupPaste([big, small], boxes[::-1])([frame_big, frame_small], photo), out)


def test_group_paste_checks_its_inputs() -> None:
    p = PasteBack(_m_c2o((50.0, 50.0), 60.0), (100, 100))
    q = PasteBack(_m_c2o((50.0, 50.0), 60.0), (100, 120))
    with pytest.raises(ImageError, match="different photo sizes"):
        GroupPaste([p, q], [[0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(ImageError, match="1 pasters for 2"):
        GroupPaste([p], [[0, 0, 1, 1], [0, 0, 1, 1]])
    with pytest.raises(ImageError, match="2 frames for 1"):
        GroupPaste([p], [[0, 0, 1, 1]])([np.zeros((8, 8, 3), np.uint8)] * 2, np.zeros((100, 100, 3), np.uint8))


class _State:
    def __init__(self, k: int) -> None:
        self.k = k


class _CountingEngine:
    """Stand-in renderer: x_d encodes (face, smile); each render call is recorded with its batch size."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def edited_keypoints(self, state: _State, params: list[EditParams], *, stitching: bool = True) -> torch.Tensor:
        x = torch.zeros(len(params), 21, 3)
        x[:, 0, 0] = state.k
        x[:, 0, 1] = torch.tensor([p.smile for p in params])
        return x

    def render_mixed(self, items: list[tuple[_State, torch.Tensor]]) -> list[np.ndarray]:
        self.calls.append(len(items))
        out = []
        for state, x_d in items:
            assert int(x_d[0, 0]) == state.k  # each row is its own face's keypoints
            out.append(np.full((4, 4, 3), state.k * 100 + int(round(float(x_d[0, 1]) * 10)), np.uint8))
        return out


def test_faces_of_a_frame_render_in_one_batch() -> None:
    engine = _CountingEngine()
    states = [_State(0), _State(1)]
    params = [[EditParams(smile=0.1 * i) for i in range(3)], [EditParams(smile=0.5)] * 3]
    frames = list(render_group(engine, states, params, rows_per_batch=2))
    assert engine.calls == [2, 2, 2]  # one forward of batch N=2 per frame, not N forwards
    assert [[int(c[0, 0, 0]) for c in f] for f in frames] == [[0, 105], [1, 105], [2, 105]]
    engine.calls.clear()
    assert len(list(render_group(engine, states, params, rows_per_batch=4))) == 3
    assert engine.calls == [4, 2]  # two frames of two faces per call
    with pytest.raises(ValueError, match="same number of frames"):
        list(render_group(engine, states, [params[0], params[1][:2]]))
