"""What a page keeps on the server: its base expression, its saved expressions, and its last clips.

One :class:`KeepStore` per app (``app.state.keep``), keyed by session id and bounded three ways:

* sessions: at most ``max_sessions`` records (least recently used dropped first), and a record of a
  session the :class:`~lpstudio.server.sessions.SessionStore` no longer holds is dropped with it
  (:meth:`KeepStore.prune`, run on every new record and clip), so it is evicted with the session;
* saved expressions: at most :data:`~lpstudio.expressions.library.MAX_EXPRESSIONS` per session;
* clips: the last :data:`CLIPS_PER_SESSION` clips a page played, addressable by a random clip id
  for the MP4 download, holding the encoded lines the stream already made (no re-render), at most
  ``max_clip_bytes`` of them in all (the oldest clips are forgotten first). The lines are the very
  objects the clip cache holds, so while a clip is cached they cost nothing extra.

Everything here runs on the event loop (no locks); the MP4 encoding itself runs on a thread
(:mod:`.keep_routes`).
"""

from __future__ import annotations

import json
import secrets
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from ..errors import LPStudioError, OverloadedError
from ..expressions.library import ExpressionLibrary
from ..params import EditParams
from .streams import SharedClip

CLIPS_PER_SESSION: int = 2
"""Clips of one page kept for download (the one it shows, and the one before)."""
KEEP_CLIP_BYTES: int = 64 * 1024**2
"""Encoded frame lines kept for downloads, all sessions together (shared with the clip cache while cached)."""
KEEP_SESSIONS: int = 4096
"""Session records kept (as many as the server's session ids by default)."""
CLIP_ID_BYTES: int = 12
"""Random bytes of a clip id (not guessable, so one page cannot fetch another's clip)."""
ENCODES_PER_CLIENT: int = 1
"""MP4 encodes one client may run at once (a second is answered 429)."""
ENCODES_IN_ALL: int = 2
"""MP4 encodes the server runs at once."""
RETRY_AFTER_S: float = 2.0
REASON_ENCODING: str = "encoding"


class ClipGone(LPStudioError):
    """The clip asked for is not kept (any more): 404."""

    http_status = 404


class ClipNotReady(LPStudioError):
    """The clip is still being rendered, or its render failed: 409."""

    http_status = 409


@dataclass
class KeptClip:
    """A clip a page played: its frame lines (one base64 JPEG each, filled in as they are encoded), fps,
    and audio when it spoke.

    It holds the clip's list of lines and only a weak reference to the clip itself, so a kept clip never
    keeps its prepared photo (the clip's ``source``) in memory after the photo store let it go.
    """

    lines: list[bytes | None]
    fps: float
    audio: Any | None  # lpstudio.speech.audio.AudioClip: (channels, n) float32 samples
    clip: weakref.ref[SharedClip]

    @classmethod
    def of(cls, clip: SharedClip, fps: float, audio: Any | None) -> KeptClip:
        return cls(clip.lines, fps, audio, weakref.ref(clip))

    @property
    def nbytes(self) -> int:
        return sum(len(x) for x in self.lines if x is not None)

    def frames_ready(self) -> list[bytes]:
        """The clip's frame lines; :class:`ClipNotReady` while rendering, :class:`ClipGone` if it cannot be had."""
        lines = self.lines
        if lines and all(x is not None for x in lines):
            return list(lines)  # type: ignore[arg-type]
        clip = self.clip()
        if clip is not None and not clip.finished:
            if not clip.keep_history:
                raise ClipGone("the clip is too long to keep for download", hint="play a shorter clip and download it")
            raise ClipNotReady("the clip is still being rendered", hint="download it when it has finished playing")
        raise ClipGone("that clip did not finish rendering", hint="play it again, then download it")


@dataclass
class SessionKeep:
    """One page's kept things."""

    base: EditParams | None = None
    library: ExpressionLibrary = field(default_factory=ExpressionLibrary)
    clips: OrderedDict[str, KeptClip] = field(default_factory=OrderedDict)


