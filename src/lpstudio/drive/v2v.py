"""Video-to-video driving: a source video animated by a driving video, image or motion template.

Two streaming passes over the source video, never holding frames:

1. **motion pass**: each source frame is tracked and cropped
   (:func:`~lpstudio.drive.source_video.iter_source_crops`), M runs on the crops in
   batches; what is kept per frame is keypoint-sized (rotation, expression,
   scale, translation, canonical keypoints, eye/lip ratios, the 3x3 crop
   matrix). The driving clip's motion is gathered the same way (up to the
   source's length). With both sequences whole, the official smoothing and the
   reference frame are applied (:mod:`lpstudio.drive.v2v_motion`).
2. **render pass**: the source is decoded again and each frame re-cropped with its
   recorded matrix (no face models run twice), F and M give its own ``f_s``/``x_s``,
   frames are warped and decoded in mixed batches (each row its own source) and
   pasted back into their own frame, then encoded.

``n_frames = min(source, driving)`` (a driving image or one-frame template: the
source's length); the output keeps the source's frame rate and, by default, its audio.

The work is a :class:`V2VJob`: a generator of small steps, each at most one batch of model work
(a batch of source crops through M, a batch of driving frames through M, one frame's F and M, or a
batch of frames through W+G, pasted back and encoded). The CLI simply exhausts it
(:func:`drive_video_source`); a server runs one step at a time on its model thread, between
the frames of its viewers (``lpstudio.server.video_jobs``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import ImageError, ParamError
from ..face.crop import CROP_DSIZE
from ..video import detect_format, iter_frames, probe_video
from ..video_writer import VideoWriter
from .crop import DrivingCropper
from .driving_motion import DriveSettings, DrivingMotion, extract_motion
from .pipeline import DEFAULT_BATCH_SIZE, DriveSummary, driving_kind, motion_chunks
from .source_video import (
    DETECT_EVERY,
    SourceCrop,
    first_face_steps,
    iter_source_crops,
    open_source_video,
    prepare_crop,
    progress_bar,
)
from .stepped import JobStep, SteppedJob
from .template import load_motion
from .v2v_motion import V2VMotion, clip_deltas, eye_target, finish_keypoints

AUDIO_CHOICES: tuple[str, ...] = ("source", "driving", "none")
"""``--audio``: whose sound the output carries (default for a source video: ``source``)."""

CONCAT_PANEL = CROP_DSIZE
"""Side of each panel of ``--concat`` (driving | source | result), the result crop's size."""


@dataclass(frozen=True)
class V2VOptions:
    """Everything a video-source drive needs besides the inputs.

    Attributes:
        motion: how driving motion is applied (:class:`~lpstudio.drive.v2v_motion.V2VMotion`).
        audio: one of :data:`AUDIO_CHOICES`.
        concat: also write ``<output stem>_concat<suffix>``: driving crop | source crop | result.
        face_only: write the 512x512 animated crop instead of pasting it back into the frame.
        no_crop: the source frames are face crops already (resized to 256, no paste-back).
        face_index: which face of the source to follow (largest first on its first frame with a face).
        detect_every: detector checks while tracking the source (0: only when lost).
        driving_precropped: the driving video is already square face crops.
        batch_size: frames per batch through M, W and G.
        max_frames: use at most this many source frames.
        crf: x264/VP9 quality.
        progress: progress bars on stderr.
    """

    motion: V2VMotion = V2VMotion()
    audio: str = "source"
    concat: bool = False
    face_only: bool = False
    no_crop: bool = False
    face_index: int | None = None
    detect_every: int = DETECT_EVERY
    driving_precropped: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    max_frames: int | None = None
    crf: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.audio not in AUDIO_CHOICES:
            raise ParamError(f"unknown --audio {self.audio!r}", hint=f"use one of {', '.join(AUDIO_CHOICES)}")
        if self.batch_size < 1:
            raise ParamError(f"--batch-size must be at least 1, got {self.batch_size}")


@dataclass
class SourceTrack:
    """The motion pass over a source video: keypoint-sized arrays for every frame used.

    Attributes:
        motion: (N, ...) motion of each source crop (with its eye/lip ratios when landmarks exist).
        matrices: (N, 3, 3) float32 frame -> crop, or None with ``no_crop``.
        tracked: (N,) bool, False where the last good crop was reused.
    """

    motion: DrivingMotion
    matrices: np.ndarray | None
    tracked: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def __len__(self) -> int:
        return len(self.motion)


