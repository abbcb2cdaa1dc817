"""A bounded connection layer for ``lpstudio serve``: every connection is limited in time, size and number.

uvicorn's own protocols bound little on their own: the default ``httptools`` parser takes a
request head of any size for as long as it keeps coming, and no protocol bounds how long a
body may take, how many connections one client may hold, or how many upload bytes are being
received (and spooled to disk by the multipart parser) at once. This module adds those
bounds inside the server, so the loopback default holds without a reverse proxy in front:

* **Request head**: at most :attr:`ConnectionLimits.max_head_bytes` (431) and complete within
  :attr:`ConnectionLimits.head_timeout_s` of the accept, or of the end of the previous response
  on a kept-alive connection (408). h11's ``max_incomplete_event_size`` is the backstop.
* **Body**: no progress for :attr:`ConnectionLimits.body_idle_timeout_s`, or slower in total than
  :attr:`ConnectionLimits.body_min_rate_bytes_s` after a grace period, is answered 408 and closed.
  Time while the app itself is not reading (flow control paused, or a ``100 Continue`` not yet
  sent) is not held against the client.
* **Connections**: at most :attr:`ConnectionLimits.max_connections` in all (kept below the
  file-descriptor limit, see :func:`connection_cap`) and :attr:`ConnectionLimits.max_per_client`
  per client address. When a cap is reached the *oldest connection still waiting for its
  request head* is closed to make room (a slowloris connection never completes a head; a
  fresh request completes it at once), so a complete request gets through; connections
  with a request in progress are never evicted. Only when none can be evicted is the new
  connection refused (503).
* **Upload bytes**: the bodies being received count against :attr:`ConnectionLimits.body_budget_bytes`,
  reserved from ``Content-Length`` before the app reads a byte (a chunked body reserves as it
  arrives); a request that does not fit gets 429 with ``Retry-After`` at once, and the
  reservation is released when the app is done with the request (or the client drops it).

Every refusal is a JSON error (``error``, ``hint``, ``kind``, ``request_id``) with an
``X-Request-Id`` header; the server log has the same id with the client address.

How: :func:`server_config` builds the ``uvicorn.Config`` that ``serve`` (and the tests) use,
with :class:`BoundedH11Protocol`, a subclass of uvicorn's h11 protocol, as the HTTP protocol.
What uvicorn cannot do here, and so is not done: the bounds apply to HTTP/1.1 through this
protocol only; a WebSocket connection, once upgraded, is counted against the caps but timed
by the WebSocket protocol (its ping timeout), and ``serve --ray`` runs Ray Serve's own
HTTP proxy, which this layer does not reach (put a reverse proxy in front at the network edge).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import LPStudioError, PayloadTooLargeError
from .connection_limits import (
    MIB,
    ConnectionLimits,
    TooManyConnectionsError,
    _size,
    bad_request_error,
    body_timeout_error,
    budget_error,
    connection_cap,
    error_response,
    head_timeout_error,
    head_too_large_error,
)
from .limits import ByteBudget
from .metrics import new_request_id

log = logging.getLogger(__name__)

LINGER_S = 2.0
"""After a refusal: how long the rest of the request is read and dropped, so the client sees the answer, not a reset."""
LINGER_BYTES = 1 * MIB
"""...and at most this much of it (a client sending at loopback speed would otherwise keep a core busy for 2 s)."""
RECHECK_S = 1.0
"""While the app is not reading a body (flow control), its clock is looked at again after this long."""
LOG_EVERY_S = 10.0
"""Evictions and refusals are summed in the log at most this often (an attack must not flood the log)."""
LOG_LINES_PER_WINDOW = 20
"""Refused requests logged one by one (with their request id) per :data:`LOG_EVERY_S`; the rest are counted."""

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# ---------------------------------------------------------------------- shared state of one server
class ConnectionRegistry:
    """The open connections of a server, by client address, oldest waiting-for-a-head first.

    Used from the event loop thread only (protocol callbacks), so it needs no lock.
    """

    def __init__(self, max_total: int, max_per_client: int) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.open: dict[BoundedH11Protocol, str] = {}
        self.per_client: dict[str, int] = {}
        self.waiting: OrderedDict[BoundedH11Protocol, None] = OrderedDict()
        self.waiting_by_client: dict[str, OrderedDict[BoundedH11Protocol, None]] = {}
        self.upgraded: dict[asyncio.BaseTransport, str] = {}
        """WebSocket connections: no longer ours to time, still counted until their transport closes."""
        self.evicted = 0
        self.refused = 0
        self._logged_at = 0.0

    def __len__(self) -> int:
        return len(self.open) + len(self.upgraded)

    def admit(self, conn: BoundedH11Protocol, host: str) -> bool:
        """Count a new connection, evicting the oldest one still waiting for a head if a cap is reached."""
        if len(self) >= self.max_total or self.per_client.get(host, 0) >= self.max_per_client:
            self._sweep_upgraded()
        if self.per_client.get(host, 0) >= self.max_per_client and not self._evict(self.waiting_by_client.get(host)):
            return self._refuse()
        if len(self) >= self.max_total and not self._evict(self.waiting):
            return self._refuse()
        self.open[conn] = host
        self.per_client[host] = self.per_client.get(host, 0) + 1
        return True

    def set_waiting(self, conn: BoundedH11Protocol, waiting: bool) -> None:
        """Mark a connection as waiting for a request head (evictable, newest last) or busy with a request."""
        host = self.open.get(conn)
        if host is None:
            return
        queue = self.waiting_by_client.setdefault(host, OrderedDict())
        if waiting:
            self.waiting[conn] = None
            queue[conn] = None
        else:
            self.waiting.pop(conn, None)
            queue.pop(conn, None)

    def upgrade(self, conn: BoundedH11Protocol, transport: asyncio.BaseTransport) -> None:
        """The connection became a WebSocket: it stays counted (under its transport) but is no longer evictable."""
        host = self.open.get(conn)
        if host is None:
            return
        self.remove(conn)
        self.upgraded[transport] = host
        self.per_client[host] = self.per_client.get(host, 0) + 1

    def remove(self, conn: BoundedH11Protocol) -> None:
        host = self.open.pop(conn, None)
        if host is None:
            return
        self._forget_waiting(conn, host)
        self._uncount(host)

    def _forget_waiting(self, conn: BoundedH11Protocol, host: str) -> None:
        self.waiting.pop(conn, None)
        queue = self.waiting_by_client.get(host)
        if queue is not None:
            queue.pop(conn, None)
            if not queue:
                del self.waiting_by_client[host]

    def _uncount(self, host: str) -> None:
        left = self.per_client.get(host, 0) - 1
        if left > 0:
            self.per_client[host] = left
        else:
            self.per_client.pop(host, None)

    def _sweep_upgraded(self) -> None:
        for transport in [t for t in self.upgraded if t.is_closing()]:
            self._uncount(self.upgraded.pop(transport))

    def _evict(self, queue: OrderedDict[BoundedH11Protocol, None] | None) -> bool:
        if not queue:
            return False
        victim = next(iter(queue))
        self.remove(victim)
        victim.evict()
        self.evicted += 1
        self._log()
        return True

    def _refuse(self) -> bool:
        self.refused += 1
        self._log()
        return False

    def _log(self) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(
                "connection caps reached (%d in all, %d per client): %d waiting connection(s) closed "
                "and %d refused so far",
                self.max_total,
                self.max_per_client,
                self.evicted,
                self.refused,
            )


class ConnectionGuard:
    """Everything one server's connections share: the limits, the registry, the upload budget, the refusal log."""

    def __init__(self, limits: ConnectionLimits, nofile: int | None = None) -> None:
        self.limits = limits
        total, per_client = connection_cap(limits, nofile)
        self.registry = ConnectionRegistry(total, per_client)
        self.budget = ByteBudget(limits.body_budget_bytes)  # bodies being received, all connections
        self._window_start = 0.0
        self._window_lines = 0
        self._unlogged = 0

    def log_refusal(
        self, request_id: str, client: str, error: LPStudioError, detail: str | None, request: str | None
    ) -> None:
        """Log a refusal with its id and the client.

        A refused *request* (its head arrived: ``request`` is its method and path) is always
        logged, like an access-log line. A connection refused before its head (timeout, too
        large, not HTTP) is what a flood looks like, so those are logged at most
        :data:`LOG_LINES_PER_WINDOW` per :data:`LOG_EVERY_S` and the rest counted.
        """
        extra = f" ({detail})" if detail else ""
        status = error.http_status
        if request is not None:
            log.warning(
                "request %s (%s) from %s refused (%d): %s%s", request_id, request, client, status, error.message, extra
            )
            return
        now = time.monotonic()
        if now - self._window_start >= LOG_EVERY_S:
            if self._unlogged:
                log.warning("%d more request(s) refused without a log line", self._unlogged)
            self._window_start, self._window_lines, self._unlogged = now, 0, 0
        if self._window_lines >= LOG_LINES_PER_WINDOW:
            self._unlogged += 1
            return
        self._window_lines += 1
        log.warning("request %s from %s refused (%d): %s%s", request_id, client, status, error.message, extra)


