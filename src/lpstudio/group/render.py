"""Prepare and render several faces of one photo together, pasted back into one composite.

The faces of a frame go through the renderer as **one batch**: N faces make one
forward of batch N (with ``F`` frames per call, one of batch ``F x N``), through
:meth:`~lpstudio.engine.LivePortrait.render_mixed`, which already renders rows of
different sources together. Only duck-typed engine calls are made:
``engine.face.detect``, ``engine.prepare_source``, ``engine.edited_keypoints``
and ``engine.render_mixed``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ImageError
from ..face.composite import GroupPaste
from ..face.pasteback import PasteBack
from ..params import EditParams
from .selection import MAX_FACES, FaceChoice, resolve_faces

DEFAULT_ROWS_PER_BATCH: int = 4
"""Renderer rows per call (the CLI's ``--batch-size``): ``max(1, rows // N)`` frames of N faces each."""


@dataclass(frozen=True, eq=False)
class FaceGroup:
    """The prepared faces of one photo.

    Attributes:
        photo: (H, W, 3) uint8 RGB, full resolution.
        indices: the face indices (largest first numbering) in render order.
        states: one ``SourceState`` per index (the engine's prepared source).
        boxes: (N_found, 5) float32 every face found, largest first (``x1, y1, x2, y2, score``).
        paste: the depth-ordered paste-back of the chosen faces.
    """

    photo: NDArray[np.uint8]
    indices: tuple[int, ...]
    states: tuple[Any, ...]
    boxes: NDArray[np.float32]
    paste: GroupPaste

    def __len__(self) -> int:
        return len(self.states)

    def compose(self, crops: Sequence[NDArray[np.uint8]]) -> NDArray[np.uint8]:
        """N rendered crops (one per chosen face, in :attr:`indices` order) -> (H, W, 3) uint8 composite."""
        return self.paste(crops, self.photo)


def detect_boxes(engine: Any, photo: NDArray[np.uint8]) -> NDArray[np.float32]:
    """(N, 5) float32 boxes of every face in ``photo``, largest first (may be empty)."""
    if getattr(engine, "face", None) is None:
        raise ImageError(
            "choosing faces needs the face models, which this engine was built without",
            hint="leave out --no-crop to animate faces of a full photo",
        )
    return engine.face.detect(photo).with_scores()


def prepare_group(
    engine: Any,
    photo: NDArray[np.uint8],
    choice: FaceChoice | None,
    *,
    extra: Sequence[int] = (),
    max_faces: int = MAX_FACES,
    boxes: NDArray[np.float32] | None = None,
) -> FaceGroup:
    """Find the faces of ``photo``, prepare the chosen ones (plus ``extra`` indices) and their paste-back.

    ``boxes``: the faces already found (:func:`detect_boxes`), to skip detecting them again.

    Raises:
        FaceNotFoundError: no face in the photo.
        FaceSelectionError: an index out of range, or too many faces.
    """
    if boxes is None:
        boxes = detect_boxes(engine, photo)
    if len(boxes) == 0:
        engine.prepare_source(photo, crop=True)  # raises the pipeline's own "no face" error
    indices = resolve_faces(choice, len(boxes), max_faces=max_faces)
    indices += [i for i in extra if i not in indices]
    indices = resolve_faces(tuple(indices), len(boxes), max_faces=max_faces)
    states = tuple(engine.prepare_source(photo, crop=True, face_index=i) for i in indices)
    pasters = [s.paster if s.paster is not None else PasteBack.for_face(s.face, photo.shape[:2]) for s in states]
    paste = GroupPaste(pasters, [boxes[i] for i in indices])
    return FaceGroup(photo=photo, indices=tuple(indices), states=states, boxes=boxes, paste=paste)


def render_group(
    engine: Any,
    states: Sequence[Any],
    params: Sequence[Sequence[EditParams]],
    *,
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
    stitching: bool = True,
) -> Iterator[list[NDArray[np.uint8]]]:
    """Frames of N faces: ``params[k]`` is face ``k``'s parameter sets, all of one length F.

    Yields F lists of N crops (512, 512, 3) uint8, in order. Each renderer call takes
    ``max(1, rows_per_batch // N)`` frames, all their faces in one batch.

    Raises:
        ValueError: the faces' parameter lists differ in length or do not match ``states``.
    """
    n = len(states)
    if n == 0 or len(params) != n:
        raise ValueError(f"need one parameter list per face: {n} faces, {len(params)} lists")
    frames = len(params[0])
    if any(len(p) != frames for p in params):
        raise ValueError(f"every face needs the same number of frames, got {[len(p) for p in params]}")
    if frames == 0:
        return
    per_call = max(1, rows_per_batch // n)
    for start in range(0, frames, per_call):
        stop = min(frames, start + per_call)
        x_d = [engine.edited_keypoints(s, list(p[start:stop]), stitching=stitching) for s, p in zip(states, params)]
        items = [(states[k], x_d[k][j]) for j in range(stop - start) for k in range(n)]
        crops = engine.render_mixed(items)
        for j in range(stop - start):
            yield list(crops[j * n : (j + 1) * n])


def render_group_frames(
    engine: Any,
    group: FaceGroup,
    params: Sequence[Sequence[EditParams]],
    *,
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
    stitching: bool = True,
    paste_back: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[NDArray[np.uint8]]:
    """Composite frames (H, W, 3) uint8 of a :class:`FaceGroup` (or, without ``paste_back``, the
    crops side by side: (512, 512 x N, 3)); ``progress(done, total)`` after each frame."""
    total = len(params[0]) if params else 0
    for done, crops in enumerate(
        render_group(engine, group.states, params, rows_per_batch=rows_per_batch, stitching=stitching), start=1
    ):
        yield group.compose(crops) if paste_back else np.concatenate(crops, axis=1)
        if progress is not None:
            progress(done, total)
