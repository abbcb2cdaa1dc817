"""Which merged faces the every-face search keeps (``lpstudio.face.search_merge``), on hand-made detections.

No model is run: each test builds raw detections of the search's passes and checks the merge's
decision, so they hold whatever the detectors score on a given photo (the real photos are in
``test_group_photo.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.typing import NDArray

from lpstudio.face.search_merge import EAR_RISE_MAX, PassFound, PassKind, face_like, merge_search

#: An upright face's six key points (eyes, nose tip, mouth, ears) in eye distances, eye midpoint at 0.
UPRIGHT = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.6], [0.0, 1.0], [-1.1, 0.2], [1.1, 0.2]])


def _face(centre: tuple[float, float], side: float, roll_deg: float = 0.0) -> tuple[NDArray, NDArray]:
    """(4,) box and (6, 2) key points of a face of ``side`` px at ``centre``, turned by ``roll_deg``."""
    a = math.radians(roll_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    kps = (UPRIGHT * 0.4 * side) @ rot.T + np.asarray(centre)
    cx, cy = centre
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]), kps


def _pass(kind: PassKind, faces: list[tuple[NDArray, NDArray, float]]) -> PassFound:
    return PassFound(
        kind,
        np.array([f[0] for f in faces], dtype=np.float64).reshape(-1, 4),
        np.array([f[2] for f in faces], dtype=np.float64),
        np.array([f[1] for f in faces], dtype=np.float64).reshape(-1, 6, 2),
    )


@pytest.mark.parametrize("roll", [0.0, 55.0, 90.0, 180.0, -135.0])
def test_a_face_is_face_like_at_any_roll(roll: float) -> None:
    assert face_like(_face((100.0, 100.0), 60.0, roll)[1])


def test_layouts_unlike_a_face_are_not() -> None:
    _, kps = _face((100.0, 100.0), 60.0)
    eye_dist = kps[1, 0] - kps[0, 0]
    raised = kps.copy()
    raised[4:, 1] = kps[0, 1] - (EAR_RISE_MAX + 0.1) * eye_dist  # both ears above the eyes (the ISS forearm)
    assert not face_like(raised)
    swapped = kps.copy()
    swapped[[2, 3]] = kps[[3, 2]]  # mouth above the nose
    assert not face_like(swapped)
    assert not face_like(np.repeat(kps[:1], 6, axis=0))  # both eyes on one point


def test_short_range_tiles_keep_a_turned_face_they_see_twice() -> None:
    box, kps = _face((300.0, 200.0), 70.0, 180.0)
    twice = _pass(PassKind.SHORT_TILES, [(box, kps, 0.61), (box + 2.0, kps + 2.0, 0.55)])
    once = _pass(PassKind.SHORT_TILES, [(box, kps, 0.61)])
    assert len(merge_search([twice])) == 1
    assert len(merge_search([once])) == 0  # one lone weak hit is no face
    # one weak hit that the full-range tiles confirm (at that model's own threshold) is a face too
    full = _pass(PassKind.FULL_TILES, [(box - 1.0, kps - 1.0, 0.63)])
    assert len(merge_search([once, full])) == 1
    assert len(merge_search([full])) == 0
    # a user threshold keeps whatever reached it
    assert len(merge_search([once], score_thresh=0.6)) == 1


def test_a_sure_tile_face_must_be_laid_out_like_a_face() -> None:
    box, kps = _face((300.0, 200.0), 80.0)
    forearm = kps.copy()
    forearm[4:, 1] = kps[0, 1] - 0.4 * (kps[1, 0] - kps[0, 0])
    assert len(merge_search([_pass(PassKind.FULL_TILES, [(box, kps, 0.77)])])) == 1
    assert len(merge_search([_pass(PassKind.FULL_TILES, [(box, forearm, 0.77)])])) == 0
    # on the whole photo, the model's own threshold holds as in MediaPipe's graph
    assert len(merge_search([_pass(PassKind.FULL_WHOLE, [(box, forearm, 0.77)])])) == 1


def _weak(box: NDArray, kps: NDArray, shift: tuple[float, float] = (0.0, 0.0)) -> PassFound:
    """Two weak short-range tile hits (0.54, 0.53) on ``box``, moved by ``shift``."""
    d = np.asarray(shift)
    return _pass(
        PassKind.SHORT_TILES, [(box + np.tile(d, 2), kps + d, 0.54), (box + np.tile(d, 2) + 1, kps + d + 1, 0.53)]
    )


def test_weak_hits_in_the_head_of_a_larger_face_are_no_second_face() -> None:
    big_box, big_kps = _face((400.0, 400.0), 240.0)
    big = _pass(PassKind.SHORT_TILES, [(big_box, big_kps, 0.92)])
    part_box, part_kps = _face((400.0, 360.0), 90.0)  # a "face" in the eyes and nose of the big one
    badge_box, badge_kps = _face((420.0, 230.0), 90.0)  # one in the badge of a cap above it
    for box, kps in ((part_box, part_kps), (badge_box, badge_kps)):
        dets = merge_search([big, _weak(box, kps)])
        assert len(dets) == 1 and dets.scores[0] == pytest.approx(0.92)
    # the same weak hits beside the big face, or as large as half of it, are a face of their own
    assert len(merge_search([big, _weak(part_box, part_kps, (400.0, 0.0))])) == 2
    half_box, half_kps = _face((420.0, 200.0), 125.0)
    assert len(merge_search([big, _weak(half_box, half_kps)])) == 2
