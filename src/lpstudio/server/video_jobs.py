"""Video-source jobs: a video as the portrait, driven by a video or a motion template, on the server.

A job is one :class:`~lpstudio.drive.v2v.V2VJob` (the CLI's ``lpstudio drive SOURCE.mp4 DRIVING``) whose
small steps (one batch of model work each) run on the render worker with
:meth:`~lpstudio.server.worker.RenderWorker.call_when_idle`: a step starts only when no preview or
clip has a frame waiting, so the viewers of every page come first and a clip that arrives waits for
at most the one step in flight. The pump (:func:`run_job`) awaits each step from the event loop,
which itself does no model or decoding work.

Bounds, all checked before any model work (:class:`~lpstudio.server.limits.ServiceLimits`):

* uploads by size and first bytes (:func:`check_source_upload`, ``drive_intake.check_drive_upload``);
* the copies are private files whose names declare the sniffed container
  (:data:`lpstudio.video.DECLARED_FORMAT_MARK`), so FFmpeg is told the format and never probes;
* the source's length, frames, fps and pixels from its header (:func:`probe_upload`), its length
  again while it is tracked (the job is given one frame more than allowed: reaching it fails the job);
* one job per client (``max_video_jobs_per_client``) and ``max_video_jobs`` over all clients (429);
* the result's size while it is written (``max_video_output_bytes``); it is written to a partial
  file and moved into place (``VideoWriter``), kept ``video_result_ttl_s`` for its page, deleted when
  the page's session closes, when the page stops asking for the job's status (``page_gone_s``),
  and at shutdown.

Error messages name the upload (never the private copy) and carry no decoder text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LimitError, LPStudioError, OverloadedError, RenderError, VideoError
from ..sniff import SNIFF_BYTES, Format, describe
from ..video import DECLARED_FORMAT_MARK
from .drive_intake import VIDEO_HINT, check_length, check_upload_size, open_video, read_video_header, sniff_video
from .limits import ServiceLimits

log = logging.getLogger(__name__)

SOURCE_HINT = "upload an .mp4, .mov or .webm video with one face in it"
RESULT_NAME = "result.mp4"
"""The result's file name inside its job's private folder."""
SWEEP_S = 2.0
"""How often finished results past their time and jobs of pages gone are looked for."""
SHUTDOWN_WAIT_S = 2.0
"""At shutdown, how long a job's step in flight may take to end before its folder is removed anyway."""
SUFFIXES: dict[str, str] = {"mp4": ".mp4", "matroska": ".webm"}
"""The private copy's extension per sniffed container (the name also declares the demuxer)."""

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"


class VideoJobNotFound(LPStudioError):
    """No such video-source job for this page (never made, someone else's, or deleted)."""

    http_status = 404


class VideoJobCancelled(LPStudioError):
    """The job was cancelled (by its page, because the page went away, or at shutdown)."""

    http_status = 410


@dataclass
class UploadProbe:
    """What an upload's header says: ``fps``, ``frames`` (None when it does not say), ``seconds``."""

    fps: float
    frames: int | None
    seconds: float | None


