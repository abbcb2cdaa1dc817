"""The front end's render part on Ray Serve: the :class:`RenderWorker` interface, frames rendered by replicas.

:func:`lpstudio.server.app.create_app` takes a worker factory; on Ray the factory makes a
:class:`RayRenderWorker`, so the routes, sessions, admission (:class:`ServiceLimits`), shared
clips, caches and the NDJSON protocol are the single-process server's own code. Only where
the frames are rendered changes:

* a photo is put once into Ray's object store (keyed by its digest here) and a replica
  prepares it on first use (:mod:`lpstudio.server.ray_render`); no sticky sessions;
* a job is sent as chunks (its first frame alone, for latency, then ``batch_size`` frames),
  at most ``inflight_per_job`` at a time and within the job's window (viewers that read
  slowly hold the render back, as locally), so one clip spreads over several replicas;
* the chunks in flight over all jobs are bounded (``max_inflight_calls``, replicas x their
  ``max_ongoing_requests``) and taken in priority order (previews, clips, background):
  Ray's own queue stays short and the admitted work waits here, bounded by the admission;
* a replica that dies mid-chunk ends that job with an ``error`` line (the page retries;
  the next request goes to a live replica while the controller replaces the dead one);
  Serve's back-pressure is a 429 with ``Retry-After``;
* where each chunk of the last :data:`RECENT_JOBS` jobs was rendered is kept for ``/health``
  (with the key), so a clip's own spread over the replicas can be checked.

Everything runs on the app's event loop; ``submit``/``notify``/``prepare_source`` may be
called from other threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import LPStudioError, OverloadedError, RenderError
from .worker import RenderJob

log = logging.getLogger(__name__)

INFLIGHT_PER_JOB = 2
"""Chunks of one job in flight at once (the next renders while the last travels; two replicas share a clip)."""
CALL_TIMEOUT_S = 120.0
"""Longest wait for one chunk (a batch of frames) or one preparation."""
FIRST_CHUNK_FRAMES = 1
RECENT_JOBS = 16
"""Jobs whose chunk placement ``/health`` (with the key) lists: enough to find the last few clips, bounded."""
HEALTH_TIMEOUT_S = 5.0
"""``/health`` waits this long for the replica registry, then lists no replicas."""
REASON_REPLICAS = "replicas"


class ReplicaLostError(RenderError):
    """A render replica died or did not answer; another replica serves the next request."""

    http_status = 503

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, hint="try again: a live replica takes over")
        self.retry_after_s = retry_after_s


class RemoteEngineInfo:
    """What the front end knows of the replicas' engine (for ``/health`` and clip keys); renders nothing."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.device = info.get("device", "unknown")
        self.dtype = info.get("dtype", "unknown")
        self.backend = SimpleNamespace(name=info.get("backend", "unknown"), dtype=info.get("backend_dtype", "unknown"))
        self.nonfinite_events = 0


class PriorityGate:
    """``slots`` concurrent holders; waiters are served lowest priority number first, then in order."""

    def __init__(self, slots: int) -> None:
        self.free = max(1, slots)
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # the slot was handed over just as the waiter left
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)
                return
        self.free += 1

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiters if not f.done())


def _ray_error(exc: BaseException, retry_after_s: float) -> BaseException:
    """Ray's exceptions as the service's user-facing errors."""
    import ray
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, LPStudioError):
        return exc
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and isinstance(cause, LPStudioError):
        return cause  # the replica's own user-facing error (bad photo, non-finite frame...)
    if isinstance(exc, BackPressureError):
        return OverloadedError(
            "the server is busy: every render replica's queue is full",
            reason=REASON_REPLICAS,
            retry_after_s=retry_after_s,
        )
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ReplicaLostError(f"a render replica did not answer within {CALL_TIMEOUT_S:g} s", retry_after_s)
    if isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)):
        return ReplicaLostError("a render replica stopped while rendering this clip", retry_after_s)
    log.error("render call failed: %r", exc)
    return RenderError("rendering failed on a replica", hint="try again")


