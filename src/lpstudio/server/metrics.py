"""Prometheus metrics (``GET /metrics``) and the access log.

Each app has its own :class:`prometheus_client.CollectorRegistry` (no process-global
state), filled by the worker, the admission controller and the streams; gauges are
read when scraped.

The access log (logger ``lpstudio.access``) has one line per request: method, path
without the query string, status, duration and bytes sent; never bodies or image data.
"""

from __future__ import annotations

import logging
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


class AccessLogMiddleware:
    """One log line and one request count per HTTP request; no query strings, bodies or image data."""

    def __init__(self, app: ASGIApp, metrics: Callable[[], ServiceMetrics | None]) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
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
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            ms = (time.perf_counter() - start) * 1000
            path = scope.get("path", "")
            shown = path if len(path) <= 200 else path[:200] + "..."
            access_log.info('%s "%s %s" %s %.1fms %dB', _client(scope), scope.get("method"), shown, status, ms, sent)
            metrics = self.metrics()
            if metrics is not None:
                metrics.requests.labels(route=template, status=str(status or 499)).inc()


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}" if client else "-"
