"""Prepared photos (sources) and page sessions, both bounded.

* A :class:`Source` is one prepared photo: its :class:`~lpstudio.engine.SourceState`
  (~8.5 MB of appearance features), the picture as the page shows it and the
  display-resolution paste-back. It is keyed by the photo's digest, so every page
  showing the same portrait shares one, and a photo sent again (after its session
  expired, or by another page) is recognised and not prepared twice.
  :class:`SourceStore` bounds them by count and by memory, dropping idle ones first.
* A :class:`Session` is one page: a server-issued, unguessable id pointing at a
  source digest. :class:`SessionStore` holds many (a few hundred bytes each).

Both stores keep per-client quotas (a client is the address that made the session or first
sent the photo): a client past its quota loses its own least recently used item, and when a
store is full the item dropped is one of the client holding the most. So one client flooding
uploads or ``/session`` evicts only its own, never another page's photo or session.
"""

from __future__ import annotations

import dataclasses
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from ..engine import SourceState
from ..errors import LPStudioError

DISPLAY_MAX_SIDE = 1024
"""The page shows the photo at most this large; frames are pasted at that size."""
JPEG_QUALITY = 90
CROP_DISPLAY = 512
"""A pre-cropped face is shown at the renderer's output size."""
SESSION_ID_BYTES = 24
"""Random bytes in a session id (192 bits: not guessable)."""


class SessionExpired(LPStudioError):
    """The page's session was dropped (too many sessions, or the server restarted)."""

    http_status = 409

    def __init__(self, session_id: str) -> None:
        shown = session_id if len(session_id) <= 64 else session_id[:61] + "..."
        super().__init__(
            f"session {shown!r} is no longer on the server",
            hint="the page re-sends its photo and carries on",
        )


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """(H,W,3) uint8 RGB -> JPEG bytes."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def display_size(width: int, height: int, max_side: int = DISPLAY_MAX_SIDE) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def display_image(image: np.ndarray, crop: bool) -> np.ndarray:
    """The picture as the page shows it (RGB uint8).

    A photo (``crop=True``) is limited to :data:`DISPLAY_MAX_SIDE`; a pre-cropped face
    is shown at the renderer's 512x512, so frames replace it exactly.
    """
    if not crop:
        return cv2.resize(image, (CROP_DISPLAY, CROP_DISPLAY), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    dw, dh = display_size(w, h)
    return image if (dw, dh) == (w, h) else cv2.resize(image, (dw, dh), interpolation=cv2.INTER_AREA)


def nbytes_of(obj: Any, _depth: int = 0) -> int:
    """Bytes held by the arrays and tensors of ``obj`` (dataclasses, dicts, lists, plain objects; 3 levels)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, torch.Tensor):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, (bytes, bytearray)):
        return len(obj)
    if _depth >= 3 or obj is None or isinstance(obj, (int, float, str, bool)):
        return 0
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        values = list(obj.values())
    elif isinstance(obj, (list, tuple)):
        values = list(obj)
    elif hasattr(obj, "__dict__"):
        values = list(vars(obj).values())
    else:
        return 0
    return sum(nbytes_of(v, _depth + 1) for v in values)


@dataclass(eq=False)
class Source:
    """One prepared photo, shared by every session that shows it.

    ``display`` (h,w,3) uint8 is the portrait as shown; rendered (512,512,3) crops are
    composited onto it (:meth:`compose`). ``state`` has no full-resolution photo (the
    server pastes at display resolution), which keeps a source to its features.
    """

    digest: str
    state: SourceState
    display: np.ndarray
    display_jpeg: bytes
    faces: list[dict] = field(default_factory=list)
    paster: object | None = None  # PasteBack at display resolution, None for a pre-cropped face
    nbytes: int = 0
    active: int = 0  # renders and streams using it now (touched on the event loop only)
    last_used: float = field(default_factory=time.monotonic)
    owner: str | None = None  # the client (address) that first sent it, once known (its quota counts it)
    pieces: Any = None  # its idle segments and gaze atlas (server/pieces.py), counted in nbytes as they arrive
    face_states: list = field(default_factory=list)  # every animatable face's SourceState, largest first (faces.py)
    face_pasters: list = field(default_factory=list)  # their PasteBacks at display resolution

    def compose(self, frame: np.ndarray) -> np.ndarray:
        """A rendered (512,512,3) crop as the page shows it: pasted into the display photo."""
        if self.paster is not None:
            return self.paster(frame, self.display)
        h, w = self.display.shape[:2]
        if frame.shape[:2] == (h, w):
            return frame
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)

    def compose_faces(self, indices: list[int], crops: list[np.ndarray]) -> np.ndarray:
        """Rendered (512,512,3) crops of faces ``indices`` pasted into the display photo, larger faces on top."""
        from ..face.composite import GroupPaste

        boxes = [self.faces[i]["box"] for i in indices]
        return GroupPaste([self.face_pasters[i] for i in indices], boxes)(crops, self.display)