def decode_frame_line(line: bytes) -> np.ndarray:
    """An NDJSON ``frame`` line -> its picture, (H, W, 3) uint8 RGB."""
    import base64

    jpeg = base64.b64decode(json.loads(line)["jpeg"])
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:  # pragma: no cover - the lines are our own JPEGs
        raise ClipGone("a kept frame could not be read", hint="play the clip again")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class KeepStore:
    """Bases, libraries and downloadable clips by session (see the module doc for the bounds)."""

    def __init__(
        self,
        alive: Callable[[str], bool],
        *,
        max_sessions: int = KEEP_SESSIONS,
        max_clip_bytes: int = KEEP_CLIP_BYTES,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.alive = alive
        self.max_sessions = max(1, max_sessions)
        self.max_clip_bytes = max_clip_bytes
        self._items: OrderedDict[str, SessionKeep] = OrderedDict()
        self._encoding: dict[str, int] = {}
        self._on_reject = on_reject

    # ------------------------------------------------------------------ sessions
    def get(self, session_id: str) -> SessionKeep | None:
        item = self._items.get(session_id)
        if item is not None:
            self._items.move_to_end(session_id)
        return item

    def record(self, session_id: str) -> SessionKeep:
        """The session's record, made if needed (the least recently used goes past ``max_sessions``)."""
        item = self.get(session_id)
        if item is None:
            self.prune()
            item = self._items[session_id] = SessionKeep()
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)
        return item

    def prune(self) -> None:
        """Forget the records of sessions the server no longer has."""
        for sid in [s for s in self._items if not self.alive(s)]:
            del self._items[sid]

    def base(self, session_id: str | None) -> EditParams | None:
        item = self.get(session_id) if session_id else None
        return None if item is None else item.base

    def library(self, session_id: str | None) -> ExpressionLibrary | None:
        item = self.get(session_id) if session_id else None
        return None if item is None else item.library

    # ------------------------------------------------------------------ clips
    def remember(
        self, session_id: str, clip: SharedClip, fps: float, audio: Any | None, clip_id: str | None = None
    ) -> str:
        """Keep ``clip`` for download by this session under ``clip_id`` (default: a new id); returns the id."""
        item = self.record(session_id)
        clip_id = clip_id or secrets.token_urlsafe(CLIP_ID_BYTES)
        item.clips[clip_id] = KeptClip.of(clip, fps, audio)
        while len(item.clips) > CLIPS_PER_SESSION:
            item.clips.popitem(last=False)
        self._trim()
        return clip_id

    def clip(self, session_id: str, clip_id: str) -> KeptClip:
        item = self.get(session_id)
        kept = None if item is None else item.clips.get(clip_id)
        if kept is None:
            raise ClipGone(
                "that clip is no longer kept on the server", hint="play it again, then download it right away"
            )
        return kept

    @property
    def clip_bytes(self) -> int:
        return sum(k.nbytes for item in self._items.values() for k in item.clips.values())

    def _trim(self) -> None:
        """Forget the oldest clips (least recently used sessions first) past ``max_clip_bytes``."""
        total = self.clip_bytes
        for item in list(self._items.values()):
            while item.clips and total > self.max_clip_bytes:
                _, kept = item.clips.popitem(last=False)
                total -= kept.nbytes
            if total <= self.max_clip_bytes:
                return

    # ------------------------------------------------------------------ encode slots
    def start_encode(self, client: str) -> None:
        """Count one encode of ``client``, or 429 when it (or the server) already runs its share."""
        if self._encoding.get(client, 0) >= ENCODES_PER_CLIENT or sum(self._encoding.values()) >= ENCODES_IN_ALL:
            if self._on_reject is not None:
                self._on_reject(REASON_ENCODING)
            raise OverloadedError(
                "a video is already being prepared for download", reason=REASON_ENCODING, retry_after_s=RETRY_AFTER_S
            )
        self._encoding[client] = self._encoding.get(client, 0) + 1

    def end_encode(self, client: str) -> None:
        left = self._encoding.get(client, 0) - 1
        if left > 0:
            self._encoding[client] = left
        else:
            self._encoding.pop(client, None)

    def __len__(self) -> int:
        return len(self._items)
