"""A video as the source: every frame tracked, cropped and prepared, streamed.

The official source-video path (``Cropper.crop_source_video``) detects the face
on the first frame, then follows it with the 203-point landmark model from the
previous frame's landmarks, and crops each frame by the *source* crop rule
(official ``scale``, ``vx_ratio``, ``vy_ratio``, roll cancelled) from those
landmarks; each frame then gets its own appearance volume ``f_s`` and keypoints
``x_s`` and is pasted back with its own ``M_c2o``.

Here the tracking is :class:`~lpstudio.drive.live.LiveCropper`'s (the live
mirror's tracker: detection on the first frame, when the tracked landmarks stop
looking like a face, and every ``detect_every`` frames), subclassed by
:class:`SourceTracker` only to choose *which* face to follow. Differences from
the official path, both for robustness:

* a frame where the face is lost is not dropped (the official code skips it,
  shortening the video): it reuses the last good crop square and is marked
  ``tracked=False``;
* frames before the first face (a video that starts on a title card) use the
  first face's crop square; a pre-scan finds it without keeping frames.

Memory is bounded: one decoded frame (plus its crop and state) at a time.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import keypoints as K
from ..errors import FaceNotFoundError, ImageError, ParamError, VideoError
from ..face.crop import (
    CROP_DSIZE,
    CROP_SCALE,
    CROP_VX,
    CROP_VY,
    crop_matrix,
    invert,
    to_network_input,
    transform_points,
    warp_to_crop,
)
from ..heap import release_freed_memory
from ..progress import progress_bar
from ..video import DEFAULT_FPS, FRAME_IMAGE_SUFFIXES, iter_frames, probe_video
from .live import DEFAULT_VERIFY_EVERY, LiveCropper

DETECT_EVERY = DEFAULT_VERIFY_EVERY
"""While tracking a source video, the detector still runs once every this many frames (0: only when lost)."""


@dataclass(frozen=True)
class SourceVideoInfo:
    """What a source video holds (headers and first frame).

    Attributes:
        fps: frames per second (``fps_exact`` keeps the exact rational, e.g. 30000/1001).
        frame_count: frames to be used (the header's count, capped by ``max_frames``), None when unknown.
        width, height: frame size in pixels.
        has_audio: the file has an audio track (never for a folder of frames).
        duration_s: ``frame_count / fps`` (0.0 when the count is unknown).
    """

    fps: float
    frame_count: int | None
    width: int
    height: int
    has_audio: bool
    duration_s: float
    fps_exact: Fraction = DEFAULT_FPS
    path: Path | None = None


@dataclass(frozen=True, eq=False)
class SourceCrop:
    """One source frame cropped (no network has run yet).

    Attributes:
        index: frame number in the source video.
        rgb: (H, W, 3) uint8, the full frame.
        image_256: (256, 256, 3) uint8 network input.
        image_512: (512, 512, 3) uint8 crop (the frame itself with ``no_crop``).
        M_o2c: (3, 3) float32 frame -> crop, or None with ``no_crop``.
        M_c2o: (3, 3) float32 crop -> frame, or None with ``no_crop``.
        lmk203: (203, 2) float32 landmarks in ``image_512`` pixels (the last good ones when not tracked),
            or None when there are none (no face models, or ``no_crop`` without landmarks).
        tracked: False when the face was not found in this frame and the last good crop was reused.
    """

    index: int
    rgb: NDArray[np.uint8]
    image_256: NDArray[np.uint8]
    image_512: NDArray[np.uint8]
    M_o2c: NDArray[np.float32] | None
    M_c2o: NDArray[np.float32] | None
    lmk203: NDArray[np.float32] | None
    tracked: bool

    @property
    def eye_ratio(self) -> NDArray[np.float32] | None:
        """(1, 2) eyes-open ratios (left, right) of the landmarks, or None."""
        return None if self.lmk203 is None else K.eye_close_ratio(self.lmk203).astype(np.float32)

    @property
    def lip_ratio(self) -> NDArray[np.float32] | None:
        """(1, 1) lip-open ratio of the landmarks, or None."""
        return None if self.lmk203 is None else K.lip_close_ratio(self.lmk203).astype(np.float32)


@dataclass
class SourceFrame:
    """One source frame, prepared for rendering.

    Attributes:
        index: frame number in the source video.
        rgb: (H, W, 3) uint8, the full source frame.
        state: ``SourceState`` of this frame's crop (f_s, x_s, kp info, ratios; ``photo``/``paster`` set
            for paste-back unless ``no_crop``).
        tracked: False when this frame reused the last good crop (no face found / tracking lost).
        crop: the :class:`SourceCrop` it was prepared from (crop matrices, landmarks, network input).
    """

    index: int
    rgb: np.ndarray
    state: Any
    tracked: bool
    crop: SourceCrop | None = None


def _is_frame_folder(path: Path) -> bool:
    return path.is_dir()


def open_source_video(path: str | os.PathLike[str], *, max_frames: int | None = None) -> SourceVideoInfo:
    """Probe a source video (a file PyAV reads, or a folder of PNG/JPEG frames).

    Raises:
        VideoError: missing, empty, not a video, corrupt, or no frame at all (shorter than one frame).
        ParamError: ``max_frames`` below 1.
    """
    if max_frames is not None and max_frames < 1:
        raise ParamError(f"the frame limit must be at least 1, got {max_frames}")
    p = Path(path)
    if _is_frame_folder(p):
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in FRAME_IMAGE_SUFFIXES)
        if not files:
            raise VideoError(
                f"cannot read {p}: the source folder has no PNG/JPEG frames (it is shorter than one frame)",
                hint="use a folder of frame_00000.png ... or a video file",
            )
        first = next(iter_frames(p))
        count = len(files) if max_frames is None else min(len(files), max_frames)
        fps = DEFAULT_FPS
        return SourceVideoInfo(
            float(fps), count, int(first.shape[1]), int(first.shape[0]), False, count / float(fps), fps, p
        )
    info = probe_video(p)  # VideoError for no file, 0 bytes, not a video, corrupt, 0 frames
    count = info.frame_count
    if count is not None and max_frames is not None:
        count = min(count, max_frames)
    duration = count / float(info.fps) if count else 0.0
    return SourceVideoInfo(float(info.fps), count, info.width, info.height, info.has_audio, duration, info.fps, p)


class SourceTracker(LiveCropper):
    """The live tracker, following one chosen face of a source video.

    On the first detection ``face_index`` (largest first) picks the face; on
    later detections (tracking lost, or the periodic check) the face nearest
    to the last landmarks is taken, so the tracker does not jump to someone else.
    """

    def __init__(self, face: object, *, face_index: int | None = None, detect_every: int = DETECT_EVERY) -> None:
        super().__init__(face, precropped=False, landmarks=True, verify_every=detect_every)
        self.face_index = face_index
        self.name = "the source video"
        self.frame_number = 0
        self._previous: NDArray[np.float32] | None = None  # last good landmarks (frame pixels)

    def _pick(self, boxes: NDArray[np.float32], small_to_frame: NDArray[np.float64] | None) -> int:
        if self._previous is None:
            index = 0 if self.face_index is None else int(self.face_index)
            if not 0 <= index < len(boxes):
                raise FaceNotFoundError(
                    f"Face number {index} was asked for, but frame {self.frame_number} of {self.name} has "
                    f"{len(boxes)} face{'s' if len(boxes) != 1 else ''} (0 to {len(boxes) - 1}, largest first).",
                    hint=f"choose --face-index from 0 to {len(boxes) - 1}",
                )
            return index
        centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
        if small_to_frame is not None:
            centres = transform_points(centres, small_to_frame)
        last = (self._previous.min(axis=0) + self._previous.max(axis=0)) / 2
        return int(np.argmin(np.linalg.norm(centres - last, axis=1)))

    def follow(self, frame: NDArray[np.uint8]) -> NDArray[np.float32] | None:
        """(203, 2) landmarks of the followed face in frame pixels, or None when it is not found in this frame."""
        lmk = self._lmk203(frame)
        if lmk is not None:
            self._previous = lmk
        self.frame_number += 1
        return lmk


def _limited(frames: Iterator[np.ndarray], max_frames: int | None) -> Iterator[np.ndarray]:
    for i, frame in enumerate(frames):
        if max_frames is not None and i >= max_frames:
            return
        yield frame


def _crop_with(
    index: int, rgb: NDArray[np.uint8], m_o2c: NDArray[np.float32], lmk: NDArray[np.float32] | None, tracked: bool
) -> SourceCrop:
    image_512 = warp_to_crop(rgb, m_o2c, CROP_DSIZE)
    return SourceCrop(
        index=index,
        rgb=rgb,
        image_256=to_network_input(image_512),
        image_512=image_512,
        M_o2c=m_o2c,
        M_c2o=invert(m_o2c),
        lmk203=lmk,
        tracked=tracked,
    )


def _source_matrix(lmk: NDArray[np.float32]) -> NDArray[np.float32]:
    """Frame -> 512 crop by the official source rule (``scale`` 2.3, ``vy_ratio`` -0.125, roll cancelled)."""
    return crop_matrix(lmk, dsize=CROP_DSIZE, scale=CROP_SCALE, vx=CROP_VX, vy=CROP_VY, rotate=True)


def first_face_steps(
    path: Path, face: Any, face_index: int | None, detect_every: int, max_frames: int | None
) -> Generator[None, None, tuple[int, NDArray[np.float32]]]:
    """Find the first frame with a face, yielding None after each frame without one (a step boundary);
    returns (frame number, landmarks). Decodes frames one at a time and keeps none."""
    tracker = SourceTracker(face, face_index=face_index, detect_every=detect_every)
    tracker.name = str(path)
    seen = 0
    for i, frame in enumerate(_limited(iter_frames(path), max_frames)):
        seen += 1
        tracker.frame_number = i
        lmk = tracker._detect(frame)
        if lmk is not None:
            return i, lmk
        yield None
    raise FaceNotFoundError(
        f"No face was found in any of the {seen} frame{'s' if seen != 1 else ''} of the source video {path}.",
        hint="use a source video where one face is clearly visible, facing the camera (or --no-crop for a face crop)",
    )


def _first_face(
    path: Path, face: Any, face_index: int | None, detect_every: int, max_frames: int | None
) -> tuple[int, NDArray[np.float32]]:
    """(frame number, landmarks) of the first frame with a face; decodes frames one at a time and keeps none."""
    steps = first_face_steps(path, face, face_index, detect_every, max_frames)
    while True:
        try:
            next(steps)
        except StopIteration as found:
            result: tuple[int, NDArray[np.float32]] = found.value
            return result


def iter_source_crops(
    path: str | os.PathLike[str],
    face: Any,
    *,
    no_crop: bool = False,
    face_index: int | None = None,
    detect_every: int = DETECT_EVERY,
    max_frames: int | None = None,
    landmarks: bool = True,
    matrices: NDArray[np.float32] | None = None,
    first_face: tuple[int, NDArray[np.float32]] | None = None,
) -> Iterator[SourceCrop]:
    """Source frames -> :class:`SourceCrop`, streamed (one frame in memory at a time).

    Args:
        path: a video file or a folder of frames.
        face: a face pipeline (``lpstudio.face.FacePipeline``); may be None with ``no_crop``.
        no_crop: frames are already face crops (resized to 256; no tracking, no paste-back).
        face_index: which face to follow, largest first on the first frame with a face (default 0).
        detect_every: frames between detector checks while tracking (0: only when lost).
        max_frames: stop after this many frames.
        landmarks: with ``no_crop``, still find landmarks (for eye/lip ratios) when ``face`` is given.
        matrices: (N, 3, 3) frame -> crop matrices recorded from an earlier pass: replayed instead of
            tracking (a second pass over the same video gives the same crops without the face models).
        first_face: (frame number, landmarks) of the first frame with a face, already found with
            :func:`first_face_steps` (a stepwise job searches in steps); else it is searched here.

    Raises:
        FaceNotFoundError: no frame has a face, or ``face_index`` is out of range.
        ImageError: cropping is asked for without face models.
        VideoError: unreadable video.
    """
    path = Path(path)
    if detect_every < 0:
        raise ParamError(f"detect_every must be 0 (only when lost) or positive, got {detect_every}")
    frames = _limited(iter_frames(path), max_frames)
    if no_crop:
        tracker = SourceTracker(face, detect_every=detect_every) if (landmarks and face is not None) else None
        last: NDArray[np.float32] | None = None
        for i, rgb in enumerate(frames):
            lmk = tracker.follow(rgb) if tracker is not None else None
            found = lmk is not None or tracker is None
            if lmk is not None:
                h, w = rgb.shape[:2]
                last = (lmk * np.array([CROP_DSIZE / w, CROP_DSIZE / h], np.float32)).astype(np.float32)
            yield SourceCrop(i, rgb, to_network_input(rgb), to_network_input(rgb, CROP_DSIZE), None, None, last, found)
        return
    if matrices is not None:
        for i, rgb in enumerate(frames):
            if i >= len(matrices):
                return
            yield _crop_with(i, rgb, np.asarray(matrices[i], np.float32), None, True)
        return
    if face is None:
        raise ImageError(
            "cropping the source video needs the face models, which this engine was built without",
            hint="load the engine with face models, or pass --no-crop for a video that is already a face crop",
        )
    if first_face is None:
        first_face = _first_face(path, face, face_index, detect_every, max_frames)
    start, first_lmk = first_face
    tracker = SourceTracker(face, face_index=face_index, detect_every=detect_every)
    tracker.name = str(path)
    m_last = _source_matrix(first_lmk)
    lmk_last = transform_points(first_lmk, m_last)
    for i, rgb in enumerate(frames):
        tracker.frame_number = i
        if i < start:  # before the first face: its crop square, not tracked
            yield _crop_with(i, rgb, m_last, lmk_last, False)
            continue
        lmk = tracker.follow(rgb)
        if lmk is None:
            yield _crop_with(i, rgb, m_last, lmk_last, False)
            continue
        m_last = _source_matrix(lmk)
        lmk_last = transform_points(lmk, m_last)
        yield _crop_with(i, rgb, m_last, lmk_last, True)


def prepare_crop(engine: Any, crop: SourceCrop, *, paste_back: bool = True) -> Any:
    """``SourceState`` of one :class:`SourceCrop`: F and M on its network input; paste-back into its frame."""
    from ..face import PasteBack

    paster = photo = None
    if paste_back and crop.M_c2o is not None:
        h, w = crop.rgb.shape[:2]
        paster = PasteBack(crop.M_c2o, (h, w), crop_size=CROP_DSIZE)
        photo = crop.rgb
    release_freed_memory()  # one source frame after another: keep the heap from growing (lpstudio/heap.py)
    return engine._state_from_256(crop.image_256, crop.lmk203, photo=photo, paster=paster)


def iter_source_frames(
    engine: Any,
    path: str | os.PathLike[str],
    *,
    face: Any = None,
    no_crop: bool = False,
    face_index: int | None = None,
    detect_every: int = DETECT_EVERY,
    max_frames: int | None = None,
    progress: bool = False,
) -> Iterator[SourceFrame]:
    """Source video frames -> :class:`SourceFrame` (tracked crop, ``SourceState``), streamed, bounded memory.

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        path: a video file or a folder of frames.
        face: face pipeline (default: the engine's).
        no_crop, face_index, detect_every, max_frames: see :func:`iter_source_crops`.
        progress: a progress bar (with the frame total) on stderr.

    Raises:
        FaceNotFoundError: no frame of the video has a face (the message names the file).
        VideoError: not a video, unreadable, or no frame at all.
    """
    info = open_source_video(path, max_frames=max_frames)
    face = face if face is not None else engine.face
    bar = progress_bar(info.frame_count, progress, "source frames")
    try:
        for crop in iter_source_crops(
            path, face, no_crop=no_crop, face_index=face_index, detect_every=detect_every, max_frames=max_frames
        ):
            yield SourceFrame(crop.index, crop.rgb, prepare_crop(engine, crop), crop.tracked, crop)
            bar.update(1)
    finally:
        bar.close()
