"""Admission control: bounded jobs, frames in flight, open streams and photo intake.

A request takes a :class:`Ticket` before any work starts (a stream also counts against its
client's address and session); past a bound it gets
:class:`~lpstudio.errors.OverloadedError` (HTTP 429 with ``Retry-After``) at once,
never a wait. While the server drains before it stops, new work gets
:class:`~lpstudio.errors.ShuttingDownError` (503) and :meth:`Admission.wait_idle`
tells when the work in flight is done.

Thread-safe and framework-free (one lock), so an asyncio app, worker threads and
another front end (e.g. a Ray Serve deployment) can share one instance.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable

from ..errors import OverloadedError, ShuttingDownError
from .limits import ServiceLimits

MAX_RETRY_AFTER_S = 60.0
BACKGROUND_SHARE = 0.5
"""Background work (pre-rendered presets) is admitted only while the frame backlog is under this share."""

REASON_JOBS = "jobs"
REASON_FRAMES = "frames"
REASON_STREAMS = "streams"
REASON_CLIENT_STREAMS = "client_streams"
REASON_SOURCES = "sources"
REASON_DRAINING = "draining"


class Ticket:
    """Held while admitted work runs; :meth:`release` (idempotent) gives its place back."""

    def __init__(self, admission: Admission, kind: str, frames: int = 0, holders: tuple[str, ...] = ()) -> None:
        self._admission = admission
        self.kind = kind
        self.frames = frames  # frames still counted as pending (jobs only)
        self.holders = holders  # per-client counters this ticket counts in (streams only)
        self.released = False

    def rendered(self, n: int) -> None:
        """``n`` frames of this job were rendered: they no longer count as pending."""
        self._admission._rendered(self, n)

    def release(self) -> None:
        self._admission._release(self)


class Admission:
    """Counts admitted work against :class:`~lpstudio.server.limits.ServiceLimits`.

    ``render_fps`` (optional) returns the measured render rate, used to size ``Retry-After``;
    ``on_reject(reason)`` is called for each refusal (metrics).
    """

    def __init__(
        self,
        limits: ServiceLimits,
        *,
        render_fps: Callable[[], float | None] | None = None,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits
        self._render_fps = render_fps
        self._on_reject = on_reject
        self._cond = threading.Condition()
        self.jobs = 0
        self.pending_frames = 0
        self.streams = 0
        self.client_streams: Counter[str] = Counter()  # open streams by "address:..." and "session:..." key
        self.sources = 0
        self.draining = False
        self.rejections: Counter[str] = Counter()

    # ------------------------------------------------------------------ admitting
    def check_open(self) -> None:
        """Raise :class:`ShuttingDownError` while draining."""
        if self.draining:
            self._reject(REASON_DRAINING)
            raise ShuttingDownError(retry_after_s=self.limits.retry_after_s)

    def admit_job(self, frames: int) -> Ticket:
        """A render job of ``frames`` frames, or 429 when the job queue or the frame backlog is full."""
        with self._cond:
            self.check_open()
            if self.jobs >= self.limits.max_jobs:
                raise self._overloaded(REASON_JOBS, f"{self.jobs} render jobs are queued (the limit)")
            if self.pending_frames + frames > self.limits.max_pending_frames:
                raise self._overloaded(
                    REASON_FRAMES,
                    f"{self.pending_frames} frames are waiting to be rendered; {frames} more would pass "
                    f"the limit of {self.limits.max_pending_frames}",
                )
            return self._take("job", frames)

    def try_admit_background(self, frames: int) -> Ticket | None:
        """Background work only while the server is well under its bounds; never counted as a refusal."""
        with self._cond:
            budget = self.limits.max_pending_frames * BACKGROUND_SHARE
            if self.draining or self.jobs >= self.limits.max_jobs * BACKGROUND_SHARE:
                return None
            if self.pending_frames + frames > budget:
                return None
            return self._take("job", frames)

    def admit_stream(self, client: str | None = None, session: str | None = None) -> Ticket:
        """An open NDJSON stream, or 429 when :attr:`ServiceLimits.max_streams` are open, or this client
        (address) already has :attr:`~ServiceLimits.max_streams_per_client` open, or this page (session)
        :attr:`~ServiceLimits.max_streams_per_session`."""
        with self._cond:
            self.check_open()
            if self.streams >= self.limits.max_streams:
                raise self._overloaded(REASON_STREAMS, f"{self.streams} streams are open (the limit)")
            holders: list[str] = []
            for kind, key, limit, who in (
                ("address", client, self.limits.max_streams_per_client, "from this address"),
                ("session", session, self.limits.max_streams_per_session, "for this session"),
            ):
                if key is None:
                    continue
                counter = f"{kind}:{key}"
                if self.client_streams[counter] >= limit:
                    raise self._overloaded(
                        REASON_CLIENT_STREAMS,
                        f"{self.client_streams[counter]} streams are open {who} (the limit per client is {limit}); "
                        "finish reading one before starting another",
                    )
                holders.append(counter)
            for counter in holders:
                self.client_streams[counter] += 1
            return self._take("stream", holders=tuple(holders))

    def admit_source(self) -> Ticket:
        """A photo being decoded and prepared, or 429 when :attr:`ServiceLimits.max_pending_sources` are."""
        with self._cond:
            self.check_open()
            if self.sources >= self.limits.max_pending_sources:
                raise self._overloaded(REASON_SOURCES, f"{self.sources} photos are being prepared (the limit)")
            return self._take("source")

    # ------------------------------------------------------------------ draining
    def begin_drain(self) -> None:
        """Refuse new work from now on (503); work in flight carries on."""
        with self._cond:
            self.draining = True
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return self.jobs == 0 and self.streams == 0 and self.sources == 0

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no job, stream or intake is in flight (True) or ``timeout_s`` passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.jobs == 0 and self.streams == 0 and self.sources == 0, timeout_s)

    # ------------------------------------------------------------------ state
    def retry_after_s(self) -> float:
        """Seconds a refused client should wait: the base, or the time to render the backlog."""
        fps = self._render_fps() if self._render_fps is not None else None
        backlog = self.pending_frames / fps if fps else 0.0
        return float(min(MAX_RETRY_AFTER_S, math.ceil(max(self.limits.retry_after_s, backlog))))

    def snapshot(self) -> dict[str, int | bool]:
        with self._cond:
            return {
                "jobs": self.jobs,
                "pending_frames": self.pending_frames,
                "streams": self.streams,
                "sources": self.sources,
                "draining": self.draining,
            }

    # ------------------------------------------------------------------ internals
    def _take(self, kind: str, frames: int = 0, holders: tuple[str, ...] = ()) -> Ticket:
        if kind == "job":
            self.jobs += 1
            self.pending_frames += frames
        elif kind == "stream":
            self.streams += 1
        else:
            self.sources += 1
        return Ticket(self, kind, frames, holders)

    def _rendered(self, ticket: Ticket, n: int) -> None:
        with self._cond:
            if ticket.released:
                return
            n = min(n, ticket.frames)
            ticket.frames -= n
            self.pending_frames -= n

    def _release(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.released:
                return
            ticket.released = True
            if ticket.kind == "job":
                self.jobs -= 1
                self.pending_frames -= ticket.frames
                ticket.frames = 0
            elif ticket.kind == "stream":
                self.streams -= 1
                for counter in ticket.holders:
                    self.client_streams[counter] -= 1
                    if self.client_streams[counter] <= 0:
                        del self.client_streams[counter]
            else:
                self.sources -= 1
            self._cond.notify_all()

    def _reject(self, reason: str) -> None:
        self.rejections[reason] += 1
        if self._on_reject is not None:
            self._on_reject(reason)

    def _overloaded(self, reason: str, what: str) -> OverloadedError:
        self._reject(reason)
        retry = self.retry_after_s()
        return OverloadedError(f"the server is busy: {what}", reason=reason, retry_after_s=retry)
