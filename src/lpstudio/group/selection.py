"""Which faces of a group photo to animate: ``--faces all|0,2`` and left/right positions.

Numbering (the same everywhere: ``lpstudio face``, ``--face-index``, ``--faces``,
per-face commands, ``--drive-face`` and the API): faces are numbered from 0,
**largest first** (the detector's order). Words of position ("the left person",
"왼쪽 사람") name faces by where their box centre lies in the photo: "left" is
the leftmost face in the image (as you look at it), "right" the rightmost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError, ParamError

ALL_FACES: str = "all"
"""``--faces all``: every face found."""
MAX_FACES: int = 8
"""Most faces one command animates (the CLI's bound; the web app's is ``ServiceLimits.max_faces``).
Each face costs one appearance volume (~8.5 MB) and one row of every render batch."""
MAX_FACES_OPTION_CHARS: int = 200
"""Longest ``--faces`` value read (a list of small numbers is never longer)."""

FaceChoice = str | tuple[int, ...]
"""``"all"`` or face indices (largest first), each once, in the order given."""

_INDEX_LIST = re.compile(r"^\s*\d{1,4}\s*(?:,\s*\d{1,4}\s*)*$")
LEFT, RIGHT, MIDDLE = "left", "right", "middle"
POSITIONS: tuple[str, ...] = (LEFT, RIGHT, MIDDLE)


class FaceSelectionError(ImageError):
    """A face index out of range, a bad ``--faces`` value, or too many faces."""

    http_status = 400


def parse_faces_option(text: str | Sequence[int] | None) -> FaceChoice | None:
    """``"all"``, ``"0,2"`` or a list of ints -> a :data:`FaceChoice` (None stays None: one face, the default).

    Raises:
        ParamError: not ``all`` nor a comma-separated list of face numbers, or a number repeated.
    """
    if text is None:
        return None
    if isinstance(text, str):
        value = text.strip().lower()
        if value == ALL_FACES:
            return ALL_FACES
        if len(value) > MAX_FACES_OPTION_CHARS or not _INDEX_LIST.match(value):
            shown = value if len(value) <= 40 else value[:37] + "..."
            raise ParamError(
                f"--faces {shown!r} is not 'all' nor a list of face numbers",
                hint="write --faces all or --faces 0,2 (faces are numbered from 0, largest first; "
                "`lpstudio face PHOTO` lists them)",
            )
        indices = [int(v) for v in value.split(",")]
    else:
        indices = [int(v) for v in text]
        if not indices or any(i < 0 for i in indices):
            raise ParamError("faces must be 'all' or a non-empty list of face numbers from 0")
    if len(set(indices)) != len(indices):
        raise ParamError(f"--faces names a face twice ({','.join(map(str, indices))})", hint="name each face once")
    return tuple(indices)


def resolve_faces(
    choice: FaceChoice | None, found: int, *, max_faces: int = MAX_FACES, what: str = "the photo"
) -> list[int]:
    """The face indices to animate, checked against the ``found`` faces.

    ``None`` is the default single face (0, the largest). ``"all"`` is every face found,
    up to ``max_faces`` (the largest ones).

    Raises:
        FaceSelectionError: an index is not below ``found``, or more than ``max_faces`` faces are named.
    """
    if found <= 0:
        raise FaceSelectionError(f"no face was found in {what}", hint="use a photo with a clearly visible face")
    if choice is None:
        return [0]
    if choice == ALL_FACES:
        return list(range(min(found, max_faces)))
    indices = list(choice)
    bad = [i for i in indices if not 0 <= i < found]
    if bad:
        plural = "s" if found != 1 else ""
        raise FaceSelectionError(
            f"face {bad[0]} was asked for, but {what} has {found} face{plural} (numbered 0 to {found - 1}, "
            "largest first)",
            hint=f"choose faces from 0 to {found - 1}, or 'all'",
        )
    if len(indices) > max_faces:
        raise FaceSelectionError(
            f"{len(indices)} faces were asked for; at most {max_faces} can be animated together",
            hint=f"choose at most {max_faces} faces",
        )
    return indices


def left_to_right(boxes: NDArray[np.floating] | Sequence[Sequence[float]]) -> list[int]:
    """Face indices (rows of ``boxes`` (N, 4+), largest first) ordered by box centre, leftmost first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), -1)
    centres = (b[:, 0] + b[:, 2]) / 2.0
    return sorted(range(len(centres)), key=lambda i: (centres[i], i))


def position_index(position: str, boxes: NDArray[np.floating] | Sequence[Sequence[float]]) -> int:
    """The face index at ``position`` (``left``, ``right``, ``middle``) of the photo.

    Raises:
        FaceSelectionError: no face, or ``middle`` asked of a photo with an even number of faces
            other than one.
    """
    order = left_to_right(boxes)
    if not order:
        raise FaceSelectionError("no face was found in the photo", hint="use a photo with a clearly visible face")
    if position == LEFT:
        return order[0]
    if position == RIGHT:
        return order[-1]
    if len(order) % 2 == 0:
        raise FaceSelectionError(
            f"'middle' names no single face: the photo has {len(order)} faces",
            hint="name the face by number instead (0 is the largest)",
        )
    return order[len(order) // 2]
