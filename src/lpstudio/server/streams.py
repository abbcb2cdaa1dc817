"""Streamed clips: one render per (source, timeline), shared by all its viewers, with bounded buffers.

* :class:`SharedClip` is one render in progress (or a clip replayed from the cache). Its
  frames are composited and JPEG-encoded once, off the event loop
  (:class:`FrameEncoder`), into ready-made NDJSON lines that every viewer sends.
* :class:`Viewer` is one client's stream over a clip. The render may run at most
  ``buffer_frames`` ahead of the frames the furthest viewer has *taken* (:meth:`RenderJob.allow`),
  so a client that reads slowly holds back the render, and the frames rendered for it and not
  taken are at most ``buffer_frames`` (plus the line in the send).
* :class:`NDJSONResponse` sends a viewer's lines; a client that has not taken a line
  for ``stall_timeout_s`` is cut off (``lpstudio_streams_stalled_total``). When the last
  viewer of a clip leaves, its remaining frames are not rendered.

What "taken" means, i.e. what an ASGI app can observe: only that the server's ``send`` returned.
uvicorn returns once the bytes are in its transport buffer below its 64 KB high-water mark, and
the transport empties into the kernel's socket send buffer, then the client's receive buffer. A
client that never reads therefore looks like it reads until those buffers are full. The
kernel's default send buffer grows to megabytes (``net.ipv4.tcp_wmem``), which on loopback
holds whole clips, so an unread stream made progress, rendered everything and never stalled.
:func:`bounded_listener` fixes the send buffer of every connection
(:attr:`~lpstudio.server.limits.ServiceLimits.stream_socket_buffer_bytes`): a client that does not read
then stops taking frames after that much plus its own receive window, the render waits, and the
stall cut-off fires. The bytes in those buffers are kernel memory (bounded per connection),
not the server's.
* Lines of renders in progress are kept (so a late viewer of the same clip joins it
  from the start) within a global :class:`~.limits.ByteBudget`; finished clips go to a
  :class:`LineCache` bounded in bytes.

Everything here except :class:`FrameEncoder` and the worker callbacks runs on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import itertools
import json
import logging
import queue
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import torch
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..errors import LPStudioError
from ..params import EditParams
from .limits import ByteBudget
from .sessions import Source, encode_jpeg
from .worker import ANONYMOUS_CLIENT, RenderJob, RenderWorker

log = logging.getLogger(__name__)

NDJSON_MEDIA_TYPE = "application/x-ndjson; charset=utf-8"


def json_line(obj: dict) -> bytes:
    """One NDJSON line."""
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


def start_line(start: dict, audio_json: bytes | None = None) -> bytes:
    """The ``start`` line; ``audio_json`` (an object serialised off the event loop) is spliced in as ``"audio"``."""
    line = json_line(start)
    if audio_json is None:
        return line
    return line[:-2] + b',"audio":' + audio_json + b"}\n"


def frame_line(index: int, jpeg: bytes) -> bytes:
    """The ``frame`` line of one JPEG (built without a JSON round trip: base64 needs no escaping)."""
    return b'{"type":"frame","index":%d,"jpeg":"%s"}\n' % (index, base64.b64encode(jpeg))


def error_line(exc: BaseException) -> bytes:
    """The ``error`` line of a failed render: the user-facing message, never a traceback."""
    if isinstance(exc, LPStudioError):
        return json_line({"type": "error", "error": exc.message, "hint": exc.hint, "kind": type(exc).__name__})
    return json_line({"type": "error", "error": "rendering failed", "hint": "try again", "kind": "RenderError"})


class FrameEncoder:
    """Composites and encodes frames on a small thread pool (never on the event loop).

    Work is taken in priority order: a clip's first frame before the rest (it is what a
    user waits for), then by the job's priority, then in submission order.
    """

    def __init__(self, threads: int = 2) -> None:
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._threads = [
            threading.Thread(target=self._run, name=f"lpstudio-encode-{i}", daemon=True) for i in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def line(
        self, source: Source, index: int, frame: np.ndarray, priority: int = 1
    ) -> concurrent.futures.Future[bytes]:
        """The NDJSON ``frame`` line of a rendered (512,512,3) frame as the page shows it."""
        rank = (0 if index == 0 else 1, priority)
        return self._submit(rank, lambda: frame_line(index, encode_jpeg(source.compose(frame))))

    def run(self, fn: Callable[[], object]) -> concurrent.futures.Future:
        return self._submit((1, 9), fn)

    def _submit(self, rank: tuple[int, int], fn: Callable[[], object]) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._queue.put((rank, next(self._seq), fn, future))
        return future

    def _run(self) -> None:
        while True:
            _, _, fn, future = self._queue.get()
            if fn is None:
                return
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the waiting clip
                future.set_exception(exc)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(((9, 9), next(self._seq), None, None))


class LineCache:
    """Finished clips as their NDJSON frame lines, least recently used dropped past ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[tuple[bytes, ...], int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> tuple[bytes, ...] | None:
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return item[0]

    def put(self, key: str, lines: Sequence[bytes]) -> bool:
        size = sum(len(x) for x in lines)
        if size > self.max_bytes:
            return False
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[key] = (tuple(lines), size)
        self.bytes += size
        while self.bytes > self.max_bytes and self._items:
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped
        return True

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class SharedClip:
    """The frames of one clip as NDJSON lines, for any number of :class:`Viewer` objects."""

    def __init__(self, hub: ClipHub, key: str, n_frames: int, source: Source | None) -> None:
        self.hub = hub
        self.key = key
        self.n = n_frames
        self.source = source
        self.lines: list[bytes | None] = [None] * n_frames
        self.ready = 0  # lines[:ready] are all encoded (those before `trimmed` may be dropped)
        self.trimmed = 0
        self.finished = False
        self.error: BaseException | None = None
        self.cached = False
        self.keep = False  # a pre-render: carries on without viewers
        self.keep_history = True
        self.history_bytes = 0
        self.job: RenderJob | None = None
        self.viewers: list[Viewer] = []
        self.started = time.perf_counter()

    # ------------------------------------------------------------------ viewers
    @property
    def joinable(self) -> bool:
        return not self.finished and self.keep_history and self.trimmed == 0 and not self._cancelled

    @property
    def _cancelled(self) -> bool:
        return self.job is not None and self.job.cancelled.is_set()

    def join(self, viewer: Viewer) -> None:
        self.viewers.append(viewer)

    def leave(self, viewer: Viewer) -> None:
        if viewer in self.viewers:
            self.viewers.remove(viewer)
        if not self.viewers and not self.finished and not self.keep and self.job is not None:
            self.job.cancel()  # nobody is watching: its remaining frames are not rendered
            self.hub._forget(self)
        else:
            self._advance_window()

    def advanced(self) -> None:
        """A viewer took a line: let the render run further, drop lines nobody needs any more."""
        self._advance_window()
        if not self.keep_history and self.viewers:
            low = min(v.pos for v in self.viewers)
            for i in range(self.trimmed, min(low, self.ready)):
                self.lines[i] = None
            self.trimmed = max(self.trimmed, min(low, self.ready))

    def _advance_window(self) -> None:
        if self.job is not None and self.viewers:
            self.job.allow(max(v.taken for v in self.viewers) + self.hub.buffer_frames)

    def _wake(self) -> None:
        for viewer in self.viewers:
            viewer.event.set()

    # ------------------------------------------------------------------ frames (event loop)
    def line_ready(self, index: int, line: bytes) -> None:
        if self.finished:
            return
        self.lines[index] = line
        if self.keep_history:
            if self.hub.history.take(len(line)):
                self.history_bytes += len(line)
            else:  # over the history budget: keep only what viewers still need; no late joiners, no cache
                self.keep_history = False
                self.hub.history.release(self.history_bytes)
                self.history_bytes = 0
                if not self.viewers and self.job is not None:
                    self.job.cancel()
                    self.hub._forget(self)
                    return
        while self.ready < self.n and self.lines[self.ready] is not None:
            self.ready += 1
        if self.ready == self.n:
            self.finish(None)
        else:
            self._wake()

    def finish(self, error: BaseException | None) -> None:
        if self.finished:
            return
        self.finished = True
        self.error = error
        self.hub._finished(self)
        self._wake()

    @classmethod
    def replay(cls, hub: ClipHub, key: str, lines: Sequence[bytes]) -> SharedClip:
        """A finished clip from the cache."""
        clip = cls(hub, key, len(lines), None)
        clip.lines = list(lines)
        clip.ready = len(lines)
        clip.finished = True
        clip.cached = True
        return clip


class Viewer:
    """One client's stream of a :class:`SharedClip`: a ``start`` line, the frames in order, ``end`` or ``error``.

    A speaking clip's ``start`` line carries its ``audio`` (``audio_json``, serialised off the loop).
    Viewers share frames only: the audio is part of the clip's key, so it is the same for all of them.
    """

    def __init__(
        self,
        clip: SharedClip,
        start: dict,
        received: float,
        *,
        shared: bool = False,
        on_first_frame: Callable[[float], None] | None = None,
        audio_json: bytes | None = None,
    ) -> None:
        self.clip = clip
        self.start = start
        self.audio_json = audio_json
        self.received = received
        self.shared = shared
        self.on_first_frame = on_first_frame
        self.pos = 0  # lines handed to the server
        self.taken = 0  # lines whose send returned (what an ASGI app can know the client took)
        self.event = asyncio.Event()
        self.closed = False
        self.stalled = False
        self.cancelled = False
        clip.join(self)

    def cancel(self) -> None:
        """Stop this stream now (``POST /generate/cancel``): it leaves the clip, whose render stops when no
        other viewer shares it, and ends with an ``end`` line saying ``"cancelled": true``."""
        self.cancelled = True
        self.close()
        self.event.set()

    async def lines(self) -> AsyncIterator[bytes]:
        clip = self.clip
        yield start_line({**self.start, "type": "start", "frames": clip.n, "shared": self.shared}, self.audio_json)
        first_ms: float | None = None
        started = time.perf_counter()
        while True:
            while self.pos < clip.ready and not self.cancelled:
                line = clip.lines[self.pos]
                self.pos += 1
                if line is None:  # pragma: no cover - trimmed lines are behind every viewer
                    self.taken = self.pos
                    clip.advanced()
                    continue
                if first_ms is None:
                    first_ms = (time.perf_counter() - self.received) * 1000
                    if self.on_first_frame is not None:
                        self.on_first_frame(first_ms)
                yield line
                # Resumed: the server's send of that line returned (the response asks for the next chunk
                # only then), so the client took it as far as we can tell; the render may go further.
                self.taken = self.pos
                clip.advanced()
            if clip.finished or self.cancelled:
                break
            self.event.clear()
            if self.pos < clip.ready or clip.finished or self.cancelled:
                continue
            await self.event.wait()
        if clip.error is not None and not self.cancelled:
            yield error_line(clip.error)
            return
        elapsed = time.perf_counter() - started
        yield json_line(
            {
                "type": "end",
                "frames": self.pos,
                "cached": clip.cached,
                "shared": self.shared,
                "cancelled": self.cancelled,
                "first_frame_ms": round(first_ms or 0.0, 1),
                "render_fps": round(self.pos / elapsed, 2) if elapsed > 0 else None,
            }
        )

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.clip.leave(self)


class ClipHub:
    """Renders in progress by clip key (joined by identical requests) and the cache of finished clips."""

    def __init__(
        self,
        worker: RenderWorker,
        encoder: FrameEncoder,
        cache: LineCache,
        history: ByteBudget,
        buffer_frames: int,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.worker = worker
        self.encoder = encoder
        self.cache = cache
        self.history = history
        self.buffer_frames = buffer_frames
        self.loop = loop
        self.clips: dict[str, SharedClip] = {}
        self.joined = 0  # viewers that joined a render already in progress

    def find(self, key: str) -> SharedClip | None:
        """A cached clip, or a render in progress that a new viewer can join from its first frame."""
        lines = self.cache.get(key)
        if lines is not None:
            return SharedClip.replay(self, key, lines)
        clip = self.clips.get(key)
        return clip if clip is not None and clip.joinable else None

    def start(
        self,
        key: str,
        source: Source,
        params: Sequence[EditParams],
        priority: int,
        ticket: object,
        *,
        keep: bool = False,
        client: str = ANONYMOUS_CLIENT,
        x_d: torch.Tensor | None = None,
        **job_options: Any,
    ) -> SharedClip:
        """Submit a render of ``params`` on ``source``; its frames become lines of the returned clip.

        ``client``: who asked (the worker shares each priority fairly between clients); ``job_options``
        go to the :class:`~lpstudio.server.worker.RenderJob` (``faces``, ``face_params`` of a group clip).
        ``x_d``: driving keypoints (N,21,3) computed already (a driving video or template, one row per
        entry of ``params``); the worker renders them instead of editing ``params``.
        """
        clip = SharedClip(self, key, len(params), source)
        clip.keep = keep
        loop = self.loop

        def on_frame(i: int, frame: np.ndarray) -> None:  # worker thread
            future = self.encoder.line(source, i, frame, clip.job.priority if clip.job else 1)
            future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._encoded, clip, i, f))

        def on_done(exc: BaseException | None) -> None:  # worker thread
            loop.call_soon_threadsafe(self._job_done, clip, exc)

        window = None if keep else self.buffer_frames
        clip.job = RenderJob(
            source.state,
            params,
            on_frame,
            on_done,
            priority,
            window_end=window,
            ticket=ticket,
            digest=source.digest,
            client=client,
            x_d=x_d,
            **job_options,
        )
        source.active += 1
        self.clips[key] = clip
        self.worker.submit(clip.job)
        return clip

    def bump(self, clip: SharedClip, priority: int) -> None:
        """Someone waits for this clip now: render it at (at least) ``priority``."""
        clip.keep = False
        if clip.job is not None and priority < clip.job.priority:
            clip.job.priority = priority
            self.worker.notify()

    # ------------------------------------------------------------------ callbacks (event loop)
    def _encoded(self, clip: SharedClip, index: int, future: concurrent.futures.Future) -> None:
        if future.cancelled():
            clip.finish(RuntimeError("frame encoding was cancelled"))
            return
        exc = future.exception()
        if exc is not None:
            log.error("encoding frame %d failed: %s", index, exc)
            if clip.job is not None:
                clip.job.cancel(exc)
            clip.finish(exc)
            return
        clip.line_ready(index, future.result())

    def _job_done(self, clip: SharedClip, exc: BaseException | None) -> None:
        if exc is not None:
            clip.finish(exc)
        elif clip.job is not None and clip.job.cancelled.is_set() and not clip.finished:
            clip.finish(RuntimeError("the render was cancelled"))
        # else: the last frame's encoding finishes the clip

    def _finished(self, clip: SharedClip) -> None:
        if clip.source is not None and clip.job is not None:
            clip.source.active -= 1
        if self.clips.get(clip.key) is clip:
            del self.clips[clip.key]
        if clip.error is None and clip.keep_history and not clip.cached:
            self.cache.put(clip.key, [x for x in clip.lines if x is not None])
        self.history.release(clip.history_bytes)
        clip.history_bytes = 0

    def _forget(self, clip: SharedClip) -> None:
        """A clip nobody watches any more: drop it now (its job is cancelled)."""
        if not clip.finished:
            clip.finished = True
            clip.error = RuntimeError("the render was cancelled")
            if clip.source is not None and clip.job is not None:
                clip.source.active -= 1
            if self.clips.get(clip.key) is clip:
                del self.clips[clip.key]
            self.history.release(clip.history_bytes)
            clip.history_bytes = 0


