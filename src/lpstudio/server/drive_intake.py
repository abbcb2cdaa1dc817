"""Uploads that drive a portrait over HTTP: a driving video, a motion template (.npz), an expression photo.

Plain functions (run them off the event loop; the keypoint ones on the render worker's thread) that
another front end can reuse:

* :func:`check_drive_upload` — size and first bytes, before anything is decoded;
* :func:`decode_driving_video` — an MP4/WebM upload -> frames (at most :data:`DRIVE_DECODE_SIDE` a side),
  refused from its header when it is longer than the limits, and again while decoding (a header can lie);
* :func:`load_template_bytes` — an lpstudio ``.npz`` template (never an official ``.pkl``: no pickle
  from a client), its uncompressed size checked before a byte is inflated;
* :func:`video_keypoints` / :func:`template_keypoints` / :func:`expression_frame` — driving keypoints
  ``(N, 21, 3)`` for a prepared photo, or one rendered ``(512, 512, 3)`` frame.

Error messages name the upload and what was wrong; decoder text stays on the error's cause (logged only).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from ..drive.crop import DrivingCropper
from ..drive.driving_motion import DriveSettings, KeypointDriver
from ..drive.pipeline import motion_chunks
from ..drive.template import MotionTemplateError, MotionTrack, _load_npz
from ..drive.transfer import expression_keypoints, photo_motion
from ..errors import LimitError, PayloadTooLargeError, VideoError
from ..sniff import MATROSKA, MP4, SNIFF_BYTES, Format, describe
from .limits import ServiceLimits

DRIVE_DECODE_SIDE = 320
"""Driving frames are decoded at most this many pixels a side (faces are cropped to 256 for the motion net)."""
DRIVE_BATCH = 4
"""Driving frames per motion-extraction batch on the render worker."""
VIDEO_FORMATS: tuple[Format, ...] = (MP4, MATROSKA)
VIDEO_HINT = "upload an .mp4, .mov or .webm video with one face in it"
TEMPLATE_HINT = "upload a .npz motion template saved by `lpstudio drive --save-motion`"
ZIP_MAGIC = b"PK\x03\x04"
"""A .npz is a zip archive."""
TEMPLATE_BYTES_PER_FRAME = 4096
"""Most uncompressed bytes one template frame may take (its float32 arrays are ~300 bytes; room for extras)."""
TEMPLATE_EXTRA_BYTES = 64 * 1024
"""Room in a template's uncompressed size for its metadata and face-found flags."""


@dataclass(frozen=True)
class DrivingVideo:
    """Decoded driving frames: ``frames`` (N, H, W, 3) uint8 RGB (H, W <= 320), at ``fps``."""

    frames: list[np.ndarray]
    fps: float


def sniff_video(head: bytes) -> Format | None:
    """The accepted video container (MP4/MOV or WebM/Matroska) whose signature ``head`` carries, else None."""
    if head[4:8] == b"ftyp":
        return MP4
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    return None


def check_upload_size(name: str, data: bytes, max_bytes: int, max_seconds: float, hint: str = VIDEO_HINT) -> None:
    """Refuse an upload larger than ``max_bytes`` (for ``max_seconds`` of video) or empty."""
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"{name} is larger than {max_bytes / 2**20:g} MB",
            hint=f"upload at most {max_seconds:g} s of video (a smaller resolution is enough)",
        )
    if not data:
        raise VideoError(f"{name} is empty", hint=hint)


def check_drive_upload(name: str, data: bytes, limits: ServiceLimits) -> str:
    """``"video"`` or ``"template"`` from the first bytes of an upload; refuse empty, too large or other files."""
    check_upload_size(name, data, limits.max_drive_upload_bytes, limits.max_drive_seconds)
    head = data[:SNIFF_BYTES]
    if sniff_video(head) is not None:
        return "video"
    if head.startswith(ZIP_MAGIC):
        return "template"
    raise VideoError(f"{name} is {describe(head)}, not a video or a motion template", hint=VIDEO_HINT)


def _reduced_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, DRIVE_DECODE_SIDE / max(width, height))
    return max(2, round(width * scale)), max(2, round(height * scale))


@dataclass(frozen=True)
class VideoHeader:
    """What an upload's container declares, checked: its first video ``stream``, ``fps`` (0 < fps <= the
    limit), ``seconds`` (None when undeclared) and ``frames`` (None when undeclared)."""

    stream: Any
    fps: float
    seconds: float | None
    frames: int | None


