"""A photo's idle pieces: its idle segments and its gaze atlas, as JPEGs of the portrait as shown.

Each piece is a fixed list of parameter sets (one per frame) rendered once per photo in the
background (:mod:`.background`). The pieces hang on their :class:`~.sessions.Source` (so they are
cached by photo digest and evicted with the photo), and their bytes count in the source store's
memory bound as they arrive. Frame counts are constants of the motion design
(:mod:`lpstudio.expressions.idle_segments`), so a photo's pieces are bounded.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from ..expressions.idle_segments import IdleSegment, gaze_axes, gaze_offsets, idle_segments
from ..expressions.timeline import resolve_base
from ..params import PARAM_SPECS, EditParams

GAZE_ID = "gaze"
"""The atlas's piece id."""
ATLAS_AFTER = "still"
"""The atlas is rendered right after this segment (blink first, then stillness, then the atlas)."""


@dataclass(eq=False)
class Piece:
    """One piece: ``params`` (one :class:`EditParams` per frame) and its frames (JPEG bytes, None until rendered)."""

    id: str
    kind: str
    params: list[EditParams]
    duration_s: float
    frames: list[bytes | None] = field(default_factory=list)
    reserved: set[int] = field(default_factory=set)  # frames a job renders or encodes now (not to ask again)

    def __post_init__(self) -> None:
        if not self.frames:
            self.frames = [None] * len(self.params)

    @property
    def done(self) -> int:
        return sum(f is not None for f in self.frames)

    @property
    def ready(self) -> bool:
        return self.done == len(self.frames)

    def missing(self) -> list[int]:
        """Frames neither rendered nor being rendered."""
        return [i for i, f in enumerate(self.frames) if f is None and i not in self.reserved]


def _clamped(base: EditParams, offsets: dict[str, float]) -> EditParams:
    """``base`` moved by ``offsets``, each kept in its parameter's range."""
    values = resolve_base(base)
    specs = {s.name: s for s in PARAM_SPECS}
    moved = {
        name: min(specs[name].maximum, max(specs[name].minimum, (values[name] or 0.0) + off))
        for name, off in offsets.items()
    }
    return base.replace(**moved)


class PhotoPieces:
    """The idle segments (at ``fps``) and the gaze atlas of one photo, in render order.

    ``rendered`` counts frames delivered per piece id (each frame once per photo: what the tests check).
    """

    def __init__(self, digest: str, base: EditParams, fps: float) -> None:
        self.digest = digest
        self.fps = fps
        self.segments: list[IdleSegment] = idle_segments()
        self.xs, self.ys = gaze_axes()
        self.pieces: list[Piece] = []
        for seg in self.segments:
            params = seg.timeline.sample(fps, base)
            self.pieces.append(Piece(seg.id, seg.kind, params, seg.duration_s))
            if seg.id == ATLAS_AFTER:
                self.pieces.append(self._atlas(base))
        self.by_id = {p.id: p for p in self.pieces}
        self.rendered: Counter[str] = Counter()
        self.nbytes = 0

    def _atlas(self, base: EditParams) -> Piece:
        """The gaze atlas: one frame per (row, col), row-major (rows top to bottom, columns screen left to right)."""
        params = [_clamped(base, gaze_offsets(x, y)) for y in self.ys for x in self.xs]
        return Piece(GAZE_ID, "gaze", params, 0.0)

    @property
    def atlas(self) -> Piece:
        return self.by_id[GAZE_ID]

    def next_missing(self) -> Piece | None:
        """The first piece (in render order) with frames nobody renders yet."""
        return next((p for p in self.pieces if p.missing()), None)

    def store(self, piece_id: str, index: int, jpeg: bytes) -> int:
        """Keep a rendered frame; returns the bytes added (0 when it was already there)."""
        piece = self.by_id[piece_id]
        self.rendered[piece_id] += 1
        piece.reserved.discard(index)
        if piece.frames[index] is not None:
            return 0
        piece.frames[index] = jpeg
        self.nbytes += len(jpeg)
        return len(jpeg)

    @property
    def progress(self) -> tuple[int, int]:
        """(frames rendered, frames in all pieces)."""
        return sum(p.done for p in self.pieces), sum(len(p.frames) for p in self.pieces)

    def segment_pieces(self) -> list[Piece]:
        return [p for p in self.pieces if p.id != GAZE_ID]
