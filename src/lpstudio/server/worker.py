"""One thread owns the model; every request's model work goes through it.

Clip frames from all sessions are gathered into shared W+G batches
(:meth:`~lpstudio.engine.LivePortrait.render_mixed`), taken round-robin across
jobs in priority order (a new job's first frame goes out in a small batch of
first frames, for latency), so a slider preview is not stuck behind a long clip and
two sessions share the GPU fairly. A job whose client went away is cancelled
and its remaining frames are never rendered.

Fair shares (see :meth:`RenderWorker._take_batch`): clients (by address) take turns within a
priority whatever the number of jobs each opened, and a clip waiting with frames gets one batch
after at most :data:`MAX_PRIORITY_STREAK` batches of previews, so a flood of previews cannot keep
a clip from its frames. Background work (idle segments, the gaze atlas, pre-rendered presets) is
the viewer's last: it gets a batch only when no preview or clip has a frame it may render, so a
clip that arrives waits for at most the one background batch in flight (of at most
``background_batch_size`` frames).

Bounded and fault tolerant:

* a job renders only up to its ``window_end`` (frames its viewers may still buffer);
  raising it (:meth:`RenderJob.allow`) wakes the worker;
* an exception inside a batch fails only the jobs with frames in that batch; the
  thread keeps serving;
* a frame with non-finite pixels fails only its own job (the other frames of the
  batch are delivered);
* CUDA out-of-memory splits the batch in halves and retries them before failing a job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch

from ..engine import LivePortrait, SourceState
from ..errors import LPStudioError, NonFiniteOutputError, RenderError
from ..heap import release_freed_memory
from ..params import EditParams

T = TypeVar("T")
log = logging.getLogger(__name__)

PRIORITY_INTERACTIVE = 0  # a slider preview
PRIORITY_CLIP = 1  # a clip the user asked for
PRIORITY_BACKGROUND = 2  # idle loops, pre-rendered presets
MAX_PRIORITY_STREAK = 3
"""Batches in a row the best priority may take while a job of a worse priority waits with frames to render;
the next batch then goes to the waiting priority. With previews flooding, a clip therefore gets a batch at
least every ``MAX_PRIORITY_STREAK + 1`` batches (3 is a 75 % share for previews: a slider stays responsive,
a clip still plays)."""
ANONYMOUS_CLIENT = ""
"""The client key of jobs submitted without one (tests, pre-renders): they share one round-robin turn."""


def is_out_of_memory(exc: BaseException) -> bool:
    """A device out-of-memory error (CUDA's own type, or a backend's RuntimeError saying so)."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


