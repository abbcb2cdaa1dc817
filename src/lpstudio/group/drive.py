"""``lpstudio drive PHOTO DRIVING --faces all`` and ``--drive-face 0=a.mp4 --drive-face 1=b.mp4``.

Each chosen face follows its own driving video or motion template (``--drive-face``) or the shared
``DRIVING``; each face has its own :class:`~lpstudio.drive.driving_motion.KeypointDriver` (relative
motion against its driving's first frame, on its own source keypoints). A driving file shared by
several faces is read and its motion extracted once. Frame ``k`` of the output holds frame ``k`` of
every driving; the output is as long as the shortest one, at the fps (and with the audio) of
``DRIVING``. Each frame's faces are one render batch, pasted back in depth order.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import ImageError, ParamError, VideoError
from .render import FaceGroup

_DRIVE_FACE = re.compile(r"^\s*(\d{1,4})\s*=(.+)$")


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


def _rows(engine: Any, path: Path, faces: list[int], group: FaceGroup, settings: Any, *, batch_size: int,
          precropped: bool) -> Iterator[dict[int, torch.Tensor]]:  # fmt: skip
    """Per driving frame: face index -> its x_d (21, 3), for the ``faces`` driven by ``path``."""
    from ..drive.crop import DrivingCropper
    from ..drive.driving_motion import KeypointDriver
    from ..drive.pipeline import driving_kind, motion_chunks, template_chunks
    from ..drive.template import load_motion
    from ..video import iter_frames

    kind = driving_kind(path)
    if kind == "video":
        cropper = DrivingCropper(
            engine.face, precropped=precropped, landmarks=settings.retarget_eyes or settings.retarget_lip
        )
        chunks = motion_chunks(engine, iter_frames(path), cropper, batch_size, str(path))
    elif kind == "template":
        chunks = template_chunks(load_motion(path), batch_size, engine.device)
    else:
        raise ImageError(
            f"{path}: a driving image drives one face at a time",
            hint="use a driving video or motion template with --faces",
        )
    position = {i: k for k, i in enumerate(group.indices)}
    drivers = {i: KeypointDriver(engine, group.states[position[i]], settings, sequence=True) for i in faces}
    for motion, _found in chunks:
        x_d = {i: d(motion) for i, d in drivers.items()}
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
) -> Any:
    """Drive every face of ``group`` (face index -> its driving file) into one video ``output``.

    ``main`` (the command's DRIVING) gives the fps and the audio. Returns a
    :class:`~lpstudio.drive.pipeline.DriveSummary`.
    """
    from ..drive.pipeline import DriveSummary, _progress, driving_kind
    from ..drive.template import load_motion
    from ..video import probe_video
    from ..video_writer import VideoWriter

    summary = DriveSummary(output=output, kind="video")
    if driving_kind(main) == "video":
        info = probe_video(main)
        summary.fps, summary.audio = info.fps, audio and info.has_audio
    elif driving_kind(main) == "template":
        summary.fps = load_motion(main).fps
    by_path: dict[Path, list[int]] = {}
    for i in group.indices:
        by_path.setdefault(drivings[i], []).append(i)
    streams = [_rows(engine, p, faces, group, settings, batch_size=batch_size, precropped=precropped)
               for p, faces in by_path.items()]  # fmt: skip
    per_call = max(1, batch_size // len(group))
    bar = _progress(None, progress)
    start = time.perf_counter()
    writer_kwargs: dict[str, Any] = {"audio_from": main if summary.audio else None}
    if crf is not None:
        writer_kwargs["crf"] = crf
    try:
        with VideoWriter(output, summary.fps, **writer_kwargs) as writer:
            done = False
            while not done:
                frames: list[dict[int, torch.Tensor]] = []
                while len(frames) < per_call:
                    rows: dict[int, torch.Tensor] = {}
                    try:
                        for s in streams:
                            rows.update(next(s))
                    except StopIteration:  # the shortest driving ended
                        done = True
                        break
                    frames.append(rows)
                if not frames:
                    break
                items = [(group.states[k], f[i]) for f in frames for k, i in enumerate(group.indices)]
                crops = engine.render_mixed(items)
                n = len(group)
                for j in range(len(frames)):
                    writer.write(group.compose(crops[j * n : (j + 1) * n]))
                    summary.frames += 1
                    bar.update(1)
    finally:
        bar.close()
    if summary.frames == 0:
        raise VideoError("no frame was driven: a driving file has no frames", hint="check the driving videos")
    summary.seconds = time.perf_counter() - start
    return summary
