"""Live driving: one camera frame at a time -> driving keypoints for a prepared source.

The per-frame half of the live mirror (the WebSocket transport is
:mod:`lpstudio.server.live`). It is the official video path of
:mod:`lpstudio.drive` applied to a stream that has no end:

1. **face tracking** (:class:`LiveCropper`): the detector runs on the first
   frame and whenever tracking is lost; otherwise the 203-point landmark model
   follows the face from the last frame's landmarks (the official
   ``crop_driving_video`` tracks the same way), with a detector check every
   ``verify_every`` frames so a face that left the picture is noticed;
2. **driving crop**: the fixed square of :class:`~lpstudio.drive.crop.DrivingCropper`,
   set by the neutral frame, so head translation and zoom stay visible;
3. **motion** of the crop (M, :func:`~lpstudio.drive.driving_motion.extract_motion`),
   with the eye/lip ratios of the tracked landmarks;
4. **relative transfer** (:class:`~lpstudio.drive.driving_motion.KeypointDriver`):
   the first frame with a face is the neutral, so it renders the portrait's
   own rest pose exactly, as a still driving video does; regions, eye/lip
   retargeting, smoothing and stitching as in ``lpstudio drive``.

"Reset neutral" makes the next frame with a face the new neutral (and re-fixes
the crop square). Frames without a face hold the last keypoints. With
``precropped`` (``serve --no-crop``) camera frames are taken as face crops:
their centre square is resized to the network input and no face model runs.

Everything here runs on the model's thread (the server's render worker);
:meth:`LiveDriver.request_reset` and :meth:`LiveDriver.request_settings` may be
called from any thread and take effect at the next frame.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from ..errors import ImageError, ParamError
from .crop import DrivingCrop, DrivingCropper
from .driving_motion import DriveSettings, DrivingMotion, KeypointDriver, extract_motion
from .pipeline import _with_ratios

LIVE_REGIONS: tuple[str, ...] = ("all", "exp", "pose", "lip")
"""Regions the live page offers: everything, expression only, head pose only, lips only."""

DEFAULT_VERIFY_EVERY = 15
"""While tracking, the detector still runs once every this many frames (half a second at 30 fps); 0: never."""

TRACK_MIN_FACE_PX = 24.0
"""Tracked landmarks spanning fewer pixels than this mean the face was lost."""

TRACK_MAX_SIZE_CHANGE = 1.6
"""A tracked face growing or shrinking by more than this factor in one frame was lost."""


def centre_square(frame: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The largest centred square of an (H,W,3) frame (a view, no copy)."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return frame[top : top + side, left : left + side]


def _extent(points: NDArray[np.floating]) -> float:
    """Longer side of the bounding box of (N,2) points."""
    span = points.max(axis=0) - points.min(axis=0)
    return float(span.max())


class LiveCropper(DrivingCropper):
    """A :class:`DrivingCropper` that tracks the face between frames instead of detecting it on each.

    ``detections`` counts detector runs (the expensive part of face finding).
    :meth:`reset` forgets the face and the crop square (the next face sets both).
    """

    def __init__(
        self,
        face: object | None,
        *,
        precropped: bool = False,
        landmarks: bool = False,
        verify_every: int = DEFAULT_VERIFY_EVERY,
    ) -> None:
        super().__init__(face, precropped=precropped, landmarks=landmarks)
        if verify_every < 0:
            raise ParamError(f"verify_every must be 0 (never) or positive, got {verify_every}")
        self.verify_every = verify_every
        self.detections = 0
        self._last: NDArray[np.float32] | None = None  # (203,2) landmarks of the previous frame, frame pixels
        self._since_detect = 0

    def reset(self) -> None:
        """Forget the tracked face and the fixed crop square."""
        self._last = None
        self._since_detect = 0
        self.m_o2c = None

    def _detect(self, frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        self.detections += 1
        self._since_detect = 0
        return super()._lmk203(frame)

    def _plausible(self, lmk: NDArray[np.float32], frame: NDArray[np.uint8]) -> bool:
        """Whether tracked landmarks still describe a face: finite, big enough, centred in the frame, no jump."""
        if not np.isfinite(lmk).all():
            return False
        size = _extent(lmk)
        h, w = frame.shape[:2]
        cx, cy = (lmk.min(axis=0) + lmk.max(axis=0)) / 2
        if size < TRACK_MIN_FACE_PX or not (0 <= cx < w and 0 <= cy < h):
            return False
        previous = _extent(self._last) if self._last is not None else size
        return 1 / TRACK_MAX_SIZE_CHANGE <= size / max(previous, 1e-6) <= TRACK_MAX_SIZE_CHANGE

    def _lmk203(self, frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """203 landmarks in frame pixels: tracked from the last frame, detected when lost or due for a check."""
        due = self.verify_every > 0 and self._since_detect + 1 >= self.verify_every
        if self._last is None or due:
            lmk = self._detect(frame)
        else:
            self._since_detect += 1
            lmk = self.face.landmark203(frame, self._last)  # type: ignore[attr-defined]
            if not self._plausible(lmk, frame):
                lmk = self._detect(frame)
        self._last = lmk
        return lmk

    def __call__(self, frame: NDArray[np.uint8]) -> DrivingCrop | None:
        """(H,W,3) uint8 RGB camera frame -> :class:`DrivingCrop`, or None without a face."""
        if self.precropped:
            frame = np.ascontiguousarray(centre_square(frame))
        return super().__call__(frame)


@dataclass(frozen=True)
class LiveResult:
    """What one camera frame gave.

    Attributes:
        x_d: (1,21,3) driving keypoints to render, or None (no face yet: nothing to show).
        face: a face was found in this frame (False: ``x_d`` is the last frame's, held).
        neutral: this frame became the neutral (first face, or after a reset).
        timings_ms: time of each step (``crop``, ``motion``, ``keypoints``) in milliseconds.
    """

    x_d: torch.Tensor | None
    face: bool
    neutral: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)


class LiveDriver:
    """Camera frames -> driving keypoints for one source, relative to the user's neutral frame.

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        state: the source, from ``engine.prepare_source``.
        settings: how motion is applied (``relative`` is always on: the first frame is the neutral).
        face: face pipeline for the camera frames (default: the engine's); unused with ``precropped``
            unless eye/lip retargeting needs landmarks.
        precropped: camera frames are face crops; their centre square is used as is.
        verify_every: frames between detector checks while tracking.

    Raises:
        ImageError: cropping is asked for but there are no face models.
        ParamError: a region the live path does not offer, or bad settings.
    """

    def __init__(
        self,
        engine: Any,
        state: Any,
        settings: DriveSettings = DriveSettings(),
        *,
        face: Any = None,
        precropped: bool = False,
        verify_every: int = DEFAULT_VERIFY_EVERY,
    ) -> None:
        face = face if face is not None else engine.face
        if not precropped and face is None:
            raise ImageError(
                "following a face in the camera needs the face models, which this engine was built without",
                hint="serve with face models, or with --no-crop to use the centre of the camera picture as the face",
            )
        self.engine = engine
        self.state = state
        self.settings = self._checked(settings)
        self.cropper = LiveCropper(
            face, precropped=precropped, landmarks=self._wants_landmarks(self.settings), verify_every=verify_every
        )
        self.neutral: DrivingMotion | None = None  # motion of the neutral frame
        self.last_x_d: torch.Tensor | None = None
        self.frames = 0
        self.faceless = 0
        self._driver: KeypointDriver | None = None
        self._pending_reset = False
        self._pending_settings: DriveSettings | None = None

    @staticmethod
    def _checked(settings: DriveSettings) -> DriveSettings:
        if settings.region not in LIVE_REGIONS:
            raise ParamError(
                f"region {settings.region!r} is not offered live", hint=f"use one of {', '.join(LIVE_REGIONS)}"
            )
        return settings if settings.relative else replace(settings, relative=True)

    @staticmethod
    def _wants_landmarks(settings: DriveSettings) -> bool:
        return settings.retarget_eyes or settings.retarget_lip

    # ------------------------------------------------------------------ control (any thread)
    def request_reset(self) -> None:
        """Make the next frame with a face the new neutral."""
        self._pending_reset = True

    def request_settings(self, settings: DriveSettings) -> None:
        """Apply new settings from the next frame on (the neutral stays). Raises ParamError when invalid."""
        self._pending_settings = self._checked(settings)

    @property
    def next_settings(self) -> DriveSettings:
        """The settings the next frame will use (requested ones not applied yet included)."""
        return self._pending_settings or self.settings

    # ------------------------------------------------------------------ frames (model thread)
    def _apply_pending(self) -> None:
        if self._pending_settings is not None:
            self.settings, self._pending_settings = self._pending_settings, None
            self.cropper.landmarks = self._wants_landmarks(self.settings)
            self._driver = None  # rebuilt below around the same neutral
        if self._pending_reset:
            self._pending_reset = False
            self.neutral = None
            self._driver = None
            self.cropper.reset()

    def _make_driver(self) -> KeypointDriver:
        driver = KeypointDriver(self.engine, self.state, self.settings, sequence=True)
        driver.reference = self.neutral  # None: the next motion becomes the reference
        return driver

    @torch.inference_mode()
    def step(self, frame: NDArray[np.uint8]) -> LiveResult:
        """One (H,W,3) uint8 RGB camera frame -> :class:`LiveResult`."""
        self._apply_pending()
        self.frames += 1
        t0 = time.perf_counter()
        crop = self.cropper(frame)
        t1 = time.perf_counter()
        timings = {"crop": (t1 - t0) * 1000}
        if crop is None:
            self.faceless += 1
            return LiveResult(self.last_x_d, face=False, timings_ms=timings)
        motion = _with_ratios(extract_motion(self.engine, [crop.image_256], 1), [crop])
        t2 = time.perf_counter()
        if self._driver is None:
            self._driver = self._make_driver()
        became_neutral = self.neutral is None
        x_d = self._driver(motion)
        if became_neutral:
            self.neutral = self._driver.reference
        self.last_x_d = x_d
        timings.update(motion=(t2 - t1) * 1000, keypoints=(time.perf_counter() - t2) * 1000)
        return LiveResult(x_d, face=True, neutral=became_neutral, timings_ms=timings)

    def rest_keypoints(self) -> torch.Tensor:
        """(1,21,3) what the neutral frame renders: the source keypoints, stitched when stitching is on."""
        x_s = self.state.x_s
        return self.engine.stitch(x_s, x_s) if self.settings.stitching else x_s
