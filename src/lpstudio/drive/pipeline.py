"""The streaming driver: source photo + driving video/image/template -> animated frames.

Frames flow in chunks of ``batch_size``: decode -> face crop -> motion
extraction -> driving keypoints -> warp/decode -> paste-back -> encode. Only a
chunk of frames is in memory at a time, whatever the video's length (the
motion of every frame, a few hundred bytes each, is kept only for
``--save-motion``). Driving frames without a face repeat the last good motion
(leading ones take the first good motion, i.e. no movement) and are counted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import FaceNotFoundError, ImageError
from ..progress import progress_bar
from ..video import DEFAULT_FPS, is_video_path, iter_frames, probe_video
from ..video_writer import VideoWriter
from .crop import DrivingCrop, DrivingCropper
from .driving_motion import DriveSettings, DrivingMotion, KeypointDriver, extract_motion
from .template import MotionTrack, is_template_path, load_motion, save_motion

DEFAULT_BATCH_SIZE = 4
"""Frames per chunk through M, W and G (bigger is faster on a GPU, costs memory)."""

IMAGE_OUTPUT_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class DriveSummary:
    """What a drive did (filled in as frames stream)."""

    frames: int = 0
    faceless_frames: int = 0
    fps: Fraction = DEFAULT_FPS
    seconds: float = 0.0
    audio: bool = False
    output: Path | None = None
    template: Path | None = None
    kind: str = "video"  # video | image | template
    notes: list[str] = field(default_factory=list)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def driving_kind(path: str | os.PathLike[str]) -> str:
    """``"template"``, ``"video"`` or ``"image"`` by extension."""
    if is_template_path(path):
        return "template"
    return "video" if is_video_path(path) else "image"


def _with_ratios(motion: DrivingMotion, crops: list[DrivingCrop]) -> DrivingMotion:
    if any(c.eye_ratio is None or c.lip_ratio is None for c in crops):
        return motion
    dev = motion.exp.device
    eye = torch.from_numpy(np.concatenate([c.eye_ratio for c in crops])).to(dev)  # type: ignore[misc]
    lip = torch.from_numpy(np.concatenate([c.lip_ratio for c in crops])).to(dev)  # type: ignore[misc]
    return replace(motion, eye_ratio=eye, lip_ratio=lip)


def motion_chunks(
    engine: Any,
    frames: Iterator[np.ndarray],
    cropper: Callable[[np.ndarray], DrivingCrop | None],
    batch_size: int,
    name: str,
) -> Iterator[tuple[DrivingMotion, list[bool]]]:
    """Driving frames -> (motion of up to ``batch_size`` frames, face found per frame), streamed.

    Raises:
        FaceNotFoundError: no frame of the whole clip has a face.
    """
    last: DrivingMotion | None = None
    leading = 0  # faceless frames before the first face
    seen = 0
    batch: list[np.ndarray] = []

    def flush(batch: list[np.ndarray]) -> Iterator[tuple[DrivingMotion, list[bool]]]:
        nonlocal last, leading
        crops = [cropper(f) for f in batch]
        good = [c for c in crops if c is not None]
        found = [c is not None for c in crops]
        if not good and last is None:
            leading += len(batch)
            return
        rows_of_good = (
            _with_ratios(extract_motion(engine, [c.image_256 for c in good], batch_size), good) if good else None
        )
        rows: list[DrivingMotion] = []
        k = 0
        if last is None and leading:  # frames before the first face: no movement yet
            assert rows_of_good is not None
            rows.extend([rows_of_good.rows(slice(0, 1))] * leading)
            found = [False] * leading + found
            leading = 0
        for has_face in found[len(rows) :]:
            if has_face:
                assert rows_of_good is not None
                last = rows_of_good.rows(slice(k, k + 1))
                k += 1
            elif last is None:
                assert rows_of_good is not None
                last = rows_of_good.rows(slice(0, 1))
            rows.append(last)
        motion = DrivingMotion.cat(rows)
        for start in range(0, len(rows), batch_size):
            yield motion.rows(slice(start, start + batch_size)), found[start : start + batch_size]

    for frame in frames:
        batch.append(frame)
        seen += 1
        if len(batch) == batch_size:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)
    if last is None:
        raise FaceNotFoundError(
            f"No face was found in any of the {seen} frame{'s' if seen != 1 else ''} of the driving video {name}.",
            hint="Use a driving video where one face is clearly visible, facing the camera.",
        )


def template_chunks(track: MotionTrack, batch_size: int, device: Any) -> Iterator[tuple[DrivingMotion, list[bool]]]:
    """A saved track in chunks of ``batch_size`` frames."""
    for start in range(0, len(track), batch_size):
        stop = min(start + batch_size, len(track))
        yield track.motion(start, stop, device), [bool(v) for v in track.face_found[start:stop]]


@torch.inference_mode()
def drive_frames(
    engine: Any,
    state: Any,
    chunks: Iterator[tuple[DrivingMotion, list[bool]]],
    settings: DriveSettings,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    sequence: bool = True,
    summary: DriveSummary | None = None,
    keep_motion: list[DrivingMotion] | None = None,
    keep_found: list[bool] | None = None,
) -> Iterator[np.ndarray]:
    """Animated frames, one per driving frame: (H,W,3) uint8, pasted into the photo when the source has one."""
    driver = KeypointDriver(engine, state, settings, sequence=sequence)
    for motion, found in chunks:
        if keep_motion is not None:
            keep_motion.append(motion.to("cpu"))
            assert keep_found is not None
            keep_found.extend(found)
        x_d = driver(motion)
        for frame in engine.render_keypoints(state, x_d, batch_size=batch_size):
            yield engine.paste_back(state, frame)
        if summary is not None:
            summary.faceless_frames += found.count(False)


def drive(
    engine: Any,
    state: Any,
    driving: str | os.PathLike[str],
    output: str | os.PathLike[str],
    settings: DriveSettings = DriveSettings(),
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    precropped: bool = False,
    face: Any = None,
    audio: bool = True,
    save_motion_to: str | os.PathLike[str] | None = None,
    crf: int | None = None,
    progress: bool = True,
    frame_hook: Callable[[np.ndarray], None] | None = None,
) -> DriveSummary:
    """Animate a prepared source with a driving video, image or motion template and write ``output``.

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        state: the source, from ``engine.prepare_source``.
        driving: a video, an image (absolute expression and pose, one output frame) or a template.
        output: ``.mp4``/``.mov``/``.mkv`` (or an image file for an image or one-frame template).
        settings: how the motion is applied.
        batch_size: frames per chunk.
        precropped: driving frames are already square face crops (only resized).
        face: face pipeline for the driving frames (default: the engine's).
        audio: copy the driving video's audio into the output.
        save_motion_to: also save the driving motion as an ``.npz`` template.
        crf: x264 quality (default :data:`~lpstudio.video.H264_CRF`).
        progress: show a progress bar on stderr.
        frame_hook: called with every output frame before it is encoded (tests, previews).

    Raises:
        VideoError, FaceNotFoundError, ImageError, MotionTemplateError: unusable inputs.
    """
    from ..imageio import load_image, save_image

    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    driving, output = Path(driving), Path(output)
    kind = driving_kind(driving)
    summary = DriveSummary(output=output, kind=kind)
    face = face if face is not None else engine.face
    want_landmarks = settings.retarget_eyes or settings.retarget_lip
    if kind != "template" and not precropped and face is None:
        raise ImageError(
            "cropping the driving frames needs the face models, which this engine was built without",
            hint="load the engine with face=True, or pass --driving-precropped for square face-crop videos",
        )
    cropper = DrivingCropper(face, precropped=precropped, landmarks=want_landmarks)
    total: int | None
    sequence = True
    if kind == "video":
        info = probe_video(driving)
        summary.fps, total = info.fps, info.frame_count
        summary.audio = audio and info.has_audio and output.suffix.lower() not in (".gif", *IMAGE_OUTPUT_SUFFIXES)
        if precropped and not info.is_square:
            summary.notes.append(f"the driving video is {info.width}x{info.height}, not square: frames are squashed")
        chunks = motion_chunks(engine, iter_frames(driving), cropper, batch_size, str(driving))
    elif kind == "template":
        track = load_motion(driving)
        summary.fps, total = track.fps, len(track)
        sequence = len(track) > 1
        chunks = template_chunks(track, batch_size, engine.device)
    else:
        rgb = load_image(driving).rgb
        total, sequence = 1, False
        settings = replace(settings, relative=False)
        summary.notes.append("a driving image transfers its absolute expression and pose (no relative motion)")
        chunks = motion_chunks(engine, iter([rgb]), cropper, batch_size, str(driving))

    image_out = output.suffix.lower() in IMAGE_OUTPUT_SUFFIXES
    if image_out and sequence:
        raise ImageError(
            f"cannot write {output}: a driving video gives a video", hint="use an .mp4, .mov or .mkv output"
        )
    kept: list[DrivingMotion] | None = [] if save_motion_to is not None else None
    found: list[bool] = []
    frames = drive_frames(
        engine,
        state,
        chunks,
        settings,
        batch_size=batch_size,
        sequence=sequence,
        summary=summary,
        keep_motion=kept,
        keep_found=found,
    )
    bar = progress_bar(total, progress, "driving")
    start = time.perf_counter()
    try:
        if image_out:
            for frame in frames:
                if frame_hook is not None:
                    frame_hook(frame)
                save_image(output, frame)
                summary.frames += 1
                bar.update(1)
        else:
            writer_kwargs: dict[str, Any] = {"audio_from": driving if summary.audio else None}
            if crf is not None:
                writer_kwargs["crf"] = crf
            with VideoWriter(output, summary.fps, **writer_kwargs) as writer:
                for frame in frames:
                    if frame_hook is not None:
                        frame_hook(frame)
                    writer.write(frame)
                    summary.frames += 1
                    bar.update(1)
                    bar.set_postfix_str(f"{summary.frames / max(time.perf_counter() - start, 1e-9):.2f} fps")
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - start
    if kept is not None and kept:
        track = MotionTrack.from_motions(kept, found, summary.fps, driving.name)
        summary.template = save_motion(save_motion_to, track)  # type: ignore[arg-type]
    return summary
