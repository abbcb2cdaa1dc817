"""An expression command over a source video (``lpstudio animate talk.mp4 "웃어줘"``) as small steps.

The same work as the CLI's ``animate`` of a video (:mod:`lpstudio.cli.video_edits`): each source
frame tracked, cropped and prepared, the command's timeline sampled at the frame's time on the
frame's own neutral (:func:`~lpstudio.drive.source_edits.command_items`), rendered in mixed batches
(:func:`~lpstudio.drive.source_edits.render_source_edits`) and encoded. Those are lazy generators, so
one step here takes one batch of output frames from them: at most one batch of model work. It has
the interface of :class:`~lpstudio.drive.v2v.V2VJob` (``step``, ``run``, ``close``, ``partial_path``,
``summary``), so a server runs either the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

from ..video_writer import VideoWriter
from .pipeline import DriveSummary
from .source_edits import command_items, render_source_edits
from .source_video import iter_source_frames, open_source_video
from .stepped import JobStep, SteppedJob


class CommandVideoJob(SteppedJob):
    """A command's timeline over a source video's own motion, written to ``output`` step by step.

    Args:
        engine: a loaded :class:`~lpstudio.engine.LivePortrait`.
        source: the source video.
        timeline: the command's timeline (``build_timeline(text, idle=False)``: the video has its own
            liveliness), or None with ``lip_ratio`` alone.
        output: an ``.mp4``/``.webm`` path (written to a partial file, moved into place at the end).
        no_crop: the frames are face crops already (the 512 crop is written, no paste-back).
        lip_ratio: a lip-open target held on every frame (official retargeting video), or None.
        batch_size: frames per step (one batch of F, M, W+G).
        max_frames: use at most this many source frames.
        audio: carry the source's audio track (when it has one).
    """

    def __init__(
        self,
        engine: Any,
        source: str | os.PathLike[str],
        timeline: Any,
        output: str | os.PathLike[str],
        *,
        no_crop: bool = False,
        lip_ratio: float | None = None,
        batch_size: int = 1,
        max_frames: int | None = None,
        audio: bool = True,
    ) -> None:
        self.engine = engine
        self.source, self.output = Path(source), Path(output)
        self.timeline, self.no_crop, self.lip_ratio = timeline, no_crop, lip_ratio
        self.batch_size, self.max_frames = max(1, batch_size), max_frames
        self.info = open_source_video(self.source, max_frames=max_frames)  # missing, corrupt, 0 frames: here
        self.audio = audio and self.info.has_audio
        self.summary = DriveSummary(output=self.output, fps=self.info.fps_exact)
        self.summary.kind, self.summary.audio = "command", self.audio
        self.writer: VideoWriter | None = None
        super().__init__()

    def _all_steps(self) -> Generator[JobStep, None, None]:
        start = time.perf_counter()
        total = self.info.frame_count
        fps = self.info.fps_exact
        frames = iter_source_frames(self.engine, self.source, no_crop=self.no_crop, max_frames=self.max_frames)
        items = command_items(frames, self.timeline, float(fps), lip_ratio=self.lip_ratio)
        images = render_source_edits(self.engine, items, batch_size=self.batch_size, paste_back=not self.no_crop)
        try:
            with VideoWriter(self.output, fps, audio_from=self.source if self.audio else None) as writer:
                self.writer = writer
                for image in images:
                    writer.write(image)
                    self.summary.frames += 1
                    done = self.summary.frames
                    if done % self.batch_size == 0:
                        yield JobStep("render", done, total, done, max(total or 0, done))
        finally:
            self.writer = None
        self.summary.seconds = time.perf_counter() - start
        done = self.summary.frames
        yield JobStep("render", done, done, done, done)