def _ratios(crops: list[SourceCrop]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    eyes = [c.eye_ratio for c in crops]
    lips = [c.lip_ratio for c in crops]
    if any(e is None for e in eyes) or any(v is None for v in lips):
        return None, None
    return torch.from_numpy(np.concatenate(eyes)), torch.from_numpy(np.concatenate(lips))  # type: ignore[arg-type]


V2VStep = JobStep
"""One step of a :class:`V2VJob` (see :class:`~lpstudio.drive.stepped.JobStep`)."""


StepGenerator = Generator[int, None, Any]
"""A phase of a job: yields the frames it finished in each step, returns the phase's result."""


def _exhaust(steps: Generator[Any, None, Any]) -> Any:
    """Run a generator of steps to its end and return its return value."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


@torch.inference_mode()
def track_source_steps(
    engine: Any, source: Path, face: Any, options: V2VOptions, *, limit: int | None = None
) -> StepGenerator:
    """Motion pass, one batch of crops through M per step (yields the batch's frame count);
    returns the :class:`SourceTrack` (no frame kept)."""
    info = open_source_video(source, max_frames=limit)
    bar = progress_bar(info.frame_count, options.progress, "tracking source")
    parts: list[DrivingMotion] = []
    matrices: list[np.ndarray] = []
    tracked: list[bool] = []
    batch: list[SourceCrop] = []
    want_lmk = (
        options.motion.normalize_lip
        or options.motion.source_eye_retargeting
        or (options.motion.settings.retarget_eyes or options.motion.settings.retarget_lip)
    )

    def flush() -> int:
        m = extract_motion(engine, [c.image_256 for c in batch], options.batch_size).to("cpu")
        eye, lip = _ratios(batch)
        parts.append(DrivingMotion(m.rotation, m.exp, m.scale, m.t, m.kp, eye, lip))
        bar.update(len(batch))
        n = len(batch)
        batch.clear()
        return n

    try:
        first = None
        if not options.no_crop and face is not None:  # the search for the first face, one frame a step
            search = first_face_steps(source, face, options.face_index, options.detect_every, limit)
            while True:
                try:
                    next(search)
                except StopIteration as found:
                    first = found.value
                    break
                yield 0
        crops = iter_source_crops(
            source,
            face,
            no_crop=options.no_crop,
            face_index=options.face_index,
            detect_every=options.detect_every,
            max_frames=limit,
            landmarks=want_lmk,
            first_face=first,
        )
        for crop in crops:
            batch.append(crop)
            if crop.M_o2c is not None:
                matrices.append(crop.M_o2c)
            tracked.append(crop.tracked)
            if len(batch) == options.batch_size:
                yield flush()
        if batch:
            yield flush()
    finally:
        bar.close()
    return SourceTrack(
        DrivingMotion.cat(parts), np.stack(matrices) if matrices else None, np.asarray(tracked, dtype=bool)
    )


def track_source(engine: Any, source: Path, face: Any, options: V2VOptions, *, limit: int | None = None) -> SourceTrack:
    """Motion pass: tracked crops of the source -> M in batches -> :class:`SourceTrack` (no frame kept)."""
    track: SourceTrack = _exhaust(track_source_steps(engine, source, face, options, limit=limit))
    return track


def _limited(frames: Iterator[np.ndarray], n: int | None) -> Iterator[np.ndarray]:
    for i, frame in enumerate(frames):
        if n is not None and i >= n:
            return
        yield frame


@torch.inference_mode()
def driving_clip_steps(engine: Any, driving: Path, face: Any, options: V2VOptions, limit: int) -> StepGenerator:
    """The driving clip's motion, one batch of frames through M per step (yields the batch's frame count);
    returns (motion of up to ``limit`` frames on the CPU, kind, faceless frames, held)."""
    kind = driving_kind(driving)
    settings = options.motion.settings
    landmarks = settings.retarget_eyes or settings.retarget_lip
    if kind == "template":
        track = load_motion(driving)
        n = min(len(track), limit)
        motion = track.motion(0, n, "cpu")
        return motion, kind, int((~track.face_found[:n]).sum()), len(track) == 1
    if not options.driving_precropped and face is None:
        raise ImageError(
            "cropping the driving frames needs the face models, which this engine was built without",
            hint="pass --driving-precropped for square face-crop videos",
        )
    cropper = DrivingCropper(face, precropped=options.driving_precropped, landmarks=landmarks)
    if kind == "video":
        frames: Iterator[np.ndarray] = _limited(iter_frames(driving), limit)
    else:
        from ..imageio import load_image

        frames = iter([load_image(driving).rgb])
    parts: list[DrivingMotion] = []
    faceless = 0
    for motion, found in motion_chunks(engine, frames, cropper, options.batch_size, str(driving)):
        parts.append(motion.to("cpu"))
        faceless += found.count(False)
        yield len(found)
    return DrivingMotion.cat(parts), kind, faceless, kind == "image"


def driving_clip(
    engine: Any, driving: Path, face: Any, options: V2VOptions, limit: int
) -> tuple[DrivingMotion, str, int, bool]:
    """(motion of up to ``limit`` driving frames on the CPU, kind, faceless frames, held) of a video/image/template."""
    result: tuple[DrivingMotion, str, int, bool] = _exhaust(driving_clip_steps(engine, driving, face, options, limit))
    return result


def _driving_panels(driving: Path, face: Any, options: V2VOptions, kind: str) -> Iterator[np.ndarray | None]:
    """The driving crops shown in ``--concat`` (256 px; None forever for a template), re-cropped as in pass 1."""
    if kind == "template":
        while True:
            yield None
    cropper = DrivingCropper(face, precropped=options.driving_precropped)
    if kind == "image":
        from ..imageio import load_image

        crop = cropper(load_image(driving).rgb)
        while True:
            yield None if crop is None else crop.image_256
    last: np.ndarray | None = None
    for frame in iter_frames(driving):
        crop = cropper(frame)
        last = crop.image_256 if crop is not None else last
        yield last
    while True:
        yield last


def concat_frame(driving: np.ndarray | None, source: np.ndarray, result: np.ndarray) -> np.ndarray:
    """Official-style side-by-side (driving | source | result), each panel resized to the result crop's size."""
    size = result.shape[1], result.shape[0]
    panels = [cv2.resize(p, size, interpolation=cv2.INTER_LINEAR) for p in (driving, source) if p is not None]
    return np.hstack([*panels, result])


def _audio_from(options: V2VOptions, source: Path, source_has_audio: bool, driving: Path, kind: str, output: Path,
                notes: list[str]) -> Path | None:  # fmt: skip
    if options.audio == "none":
        return None
    if detect_format(output) in ("gif", "png"):
        notes.append(f"{output} carries no sound: audio left out")
        return None
    if options.audio == "source":
        if not source_has_audio:
            notes.append(f"the source video {source.name} has no audio track: the output is silent")
            return None
        return source
    has = kind == "video" and probe_video(driving).has_audio
    if not has:
        notes.append(f"the driving {kind} {driving.name} has no audio track: the output is silent")
        return None
    return driving


def concat_path(output: Path) -> Path:
    """Where ``--concat`` writes: ``<stem>_concat<suffix>`` beside ``output`` (a folder gets ``_concat`` appended)."""
    if output.suffix:
        return output.with_name(f"{output.stem}_concat{output.suffix}")
    return output.with_name(f"{output.name}_concat")


class V2VJob(SteppedJob):
    """A video-source drive as a sequence of small steps (see the module docstring).

    Iterate it (or call :meth:`step`) for one :class:`V2VStep` per step; each step does at most one
    batch of model work. :meth:`run` does every step. :meth:`close` stops it early: the output's
    partial file is removed and nothing is left at ``output``. ``summary`` is complete once the
    steps are exhausted; ``partial_path`` is the file being written (for a caller bounding its size).

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        source: the source video (or a folder of frames).
        driving: a video, an image (its expression held over the video) or a motion template.
        output: a video (``.mp4``, ``.mov``, ``.mkv``, ``.webm``, ``.gif``) or a folder for PNG frames.
        options: see :class:`V2VOptions`.
        face: face pipeline (default: the engine's).
        frame_hook: called with every output frame (H, W, 3) uint8 before it is encoded.

    Raises (from the constructor for the source's header and the output's format, from a step for the rest):
        VideoError, FaceNotFoundError, ImageError, MotionTemplateError, ParamError: unusable inputs.
    """

    def __init__(
        self,
        engine: Any,
        source: str | os.PathLike[str],
        driving: str | os.PathLike[str],
        output: str | os.PathLike[str],
        options: V2VOptions = V2VOptions(),
        *,
        face: Any = None,
        frame_hook: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        self.engine = engine
        self.source, self.driving, self.output = Path(source), Path(driving), Path(output)
        self.face = face if face is not None else engine.face
        self.options = options
        self.frame_hook = frame_hook
        self.info = open_source_video(self.source, max_frames=options.max_frames)
        detect_format(self.output)  # an unwritable format fails before any model work
        self.summary = DriveSummary(output=self.output, fps=self.info.fps_exact)
        self.writer: VideoWriter | None = None
        self.track: SourceTrack | None = None
        expected = self.info.frame_count or 0
        self._units = [0, 0, 0]  # frames done: source, driving, render
        self._expected = [expected, expected, expected]
        super().__init__()

    # ------------------------------------------------------------------ the steps
    def _progress(self, phase: int, n: int, name: str, total: int | None) -> V2VStep:
        self._units[phase] += n
        return V2VStep(name, self._units[phase], total, sum(self._units), max(sum(self._expected), sum(self._units)))

    def _all_steps(self) -> Generator[V2VStep, None, None]:
        engine, source, driving, output = self.engine, self.source, self.driving, self.output
        face, options, info, summary = self.face, self.options, self.info, self.summary
        start = time.perf_counter()

        phase: StepGenerator = track_source_steps(engine, source, face, options, limit=options.max_frames)
        while True:
            try:
                n = next(phase)
            except StopIteration as stop:
                track: SourceTrack = stop.value
                break
            yield self._progress(0, n, "source", info.frame_count)
        self.track = track
        self._expected = [len(track), len(track), len(track)]
        phase = driving_clip_steps(engine, driving, face, options, len(track))
        while True:
            try:
                n = next(phase)
            except StopIteration as stop:
                drv, kind, faceless, held = stop.value
                break
            yield self._progress(1, n, "driving", len(track))
        summary.kind, summary.faceless_frames = kind, faceless
        n = len(track) if held else min(len(track), len(drv))
        self._expected = [len(track), self._units[1], n]
        src = track.motion.rows(slice(0, n))
        deltas, reference = clip_deltas(src, drv if held else drv.rows(slice(0, n)), options.motion, held=held)
        if reference not in (None, 0):
            summary.notes.append(f"motion is relative to driving frame {reference}")
        if held:
            summary.notes.append(f"the driving {kind}'s expression is held over the source video's own motion")
        untracked = int((~track.tracked[:n]).sum())
        if untracked:
            summary.notes.append(f"{untracked} source frame{'s' if untracked != 1 else ''} reused the last face crop")
        eye_goal = None
        if options.motion.source_eye_retargeting and src.eye_ratio is not None:
            eye_goal = eye_target(src.eye_ratio[0].numpy())

        audio = _audio_from(options, source, info.has_audio, driving, kind, output, summary.notes)
        summary.audio = audio is not None
        frames = _render(engine, source, face, track, src, drv, deltas, options, n, held, eye_goal)
        panels = _driving_panels(driving, face, options, kind) if options.concat else None
        bar = progress_bar(n, options.progress, "animating")
        writer_kwargs: dict[str, Any] = {} if options.crf is None else {"crf": options.crf}
        concat_writer = None
        try:
            with VideoWriter(output, info.fps_exact, audio_from=audio, **writer_kwargs) as writer:
                self.writer = writer
                if options.concat:
                    concat_writer = VideoWriter(concat_path(output), info.fps_exact, audio_from=audio, **writer_kwargs)
                for item in frames:
                    if item is None:  # a frame was prepared (F, M): its own step, before W+G
                        yield self._progress(2, 0, "render", n)
                        continue
                    crop, rendered, pasted = item
                    frame = rendered if options.face_only or options.no_crop else pasted
                    if self.frame_hook is not None:
                        self.frame_hook(frame)
                    writer.write(frame)
                    if concat_writer is not None:
                        assert panels is not None
                        concat_writer.write(concat_frame(next(panels), crop.image_256, rendered))
                    summary.frames += 1
                    bar.update(1)
                    bar.set_postfix_str(f"{summary.frames / max(time.perf_counter() - start, 1e-9):.2f} fps")
                    if summary.frames % options.batch_size == 0 and summary.frames < n:
                        yield self._progress(2, options.batch_size, "render", n)  # the next batch renders next step
                if concat_writer is not None:
                    concat_writer.close()
                    summary.notes.append(f"wrote the side-by-side (driving | source | result) to {concat_path(output)}")
        except BaseException:
            if concat_writer is not None:
                concat_writer.abort()
            raise
        finally:
            self.writer = None
            bar.close()
        summary.seconds = time.perf_counter() - start
        yield self._progress(2, summary.frames - self._units[2], "render", n)


def drive_video_source(
    engine: Any,
    source: str | os.PathLike[str],
    driving: str | os.PathLike[str],
    output: str | os.PathLike[str],
    options: V2VOptions = V2VOptions(),
    *,
    face: Any = None,
    frame_hook: Callable[[np.ndarray], None] | None = None,
) -> DriveSummary:
    """Animate a source video with a driving video, image or motion template and write ``output``.

    Every step of a :class:`V2VJob` in a row (arguments as there).

    Raises:
        VideoError, FaceNotFoundError, ImageError, MotionTemplateError, ParamError: unusable inputs.
    """
    return V2VJob(engine, source, driving, output, options, face=face, frame_hook=frame_hook).run()


@torch.inference_mode()
def _render(
    engine: Any,
    source: Path,
    face: Any,
    track: SourceTrack,
    src: DrivingMotion,
    drv: DrivingMotion,
    deltas: torch.Tensor,
    options: V2VOptions,
    n: int,
    held: bool,
    eye_goal: float | None,
) -> Iterator[tuple[SourceCrop, np.ndarray, np.ndarray] | None]:
    """Render pass: (crop, 512 animated crop, frame with the crop pasted back) per output frame, in order;
    None after each frame's F and M (a place for a step to end, so W+G of the batch is a step of its own)."""
    crops = iter_source_crops(
        source, face, no_crop=options.no_crop, max_frames=n, landmarks=False, matrices=track.matrices
    )
    dev = engine.device
    batch: list[tuple[SourceCrop, Any]] = []
    done = 0

    def flush() -> Iterator[tuple[SourceCrop, np.ndarray, np.ndarray]]:
        nonlocal done
        rows = slice(done, done + len(batch))
        x_s = torch.cat([state.x_s for _, state in batch])
        x_d = rest_keypoints(engine, [state for _, state in batch], options.motion.rest) + deltas[rows].to(dev)
        d = drv.rows(slice(0, 1)).expand(len(batch)) if held else drv.rows(rows)
        x_d = finish_keypoints(
            engine,
            x_s,
            x_d,
            options.motion,
            source_eye=None if src.eye_ratio is None else src.eye_ratio[rows].to(dev),
            source_lip=None if src.lip_ratio is None else src.lip_ratio[rows].to(dev),
            driving_eye=None if d.eye_ratio is None else d.eye_ratio.to(dev),
            driving_lip=None if d.lip_ratio is None else d.lip_ratio.to(dev),
            eye_goal=eye_goal,
        )
        images = engine.render_mixed([(state, x_d[i]) for i, (_, state) in enumerate(batch)])
        for (crop, state), image in zip(batch, images, strict=True):
            yield crop, image, engine.paste_back(state, image)
        done += len(batch)
        batch.clear()

    for crop in crops:
        batch.append((crop, prepare_crop(engine, crop, paste_back=not options.no_crop)))
        yield None  # a step boundary: F and M of one frame done
        if len(batch) == options.batch_size:
            yield from flush()
    if batch:
        yield from flush()


def rest_keypoints(engine: Any, states: list[Any], rest: str) -> torch.Tensor:
    """(B, 21, 3) what each source frame renders when nothing moves, before stitching.

    ``"edit"``: the editing panel's rest pose (``engine.edited_keypoints`` with the neutral parameters,
    which keeps the source's ``t_z`` like the official ``execute_image_retargeting``), so that a still
    driving clip re-renders every frame exactly as ``lpstudio edit`` does; ``"official"``: ``x_s``, the
    official video path's (``t_z`` zeroed).
    """
    if rest == "official":
        return torch.cat([s.x_s for s in states])
    return torch.cat([engine.edited_keypoints(s, [s.neutral_params()], stitching=False) for s in states])


def is_source_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``drive``'s SOURCE is a video (by extension) or a folder of frames."""
    from ..video import is_video_path

    p = Path(path)
    return p.is_dir() or is_video_path(p)


__all__ = [
    "AUDIO_CHOICES",
    "DriveSettings",
    "SourceTrack",
    "V2VJob",
    "V2VOptions",
    "V2VStep",
    "concat_frame",
    "concat_path",
    "drive_video_source",
    "is_source_video",
    "track_source",
]