def bounded_listener(host: str, port: int, send_buffer_bytes: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket whose accepted connections have a fixed ``send_buffer_bytes`` send buffer.

    Linux copies the listener's ``SO_SNDBUF`` (which also turns off the buffer's growth) and
    ``TCP_NOTSENT_LOWAT`` to each accepted connection, so what a client that does not read can
    absorb is bounded, and the stall cut-off of :class:`NDJSONResponse` works whatever the kernel's
    defaults (see the module docstring). Pass it to uvicorn (``Server.run(sockets=[...])``).
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
        0
    ]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
        notsent_lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
        if notsent_lowat is not None:  # Linux, macOS: unsent bytes queued at most this much
            sock.setsockopt(socket.IPPROTO_TCP, notsent_lowat, send_buffer_bytes)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class NDJSONResponse(StreamingResponse):
    """Streams a :class:`Viewer`'s lines; a client that stops making progress is cut off.

    Progress is measured by what the client takes (a ``send`` that returns), against the time the
    server spends waiting on it (inside ``send``); time spent waiting for the renderer does not
    count. A client is cut off when it takes nothing for ``stall_timeout_s``, or when that waiting
    exceeds the playback time of the frames it took (at the clip's fps) by ``stall_timeout_s``: a
    page plays what it receives, so one that reads slower than playback for that long is not
    watching, and a client trickling one line per almost-the-stall-time is cut off too.
    ``on_close()`` runs once when the stream ends, however it ends (release the admission ticket).
    """

    def __init__(self, viewer: Viewer, stall_timeout_s: float, on_close: Callable[[], None]) -> None:
        super().__init__(viewer.lines(), media_type=NDJSON_MEDIA_TYPE, headers={"Cache-Control": "no-store"})
        self.viewer = viewer
        self.stall_timeout_s = stall_timeout_s
        self.on_close = on_close
        self.waited_s = 0.0  # time spent inside send: the server waiting on the client

    def _budget_s(self) -> float:
        """How long the next send may take before the client counts as stalled."""
        fps = float(self.viewer.start.get("fps") or 0.0)
        if fps <= 0:
            return self.stall_timeout_s
        behind = self.waited_s - self.viewer.taken / fps  # waiting beyond the playback time of what it took
        return self.stall_timeout_s - max(0.0, behind)

    async def stream_response(self, send: Send) -> None:
        async def timed(message: dict) -> None:
            budget = self._budget_s()
            if budget <= 0:
                raise asyncio.TimeoutError
            started = time.perf_counter()
            try:
                await asyncio.wait_for(send(message), budget)
            finally:
                self.waited_s += time.perf_counter() - started

        try:
            await timed({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await timed({"type": "http.response.body", "body": chunk, "more_body": True})
            await timed({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.TimeoutError:
            # The client stopped reading: end here without completing the response, so the
            # server closes the connection; leaving the clip stops its frames.
            self.viewer.stalled = True
            log.warning(
                "stream cut off: the client took %d frames in %.1f s of waiting on it (stall time %.0f s)",
                self.viewer.taken,
                self.waited_s,
                self.stall_timeout_s,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
            finally:
                self.viewer.close()
                self.on_close()
