"""``lpstudio drive PHOTO DRIVING --faces all`` and ``--drive-face 0=a.mp4 --drive-face 1=smile.jpg``.

Each chosen face follows its own driving (``--drive-face``) or the shared ``DRIVING``:

* a **video** or **motion template**: each face has its own
  :class:`~lpstudio.drive.driving_motion.KeypointDriver` (relative motion against the driving's first
  frame, on its own source keypoints); a file shared by several faces is read and its motion extracted once;
* an **image**: its expression and pose (absolute, as for one face) held on every frame;
* **speech audio** (``.wav``, ``.mp3``, ...): the face lip-syncs to it (:mod:`lpstudio.group.speech`, the
  ``lpstudio speak`` timeline sampled at the output's frame times).

Frame ``k`` of the output holds frame ``k`` of every driving; it is as long as the shortest video,
template or audio (a driving image lasts as long as the others; drivings that are all images give
one frame, an image when ``-o`` names one). The fps is ``DRIVING``'s (a video's or template's; else
the first video or template of ``--drive-face``; else :data:`~lpstudio.expressions.timeline.DEFAULT_FPS`),
and the audio is ``DRIVING``'s (a video's track or the speech itself), else that of the first speech
audio of ``--drive-face``. Each frame's faces are one render batch, pasted back in depth order.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError, ParamError, VideoError
from .render import FaceGroup
from .speech import speech_tracks

_DRIVE_FACE = re.compile(r"^\s*(\d{1,4})\s*=(.+)$")
AUDIO = "audio"
"""The kind of a speech-audio driving (the others are :func:`~lpstudio.drive.pipeline.driving_kind`'s)."""
SPEECH_SEED = 0
"""Idle-liveliness seed of a face lip-syncing to an audio driving (``lpstudio drive PHOTO speech.wav``'s)."""
_NO_SOUND_SUFFIXES = (".gif", ".png", ".jpg", ".jpeg", ".webp", ".bmp")


def parse_drive_faces(values: Sequence[str]) -> dict[int, Path]:
    """``["0=a.mp4", "1=b.mp4"]`` -> ``{0: Path("a.mp4"), 1: Path("b.mp4")}``, files checked to exist.

    Raises:
        ParamError: not ``N=FILE``, or a face named twice.
        VideoError: a file that does not exist.
    """
    out: dict[int, Path] = {}
    for value in values:
        m = _DRIVE_FACE.match(value)
        if m is None:
            raise ParamError(
                f"--drive-face {value!r} is not FACE=FILE",
                hint="write e.g. --drive-face 0=a.mp4 (faces from 0, largest first)",
            )
        index, path = int(m[1]), Path(m[2].strip())
        if index in out:
            raise ParamError(f"--drive-face names face {index} twice", hint="give each face one driving file")
        if not path.exists():
            raise VideoError(f"cannot read {path} (--drive-face {index}): no such file", hint="check the path")
        out[index] = path
    return out


@dataclass(frozen=True, eq=False)
class Driving:
    """One driving file of a group drive, read (or probed) once before any model loads.

    Attributes:
        path: the file.
        kind: ``video``, ``template``, ``image`` or ``audio``.
        fps: frames per second of a video or template (None for an image or audio).
        has_audio: a video with a sound track, or speech audio.
        data: a template's ``MotionTrack``, an image's (H, W, 3) uint8 RGB, an audio's ``SpeechClip``
            (None for a video: its frames are streamed).
    """

    path: Path
    kind: str
    fps: Any = None
    has_audio: bool = False
    data: Any = None

    @property
    def finite(self) -> bool:
        """Whether it ends (an image is held as long as the others last)."""
        return self.kind != "image"


def read_driving(path: Path) -> Driving:
    """Check and read one driving file (a video is only probed).

    Raises:
        VideoError, ImageError, MotionTemplateError, AudioError: an unusable file (one line, naming it).
    """
    from ..drive.pipeline import driving_kind
    from ..speech.audio import is_audio_path

    if is_audio_path(path):
        from ..speech.audio import read_audio
        from ..speech.clip import speak_audio

        return Driving(path, AUDIO, has_audio=True, data=speak_audio(read_audio(path), idle=True, seed=SPEECH_SEED))
    kind = driving_kind(path)
    if kind == "video":
        from ..video import probe_video

        info = probe_video(path)
        return Driving(path, kind, fps=info.fps, has_audio=info.has_audio)
    if kind == "template":
        from ..drive.template import load_motion

        track = load_motion(path)
        return Driving(path, kind, fps=track.fps, data=track)
    from ..imageio import load_image

    return Driving(path, kind, data=load_image(path).rgb)


def read_drivings(paths: Sequence[Path]) -> dict[Path, Driving]:
    """Each distinct driving file read once (in order), by path."""
    out: dict[Path, Driving] = {}
    for p in paths:
        if p not in out:
            out[p] = read_driving(p)
    return out


def output_fps(main: Driving, others: Sequence[Driving]) -> Any:
    """The output's frame rate: ``main``'s, else the first video's or template's, else the speech rate."""
    from ..expressions.timeline import DEFAULT_FPS

    return next((d.fps for d in (main, *others) if d.fps is not None), DEFAULT_FPS)


def sound_of(main: Driving, others: Sequence[Driving]) -> Driving | None:
    """Whose audio the output carries: ``main``'s when it has any, else the first speech audio's."""
    if main.has_audio:
        return main
    return next((d for d in others if d.kind == AUDIO), None)


def _rows(engine: Any, driving: Driving, faces: list[int], group: FaceGroup, settings: Any, *, fps: float,
          batch_size: int, precropped: bool) -> Iterator[dict[int, torch.Tensor]]:  # fmt: skip
    """Per output frame: face index -> its x_d (21, 3), for the ``faces`` driven by ``driving``
    (endless for an image: its one pose held)."""
    from ..drive.crop import DrivingCropper
    from ..drive.driving_motion import KeypointDriver
    from ..drive.pipeline import motion_chunks, template_chunks
    from ..video import iter_frames

    position = {i: k for k, i in enumerate(group.indices)}
    states = {i: group.states[position[i]] for i in faces}
    if driving.kind == AUDIO:
        times = driving.data.frame_times(float(fps))
        tracks = speech_tracks(driving.data.timeline, times, [s.neutral_params() for s in states.values()])
        for start in range(0, len(times), batch_size):
            x_d = {i: engine.edited_keypoints(states[i], t[start : start + batch_size], stitching=settings.stitching)
                   for i, t in zip(states, tracks)}  # fmt: skip
            for j in range(motion_len(x_d)):
                yield {i: x[j] for i, x in x_d.items()}
        return
    cropper = DrivingCropper(
        engine.face, precropped=precropped, landmarks=settings.retarget_eyes or settings.retarget_lip
    )
    sequence = True
    if driving.kind == "video":
        chunks = motion_chunks(engine, iter_frames(driving.path), cropper, batch_size, str(driving.path))
    elif driving.kind == "template":
        chunks = template_chunks(driving.data, batch_size, engine.device)
    else:  # an image: its absolute expression and pose, as `lpstudio drive PHOTO smile.jpg` gives one face
        settings, sequence = replace(settings, relative=False), False
        chunks = motion_chunks(engine, iter([driving.data]), cropper, 1, str(driving.path))
    drivers = {i: KeypointDriver(engine, s, settings, sequence=sequence) for i, s in states.items()}
    for motion, _found in chunks:
        x_d = {i: d(motion) for i, d in drivers.items()}
        if not sequence:
            yield from itertools.repeat({i: x[0] for i, x in x_d.items()})
        for j in range(motion_len(x_d)):
            yield {i: x[j] for i, x in x_d.items()}


def motion_len(x_d: dict[int, torch.Tensor]) -> int:
    """Frames in a chunk of driving keypoints (the same for every face driven by it)."""
    return min(int(x.shape[0]) for x in x_d.values())


@torch.inference_mode()
def drive_group(
    engine: Any,
    group: FaceGroup,
    drivings: dict[int, Path],
    output: Path,
    settings: Any,
    *,
    main: Path,
    batch_size: int = 4,
    precropped: bool = False,
    audio: bool = True,
    crf: int | None = None,
    progress: bool = True,
    read: dict[Path, Driving] | None = None,
) -> Any:
    """Drive every face of ``group`` (face index -> its driving file) into ``output``.

    ``main`` (the command's DRIVING) gives the fps and the audio (see the module doc). ``read``: the
    drivings already read (:func:`read_drivings`, before the models load), by path. Returns a
    :class:`~lpstudio.drive.pipeline.DriveSummary`.

    Raises:
        ImageError: an image ``output`` for drivings that make a video.
        VideoError: a driving with no frames.
    """
    from ..drive.pipeline import IMAGE_OUTPUT_SUFFIXES, DriveSummary
    from ..imageio import save_image
    from ..progress import progress_bar
    from ..video_writer import VideoWriter

    output = Path(output)
    by_path: dict[Path, list[int]] = {}
    for i in group.indices:
        by_path.setdefault(drivings[i], []).append(i)
    read = dict(read or {})
    read.update({p: read_driving(p) for p in [main, *by_path] if p not in read})
    used = [read[p] for p in by_path]
    endless = not any(d.finite for d in used)  # images only: one frame
    image_out = output.suffix.lower() in IMAGE_OUTPUT_SUFFIXES
    if image_out and not endless:
        raise ImageError(
            f"cannot write {output}: a driving video, template or audio gives a video",
            hint="use an .mp4, .mov or .mkv output",
        )
    summary = DriveSummary(output=output, kind="image" if image_out else "video")
    summary.fps = output_fps(read[main], used)
    sound = sound_of(read[main], used) if audio and output.suffix.lower() not in _NO_SOUND_SUFFIXES else None
    summary.audio = sound is not None
    streams = [_rows(engine, read[p], faces, group, settings, fps=float(summary.fps), batch_size=batch_size,
                     precropped=precropped) for p, faces in by_path.items()]  # fmt: skip
    per_call = max(1, batch_size // len(group))
    bar = progress_bar(None, progress, "driving")
    start = time.perf_counter()
    writer_kwargs: dict[str, Any] = {}
    if sound is not None and sound.kind == AUDIO:
        writer_kwargs["audio_channels"] = sound.data.audio.channels
    elif sound is not None:
        writer_kwargs["audio_from"] = sound.path
    if crf is not None:
        writer_kwargs["crf"] = crf

    def frames() -> Iterator[Any]:
        """Composite frames (H, W, 3) uint8, ``per_call`` frames of every face per render batch."""
        made, limit = 0, 1 if endless else None  # drivings that are all images: one frame
        while limit is None or made < limit:
            want = per_call if limit is None else min(per_call, limit - made)
            rows_of: list[dict[int, torch.Tensor]] = []
            ended = False
            while len(rows_of) < want:
                rows: dict[int, torch.Tensor] = {}
                try:
                    for s in streams:
                        rows.update(next(s))
                except StopIteration:  # the shortest driving ended
                    ended = True
                    break
                rows_of.append(rows)
            if rows_of:
                items = [(group.states[k], f[i]) for f in rows_of for k, i in enumerate(group.indices)]
                crops = engine.render_mixed(items)
                n = len(group)
                for j in range(len(rows_of)):
                    yield group.compose(crops[j * n : (j + 1) * n])
                made += len(rows_of)
            if ended or not rows_of:
                return

    try:
        if image_out:
            for frame in frames():
                save_image(output, frame)
                summary.frames += 1
                bar.update(1)
        else:
            with VideoWriter(output, summary.fps, **writer_kwargs) as writer:
                if sound is not None and sound.kind == AUDIO:
                    writer.add_audio(sound.data.audio)
                for frame in frames():
                    writer.write(frame)
                    summary.frames += 1
                    bar.update(1)
    finally:
        bar.close()
    if summary.frames == 0:
        raise VideoError("no frame was driven: a driving file has no frames", hint="check the driving videos")
    summary.seconds = time.perf_counter() - start
    return summary