@dataclass(eq=False)
class RenderJob:
    """Frames of one request. ``on_frame(index, frame)`` and ``on_done(error)`` run on the worker thread.

    ``on_done`` is called exactly once: with ``None`` when every frame was rendered or the job was
    cancelled without a reason, else with the error (or the cancel reason).
    ``window_end``: frames with an index at or past it wait until :meth:`allow` raises it (None: no limit).
    ``ticket``: an admission ticket (``rendered(n)``, ``release()``), released when the job ends.
    ``client``: who asked (the client's address); the worker shares each priority round-robin between
    clients first, then between one client's jobs, so one client's many jobs do not crowd out another's.
    """

    state: SourceState
    params: Sequence[EditParams]
    on_frame: Callable[[int, np.ndarray], None]
    on_done: Callable[[BaseException | None], None]
    priority: int = PRIORITY_CLIP
    stitching: bool = True
    window_end: int | None = None
    ticket: Any = None
    digest: str | None = None  # the photo's digest: routes the job to any replica of a distributed renderer
    client: str = ANONYMOUS_CLIENT
    seq: int = 0
    cancelled: threading.Event = field(default_factory=threading.Event)
    cancel_reason: BaseException | None = None
    x_d: torch.Tensor | None = None  # (N,21,3), or (N,faces,21,3) for a group job; computed on the worker thread
    faces: Sequence[SourceState] | None = None  # a group job: one state per face (``state`` is the first)
    face_params: Sequence[Sequence[EditParams]] | None = None  # a group job: each face's params, len(params) each
    next_index: int = 0
    started: float = field(default_factory=time.perf_counter)
    last_taken: float = field(default_factory=time.perf_counter)  # when the worker last took one of its frames
    first_frame_s: float | None = None
    finished: bool = False
    _worker: RenderWorker | None = None

    def end(self, exc: BaseException | None) -> None:
        """Mark the job finished (once): release its admission ticket, then call ``on_done(exc)``.

        The renderer that holds the job drops it from its queue first; a failing ``on_done``
        is logged, never raised into the renderer.
        """
        if self.finished:
            return
        self.finished = True
        if self.ticket is not None:
            self.ticket.release()
        try:
            self.on_done(exc)
        except Exception:
            log.exception("on_done of a render job failed")

    def cancel(self, reason: BaseException | None = None) -> None:
        """Stop rendering this job; ``on_done(reason)`` follows on the worker thread."""
        if not self.cancelled.is_set():
            self.cancel_reason = reason
            self.cancelled.set()
        if self._worker is not None:
            self._worker.notify()

    def allow(self, window_end: int) -> None:
        """Let the worker render frames up to (not including) ``window_end``."""
        if self.window_end is not None and window_end > self.window_end:
            self.window_end = window_end
            if self._worker is not None:
                self._worker.notify()

    @property
    def rows(self) -> int:
        """Renderer rows per frame: the number of faces of a group job, else 1.

        A group job's frame is the list of its faces' crops (one batch), given to ``on_frame`` as a list.
        """
        return len(self.faces) if self.faces else 1

    @property
    def remaining(self) -> int:
        """Frames not yet taken by the worker."""
        return len(self.params) - self.next_index

    @property
    def available(self) -> int:
        """Frames the worker may take now (within the window)."""
        end = len(self.params) if self.window_end is None else min(len(self.params), self.window_end)
        return max(0, end - self.next_index)


