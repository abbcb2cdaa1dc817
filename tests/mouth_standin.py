"""A stand-in renderer whose crops change only at the mouth: brighter the more the lip-sync opens it.

Built on ``benchmarks/standin_server.py`` (put on the path here, as ``tests/server/service_helpers.py``
does), so a test of several speaking faces sees each face's lips move and nothing else, in seconds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from standin_server import StandInEngine  # noqa: E402

MOUTH_ROWS = slice(330, 420)
MOUTH_COLS = slice(180, 332)
"""The mouth of a 512-pixel aligned face crop (the only block this stand-in changes)."""
MOUTH_GAIN = 3.0
"""Grey levels of brightening per unit of mouth opening (``lip_variation_three`` is ~25 on a wide '아')."""


class MouthStandIn(StandInEngine):
    """The stand-in renderer, but only each crop's mouth block changes, by how open the mouth is."""

    def edited_keypoints(self, state: Any, params: Sequence[Any], *, stitching: bool = True) -> torch.Tensor:
        """(N, 21, 3) as the stand-in's, with row 2 = (mouth opening, 0, 0)."""
        x_d = super().edited_keypoints(state, params, stitching=stitching)
        rest = state.neutral_params().lip_ratio
        for i, p in enumerate(params):
            x_d[i, 2, 0] = abs(p.lip_variation_three) + abs(p.lip_ratio - rest)
        return x_d

    def render_mixed(self, items: Sequence[tuple[Any, torch.Tensor]]) -> list[np.ndarray]:
        """Crops (512, 512, 3) uint8: the source crop, its mouth block brightened by the opening."""
        self.batches.append(len(items))
        out = []
        for state, x in items:
            crop = self._base(state).astype(np.float32)
            crop[MOUTH_ROWS, MOUTH_COLS] += MOUTH_GAIN * float(x[2, 0])
            out.append(np.clip(crop, 0, 255).astype(np.uint8))
        return out