class RayRenderWorker:
    """Drop-in for :class:`~lpstudio.server.worker.RenderWorker` that renders on a Serve deployment.

    ``handle``: a ``DeploymentHandle`` of :class:`~lpstudio.server.ray_render.RenderReplica`.
    ``photo_bytes``/``photo_count`` bound the photos this front end keeps in the object store.
    """

    supports_live = False  # the live mirror needs the model in-process (lpstudio serve without --ray)

    def __init__(
        self,
        handle: Any,
        loop: asyncio.AbstractEventLoop,
        *,
        batch_size: int,
        max_inflight_calls: int,
        photo_bytes: int,
        photo_count: int,
        retry_after_s: float = 2.0,
        inflight_per_job: int = INFLIGHT_PER_JOB,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.handle = handle
        self.loop = loop
        self.batch_size = max(1, batch_size)
        self.inflight_per_job = max(1, inflight_per_job)
        self.call_timeout_s = call_timeout_s
        self.retry_after_s = retry_after_s
        self.photo_bytes = photo_bytes
        self.photo_count = photo_count
        self._gate = PriorityGate(max_inflight_calls)
        self._photos: OrderedDict[str, tuple[Any, int, int | None]] = OrderedDict()  # digest -> (ref, bytes, face)
        self._photo_total = 0
        self._jobs: dict[RenderJob, asyncio.Event] = {}
        self._tasks: set[asyncio.Task] = set()
        self._seq = itertools.count()
        self._loop_thread: int | None = None
        self._registry: Any = None
        self.frames_rendered = 0
        self.render_seconds = 0.0
        self.batch_failures = 0
        self.oom_splits = 0  # counted by the replicas' own workers
        self.replica_failures = 0
        self.served_by: Counter[str] = Counter()  # chunks answered, by replica id
        # the last jobs: {"job", "priority", "frames", "chunks": [{"start", "frames", "replica"}, ...]}
        self.recent_jobs: deque[dict[str, Any]] = deque(maxlen=RECENT_JOBS)
        self._placement: dict[RenderJob, list[dict[str, Any]]] = {}
        self.on_batch: Callable[[int, float], None] | None = None
        loop.call_soon_threadsafe(self._note_loop_thread)

    def _note_loop_thread(self) -> None:
        self._loop_thread = threading.get_ident()

    def _on_loop(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self.loop.call_soon_threadsafe(fn)

    # ------------------------------------------------------------------ RenderWorker interface
    def prepare_source(
        self, rgb: np.ndarray, *, digest: str, crop: bool, face_index: int | None
    ) -> concurrent.futures.Future:
        """Put the photo (H,W,3) uint8 in the object store and have a replica prepare it: the light state."""
        return asyncio.run_coroutine_threadsafe(self._prepare(rgb, digest, face_index), self.loop)

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_exception(
            LPStudioError("this needs the model in-process", hint="use `lpstudio serve` without --ray")
        )
        return future

    def submit(self, job: RenderJob) -> RenderJob:
        job.seq = next(self._seq)
        job._worker = self
        self._on_loop(lambda: self._start(job))
        return job

    def notify(self) -> None:
        """A job's window grew or a job was cancelled: wake the job drivers."""
        self._on_loop(self._wake_all)

    def pending_frames(self) -> int:
        return sum(j.remaining for j in list(self._jobs) if not j.cancelled.is_set())

    def queue_depth(self) -> int:
        return sum(1 for j in list(self._jobs) if not j.cancelled.is_set())

    def fail_all(self, reason: BaseException) -> int:
        jobs = [j for j in list(self._jobs) if not j.cancelled.is_set()]
        for job in jobs:
            job.cancel(reason)
        return len(jobs)

    def close(self, timeout: float = 5.0) -> None:
        for job in list(self._jobs):
            job.cancelled.set()
        for task in list(self._tasks):
            task.cancel()

    @property
    def measured_fps(self) -> float | None:
        return self.frames_rendered / self.render_seconds if self.render_seconds > 0 else None

    async def health_info(self) -> dict[str, Any]:
        """The replicas (from the registry their heartbeats fill) and what this front end sent each."""
        from .ray_render import replica_registry

        try:
            if self._registry is None:  # a GCS lookup: off the event loop, once
                self._registry = await asyncio.to_thread(replica_registry)
            replicas = await asyncio.wait_for(self._registry.live.remote(), timeout=HEALTH_TIMEOUT_S)
        except Exception as exc:  # the registry is best effort: /health must answer
            log.warning("replica registry unavailable: %r", exc)
            self._registry = None
            replicas = []
        for info in replicas:
            info["chunks_from_here"] = self.served_by.get(info["replica"], 0)
        return {
            "distributed": "ray",
            "replicas": replicas,
            "replica_failures": self.replica_failures,
            "photos_in_object_store": len(self._photos),
            "calls_waiting": self._gate.waiting,
            "recent_jobs": [{**job, "chunks": list(job["chunks"])} for job in self.recent_jobs],
        }

    # ------------------------------------------------------------------ photos
    async def _prepare(self, rgb: np.ndarray, digest: str, face_index: int | None) -> Any:
        import ray

        ref = await asyncio.to_thread(ray.put, rgb)
        self._remember(digest, ref, int(rgb.nbytes), face_index)
        response = self.handle.prepare.remote(digest, [ref], face_index)
        return await self._answer(response)

    def _remember(self, digest: str, ref: Any, nbytes: int, face_index: int | None) -> None:
        old = self._photos.pop(digest, None)
        if old is not None:
            self._photo_total -= old[1]
        self._photos[digest] = (ref, nbytes, face_index)
        self._photo_total += nbytes
        while len(self._photos) > 1 and (len(self._photos) > self.photo_count or self._photo_total > self.photo_bytes):
            _, (_, dropped, _) = self._photos.popitem(last=False)
            self._photo_total -= dropped

    def _photo(self, digest: str | None) -> tuple[Any, int | None]:
        from .sessions import SessionExpired

        item = self._photos.get(digest or "")
        if item is None:
            raise SessionExpired(digest or "?")
        self._photos.move_to_end(digest)
        return item[0], item[2]

    async def _answer(self, response: Any) -> Any:
        try:
            return await asyncio.wait_for(response, self.call_timeout_s)
        except asyncio.CancelledError:
            response.cancel()
            raise
        except BaseException as exc:
            if isinstance(exc, asyncio.TimeoutError):
                response.cancel()
            error = _ray_error(exc, self.retry_after_s)
            if isinstance(error, ReplicaLostError):
                self.replica_failures += 1
            raise error from None

    # ------------------------------------------------------------------ jobs
    def _start(self, job: RenderJob) -> None:
        self._jobs[job] = asyncio.Event()
        self.recent_jobs.append({"job": job.seq, "priority": job.priority, "frames": len(job.params), "chunks": []})
        self._placement[job] = self.recent_jobs[-1]["chunks"]
        task = self.loop.create_task(self._drive(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake_all(self) -> None:
        for event in self._jobs.values():
            event.set()

    async def _drive(self, job: RenderJob) -> None:
        event = self._jobs[job]
        inflight: set[asyncio.Task] = set()
        error: BaseException | None = None
        try:
            photo = self._photo(job.digest)
            while not job.cancelled.is_set():
                while len(inflight) < self.inflight_per_job and job.available > 0:
                    n = FIRST_CHUNK_FRAMES if job.next_index == 0 else min(self.batch_size, job.available)
                    start = job.next_index
                    job.next_index += n
                    inflight.add(asyncio.ensure_future(self._chunk(job, photo, start, n)))
                if not inflight:
                    if job.remaining == 0:
                        break
                    event.clear()
                    await event.wait()  # the window grows as viewers read, or the job is cancelled
                    continue
                event.clear()
                waker = asyncio.ensure_future(event.wait())
                done, _ = await asyncio.wait({*inflight, waker}, return_when=asyncio.FIRST_COMPLETED)
                waker.cancel()
                for task in done & inflight:
                    inflight.discard(task)
                    task.result()  # raises the chunk's error: the job fails
        except asyncio.CancelledError:
            error = job.cancel_reason
        except BaseException as exc:
            error = exc
            self.batch_failures += 1
        finally:
            for task in inflight:
                task.cancel()
            if job.cancelled.is_set() and error is None:
                error = job.cancel_reason
            self._finish(job, error)

    async def _chunk(self, job: RenderJob, photo: tuple[Any, int | None], start: int, n: int) -> None:
        ref, face_index = photo
        await self._gate.acquire(job.priority)
        try:
            if job.cancelled.is_set():
                return
            response = self.handle.render.remote(job.digest, [ref], face_index, list(job.params[start : start + n]),
                                                 job.priority)  # fmt: skip
            started = time.perf_counter()
            result = await self._answer(response)
        finally:
            self._gate.release()
        frames = result["frames"]
        self.served_by[result["replica"]] += 1
        placement = self._placement.get(job)
        if placement is not None:  # where this job's chunks went (recorded before its frames are delivered)
            placement.append({"start": start, "frames": n, "replica": result["replica"]})
        self.frames_rendered += n
        self.render_seconds += time.perf_counter() - started
        if self.on_batch is not None:
            self.on_batch(n, result["ms"] / 1000)
        if job.first_frame_s is None:
            job.first_frame_s = time.perf_counter() - job.started
        if job.cancelled.is_set():
            return
        for k in range(n):
            job.on_frame(start + k, frames[k])
        if job.ticket is not None:
            job.ticket.rendered(n)

    def _finish(self, job: RenderJob, exc: BaseException | None) -> None:
        if job.finished:
            return
        self._jobs.pop(job, None)
        self._placement.pop(job, None)
        job.end(exc)
