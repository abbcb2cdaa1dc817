"""Paste several animated faces back into one photo (group photos).

Each face keeps its own feathered :class:`~lpstudio.face.pasteback.PasteBack`;
:class:`GroupPaste` applies them one after the other in *depth order*: the
smaller faces first and the largest last, so where two crops overlap, the face
nearer the camera (larger) is on top, and each blend fades smoothly into what is
already there (the photo or a face pasted before), never into black.

Every photo pixel outside all the masks is returned unchanged, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError
from .pasteback import PasteBack


def box_area(box: NDArray[np.floating] | Sequence[float]) -> float:
    """Area in pixels of an ``x1, y1, x2, y2[, score]`` box (0 for an empty one)."""
    b = np.asarray(box, dtype=np.float64)
    return float(max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]))


def depth_order(boxes: NDArray[np.floating] | Sequence[Sequence[float]]) -> list[int]:
    """Positions of ``boxes`` (N, 4+) in paste order: smallest area first, the largest last.

    Ties keep the given order (a stable sort), so the result is deterministic.
    """
    areas = [box_area(b) for b in boxes]
    return sorted(range(len(areas)), key=lambda i: areas[i])


class GroupPaste:
    """Precomputed paste-back of N face crops into one photo, in depth order.

    Args:
        pasters: one :class:`PasteBack` per face, all for the same photo size.
        boxes: (N, 4+) face boxes in photo pixels, same order as ``pasters``
            (they set the depth order: a larger box is pasted later, on top).

    Raises:
        ImageError: no paster, the counts differ, or the pasters target different photo sizes.
    """

    def __init__(self, pasters: Sequence[PasteBack], boxes: NDArray[np.floating] | Sequence[Sequence[float]]) -> None:
        if not pasters:
            raise ImageError("group paste-back needs at least one face", hint="choose one or more faces")
        if len(pasters) != len(boxes):
            raise ImageError(
                f"group paste-back got {len(pasters)} pasters for {len(boxes)} face boxes",
                hint="pass one face box per paster",
            )
        sizes = {p.photo_hw for p in pasters}
        if len(sizes) != 1:
            raise ImageError(
                f"group paste-back pasters target different photo sizes {sorted(sizes)}",
                hint="make every paster for the same photo",
            )
        self.pasters = list(pasters)
        self.photo_hw: tuple[int, int] = self.pasters[0].photo_hw
        self.order = depth_order(boxes)

    def __len__(self) -> int:
        return len(self.pasters)

    def __call__(self, frames: Sequence[NDArray[np.uint8]], photo: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Blend the faces' animated crops into a copy of ``photo``.

        Args:
            frames: N crops (S, S, 3) uint8, in the same order as the pasters (S may be 256 or 512).
            photo: (H, W, 3) uint8, the size the pasters were made for.

        Returns:
            (H, W, 3) uint8 new array.
        """
        if len(frames) != len(self.pasters):
            raise ImageError(
                f"group paste-back got {len(frames)} frames for {len(self.pasters)} faces",
                hint="render one frame per chosen face",
            )
        out = np.array(photo, dtype=np.uint8, copy=True)
        for i in self.order:
            self.pasters[i].paste_into(frames[i], out)
        return out

    def coverage(self) -> NDArray[np.float32]:
        """(H, W) float32 in 0..1: how much of each photo pixel the faces replace (max over the masks)."""
        h, w = self.photo_hw
        total = np.zeros((h, w), np.float32)
        for p in self.pasters:
            r = p.region
            if p.alpha.size:
                view = total[r.y0 : r.y1, r.x0 : r.x1]
                np.maximum(view, p.alpha[..., 0], out=view)
        return total