@dataclass(eq=False)
class VideoJob:
    """One video-source job, from admission to its deleted result.

    Attributes:
        id: unguessable (128 random bits); only its client and session may see it.
        folder: private folder of its uploads' copies and its result.
        allowed_frames: source frames it may use (the header said no more; the length limit).
        units_done, units_total: frames through the three passes (tracking, driving, rendering).
    """

    id: str
    client: str
    session: str
    folder: Path
    source_name: str = ""
    driving_name: str = ""
    state: str = QUEUED
    phase: str = "queued"
    units_done: int = 0
    units_total: int = 0
    frames: int = 0
    fps: float = 0.0
    allowed_frames: int = 0
    error: LPStudioError | None = None
    created: float = field(default_factory=time.monotonic)
    finished_at: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    cancel_reason: str | None = None
    task: asyncio.Task | None = None
    paths: dict[str, str] = field(default_factory=dict)  # private path -> the upload's name, for messages

    @property
    def active(self) -> bool:
        return self.state in (QUEUED, RUNNING)

    @property
    def result(self) -> Path:
        return self.folder / RESULT_NAME

    def describe(self) -> dict[str, Any]:
        """The status a page polls (``GET /video-source/<id>``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "phase": self.phase,
            "progress": self.units_done,
            "total": max(self.units_total, self.units_done),
            "fps": self.fps,
        }
        if self.state == DONE:
            body.update(done=True, url=f"/video-source/{self.id}.mp4", frames=self.frames)
        if self.error is not None:
            body.update(error=self.error.message, hint=self.error.hint, kind=type(self.error).__name__,
                        status=self.error.http_status)  # fmt: skip
        return body


class VideoJobStore:
    """The jobs of one app: admission per client and overall, lookup by owner, deletion.

    Used from the event loop only (no lock). The private folder is made on the first job.
    """

    def __init__(self) -> None:
        self.jobs: dict[str, VideoJob] = {}
        self.root: Path | None = None
        self.completed = 0
        self._sweeper: asyncio.Task | None = None

    def admit(self, client: str, session: str, limits: ServiceLimits, retry_after_s: float) -> VideoJob:
        """A new queued job, or 429 when this client has ``max_video_jobs_per_client`` active or the
        server ``max_video_jobs``."""
        active = [j for j in self.jobs.values() if j.active]
        mine = sum(1 for j in active if j.client == client)
        if mine >= limits.max_video_jobs_per_client:
            raise _busy(
                f"a video-source job of yours is still running ({mine} of {limits.max_video_jobs_per_client} "
                "allowed at once)",
                "wait for it to finish or cancel it before starting another",
                retry_after_s,
            )
        if len(active) >= limits.max_video_jobs:
            raise _busy(
                f"the server is busy: {len(active)} video-source jobs are running or queued (the limit)",
                f"retry in {max(1, round(retry_after_s))} s",
                retry_after_s,
            )
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="lpstudio-video-jobs-"))
        job_id = secrets.token_urlsafe(16)
        folder = self.root / job_id
        folder.mkdir(mode=0o700)
        job = VideoJob(job_id, client, session, folder)
        self.jobs[job_id] = job
        return job

    def get(self, job_id: str, client: str, session: str) -> VideoJob:
        """The job if this client and session own it (404 otherwise, the same answer as for no job)."""
        job = self.jobs.get(job_id)
        if job is None or job.client != client or job.session != session:
            raise VideoJobNotFound(
                "no such video-source job for this page (it finished long ago, was cancelled, or is another page's)",
                hint="start the video again",
            )
        job.last_seen = time.monotonic()
        return job

    def cancel(self, job: VideoJob, reason: str) -> None:
        """Ask an active job to stop after its step in flight (its partial output is removed)."""
        if job.active and job.cancel_reason is None:
            job.cancel_reason = reason

    def remove(self, job: VideoJob) -> None:
        """Forget a job and delete its folder (uploads' copies and result); an active one is cancelled first."""
        self.cancel(job, "the job was deleted")
        self.jobs.pop(job.id, None)
        if job.task is None or not job.active:  # never started, or ended: nothing writes there any more
            shutil.rmtree(job.folder, ignore_errors=True)

    def sweep(self, limits: ServiceLimits, session_alive: Callable[[str], bool]) -> None:
        """Delete results past ``video_result_ttl_s`` or of closed sessions; cancel jobs of pages gone."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.active:
                if not session_alive(job.session):
                    self.cancel(job, "the page's session closed")
                elif now - job.last_seen > limits.page_gone_s:
                    self.cancel(job, "the page stopped asking for it")
            elif not session_alive(job.session) or (
                job.finished_at is not None and now - job.finished_at > limits.video_result_ttl_s
            ):
                self.remove(job)

    def start_sweeper(self, loop: asyncio.AbstractEventLoop, limits: ServiceLimits,
                      session_alive: Callable[[str], bool]) -> None:  # fmt: skip
        """Sweep every :data:`SWEEP_S` on ``loop`` (started once)."""
        if self._sweeper is not None:
            return

        async def sweeping() -> None:
            while True:
                await asyncio.sleep(SWEEP_S)
                try:
                    self.sweep(limits, session_alive)
                except Exception:  # a bug here must not stop deleting results
                    log.exception("video jobs: sweeping failed (it carries on)")

        self._sweeper = loop.create_task(sweeping())

    async def close(self) -> None:
        """At shutdown: cancel every job, give steps in flight a moment, delete every file."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        tasks = [j.task for j in self.jobs.values() if j.task is not None and not j.task.done()]
        for job in self.jobs.values():
            self.cancel(job, "the server is shutting down")
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S)
            for task in pending:
                task.cancel()
        self.jobs.clear()
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None