def open_video(source: str | io.BytesIO, fmt: Format, name: str, hint: str = VIDEO_HINT) -> Any:
    """A PyAV container of ``source`` opened with its sniffed demuxer ``fmt`` named (FFmpeg never probes)."""
    import av

    try:
        return av.open(source, mode="r", format=fmt.decoder)
    except av.error.FFmpegError as exc:
        raise VideoError(f"cannot read {name}: not a video, or the file is corrupt", hint=hint) from exc


def read_video_header(container: Any, name: str, limits: ServiceLimits, hint: str = VIDEO_HINT) -> VideoHeader:
    """Check an opened upload's header before a frame is decoded: a video track, a usable frame rate, at most
    ``max_upload_pixels``.

    Raises:
        VideoError: no video track or an unusable frame rate.
        LimitError: larger than the pixel limit.
    """
    import av

    if not container.streams.video:
        raise VideoError(f"cannot read {name}: it has no video track", hint=hint)
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(Fraction(rate)) if rate else 0.0
    if not (math.isfinite(fps) and 0 < fps <= limits.max_fps):
        raise VideoError(f"cannot use {name}: its frame rate ({fps:g} fps) is not usable", hint=hint)
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if width * height > limits.max_upload_pixels:
        raise LimitError(
            f"{name} is {width}x{height} pixels; the limit is {limits.max_upload_pixels / 1e6:g} MP",
            hint="upload a smaller video",
        )
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    return VideoHeader(stream, fps, seconds, int(stream.frames or 0) or None)


def check_length(name: str, seconds: float | None, frames: int | None, fps: float, *, max_seconds: float,
                 max_frames: int, what: str) -> None:  # fmt: skip
    """Refuse a ``what`` (e.g. "driving video") over ``max_seconds`` or ``max_frames``.

    Raises:
        LimitError: naming the upload, its length and the limit.
    """
    if seconds is not None and seconds > max_seconds:
        raise LimitError(
            f"the {what} {name} is {seconds:.1f} s long; the limit is {max_seconds:g} s",
            hint=f"trim the {what} to at most {max_seconds:g} s",
        )
    if frames is not None and frames > max_frames:
        raise LimitError(
            f"the {what} {name} has {frames} frames or more ({frames / fps:.1f} s at {fps:g} fps); "
            f"the limit is {max_frames} frames",
            hint=f"trim the {what} or lower its frame rate",
        )


def decode_driving_video(data: bytes, name: str, limits: ServiceLimits) -> DrivingVideo:
    """Decode an uploaded driving video with its container named (never probed), bounded by the limits.

    Raises:
        VideoError: not a video we read, corrupt, no video track, or no frame.
        LimitError: longer than ``max_drive_seconds`` or ``max_drive_frames``, or larger than the pixel limit.
    """
    import av

    fmt = sniff_video(data[:SNIFF_BYTES])
    if fmt is None:
        raise VideoError(f"{name} is {describe(data[:SNIFF_BYTES])}, not a video", hint=VIDEO_HINT)
    with open_video(io.BytesIO(data), fmt, name) as container:
        header = read_video_header(container, name, limits)
        fps = header.fps
        _check_length(name, header.seconds, header.frames, fps, limits)
        frames: list[np.ndarray] = []
        try:
            for frame in container.decode(header.stream):
                if len(frames) >= limits.max_drive_frames:
                    _check_length(name, None, len(frames) + 1, fps, limits)
                w, h = _reduced_size(int(frame.width), int(frame.height))
                frames.append(frame.to_ndarray(format="rgb24", width=w, height=h))
                if len(frames) / fps > limits.max_drive_seconds:
                    _check_length(name, len(frames) / fps, len(frames), fps, limits)
        except av.error.FFmpegError as exc:
            where = "before the first frame" if not frames else f"after frame {len(frames)}"
            raise VideoError(f"cannot decode {name}: the video data is corrupt {where}", hint=VIDEO_HINT) from exc
    if not frames:
        raise VideoError(f"cannot read {name}: the video has no frames", hint=VIDEO_HINT)
    return DrivingVideo(frames, fps)


def _check_length(name: str, seconds: float | None, n_frames: int | None, fps: float, limits: ServiceLimits,
                  what: str = "driving video") -> None:  # fmt: skip
    check_length(
        name, seconds, n_frames, fps, max_seconds=limits.max_drive_seconds, max_frames=limits.max_drive_frames,
        what=what,
    )  # fmt: skip


