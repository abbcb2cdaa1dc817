"""Per-page sessions: each holds its own prepared source, bounded in number (LRU)."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..engine import SourceState
from ..errors import LPStudioError

DISPLAY_MAX_SIDE = 1024
"""The page shows the photo at most this large; frames are pasted at that size."""
JPEG_QUALITY = 90
CROP_DISPLAY = 512
"""A pre-cropped face is shown at the renderer's output size."""


class SessionExpired(LPStudioError):
    """The page's session was dropped (too many sessions, or the server restarted)."""

    http_status = 409

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"session {session_id!r} is no longer on the server",
            hint="the page re-sends its photo and carries on",
        )


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
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


@dataclass(eq=False)
class Session:
    """One page's source. ``display`` is the portrait as shown; frames are composited onto it."""

    id: str
    state: SourceState
    display: np.ndarray  # (h,w,3) uint8
    digest: str  # identifies the source for the clip cache
    name: str
    faces: list[dict] = field(default_factory=list)
    paster: object | None = None  # PasteBack at display resolution, None for a pre-cropped face
    last_used: float = field(default_factory=time.monotonic)
    _display_jpeg: bytes | None = None

    @property
    def display_jpeg(self) -> bytes:
        if self._display_jpeg is None:
            self._display_jpeg = encode_jpeg(self.display)
        return self._display_jpeg

    def compose(self, frame: np.ndarray) -> np.ndarray:
        """A rendered (512,512,3) crop as the page shows it: pasted into the display photo."""
        if self.paster is not None:
            return self.paster(frame, self.display)
        h, w = self.display.shape[:2]
        if frame.shape[:2] == (h, w):
            return frame
        return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)

    def describe(self) -> dict:
        h, w = self.display.shape[:2]
        face = self.state.face
        return {
            "session": self.id,
            "name": self.name,
            "width": w,
            "height": h,
            "faces": self.faces,
            "face_index": getattr(face, "face_index", None),
            "ratios_estimated": self.state.ratios_estimated,
            "neutral": self.state.neutral_params().as_dict(),
        }


def make_session(
    state: SourceState, image: np.ndarray, name: str, digest: str, session_id: str | None = None
) -> Session:
    """Build the display image (and display-resolution paste-back) for a prepared source.

    ``image`` is the picture the user gave (RGB uint8), shown by :func:`display_image`.
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
    return Session(
        id=session_id or secrets.token_urlsafe(12),
        state=state,
        display=np.ascontiguousarray(display),
        digest=digest,
        name=name,
        faces=faces,
        paster=paster,
    )


class SessionStore:
    """At most ``capacity`` sessions; the least recently used is dropped first."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, session: Session) -> Session:
        with self._lock:
            self._items[session.id] = session
            self._items.move_to_end(session.id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return session

    def get(self, session_id: str) -> Session:
        with self._lock:
            session = self._items.get(session_id)
            if session is None:
                raise SessionExpired(session_id)
            self._items.move_to_end(session_id)
            session.last_used = time.monotonic()
            return session

    def __len__(self) -> int:
        return len(self._items)