def _busy(message: str, hint: str, retry_after_s: float) -> OverloadedError:
    """A 429 with ``Retry-After``."""
    return OverloadedError(message, reason="video_jobs", retry_after_s=retry_after_s, hint=hint)


# ---------------------------------------------------------------------- intake (off the event loop)
def check_source_upload(name: str, data: bytes, limits: ServiceLimits) -> Format:
    """The container of a source-video upload from its first bytes; refuse empty, too large or other files."""
    check_upload_size(
        name, data, limits.max_source_video_upload_bytes, limits.max_source_video_seconds, hint=SOURCE_HINT
    )
    fmt = sniff_video(data[:SNIFF_BYTES])
    if fmt is None:
        raise VideoError(f"{name} is {describe(data[:SNIFF_BYTES])}, not a video", hint=SOURCE_HINT)
    return fmt


def private_copy(folder: Path, role: str, data: bytes, fmt: Format | None) -> Path:
    """Write an upload to ``folder`` (owner-only); a video's name declares its sniffed demuxer."""
    name = f"{role}.npz" if fmt is None else f"{role}{DECLARED_FORMAT_MARK}{fmt.decoder}{SUFFIXES[fmt.decoder]}"
    path = folder / name
    with open(path, "xb") as out:
        out.write(data)
    path.chmod(0o600)
    return path


def probe_upload(
    path: Path, fmt: Format, name: str, limits: ServiceLimits, *, max_seconds: float, max_frames: int, what: str
) -> UploadProbe:
    """Check a private copy's header with its container named: a video track, a usable fps, the pixel
    limit, its length (``max_seconds``, ``max_frames``) and at least one frame.

    Raises:
        VideoError: not a video we read, corrupt, no video track, no frame, unusable fps.
        LimitError: longer or larger than allowed.
    """
    import av

    with open_video(str(path), fmt, name) as container:
        header = read_video_header(container, name, limits)
        stream, fps, seconds, frames = header.stream, header.fps, header.seconds, header.frames
        check_length(name, seconds, frames, fps, max_seconds=max_seconds, max_frames=max_frames, what=what)
        try:
            first = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise VideoError(f"cannot decode {name}: the video data is corrupt", hint=VIDEO_HINT) from exc
        if first is None:
            raise VideoError(f"cannot read {name}: the video has no frames", hint=VIDEO_HINT)
        if int(first.width) * int(first.height) > limits.max_upload_pixels:
            raise LimitError(
                f"{name} has frames over {limits.max_upload_pixels / 1e6:g} MP", hint="upload a smaller video"
            )
    return UploadProbe(fps, frames, seconds)


def allowed_source_frames(probe: UploadProbe, limits: ServiceLimits) -> int:
    """Source frames a job may use: the length limit at the source's fps, and ``max_source_video_frames``."""
    by_length = int(math.floor(limits.max_source_video_seconds * probe.fps + 1e-6))
    return max(1, min(limits.max_source_video_frames, by_length))