def make_source(state: SourceState, image: np.ndarray, digest: str) -> Source:
    """Build the display image (and display-resolution paste-back) for a prepared photo.

    ``image`` is the picture the user gave (RGB uint8), shown by :func:`display_image`.
    CPU work (resizing, a paste-back mask, JPEG): call it off the event loop.
    """
    if state.face is not None and state.photo is not None:
        from ..face import PasteBack

        ph, pw = state.photo.shape[:2]
        display = display_image(state.photo, crop=True)
        h, w = display.shape[:2]
        scale = np.diag([w / pw, h / ph, 1.0])
        paster = PasteBack(scale @ np.asarray(state.face.M_c2o, dtype=np.float64), (h, w))
        boxes = np.asarray(state.face.all_boxes, dtype=np.float64)
        faces = [
            {"box": [float(v) * (w / pw) for v in b[:4]], "score": float(b[4]) if len(b) > 4 else None} for b in boxes
        ]
    else:
        display = display_image(image, crop=False)
        paster, faces = None, []
    display = np.ascontiguousarray(display)
    slim = dataclasses.replace(state, photo=None, paster=None)  # the full photo is not needed any more
    source = Source(
        digest=digest, state=slim, display=display, display_jpeg=encode_jpeg(display), faces=faces, paster=paster
    )
    source.nbytes = nbytes_of(slim) + display.nbytes + len(source.display_jpeg) + nbytes_of(paster)
    return source


@dataclass(eq=False)
class Session:
    """One page: a server-issued id and the photo it shows."""

    id: str
    digest: str
    name: str
    owner: str = ""  # the client (address) that started it
    last_used: float = field(default_factory=time.monotonic)

    def describe(self, source: Source) -> dict:
        h, w = source.display.shape[:2]
        state = source.state
        return {
            "session": self.id,
            "name": self.name,
            "width": w,
            "height": h,
            "faces": source.faces,
            "face_index": getattr(state.face, "face_index", None),
            "animatable_faces": len(source.face_states),
            "ratios_estimated": state.ratios_estimated,
            "neutral": state.neutral_params().as_dict(),
        }


def new_session_id() -> str:
    return secrets.token_urlsafe(SESSION_ID_BYTES)


class SessionStore:
    """At most ``capacity`` page sessions (ids issued here only), at most ``per_client`` per client.

    A client past its quota loses its own least recently used session; when the store is full,
    the least recently used session of the client holding the most goes.
    """

    def __init__(self, capacity: int = 4096, per_client: int | None = None) -> None:
        self.capacity = max(1, capacity)
        self.per_client = max(1, per_client if per_client is not None else self.capacity)
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._owned: dict[str, OrderedDict[str, None]] = {}  # client -> its session ids, least recently used first
        self._lock = threading.Lock()
        self.evictions = 0

    def new(self, digest: str, name: str, owner: str = "") -> Session:
        """A new session of ``owner`` on the photo ``digest``."""
        session = Session(id=new_session_id(), digest=digest, name=name, owner=owner)
        with self._lock:
            self._items[session.id] = session
            mine = self._owned.setdefault(owner, OrderedDict())
            mine[session.id] = None
            while len(mine) > self.per_client:
                self._drop(next(iter(mine)))
            while len(self._items) > self.capacity:
                largest = max(self._owned.values(), key=len)
                self._drop(next(iter(largest)))
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._items.get(session_id)
            if session is None:
                raise SessionExpired(session_id)
            self._items.move_to_end(session_id)
            self._owned[session.owner].move_to_end(session_id)
            session.last_used = time.monotonic()
            return session

    def close(self, session_id: str) -> Session | None:
        """Forget a session (its page went away); the closed session, or None if unknown."""
        with self._lock:
            session = self._items.get(session_id)
            if session is not None:
                self._drop(session_id)
                self.evictions -= 1  # closed by its page, not evicted
            return session

    def digests_used_since(self, since: float, sessions: Collection[str] = ()) -> dict[str, float]:
        """Photo digests of sessions used at or after ``since`` (monotonic) or named in ``sessions``,
        each with its most recent use."""
        out: dict[str, float] = {}
        with self._lock:
            for sid, s in self._items.items():
                if s.last_used >= since or sid in sessions:
                    out[s.digest] = max(out.get(s.digest, 0.0), s.last_used)
        return out

    def peek(self, session_id: str) -> Session | None:
        """A session without marking it used."""
        with self._lock:
            return self._items.get(session_id)

    def owned_by(self, owner: str) -> int:
        """Sessions ``owner`` holds."""
        with self._lock:
            return len(self._owned.get(owner, ()))

    def _drop(self, session_id: str) -> None:
        session = self._items.pop(session_id)
        mine = self._owned[session.owner]
        del mine[session_id]
        if not mine:
            del self._owned[session.owner]
        self.evictions += 1

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._items

    def __len__(self) -> int:
        return len(self._items)