class RenderWorker:
    """The model's single thread: ``call()`` for one-off work, ``submit()`` for frames.

    ``on_batch(n_frames, seconds)``, when set, is called after each rendered batch (metrics).
    """

    renders_faces = True
    """Renders group jobs (``RenderJob.faces``): a frame's faces in one batch (:mod:`lpstudio.server.faces`)."""

    def __init__(self, engine: LivePortrait, batch_size: int = 4, background_batch_size: int | None = None) -> None:
        self.engine = engine
        self.batch_size = max(1, batch_size)
        self.background_batch_size = max(1, min(self.batch_size, background_batch_size or self.batch_size))
        """Frames in a batch of background work: what a clip that arrives may wait for."""
        self._jobs: list[RenderJob] = []
        self._calls: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._idle_calls: list[tuple[Callable[[], Any], concurrent.futures.Future]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stop = False
        self.frames_rendered = 0
        self.render_seconds = 0.0
        self.batch_failures = 0
        self.oom_splits = 0
        self.on_batch: Callable[[int, float], None] | None = None
        self._turns = itertools.count()  # scheduling clock: a client's last turn orders the round-robin
        self._client_turn: dict[str, int] = {}
        self._streak = 0  # batches in a row of the best priority while a worse one waited
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

    def call_when_idle(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the worker thread when no preview or clip has a frame it may render (the viewer
        first); it goes before background batches. For long work cut into small steps (a video job):
        each step waits for the viewers' frames, so a clip that arrives waits for at most one step."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._cond:
            if self._stop:
                future.cancel()
                return future
            self._idle_calls.append((fn, future))
            self._cond.notify()
        return future

    def prepare_source(
        self, rgb: np.ndarray, *, digest: str, crop: bool, face_index: int | None, crop_options: Any = None
    ) -> concurrent.futures.Future[SourceState]:
        """Prepare a photo (RGB uint8 (H,W,3)) on the worker thread; ``digest`` names it (unused locally).

        ``crop_options``: this photo's crop controls (a ``CropOptions``), or None for the engine's own.
        """
        if crop_options is None:
            return self.call(lambda: self.engine.prepare_source(rgb, crop=crop, face_index=face_index))
        return self.call(
            lambda: self.engine.prepare_source(rgb, crop=crop, face_index=face_index, crop_options=crop_options)
        )

    def submit(self, job: RenderJob) -> RenderJob:
        job.seq = next(self._seq)
        job._worker = self
        with self._cond:
            self._jobs.append(job)
            self._cond.notify()
        return job

    def notify(self) -> None:
        """Wake the worker (a job's window grew, or a job was cancelled)."""
        with self._cond:
            self._cond.notify()

    def pending_frames(self, max_priority: int | None = None) -> int:
        """Frames not yet taken, of jobs of ``max_priority`` or better (every job when None)."""
        with self._cond:
            return sum(
                j.remaining
                for j in self._jobs
                if not j.cancelled.is_set() and (max_priority is None or j.priority <= max_priority)
            )

    def queue_depth(self) -> int:
        """Jobs not finished (running or waiting)."""
        with self._cond:
            return sum(1 for j in self._jobs if not j.cancelled.is_set())

    def fail_all(self, reason: BaseException) -> int:
        """Cancel every job with ``reason`` (each gets ``on_done(reason)``); returns how many."""
        with self._cond:
            jobs = [j for j in self._jobs if not j.cancelled.is_set()]
        for job in jobs:
            job.cancel(reason)
        return len(jobs)

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            jobs = list(self._jobs)
            idle, self._idle_calls = self._idle_calls, []
            self._cond.notify()
        for _, future in idle:
            future.cancel()
        for job in jobs:
            job.cancelled.set()
        self._thread.join(timeout)
        with self._cond:
            for job in self._jobs:
                self._finish(job, job.cancel_reason)
            self._jobs.clear()

    @property
    def measured_fps(self) -> float | None:
        return self.frames_rendered / self.render_seconds if self.render_seconds > 0 else None

    # ------------------------------------------------------------------ loop
    def _has_work(self) -> bool:
        return bool(
            self._stop
            or self._calls
            or self._idle_calls
            or any(j.cancelled.is_set() or j.available > 0 for j in self._jobs)
        )

    def _foreground_waiting(self) -> bool:
        """A preview or clip has a frame it may render now (call with the lock held)."""
        return any(j.priority <= PRIORITY_CLIP and j.available > 0 and not j.cancelled.is_set() for j in self._jobs)

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    self._cond.wait_for(self._has_work)
                    if self._stop:
                        return
                    calls, self._calls = self._calls, []
                    self._drop_finished()
                    if self._idle_calls and not self._foreground_waiting():
                        calls.append(self._idle_calls.pop(0))  # one step, in place of a background batch
                        batch = []
                    else:
                        batch = self._take_batch()
                for fn, future in calls:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(fn())
                        except BaseException as exc:  # handed to the caller
                            future.set_exception(exc)
                if batch:
                    self._render(batch)
                release_freed_memory()  # a server renders for days: freed batch buffers go back (lpstudio/heap.py)
            except Exception:  # a bug in a callback must not stop the model thread
                log.exception("render worker: unexpected error (the worker carries on)")

    def _finish(self, job: RenderJob, exc: BaseException | None) -> None:
        """End a job once: release its ticket, then ``on_done``. Call with the lock held."""
        if job.finished:
            return
        if job in self._jobs:
            self._jobs.remove(job)
        job.end(exc)

    def _drop_finished(self) -> None:
        for job in [j for j in self._jobs if j.cancelled.is_set()]:
            self._finish(job, job.cancel_reason)

    def _take_batch(self) -> list[tuple[RenderJob, int]]:
        """Up to ``batch_size`` (job, frame index) pairs.

        The scheduling guarantee:

        * priority: the best (lowest) priority with frames to render goes first, except that after
          :data:`MAX_PRIORITY_STREAK` batches of previews in a row that passed over a waiting clip, one
          batch goes to the clips (so previews cannot starve a clip); background work is taken only when
          no preview or clip has a frame to render, in batches of at most ``background_batch_size``;
        * clients: within the chosen priority, clients take turns (least recently served first, one frame
          each per round), and one client's jobs take turns among themselves, so a client's share of a
          priority does not grow with the number of jobs it opens;
        * first frames: a new job's first frame goes out in a batch of first frames (one per client per round),
          so the command-to-first-frame latency is one frame's render, not a whole batch's.
        """
        live = [j for j in self._jobs if j.available > 0]
        if not live:
            return []
        now = time.perf_counter()
        if any(j.priority <= PRIORITY_CLIP for j in live):  # the viewer first: background work waits
            live = [j for j in live if j.priority <= PRIORITY_CLIP]
        size = self.batch_size if live[0].priority <= PRIORITY_CLIP else self.background_batch_size

        def rank(job: RenderJob) -> int:
            return job.priority

        ranks = sorted({rank(j) for j in live})
        chosen = ranks[0]
        if len(ranks) > 1:
            if self._streak >= MAX_PRIORITY_STREAK:
                chosen = ranks[1]  # the waiting priority's turn
                self._streak = 0
            else:
                self._streak += 1
        else:
            self._streak = 0
        candidates = [j for j in live if rank(j) == chosen]
        fresh = [j for j in candidates if j.next_index == 0]
        if fresh:
            picked = [(j, 0) for j in self._by_turns(fresh, size, first_frames=True)]
            for job, _ in picked:
                job.next_index = 1
            self._served(picked, now)
            return picked
        picked = []
        taken = self._by_turns(candidates, size)
        for job in taken:
            picked.append((job, job.next_index))
            job.next_index += 1
        self._served(picked, now)
        return picked

    def _by_turns(self, jobs: list[RenderJob], n: int, *, first_frames: bool = False) -> list[RenderJob]:
        """Up to ``n`` jobs (a job once per frame it gives): clients in turn, each client's jobs in turn.

        Clients least recently served come first; within a client, its job served least recently
        (then the oldest). ``first_frames``: one frame per job (its first), else as many as it has available.
        """
        clients: dict[str, list[RenderJob]] = {}
        for job in sorted(jobs, key=lambda j: (j.last_taken, j.seq)):
            clients.setdefault(job.client, []).append(job)
        order = sorted(clients, key=lambda c: (self._client_turn.get(c, -1), clients[c][0].seq))
        budget = {id(j): (1 if first_frames else j.available) for j in jobs}
        cursor = dict.fromkeys(order, 0)
        out: list[RenderJob] = []
        rows = 0  # renderer rows taken: a group job's frame takes one per face (the first pick always fits)
        while rows < n:
            progressed = False
            for client in order:
                queue_ = clients[client]
                for step in range(len(queue_)):  # this client's next job with a frame left
                    job = queue_[(cursor[client] + step) % len(queue_)]
                    if budget[id(job)] > 0 and (not out or rows + job.rows <= n):
                        budget[id(job)] -= 1
                        out.append(job)
                        rows += job.rows
                        cursor[client] = (cursor[client] + step + 1) % len(queue_)
                        progressed = True
                        break
                if rows >= n:
                    break
            if not progressed:
                break
        return out

    def _served(self, picked: list[tuple[RenderJob, int]], now: float) -> None:
        """Record a batch's turn for its jobs and clients (clients known only while they have jobs)."""
        for job, _ in picked:
            job.last_taken = now
            self._client_turn[job.client] = next(self._turns)
        if len(self._client_turn) > len(self._jobs) + 1:
            active = {j.client for j in self._jobs}
            self._client_turn = {c: t for c, t in self._client_turn.items() if c in active}

    def _render_items(
        self, items: list[tuple[RenderJob, int]], failed: dict[int, BaseException]
    ) -> list[np.ndarray | None]:
        """Frames for ``items`` (None where a job failed); failures are recorded in ``failed`` by job id.

        Out of memory splits the batch in halves and retries each; non-finite frames fail only their jobs.
        """
        rows: list[tuple[SourceState, torch.Tensor]] = []
        owner: list[int] = []  # item of each row
        for k, (j, i) in enumerate(items):
            if j.faces:  # a group job: all its faces of frame i in this batch
                rows.extend((face, j.x_d[i, f]) for f, face in enumerate(j.faces))
                owner.extend([k] * len(j.faces))
            else:
                rows.append((j.state, j.x_d[i]))
                owner.append(k)
        try:
            return _per_item(list(self.engine.render_mixed(rows)), owner, items)
        except NonFiniteOutputError as exc:
            for row in exc.frames:
                failed.setdefault(id(items[owner[row]][0]), exc)
            partial = list(exc.partial) + [None] * (len(rows) - len(exc.partial))
            return _per_item(partial[: len(rows)], owner, items)
        except Exception as exc:
            if is_out_of_memory(exc) and len(items) > 1:
                self.oom_splits += 1
                log.warning("render worker: out of memory on a batch of %d; retrying in halves", len(items))
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                half = len(items) // 2
                return self._render_items(items[:half], failed) + self._render_items(items[half:], failed)
            self.batch_failures += 1
            if is_out_of_memory(exc):
                exc = RenderError(
                    f"the device ran out of memory rendering one frame ({exc})",
                    hint="use a smaller --batch-size or --dtype float16",
                )
            log.error("render worker: a batch of %d frames failed: %s", len(items), exc)
            for job, _ in items:
                failed.setdefault(id(job), exc)
            return [None] * len(items)

    def _render(self, batch: list[tuple[RenderJob, int]]) -> None:
        jobs = list({id(j): j for j, _ in batch}.values())
        failed: dict[int, BaseException] = {}
        for job in jobs:
            if job.x_d is None:
                try:
                    if job.faces:
                        per_face = [
                            self.engine.edited_keypoints(face, list(p), stitching=job.stitching)
                            for face, p in zip(job.faces, job.face_params or (), strict=True)
                        ]
                        job.x_d = torch.stack(per_face, dim=1)  # (frames, faces, 21, 3)
                    else:
                        job.x_d = self.engine.edited_keypoints(job.state, job.params, stitching=job.stitching)
                except Exception as exc:
                    failed[id(job)] = exc
        items = [(j, i) for j, i in batch if id(j) not in failed and not j.cancelled.is_set()]
        start = time.perf_counter()
        frames = self._render_items(items, failed) if items else []
        elapsed = time.perf_counter() - start
        done = sum(f is not None for f in frames)
        if done:
            self.frames_rendered += done
            self.render_seconds += elapsed
            if self.on_batch is not None:
                try:
                    self.on_batch(done, elapsed)
                except Exception:
                    log.exception("render worker: on_batch failed")
        for (job, index), frame in zip(items, frames):
            if frame is None or id(job) in failed or job.cancelled.is_set():
                continue
            if job.first_frame_s is None:
                job.first_frame_s = time.perf_counter() - job.started
            try:
                job.on_frame(index, frame)
            except Exception as exc:
                failed[id(job)] = exc
        for job in jobs:
            if job.ticket is not None:
                job.ticket.rendered(job.rows * sum(1 for j, _ in batch if j is job))  # rows: admitted per face
        with self._cond:
            for job in jobs:
                if id(job) in failed:
                    job.cancelled.set()
                    self._finish(job, failed[id(job)])
                elif job.remaining == 0 and not job.cancelled.is_set():
                    self._finish(job, None)


def _per_item(frames: list[np.ndarray | None], owner: list[int], items: list[tuple[RenderJob, int]]) -> list[Any]:
    """Rendered rows back to one result per item: a frame, a group job's list of crops, or None if any row failed."""
    out: list[Any] = []
    for k, (job, _) in enumerate(items):
        mine = [f for f, o in zip(frames, owner) if o == k]
        if job.faces:
            out.append(None if any(f is None for f in mine) else mine)
        else:
            out.append(mine[0] if mine else None)
    return out


async def render_frames(
    worker: Any,
    state: SourceState,
    params: Sequence[EditParams],
    *,
    priority: int,
    what: str = "render",
    **job_options: Any,
) -> list[np.ndarray]:
    """Render ``params`` on ``worker`` (anything with ``submit(job)``) from the event loop, without blocking it.

    The frames (H,W,3) uint8 come back in order. The job is cancelled when the caller goes
    away (or it finished), so no frame is rendered for nobody; ``job_options`` go to
    :class:`RenderJob` (``ticket``, ``digest``). A job that ends short raises an
    :class:`~lpstudio.errors.LPStudioError` saying the ``what`` was cancelled.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()
    frames: dict[int, np.ndarray] = {}

    def on_frame(i: int, frame: np.ndarray) -> None:
        frames[i] = frame

    def on_done(exc: BaseException | None) -> None:
        def settle() -> None:
            if not done.done():
                done.set_exception(exc) if exc is not None else done.set_result(None)

        loop.call_soon_threadsafe(settle)

    job = RenderJob(state, list(params), on_frame, on_done, priority=priority, **job_options)
    try:
        worker.submit(job)
        await done
    finally:
        job.cancel()
    if len(frames) != len(params):
        raise LPStudioError(f"the {what} was cancelled", hint="try again")
    return [frames[i] for i in range(len(params))]