# ---------------------------------------------------------------------- the pump (event loop)
def plain_error(exc: BaseException, job: VideoJob) -> LPStudioError:
    """The user-facing error of a failed job: the uploads' names instead of private paths, no decoder text."""
    if not isinstance(exc, LPStudioError):
        log.error("video job %s failed: %r", job.id[:8], exc)
        return RenderError("the video could not be rendered", hint="try again, or with a shorter video")
    names = [shown for path, shown in job.paths.items() if path in exc.message]
    if isinstance(exc, VideoError):
        name = names[0] if names else "the video"
        return VideoError(f"cannot decode {name}: the video data is corrupt or unsupported", hint=VIDEO_HINT)
    message, hint = exc.message, exc.hint or ""
    for path, shown in job.paths.items():
        message, hint = message.replace(path, shown), hint.replace(path, shown)
    message = message.replace(str(job.folder), "the upload")
    out = type(exc).__new__(type(exc))
    LPStudioError.__init__(out, message, hint=hint or None)
    return out


async def run_job(
    job: VideoJob,
    make: Callable[[], Any],
    call_when_idle: Callable[[Callable[[], Any]], Any],
    limits: ServiceLimits,
    on_end: Callable[[VideoJob], None] | None = None,
) -> None:
    """Drive a job to its end: ``make()`` (a thread) builds the :class:`~lpstudio.drive.v2v.V2VJob`, each
    step runs through ``call_when_idle`` (a ``concurrent.futures.Future`` per step) and is awaited."""
    v2v: Any = None
    try:
        v2v = await asyncio.to_thread(make)
        job.state, job.phase = RUNNING, "source"
        while True:
            if job.cancel_reason is not None:
                raise VideoJobCancelled(f"the video-source job was cancelled: {job.cancel_reason}")
            step = await asyncio.wrap_future(call_when_idle(v2v.step))
            if step is None:
                break
            job.phase, job.units_done, job.units_total = step.phase, step.units_done, step.units_total
            if step.phase != "driving" and step.done > job.allowed_frames:  # source frames used so far
                raise LimitError(
                    f"the source video {job.source_name} is longer than its header says: more than "
                    f"{job.allowed_frames} frames; the limit is {limits.max_source_video_seconds:g} s",
                    hint="trim the source video",
                )
            partial = v2v.partial_path
            if partial is not None and partial.exists() and partial.stat().st_size > limits.max_video_output_bytes:
                raise _too_large(job, limits)
        if job.result.stat().st_size > limits.max_video_output_bytes:
            raise _too_large(job, limits)
        job.frames = int(v2v.summary.frames)
        job.state, job.phase = DONE, "done"
    except asyncio.CancelledError:
        job.state, job.error = CANCELLED, VideoJobCancelled("the video-source job was cancelled at shutdown")
        raise
    except BaseException as exc:
        job.error = plain_error(exc, job)
        job.state = CANCELLED if isinstance(exc, VideoJobCancelled) else FAILED
        if job.state == FAILED:
            log.info("video job %s failed: %s", job.id[:8], job.error.message)
        if v2v is not None:  # remove its partial output; no step is running (each was awaited)
            with contextlib.suppress(Exception, asyncio.CancelledError):  # the worker may be closed already
                await asyncio.wrap_future(call_when_idle(v2v.close))
        with contextlib.suppress(OSError):
            job.result.unlink(missing_ok=True)
    finally:
        job.finished_at = time.monotonic()
        for path in list(job.paths):
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)  # the uploads' copies are not needed any more
        if on_end is not None:
            on_end(job)


def _too_large(job: VideoJob, limits: ServiceLimits) -> LimitError:
    return LimitError(
        f"the result of {job.source_name} would be larger than {limits.max_video_output_bytes / 2**20:g} MB",
        hint="use a shorter or smaller source video",
    )
