"""Dubbing a source video (``lpstudio speak talk.mp4 "안녕하세요"``) as small steps, for a server.

The same work as the CLI's dub (:func:`lpstudio.cli.video_edits.dub_video`): each source frame is
tracked and prepared, only the lip parameters follow the speech
(:func:`~lpstudio.drive.source_edits.dub_params`), each frame is rendered twice (unedited and dubbed)
and only a feathered mouth region comes from the dubbed render
(:func:`~lpstudio.drive.source_edits.blend_mouth`); the speech's samples are
the output's only audio (the source's own track is not copied). Output frame ``k`` is source frame
``k``; the output has ``ceil(speech_s * fps)`` frames at the source's fps. One step is at most one
batch of model work: one source frame's F and M, or ``batch_size`` rows of W+G (so on a CPU, batch 1,
a step costs about one clip frame). It has the interface of
:class:`~lpstudio.drive.v2v.V2VJob` (``step``, ``run``, ``close``, ``partial_path``, ``summary``), so a
server runs it like the others.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LimitError
from ..speech.mux import DEFAULT_CRF
from ..video_writer import VideoWriter
from .pipeline import DriveSummary
from .source_edits import blend_mouth, dub_params, frame_time_ms, frames_needed, mouth_rows
from .source_video import iter_source_frames, open_source_video
from .stepped import JobStep, SteppedJob

DUB_HOLD_FRAMES: int = 1
"""A speech may outlast the video by at most this many frames (the last frame is held), in the CLI and the
server alike: more is refused, a dub never loops or freezes the video."""


def dub_too_long(speech_s: float, name: str, video_s: float) -> LimitError:
    """The one-line refusal of a dub whose speech outlasts its video (``name``: what the user calls it)."""
    return LimitError(
        f"the speech lasts {speech_s:.2f} s but the source video {name} only {video_s:.2f} s",
        hint="use a source video at least as long as the speech, or a shorter speech (a dub never loops the video)",
    )


def check_dub_length(speech_ms: float, fps: float, frames: int | None, seconds: float | None, name: str) -> int:
    """Output frames of a dub of ``speech_ms`` over a video of ``frames`` (or ``seconds``) at ``fps``.

    Refuses (:class:`~lpstudio.errors.LimitError`) a speech longer than the video by more than
    :data:`DUB_HOLD_FRAMES`, from the header alone (no model work). A header without a length passes
    here; the job refuses it when the frames run out.
    """
    needed = frames_needed(speech_ms, fps)
    known = frames if frames is not None else (None if seconds is None else int(round(seconds * fps)))
    if known is not None and known + DUB_HOLD_FRAMES < needed:
        raise dub_too_long(speech_ms / 1000.0, name, known / fps)
    return needed


class DubVideoJob(SteppedJob):
    """A speech dubbed onto a source video's mouth, written to ``output`` step by step.

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        source: the source video.
        clip: the speech (a :class:`~lpstudio.speech.clip.SpeechClip` without idle liveliness); its
            audio (``(C, N)`` samples) becomes the output's audio.
        output: an ``.mp4``/``.webm`` path (written to a partial file, moved into place at the end).
        no_crop: the frames are face crops already (the 512 crop is written, no paste-back).
        batch_size: model rows per W+G step (two per frame: unedited and dubbed); F and M run one
            source frame per step.
        max_frames: use at most this many source frames.
        name: the source as the user knows it (for the refusal when the video is shorter than the speech).

    Raises:
        LimitError: the speech is longer than the video's header says (before any model work).
    """

    def __init__(
        self,
        engine: Any,
        source: str | os.PathLike[str],
        clip: Any,
        output: str | os.PathLike[str],
        *,
        no_crop: bool = False,
        batch_size: int = 2,
        max_frames: int | None = None,
        name: str | None = None,
    ) -> None:
        self.engine, self.clip = engine, clip
        self.source, self.output = Path(source), Path(output)
        self.no_crop, self.batch_size, self.max_frames = no_crop, max(1, batch_size), max_frames
        self.name = name or self.source.name
        self.info = open_source_video(self.source, max_frames=max_frames)  # missing, corrupt, 0 frames: here
        fps = float(self.info.fps_exact)
        self.needed = check_dub_length(clip.audio_ms, fps, self.info.frame_count, None, self.name)
        self.summary = DriveSummary(output=self.output, fps=self.info.fps_exact)
        self.summary.kind, self.summary.audio = "dub", True
        self.writer: VideoWriter | None = None
        super().__init__()

    def _all_steps(self) -> Generator[JobStep, None, None]:
        """Steps of at most one model batch each: one source frame tracked and prepared (F, M), or
        ``batch_size`` rows through W+G (two rows per frame: unedited and dubbed, blended at the mouth)."""
        start = time.perf_counter()
        fps = float(self.info.fps_exact)
        needed = self.needed
        limit = needed if self.max_frames is None else min(needed, self.max_frames)
        frames = iter_source_frames(self.engine, self.source, no_crop=self.no_crop, max_frames=limit)
        per_batch = max(1, self.batch_size // 2)  # frames whose rows fill one W+G batch
        used = 0
        last: np.ndarray | None = None
        try:
            with VideoWriter(self.output, self.info.fps_exact, audio_channels=self.clip.audio.channels,
                             crf=DEFAULT_CRF) as writer:  # fmt: skip
                self.writer = writer
                writer.add_audio(self.clip.audio)
                while True:
                    batch: list[tuple[Any, torch.Tensor]] = []
                    while len(batch) < per_batch:
                        with torch.inference_mode():
                            frame = next(frames, None)  # F and M of one source frame
                            if frame is None:
                                break
                            batch.append((frame, self._keypoints(frame, fps)))
                        used += 1
                        yield JobStep("source", used, needed, self.summary.frames, needed)
                    if not batch:
                        break
                    rows = [(f.state, x_d[k]) for f, x_d in batch for k in (0, 1)]
                    images: list[np.ndarray] = []
                    for i in range(0, len(rows), self.batch_size):
                        if i:
                            yield JobStep("render", used, needed, self.summary.frames, needed)
                        with torch.inference_mode():
                            images += self.engine.render_mixed(rows[i : i + self.batch_size])
                    for k, (f, _) in enumerate(batch):
                        image = blend_mouth(images[2 * k], images[2 * k + 1])
                        last = self.engine.paste_back(f.state, image) if not self.no_crop else image
                        writer.write(last)
                        self.summary.frames += 1
                    yield JobStep("render", used, needed, self.summary.frames, needed)
                if last is None or used < needed - DUB_HOLD_FRAMES:
                    raise dub_too_long(self.clip.audio_ms / 1000.0, self.name, used / fps)
                while self.summary.frames < needed:  # the speech ends inside the frame after the video's last
                    writer.write(last)
                    self.summary.frames += 1
        finally:
            self.writer = None
        self.summary.seconds = time.perf_counter() - start
        yield JobStep("render", used, used, needed, needed)

    def _keypoints(self, frame: Any, fps: float) -> torch.Tensor:
        """``(2, 21, 3)``: the frame's unedited keypoints and its dubbed ones (the speech's mouth at its time)."""
        state = frame.state
        mouth = mouth_rows(self.clip.timeline, [frame_time_ms(frame.index, fps)])[0]
        x_d: torch.Tensor = self.engine.edited_keypoints(state, [state.neutral_params(), dub_params(state, mouth)])
        return x_d
