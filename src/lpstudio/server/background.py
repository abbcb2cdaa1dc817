"""Background work for the pages that are there: idle segments, the gaze atlas, pre-renders.

The :class:`BackgroundScheduler` runs on the event loop (a tick every :data:`TICK_S`, or at once
when woken) and does no heavy work itself:

* a photo is *wanted* while one of its sessions is alive: it made a request within
  :attr:`~.limits.ServiceLimits.page_gone_s`, or has a stream open, and was not closed
  (``POST /session/close``, or replaced by an upload that names it);
* for each wanted photo (most recently used first) it submits the next missing piece
  (:mod:`.pieces`) as one background :class:`~.worker.RenderJob`: one job per photo at a time, at
  most :attr:`~.limits.ServiceLimits.max_background_jobs` over all photos, admitted only while
  the server is well under its bounds (:meth:`~.admission.Admission.try_admit_background`);
* the worker renders background frames only when no preview or clip has one to render, so a
  clip waits for at most the one background batch in flight;
* a photo no longer wanted (or evicted, or replaced in the store) has its background jobs
  cancelled, and so do background renders in the clip hub (pre-rendered presets, the old
  ``idle_loop`` stream) of that photo: nothing renders for a page that is gone.

Frames are composited and JPEG-encoded on the frame encoder's threads (after clip frames), then
stored on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import LPStudioError
from .pieces import PhotoPieces, Piece
from .sessions import Source, encode_jpeg
from .state import AppState
from .worker import PRIORITY_BACKGROUND, PRIORITY_CLIP, RenderJob

log = logging.getLogger(__name__)

TICK_S = 1.0
"""How often the scheduler looks for pages gone and work to start, besides when woken."""
BACKGROUND_CLIENT = "background"
"""The worker's fair-share key of background jobs."""


class PageGoneError(LPStudioError):
    """Background work stopped: its page went away, closed, or replaced its photo."""

    http_status = 410


