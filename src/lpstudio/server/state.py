"""The running service's state (one per app) and the helpers routes share.

Kept apart from the routes so other route modules (a WebSocket route, a later
deployment wrapper) can use the same sessions, admission control and render hub.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .admission import Admission
from .limits import ServiceLimits
from .metrics import ServiceMetrics
from .sessions import DISPLAY_MAX_SIDE, JPEG_QUALITY, Session, SessionExpired, SessionStore, Source, SourceStore
from .settings import ServerSettings
from .streams import ClipHub, FrameEncoder
from .worker import RenderWorker

T = TypeVar("T")
CPU_BACKGROUND_BATCH = 1
"""Frames in a background batch on a CPU (seconds each): what a clip that arrives may wait for."""
WorkerFactory = Callable[[Any, ServerSettings], Any]
"""Builds an app's render worker from ``(engine, settings)``: a :class:`RenderWorker`, or an object with
its interface (``submit``, ``prepare_source``, ``call``, ``notify``, ``fail_all``, ``close``, counters) that
renders elsewhere, e.g. on Ray Serve replicas (:mod:`lpstudio.server.ray_worker`)."""


@dataclass
class AppState:
    """Everything one app serves from; made by :func:`build_state` inside the event loop."""

    engine: Any
    settings: ServerSettings
    worker: RenderWorker
    sessions: SessionStore
    sources: SourceStore
    admission: Admission
    hub: ClipHub
    encoder: FrameEncoder
    metrics: ServiceMetrics
    loop: asyncio.AbstractEventLoop
    decode_slots: asyncio.Semaphore
    preparing: dict[str, asyncio.Future] = field(default_factory=dict)  # digest -> preparation in flight
    default_image: tuple[Any, str] | None = None  # (rgb, digest) of the default portrait, once decoded
    default_view: bytes | None = None  # its display JPEG
    on_new_source: Callable[[Source], None] | None = None
    viewers: dict[str, Any] = field(default_factory=dict)  # clip id -> (session, Viewer), to cancel (alive.py)
    background: Any = None  # the BackgroundScheduler (background.py), once started
    loaded_at: float = field(default_factory=time.time)
    keep_store: Any = None  # the KeepStore of server/keep_routes.py (bases, saved expressions, downloads)

    @property
    def limits(self) -> ServiceLimits:
        return self.settings.limits

    def resolve(self, session_id: str) -> tuple[Session, Source]:
        """The page's session and its prepared photo, or 409 :class:`SessionExpired`."""
        session = self.sessions.get(session_id)
        source = self.sources.get(session.digest)
        if source is None:
            raise SessionExpired(session_id)
        return session, source

    async def on_worker(self, fn: Callable[[], T]) -> T:
        """Run model work on the worker thread."""
        return await asyncio.wrap_future(self.worker.call(fn))

    async def off_loop(self, fn: Callable[[], T]) -> T:
        """Run CPU work (decoding, hashing, sampling, encoding) on a thread, not the event loop."""
        return await asyncio.to_thread(fn)

    def settings_key(self) -> str:
        """Everything besides the photo and timeline that changes a clip's encoded frames."""
        e = self.engine
        return (
            f"{e.device}|{e.dtype}|{e.backend.name}|{e.backend.dtype}|crop={self.settings.crop}"
            f"|display={DISPLAY_MAX_SIDE}|q={JPEG_QUALITY}"
        )


def build_state(engine: Any, settings: ServerSettings, make_worker: WorkerFactory | None = None) -> AppState:
    """Start the worker, encoder and stores for ``engine``; call from inside the running event loop.

    ``make_worker``: the render part (default: a local :class:`RenderWorker` on ``engine``).
    """
    from .limits import ByteBudget
    from .streams import LineCache

    limits = settings.limits
    loop = asyncio.get_running_loop()
    metrics = ServiceMetrics()
    on_cpu = getattr(getattr(engine, "device", None), "type", None) == "cpu"
    background_batch = CPU_BACKGROUND_BATCH if on_cpu else None  # a clip waits for one CPU frame, not a batch
    worker = (
        make_worker(engine, settings)
        if make_worker is not None
        else RenderWorker(engine, settings.batch_size, background_batch)
    )
    worker.on_batch = metrics.on_batch
    admission = Admission(limits, render_fps=lambda: worker.measured_fps, on_reject=metrics.reject)
    encoder = FrameEncoder(settings.encode_threads)
    hub = ClipHub(
        worker, encoder, LineCache(limits.clip_cache_bytes), ByteBudget(limits.max_history_bytes),
        limits.stream_buffer_frames, loop,
    )  # fmt: skip
    state = AppState(
        engine=engine,
        settings=settings,
        worker=worker,
        sessions=SessionStore(limits.max_session_ids, limits.max_sessions_per_client),
        sources=SourceStore(limits.max_sessions, limits.max_session_memory_bytes, limits.max_photos_per_client),
        admission=admission,
        hub=hub,
        encoder=encoder,
        metrics=metrics,
        loop=loop,
        decode_slots=asyncio.Semaphore(limits.max_decodes),
    )
    _register_gauges(state)
    return state


def _register_gauges(state: AppState) -> None:
    m, adm = state.metrics, state.admission
    m.gauge("lpstudio_queue_depth", "Render jobs admitted and not finished", lambda: adm.jobs)
    m.gauge("lpstudio_pending_frames", "Frames admitted and not yet rendered", lambda: adm.pending_frames)
    m.gauge("lpstudio_open_streams", "Clip streams open", lambda: adm.streams)
    m.gauge("lpstudio_sources_preparing", "Photos being decoded or prepared", lambda: adm.sources)
    m.gauge("lpstudio_sessions", "Page sessions known", lambda: len(state.sessions))
    m.gauge("lpstudio_prepared_photos", "Prepared photos in memory", lambda: len(state.sources))
    m.gauge("lpstudio_prepared_photos_bytes", "Memory of the prepared photos", lambda: state.sources.memory_bytes)
    m.gauge("lpstudio_clip_cache_bytes", "Encoded frames of cached clips", lambda: state.hub.cache.bytes)
    m.gauge(
        "lpstudio_render_history_bytes", "Encoded lines kept by renders in progress", lambda: state.hub.history.used
    )
    m.gauge("lpstudio_renders_in_progress", "Shared renders in progress", lambda: len(state.hub.clips))
    m.gauge("lpstudio_draining", "1 while the server drains before stopping", lambda: float(adm.draining))
    m.totals(
        {
            "lpstudio_nonfinite_frames": (
                "Rendered frames with NaN/Inf pixels (never shown)",
                lambda: getattr(state.engine, "nonfinite_events", 0),
            ),
            "lpstudio_oom_splits": (
                "Batches split after running out of device memory",
                lambda: state.worker.oom_splits,
            ),
            "lpstudio_batch_failures": ("Render batches that failed", lambda: state.worker.batch_failures),
            "lpstudio_source_evictions": ("Prepared photos dropped to make room", lambda: state.sources.evictions),
            "lpstudio_session_evictions": (
                "Page sessions dropped (store full, or the client past its quota)",
                lambda: state.sessions.evictions,
            ),
            "lpstudio_shared_joins": ("Streams that joined a render already in progress", lambda: state.hub.joined),
        }
    )