# ---------------------------------------------------------------------- the protocol
@dataclass
class _BodyClock:
    """Timing of one request body as it arrives."""

    expected: int | None
    """Content-Length, or None for a chunked body (its allowance grows with what arrived)."""
    started: float
    last_progress: float
    checked: float
    received: int = 0


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head, body, connection and upload bounds of :class:`ConnectionLimits`.

    Build it with :func:`server_config` (``functools.partial`` passes the shared :class:`ConnectionGuard`).
    """

    def __init__(self, *args: Any, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard
        self.limits = guard.limits
        self.app = _BudgetedApp(self.app, self)
        self._timer: asyncio.TimerHandle | None = None
        self._awaiting_head = False
        self._head_deadline = math.inf
        self._head_bytes = 0
        self._body: _BodyClock | None = None
        self._done = False
        """Refused, evicted or upgraded: nothing more is parsed or timed here."""
        self._lingered = 0

    # ------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        host = self.client[0] if self.client else ""
        if not self.guard.registry.admit(self, host):
            self._done = True
            error = TooManyConnectionsError(
                f"the server has no free connection slot ({len(self.guard.registry)} requests in progress)",
                reason="connections",
                retry_after_s=self.limits.retry_after_s,
            )
            transport.write(error_response(error, new_request_id()))
            transport.close()
            return
        self._enter_waiting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        self.guard.registry.remove(self)  # a no-op when it was refused, evicted or upgraded
        self._done = True
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._done:
            # Refused: the rest of the request is read and dropped until the linger ends or passes its bytes.
            self._lingered += len(data)
            if self._lingered > LINGER_BYTES and self.transport is not None:
                self.transport.close()
            return
        if self._awaiting_head:
            self._head_bytes += len(data)
        if self._body is not None:
            now = time.monotonic()
            self._body.last_progress = now
            self._body.received += len(data)
        super().data_received(data)
        self._sync()
        if self._awaiting_head and self._head_bytes > self.limits.max_head_bytes:
            self.refuse(head_too_large_error(self.limits))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._sync()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        self._cancel_timer()
        self._done = True
        self.guard.registry.upgrade(self, self.transport)
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        if self._awaiting_head and self._head_bytes > self.limits.max_head_bytes:
            self.refuse(head_too_large_error(self.limits))
        else:
            self.refuse(bad_request_error(), detail=msg)

    # ------------------------------------------------------------ state
    def _sync(self) -> None:
        """Follow h11's view of the request: waiting for a head, receiving a body, or neither."""
        if self._done:
            return
        their = self.conn.their_state
        if their is h11.SEND_BODY and self._body is None:
            now = time.monotonic()
            length = _header(self.headers or [], b"content-length")
            expected = int(length) if length is not None and length.strip().isdigit() else None
            self._body = _BodyClock(expected=expected, started=now, last_progress=now, checked=now)
            self._arm(now + RECHECK_S)
        elif their is not h11.SEND_BODY and self._body is not None:
            self._body = None
        if their is h11.IDLE and not self._awaiting_head:
            self._enter_waiting()
        elif their is not h11.IDLE and self._awaiting_head:
            self._awaiting_head = False
            self._head_deadline = math.inf
            self.guard.registry.set_waiting(self, False)

    def _enter_waiting(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        self._head_deadline = time.monotonic() + self.limits.head_timeout_s
        self.guard.registry.set_waiting(self, True)
        self._arm(self._head_deadline)

    # ------------------------------------------------------------ timers
    def _arm(self, at: float) -> None:
        loop_at = self.loop.time() + (at - time.monotonic())
        if self._timer is not None and self._timer.when() <= loop_at:
            return
        self._cancel_timer()
        self._timer = self.loop.call_at(loop_at, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        if self._done or self.transport is None or self.transport.is_closing():
            return
        now = time.monotonic()
        if self._awaiting_head and now >= self._head_deadline:
            self.refuse(head_timeout_error(self.limits))
            return
        body = self._body
        if body is not None:
            cycle = self.cycle
            waiting_for_us = cycle is not None and cycle.waiting_for_100_continue  # Expect: 100-continue, unanswered
            if self.flow.read_paused or waiting_for_us:  # the app is not reading yet: not the client's fault
                paused = now - body.checked
                body.last_progress = now
                body.started += paused
            body.checked = now
            size = body.expected if body.expected is not None else body.received
            total_deadline = body.started + self.limits.body_grace_s + size / self.limits.body_min_rate_bytes_s
            if now - body.last_progress >= self.limits.body_idle_timeout_s:
                self.refuse(body_timeout_error(f"made no progress for {self.limits.body_idle_timeout_s:g} s"))
                return
            if now >= total_deadline:
                self.refuse(body_timeout_error(f"did not arrive within {now - body.started:.0f} s"))
                return
            idle_deadline = body.last_progress + self.limits.body_idle_timeout_s
            self._arm(min(idle_deadline, total_deadline, now + RECHECK_S))
        if self._awaiting_head:
            self._arm(self._head_deadline)

    # ------------------------------------------------------------ ending connections
    def refuse(self, error: LPStudioError, detail: str | None = None) -> None:
        """Answer ``error`` (JSON, ``Connection: close``) unless a response started, then close after a linger."""
        if self._done and self.guard.registry.open.get(self) is None:
            return
        request_id = new_request_id()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
        in_request = not self._awaiting_head and self.scope is not None
        request = f"{self.scope['method']} {self.scope['path']}" if in_request else None
        self.guard.log_refusal(request_id, client, error, detail, request)
        self._done = True
        self._cancel_timer()
        self._awaiting_head = False
        self.guard.registry.remove(self)
        cycle = self.cycle
        answered = in_request and cycle is not None and cycle.response_started
        if in_request and cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's next receive() is a disconnect, its sends are dropped
            cycle.message_event.set()
        if answered:  # a second response would be one nobody asked for: just close
            self.transport.close()
            return
        self.transport.write(error_response(error, request_id))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.loop.call_later(LINGER_S, self.transport.close)

    def evict(self) -> None:
        """Close a connection that is still waiting for its request head (a cap was reached)."""
        self._done = True
        self._cancel_timer()
        self.transport.abort()


class _BudgetedApp:
    """The ASGI app of one connection: bodies reserve :class:`~.limits.ByteBudget` bytes before the app reads them."""

    def __init__(self, app: ASGIApp, protocol: BoundedH11Protocol) -> None:
        self.app = app
        self.protocol = protocol

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers", [])
        length_header = _header(headers, b"content-length")
        chunked = _header(headers, b"transfer-encoding") is not None
        if length_header is None and not chunked:
            await self.app(scope, receive, send)
            return
        budget = self.protocol.guard.budget
        limits = self.protocol.limits
        declared = int(length_header) if length_header is not None and length_header.strip().isdigit() else 0
        if declared > budget.limit:
            self.protocol.refuse(
                PayloadTooLargeError(
                    f"the request body ({_size(declared)}) is larger than the server ever receives at once "
                    f"({_size(budget.limit)})",
                    hint="send a smaller file",
                )
            )
            return
        if not budget.take(declared):
            self.protocol.refuse(budget_error(limits, declared))
            return
        reserved = declared

        async def counted_receive() -> Message:
            nonlocal reserved
            message = await receive()
            if chunked and message.get("type") == "http.request":
                n = len(message.get("body", b""))
                if n and not budget.take(n):
                    self.protocol.refuse(budget_error(limits, reserved + n))
                    return {"type": "http.disconnect"}
                reserved += n
            return message

        try:
            await self.app(scope, counted_receive, send)
        finally:
            budget.release(reserved)


# ---------------------------------------------------------------------- construction
def server_config(
    app: Any,
    host: str,
    port: int,
    limits: ConnectionLimits | None = None,
    *,
    nofile: int | None = None,
    **uvicorn_options: Any,
) -> Any:
    """The ``uvicorn.Config`` of ``lpstudio serve``: ``app`` on ``host:port`` behind the bounds of ``limits``.

    ``nofile``: the file-descriptor limit the connection cap is kept below (default: the
    process's soft limit now; ``serve`` raises it first with :func:`raise_nofile_limit`).
    ``uvicorn_options`` go to ``uvicorn.Config`` as they are.
    """
    import uvicorn

    limits = limits or ConnectionLimits()
    guard = ConnectionGuard(limits, nofile)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=functools.partial(BoundedH11Protocol, guard=guard),  # type: ignore[arg-type]
        h11_max_incomplete_event_size=limits.max_head_bytes,
        **uvicorn_options,
    )
