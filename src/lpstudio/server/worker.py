"""One thread owns the model; every request's model work goes through it.

Clip frames from all sessions are gathered into shared W+G batches
(:meth:`~lpstudio.engine.LivePortrait.render_mixed`), taken round-robin across
jobs in priority order (a new job's first frame goes out in a small batch of
first frames, for latency), so a slider preview is not stuck behind a long clip and
two sessions share the GPU fairly. A job whose client went away is cancelled
and its remaining frames are never rendered.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ..engine import LivePortrait, SourceState
from ..params import EditParams

T = TypeVar("T")

PRIORITY_INTERACTIVE = 0  # a slider preview
PRIORITY_CLIP = 1  # a clip the user asked for
PRIORITY_BACKGROUND = 2  # idle loops, pre-rendered presets


@dataclass(eq=False)
class RenderJob:
    """Frames of one request. ``on_frame(index, frame)`` runs on the worker thread."""

    state: SourceState
    params: Sequence[EditParams]
    on_frame: Callable[[int, np.ndarray], None]
    on_done: Callable[[BaseException | None], None]
    priority: int = PRIORITY_CLIP
    stitching: bool = True
    seq: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    x_d: torch.Tensor | None = None  # (N,21,3), computed on the worker thread
    next_index: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_frame_s: float | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def remaining(self) -> int:
        return len(self.params) - self.next_index


class RenderWorker:
    """The model's single thread: ``call()`` for one-off work, ``submit()`` for frames."""

    def __init__(self, engine: LivePortrait, batch_size: int = 4) -> None:
        self.engine = engine
        self.batch_size = max(1, batch_size)
        self._jobs: list[RenderJob] = []
        self._calls: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stop = False
        self.frames_rendered = 0
        self.render_seconds = 0.0
        self._thread = threading.Thread(target=self._run, name="lpstudio-render", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ API
    def call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the worker thread (before pending frames); returns a future."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            self._calls.append((fn, future))
            self._cond.notify()
        return future

    def submit(self, job: RenderJob) -> RenderJob:
        job.seq = next(self._seq)
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        return job

    def pending_frames(self) -> int:
        with self._cond:
            return sum(j.remaining for j in self._jobs if not j.cancelled.is_set())

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            for job in self._jobs:
                job.cancel()
            self._cond.notify()
        self._thread.join(timeout)

    @property
    def measured_fps(self) -> float | None:
        return self.frames_rendered / self.render_seconds if self.render_seconds > 0 else None

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and not self._calls and not self._jobs:
                    self._cond.wait()
                if self._stop:
                    return
                calls, self._calls = self._calls, []
                self._drop_finished()
                batch = self._take_batch()
            for fn, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(fn())
                    except BaseException as exc:  # handed to the caller
                        future.set_exception(exc)
            if batch:
                self._render(batch)

    def _drop_finished(self) -> None:
        for job in [j for j in self._jobs if j.cancelled.is_set()]:
            self._jobs.remove(job)
            job.on_done(None)

    def _take_batch(self) -> list[tuple[RenderJob, int]]:
        """Up to ``batch_size`` (job, frame index) pairs: best priority first, round-robin within it."""
        live = [j for j in self._jobs if j.remaining > 0]
        if not live:
            return []
        best = min(j.priority for j in live)
        ring = sorted((j for j in live if j.priority == best), key=lambda j: j.seq)
        fresh = [j for j in ring if j.next_index == 0]
        if fresh:
            # First frames go out alone (one per new job): the command-to-first-frame
            # latency is one frame's render, not a whole batch's.
            picked = [(j, 0) for j in fresh[: self.batch_size]]
            for job, _ in picked:
                job.next_index = 1
            return picked
        picked: list[tuple[RenderJob, int]] = []
        while len(picked) < self.batch_size and any(j.remaining > 0 for j in ring):
            for job in ring:
                if job.remaining > 0 and len(picked) < self.batch_size:
                    picked.append((job, job.next_index))
                    job.next_index += 1
        return picked

    def _render(self, batch: list[tuple[RenderJob, int]]) -> None:
        jobs = {id(j): j for j, _ in batch}.values()
        failed: dict[int, BaseException] = {}
        for job in jobs:
            if job.x_d is None:
                try:
                    job.x_d = self.engine.edited_keypoints(job.state, job.params, stitching=job.stitching)
                except BaseException as exc:
                    failed[id(job)] = exc
        items = [(j, i) for j, i in batch if id(j) not in failed and not j.cancelled.is_set()]
        start = time.perf_counter()
        try:
            frames = self.engine.render_mixed([(j.state, j.x_d[i]) for j, i in items]) if items else []
        except BaseException as exc:
            for job, _ in items:
                failed[id(job)] = exc
            frames = []
        elapsed = time.perf_counter() - start
        if frames:
            self.frames_rendered += len(frames)
            self.render_seconds += elapsed
        for (job, index), frame in zip(items, frames):
            if job.first_frame_s is None:
                job.first_frame_s = time.perf_counter() - job.started
            try:
                job.on_frame(index, frame)
            except BaseException as exc:
                failed[id(job)] = exc
        with self._cond:
            for job in list(jobs):
                if id(job) in failed:
                    job.cancel()
                    if job in self._jobs:
                        self._jobs.remove(job)
                    job.on_done(failed[id(job)])
                elif job.remaining == 0 and job in self._jobs:
                    self._jobs.remove(job)
                    job.on_done(None)