class BackgroundScheduler:
    """Renders each wanted photo's idle pieces in the background; cancels what no page waits for."""

    def __init__(self, state: AppState, *, render_pieces: bool = True) -> None:
        self.state = state
        self.render_pieces = render_pieces  # off: only cancels background renders of pages that are gone
        self.jobs: dict[str, tuple[RenderJob, Source, Piece]] = {}  # digest -> its one background job
        self.cancelled_jobs = 0
        self.rendered_frames = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = self.state.loop.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job, _, _ in list(self.jobs.values()):
            job.cancel()

    def wake(self) -> None:
        """Look again now (a photo arrived, a page closed, a job ended)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK_S)
            self._wake.clear()
            try:
                self.step()
            except Exception:  # a bug here must not end background work for good
                log.exception("background scheduler: unexpected error (it carries on)")

    # ------------------------------------------------------------------ pieces
    def pieces_of(self, source: Source) -> PhotoPieces:
        """The photo's pieces (made on first use; they hang on the source, so they go with it)."""
        if source.pieces is None:
            base = source.state.neutral_params()
            source.pieces = PhotoPieces(source.digest, base, self.state.limits.idle_fps)
        return source.pieces

    # ------------------------------------------------------------------ scheduling
    def wanted(self) -> dict[str, float]:
        """Digests of photos some live page shows, with when that page was last heard from."""
        state = self.state
        keys = list(state.admission.client_streams)
        streaming = {key.partition(":")[2] for key in keys if key.startswith("session:")}
        since = time.monotonic() - state.limits.page_gone_s
        return state.sessions.digests_used_since(since, streaming)

    def step(self) -> None:
        """Cancel what nobody waits for, then start the next pieces of wanted photos."""
        state = self.state
        wanted = self.wanted()
        for digest, (job, source, _) in list(self.jobs.items()):
            if digest not in wanted or state.sources.peek(digest) is not source:
                job.cancel(PageGoneError("the page of this photo went away"))
        for clip in list(state.hub.clips.values()):
            job = clip.job
            gone = clip.source is not None and clip.source.digest not in wanted
            if job is not None and job.priority >= PRIORITY_BACKGROUND and gone and not job.cancelled.is_set():
                job.cancel(PageGoneError("the page of this photo went away", hint="reload the page"))
                self.cancelled_jobs += 1
        for digest in sorted(wanted, key=wanted.get, reverse=True) if self.render_pieces else ():
            if len(self.jobs) >= state.limits.max_background_jobs:
                break
            if digest in self.jobs:
                continue
            source = state.sources.peek(digest)
            if source is None:
                continue
            piece = self.pieces_of(source).next_missing()
            if piece is None:
                continue
            if not self._submit(source, piece):
                break  # the server is busy: users first

    def _submit(self, source: Source, piece: Piece) -> bool:
        state = self.state
        missing = piece.missing()
        ticket = state.admission.try_admit_background(len(missing))
        if ticket is None:
            return False
        pieces = source.pieces
        loop = state.loop
        encoder = state.encoder
        store = self._store
        piece.reserved.update(missing)
        delivered: list[int] = []  # appended on the worker thread, read on the loop once the job ended
        landed = [0]  # frames stored (or failed to encode), counted on the loop
        ending: list[Callable[[], None]] = []  # the job's end, held until its last encoded frame has landed

        def landed_one(index: int, future: Any) -> None:  # loop
            store(source, pieces, piece, index, future)
            landed[0] += 1
            if ending and landed[0] == len(delivered):
                ending.pop()()

        def on_frame(k: int, frame: np.ndarray) -> None:  # worker thread
            index = missing[k]
            delivered.append(index)
            future = encoder.run(lambda: encode_jpeg(source.compose(frame)))
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(landed_one, index, f))

        def end(exc: BaseException | None) -> None:  # loop: the job ends once its frames are stored
            finish = lambda: self._done(source.digest, job, exc, piece, set(missing) - set(delivered))  # noqa: E731
            if landed[0] == len(delivered):
                finish()
            else:
                ending.append(finish)

        def on_done(exc: BaseException | None) -> None:  # worker thread
            loop.call_soon_threadsafe(end, exc)

        job = RenderJob(
            source.state,
            [piece.params[i] for i in missing],
            on_frame,
            on_done,
            PRIORITY_BACKGROUND,
            ticket=ticket,
            digest=source.digest,
            client=BACKGROUND_CLIENT,
        )
        self.jobs[source.digest] = (job, source, piece)
        state.worker.submit(job)
        return True

    def _store(self, source: Source, pieces: PhotoPieces, piece: Piece, index: int, future: Any) -> None:
        if future.cancelled() or future.exception() is not None:
            piece.reserved.discard(index)
            log.warning("background: encoding a frame of %s failed", piece.id)
            return
        added = pieces.store(piece.id, index, future.result())
        self.rendered_frames += 1
        if added and self.state.sources.peek(source.digest) is source:
            self.state.sources.grew(source, added)

    def _done(
        self, digest: str, job: RenderJob, exc: BaseException | None, piece: Piece, undelivered: set[int]
    ) -> None:
        piece.reserved -= undelivered  # frames the job never rendered may be asked again
        entry = self.jobs.get(digest)
        if entry is not None and entry[0] is job:
            del self.jobs[digest]
        if job.cancelled.is_set():
            self.cancelled_jobs += 1
        elif exc is not None:
            log.warning("background: rendering a piece failed: %s", exc)
        self.wake()

    # ------------------------------------------------------------------ health
    def snapshot(self) -> dict[str, Any]:
        """What ``/health`` shows of background work, apart from clips."""
        state = self.state
        hub_jobs = [
            c.job for c in state.hub.clips.values() if c.job is not None and c.job.priority >= PRIORITY_BACKGROUND
        ]
        jobs = [j for j, _, _ in self.jobs.values()] + hub_jobs
        return {
            "jobs": len(jobs),
            "pending_frames": sum(j.remaining for j in jobs if not j.cancelled.is_set()),
            "photos_wanted": len(self.wanted()),
            "cancelled_jobs": self.cancelled_jobs,
            "rendered_frames": self.rendered_frames,
        }


def foreground_pending(worker: Any) -> int:
    """Frames of clips and previews waiting to be rendered (every frame on a renderer that cannot tell them apart)."""
    try:
        return int(worker.pending_frames(PRIORITY_CLIP))
    except TypeError:  # e.g. the Ray Serve renderer: pending_frames() counts every job
        return int(worker.pending_frames())


def clip_work(state: AppState) -> dict[str, int]:
    """Clips and previews apart from background work: frames waiting to be rendered."""
    return {"pending_frames": foreground_pending(state.worker)}
