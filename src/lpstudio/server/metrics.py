"""Prometheus metrics (``GET /metrics``) and the access log.

Each app has its own :class:`prometheus_client.CollectorRegistry` (no process-global
state), filled by the worker, the admission controller and the streams; gauges are
read when scraped.

The access log (logger ``lpstudio.access``) has one line per request: client, method,
path without the query string (control characters escaped, so a URL cannot write
terminal escapes or fake lines into the log), status, duration, bytes sent and a
request id (:func:`request_id`; the 500 answer carries it, so a user can quote it);
never bodies or image data. A request that raised is logged and counted as 500 (the
framework's error handler answers it outside this middleware). A WebSocket gets a
line when it is accepted or refused and one when it closes: duration, messages (frames)
in and out, who closed it, the close code and reason.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("lpstudio.access")

RENDER_MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000)
LATENCY_MS_BUCKETS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_ID_KEY = "lpstudio.request_id"
"""Where :class:`AccessLogMiddleware` keeps a request's id in its ASGI scope (see :func:`request_id`)."""
REQUEST_ID_BYTES = 6
"""Random bytes of a request id: 12 hex digits, short enough to quote, unique enough within a log."""
MAX_LOGGED_PATH_CHARS = 200
"""Longest path written to the access log (longer ones end with ``...``)."""
MAX_LOGGED_REASON_CHARS = 123
"""Longest WebSocket close reason logged (the protocol's own limit is 123 bytes)."""
STATUS_INTERNAL = 500
STATUS_GONE = 499
"""Logged when the client went away before any answer (nginx's convention)."""
STATUS_SWITCHING = 101
STATUS_WS_REFUSED = 403
"""What the server answers a WebSocket handshake the app closed before accepting."""


class _Totals(Collector):
    """Counters owned by other objects (the engine's non-finite events, the worker's OOM splits)."""

    def __init__(self, totals: dict[str, tuple[str, Callable[[], float]]]) -> None:
        self._totals = totals

    def collect(self) -> Iterable[Metric]:
        for name, (doc, read) in self._totals.items():
            family = CounterMetricFamily(name, doc)
            family.add_metric([], float(read()))
            yield family


class ServiceMetrics:
    """The service's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "lpstudio_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.rejections = Counter(
            "lpstudio_rejections", "Requests refused by admission control or limits, by reason", ["reason"], registry=r
        )
        self.frames = Counter("lpstudio_frames_rendered", "Frames rendered by the model", registry=r)
        self.batch_ms = Histogram(
            "lpstudio_render_batch_ms", "Milliseconds per rendered batch", buckets=RENDER_MS_BUCKETS, registry=r
        )
        self.frame_ms = Histogram(
            "lpstudio_render_frame_ms", "Milliseconds per frame (batch time / frames)", buckets=RENDER_MS_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.first_frame_ms = Histogram(
            "lpstudio_first_frame_ms", "From request received to its first frame line", buckets=LATENCY_MS_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.streams = Counter("lpstudio_streams", "Clip streams served, by how", ["how"], registry=r)
        self.stalled = Counter("lpstudio_streams_stalled", "Streams cut off: the client stopped reading", registry=r)

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time."""
        Gauge(name, doc, registry=self.registry).set_function(read)

    def totals(self, totals: dict[str, tuple[str, Callable[[], float]]]) -> None:
        """Counters kept elsewhere, read at scrape time (names without ``_total``)."""
        self.registry.register(_Totals(totals))

    def on_batch(self, frames: int, seconds: float) -> None:
        self.frames.inc(frames)
        self.batch_ms.observe(seconds * 1000)
        self.frame_ms.observe(seconds * 1000 / max(1, frames))

    def reject(self, reason: str) -> None:
        self.rejections.labels(reason=reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def new_request_id() -> str:
    """A fresh request id (:data:`REQUEST_ID_BYTES` random bytes as hex), for the access log and error answers."""
    return secrets.token_hex(REQUEST_ID_BYTES)


def request_id(scope: Scope) -> str | None:
    """The id :class:`AccessLogMiddleware` gave this request (logged with it), or None outside it."""
    return scope.get(REQUEST_ID_KEY)


def printable(text: str, limit: int = MAX_LOGGED_PATH_CHARS) -> str:
    """``text`` safe for a one-line log: cut at ``limit`` characters, then non-printable characters
    (controls, escape sequences, line and paragraph separators, bidi overrides), backslashes and
    double quotes escaped as in Python string literals."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    out = []
    for ch in shown:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)


class AccessLogMiddleware:
    """One log line and one request count per HTTP request (two lines per WebSocket); no query strings,
    bodies or image data."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ServiceMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._socket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        rid = scope[REQUEST_ID_KEY] = new_request_id()
        status = 0
        sent = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except BaseException:
            if status == 0:  # the error handler outside this middleware answers it with a 500
                status = STATUS_INTERNAL
            raise
        finally:
            ms = (time.perf_counter() - start) * 1000
            access_log.info('%s "%s %s" %s %.1fms %dB id=%s', _client(scope), scope.get("method"),
                            printable(scope.get("path", "")), status, ms, sent, rid)  # fmt: skip
            self._count(scope, status or STATUS_GONE)

    async def _socket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket: a line when accepted or refused, one when closed (duration, messages, close)."""
        start = time.perf_counter()
        rid = scope[REQUEST_ID_KEY] = new_request_id()
        client, path = _client(scope), printable(scope.get("path", ""))
        state = {"status": 0, "in": 0, "out": 0, "by": "client", "code": None, "reason": ""}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                state["in"] += 1
            elif message["type"] == "websocket.disconnect" and state["code"] is None:
                state["code"], state["reason"] = message.get("code", 1005), message.get("reason") or ""
            return message

        async def counting_send(message: Message) -> None:
            kind = message["type"]
            if kind == "websocket.accept":
                state["status"] = STATUS_SWITCHING
                access_log.info('%s "WS %s" %s open id=%s', client, path, STATUS_SWITCHING, rid)
            elif kind == "websocket.send":
                state["out"] += 1
            elif kind == "websocket.close" and state["code"] is None:
                state["by"], state["code"] = "server", message.get("code", 1000)
                state["reason"] = message.get("reason") or ""
                if not state["status"]:
                    state["status"] = STATUS_WS_REFUSED
            elif kind == "websocket.http.response.start" and not state["status"]:
                state["status"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except BaseException:
            if not state["status"]:
                state["status"] = STATUS_INTERNAL
            state["by"], state["code"] = "server", state["code"] or 1011
            raise
        finally:
            s = time.perf_counter() - start
            access_log.info(
                '%s "WS %s" %s closed by %s %s "%s" %.1fs in=%d out=%d id=%s', client, path, state["status"],
                state["by"], state["code"], printable(str(state["reason"]), MAX_LOGGED_REASON_CHARS), s, state["in"],
                state["out"], rid,
            )  # fmt: skip
            self._count(scope, int(state["status"]) or STATUS_GONE)

    def _count(self, scope: Scope, status: int) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics = self.metrics()
        if metrics is not None:
            metrics.requests.labels(route=template, status=str(status)).inc()


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return printable(f"{client[0]}") if client else "-"
