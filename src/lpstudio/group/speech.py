"""Several faces that say the same speech: one lip-sync timeline sampled on each face's own base pose.

Shared by every front end that makes a group photo speak: ``lpstudio speak --faces``, ``lpstudio drive
PHOTO speech.wav --faces`` / ``--drive-face N=speech.wav`` (:mod:`lpstudio.group.drive`) and the web
app's spoken ``/generate`` and ``/generate-audio`` with ``faces`` (:mod:`lpstudio.server.face_speech`).
Frame ``k`` of every face is sampled at the same time, so every mouth moves with the one audio track.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..expressions.timeline import Timeline
from ..params import PARAM_NAMES, EditParams


def params_of_rows(rows: NDArray[np.floating]) -> list[EditParams]:
    """``(F, 17)`` parameter rows in :data:`~lpstudio.params.PARAM_NAMES` order -> F :class:`EditParams`."""
    return [EditParams(**dict(zip(PARAM_NAMES, map(float, row), strict=True))) for row in rows]


def speech_tracks(
    timeline: Timeline, times_ms: NDArray[np.floating] | Sequence[float], bases: Sequence[EditParams]
) -> list[list[EditParams]]:
    """One parameter track per face: ``timeline`` at ``times_ms`` (F,) on each of ``bases`` (N faces).

    Returns N lists of F parameter sets (every face lip-syncs the same speech; each keeps its own
    rest pose, so no face takes another's head angle or expression).
    """
    times = np.asarray(times_ms, dtype=np.float64).reshape(-1)
    return [params_of_rows(timeline.sample_at(times, base)) for base in bases]