class SourceStore:
    """Prepared photos by digest, bounded by count and by memory, at most ``per_client`` per client.

    When a new one does not fit, a photo of the client holding the most goes: idle ones (no
    render or stream using them) first, least recently used first; then the least recently used
    of that client's others (their streams keep their own reference and finish normally). A photo
    counts for the client that first sent it from :meth:`claim` on (until then for nobody); past
    its quota a client loses its own least recently used photo.
    """

    def __init__(self, capacity: int = 64, max_bytes: int = 1024**3, per_client: int | None = None) -> None:
        self.capacity = max(1, capacity)
        self.max_bytes = max_bytes
        self.per_client = max(1, per_client if per_client is not None else self.capacity)
        self._items: OrderedDict[str, Source] = OrderedDict()
        self._lock = threading.Lock()
        self.evictions = 0

    def get(self, digest: str) -> Source | None:
        with self._lock:
            source = self._items.get(digest)
            if source is not None:
                self._items.move_to_end(digest)
                source.last_used = time.monotonic()
            return source

    def add(self, source: Source) -> Source:
        with self._lock:
            self._items[source.digest] = source
            self._items.move_to_end(source.digest)
            while len(self._items) > 1 and (len(self._items) > self.capacity or self._bytes() > self.max_bytes):
                if not self._evict(None, keep=source.digest):
                    break
        return source

    def claim(self, source: Source, owner: str) -> None:
        """Count ``source`` for ``owner`` (if nobody claimed it yet); past its quota, ``owner`` loses its oldest."""
        with self._lock:
            if source.owner is None:
                source.owner = owner
            while sum(1 for s in self._items.values() if s.owner == owner) > self.per_client:
                if not self._evict(owner, keep=source.digest):
                    break

    def owned_by(self, owner: str) -> int:
        """Prepared photos counted for ``owner``."""
        with self._lock:
            return sum(1 for s in self._items.values() if s.owner == owner)

    def _evict(self, owner: str | None, keep: str) -> bool:
        """Drop one photo of ``owner`` (None: of the client holding the most), never ``keep``; False if none."""
        if owner is None:
            counts: dict[str | None, int] = {}
            for digest, s in self._items.items():
                if digest != keep:
                    counts[s.owner] = counts.get(s.owner, 0) + 1
            if not counts:
                return False
            owner = max(counts, key=lambda o: counts[o])  # first reached: the owner of the oldest among the largest
            mine = [d for d, s in self._items.items() if s.owner == owner and d != keep]
        else:
            mine = [d for d, s in self._items.items() if s.owner == owner and d != keep]
            if not mine:
                return False
        victim = next((d for d in mine if self._items[d].active == 0), mine[0])
        del self._items[victim]
        self.evictions += 1
        return True

    def peek(self, digest: str) -> Source | None:
        """A photo without marking it used (background work asks, not a page)."""
        with self._lock:
            return self._items.get(digest)

    def grew(self, source: Source, n: int) -> None:
        """``source`` holds ``n`` more bytes (its idle pieces): counted, and over the bound other photos go."""
        with self._lock:
            source.nbytes += n
            while len(self._items) > 1 and self._bytes() > self.max_bytes:
                if not self._evict(None, keep=source.digest):
                    break

    def _bytes(self) -> int:
        return sum(s.nbytes for s in self._items.values())

    @property
    def memory_bytes(self) -> int:
        with self._lock:
            return self._bytes()

    def __contains__(self, digest: str) -> bool:
        return digest in self._items

    def __len__(self) -> int:
        return len(self._items)