class _NamedBytes(io.BytesIO):
    """An in-memory upload that messages call by its file name (np.load reads it like a file)."""

    def __init__(self, data: bytes, name: str) -> None:
        super().__init__(data)
        self.display_name = name

    def __str__(self) -> str:
        return self.display_name


def load_template_bytes(data: bytes, name: str, limits: ServiceLimits) -> MotionTrack:
    """An uploaded lpstudio ``.npz`` template (no pickle), bounded in uncompressed size and frames.

    Raises:
        MotionTemplateError: not a readable .npz, not an lpstudio template, or wrong arrays.
        LimitError: more frames (or seconds) than the limits allow.
    """
    budget = limits.max_drive_frames * TEMPLATE_BYTES_PER_FRAME + TEMPLATE_EXTRA_BYTES
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise MotionTemplateError(f"cannot read {name}: not a valid .npz file", hint=TEMPLATE_HINT) from exc
    if inflated > budget:
        raise LimitError(
            f"{name} unpacks to {inflated / 2**20:.1f} MB, more than a template of "
            f"{limits.max_drive_frames} frames (the limit) takes",
            hint="use a shorter motion template",
        )
    try:
        track = _load_npz(_NamedBytes(data, name))  # type: ignore[arg-type]
    except MotionTemplateError as exc:
        if "not a valid .npz" in exc.message:  # its message quotes numpy's text: say it plainly
            raise MotionTemplateError(f"cannot read {name}: not a valid .npz file", hint=TEMPLATE_HINT) from exc
        raise
    fps = float(track.fps)
    _check_length(name, len(track) / fps if fps > 0 else None, len(track), fps or 1.0, limits, "motion template")
    return track


# ---------------------------------------------------------------------- on the render worker
@torch.inference_mode()
def video_keypoints(
    engine: Any, state: Any, video: DrivingVideo, *, crop: bool, name: str, faces: Sequence[Any] | None = None
) -> torch.Tensor:
    """Driving keypoints ``(N, 21, 3)`` of a decoded video for a prepared photo (relative motion, as the CLI).

    ``crop``: find and crop the face in each frame (the server's face pipeline); otherwise the frames are
    taken as face crops and resized. ``faces``: several prepared faces of the photo instead of ``state``
    (each its own relative driver, the motion extracted once): ``(N, F, 21, 3)``. Raises FaceNotFoundError
    when no frame has a face.
    """
    cropper = DrivingCropper(engine.face if crop else None, precropped=not crop)
    chunks = (motion for motion, _ in motion_chunks(engine, iter(video.frames), cropper, DRIVE_BATCH, name))
    return _drive_faces(engine, [state] if faces is None else faces, chunks, group=faces is not None)


@torch.inference_mode()
def template_keypoints(
    engine: Any, state: Any, track: MotionTrack, *, faces: Sequence[Any] | None = None
) -> torch.Tensor:
    """Driving keypoints ``(N, 21, 3)`` of a motion template for a prepared photo (``(N, F, 21, 3)`` for ``faces``)."""
    chunks = (
        track.motion(start, min(start + DRIVE_BATCH, len(track)), engine.device)
        for start in range(0, len(track), DRIVE_BATCH)
    )
    return _drive_faces(engine, [state] if faces is None else faces, chunks, group=faces is not None)


def _drive_faces(engine: Any, states: Sequence[Any], chunks: Iterable[Any], *, group: bool) -> torch.Tensor:
    """Each state's keypoints of the motion ``chunks``: ``(N, F, 21, 3)``, or ``(N, 21, 3)`` unless ``group``."""
    drivers = [KeypointDriver(engine, s, DriveSettings(), sequence=True) for s in states]
    x_d = torch.cat([torch.stack([d(motion) for d in drivers], dim=1) for motion in chunks])
    return x_d if group else x_d[:, 0]


@torch.inference_mode()
def expression_frame(engine: Any, state: Any, rgb: np.ndarray, *, pose: bool, crop: bool) -> np.ndarray:
    """The photo of ``state`` with the expression (and with ``pose`` the head pose) of ``rgb`` (H,W,3) uint8:
    one rendered ``(512, 512, 3)`` uint8 crop (not pasted back)."""
    motion = photo_motion(engine, rgb, crop=crop)
    x_d = expression_keypoints(engine, state, motion, pose=pose)
    return next(iter(engine.render_keypoints(state, x_d, batch_size=1)))
