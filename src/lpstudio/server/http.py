"""HTTP guards around the app (pure ASGI middleware, cheap and framework-light).

* :class:`BodyLimitMiddleware`: a ``Content-Length`` over the route's limit is answered
  413 before the body is read; a chunked body is cut off with 413 as soon as it passes it.
* :class:`GuardMiddleware`: on HTTP and WebSocket alike, a Host allow-list (DNS rebinding:
  a page on ``evil.example`` that re-resolves to 127.0.0.1 still sends ``Host: evil.example``,
  answered 421), a closed cross-origin policy (a request whose ``Origin`` is neither this
  server nor an allowed origin is refused, whatever its method), the optional API key (a
  WebSocket may show a single-use :class:`TicketBook` ticket instead: browsers cannot set
  headers on one), paths with control characters refused (400), and security headers (a
  CSP without inline script, ``nosniff``, ``frame-ancestors 'none'``).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from urllib.parse import parse_qs, urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ParamError

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own script and style files only, no inline script; media from the
server or from blobs the page fetched itself (a video-source result, fetched with the API key)."""
COMMON_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
PAGE_HEADERS = [
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-frame-options", b"DENY"),
]
PUBLIC_PATHS = ("/", "/health", "/favicon.ico")
"""Reachable without the API key (the page itself, its files, and liveness)."""
PUBLIC_PREFIXES = ("/static/",)
API_KEY_HEADER = "x-api-key"
TICKET_PARAM = "ticket"
"""Query parameter of a WebSocket URL that carries a :class:`TicketBook` ticket."""
TICKET_TTL_S = 30.0
"""A ticket is good for this long: the page opens its socket right after fetching one (milliseconds)."""
MAX_OPEN_TICKETS = 256
"""Tickets issued and not yet used that are remembered (the oldest go first past it): a few KB."""
TICKET_BYTES = 32
"""Random bytes per ticket (256 bits, as a session id)."""
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
"""Bind addresses that mean "every interface": they name no host, so they allow none."""
MAX_HOST_CHARS = 255
"""Longest DNS name (RFC 1035); a longer Host header is refused as malformed."""
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-._[]:")
"""Characters of a host name or address literal as allowed by --allow-host (lower case)."""
MISDIRECTED = 421
"""HTTP 421 Misdirected Request: the request was for a host this server does not serve (RFC 9110)."""
WS_POLICY_CLOSE = 1008
"""WebSocket close code for a policy violation; sent before accepting, the handshake is answered 403."""
SHOWN_CHARS = 100
"""How much of a client-given value (Origin, Host) an error message repeats."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """The host of a ``Host`` header or URL authority (``name``, ``name:port``, ``[v6]:port``), lower case.

    None when it is malformed: empty, too long, a bare IPv6 address, a port that is not a number,
    or characters no host name has.
    """
    text = value.strip().lower()
    if not text or len(text) > MAX_HOST_CHARS:
        return None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[: end + 1], text[end + 1 :]
    else:
        name = text.partition(":")[0]
        rest = text[len(name) :]
    if rest and not (rest[0] == ":" and rest[1:].isdigit()):
        return None
    if not name or not set(name) <= HOST_CHARS or (":" in name and not name.startswith("[")):
        return None
    return name


def normalize_host(name: str) -> str:
    """An allowed host as :func:`host_name` gives it: lower case, an IPv6 address in brackets.

    Raises:
        ParamError: not a bare host name or address (a scheme, port, path or odd character).
    """
    text = name.strip().lower()
    try:
        if ":" in text and not text.startswith("["):
            text = f"[{ipaddress.IPv6Address(text)}]"
    except ValueError:
        pass
    normal = host_name(text)
    if normal is None or normal != text:
        raise ParamError(
            f"--allow-host {name[:SHOWN_CHARS]!r} is not a host name",
            hint="give the bare name or address the browser uses, without scheme or port: --allow-host studio.lan",
        )
    return normal


def hosts_to_allow(bind_host: str, allow_hosts: Iterable[str] = ()) -> tuple[str, ...]:
    """The Host names a server answers besides loopback: the bind address (unless a wildcard) and ``allow_hosts``.

    Binding 0.0.0.0 (or ::) tells nothing about the names clients use, so it allows none.

    Raises:
        ParamError: an ``allow_hosts`` entry that is not a host name.
    """
    names = [normalize_host(h) for h in allow_hosts]
    bind = bind_host.strip().lower()
    if bind not in WILDCARD_HOSTS:
        names.insert(0, normalize_host(bind))
    return tuple(dict.fromkeys(names))


def has_control_chars(text: str) -> bool:
    """True when ``text`` has an ASCII control character (C0 or DEL) or a C1 control."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)


async def _send_json(send: Send, status: int, body: dict, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
        (b"connection", b"close"),
        *COMMON_HEADERS,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})


def _problem(error: str, kind: str, hint: str) -> dict[str, str]:
    return {"error": error, "hint": hint, "kind": kind}


def _shown(value: str) -> str:
    """A client-given value fit to repeat in a message: printable characters, at most :data:`SHOWN_CHARS`."""
    return "".join(c for c in value[:SHOWN_CHARS] if c.isprintable())


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body passes its limit (FastAPI passes HTTP exceptions through)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")
        self.limit = limit


def _too_large_body(limit: int) -> dict:
    mb = limit / (1024 * 1024)
    size = f"{mb:.1f} MB" if mb >= 1 else f"{limit // 1024} KB"
    return {
        "error": f"the request body is larger than the limit of {size}",
        "hint": "send a smaller photo or request",
        "kind": "PayloadTooLargeError",
    }


class BodyLimitMiddleware:
    """Refuse bodies over ``limit_for(path)`` bytes: by ``Content-Length`` before reading, else while reading."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    await _send_json(send, 400, {"error": "Content-Length is not a number", "kind": "BadRequest"})
                    return
        if length is not None and length > limit:
            await _send_json(send, 413, _too_large_body(limit))
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _send_json(send, 413, _too_large_body(limit))


class TicketBook:
    """Single-use, short-lived tickets that stand for the API key where a browser cannot send it (a WebSocket).

    An authenticated ``POST`` gets one (:meth:`issue`); the socket URL carries it
    (``?ticket=...``) and the guard redeems it once (:meth:`redeem`). At most ``max_open``
    unused tickets are remembered (the oldest are forgotten first). Thread-safe.
    """

    def __init__(self, ttl_s: float = TICKET_TTL_S, max_open: int = MAX_OPEN_TICKETS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.ttl_s = ttl_s
        self.max_open = max_open
        self._clock = clock
        self._lock = threading.Lock()
        self._open: OrderedDict[str, float] = OrderedDict()  # ticket -> expiry on the clock

    def issue(self) -> str:
        """A new ticket, good once within :attr:`ttl_s`."""
        ticket = secrets.token_urlsafe(TICKET_BYTES)
        with self._lock:
            now = self._clock()
            while self._open and (len(self._open) >= self.max_open or next(iter(self._open.values())) <= now):
                self._open.popitem(last=False)
            self._open[ticket] = now + self.ttl_s
        return ticket

    def redeem(self, ticket: str) -> bool:
        """True (once) for a ticket issued here that has not expired; it is used up either way."""
        with self._lock:
            expiry = self._open.pop(ticket, None)
            return expiry is not None and self._clock() < expiry

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


def key_matches(headers: dict[str, str], api_key: bytes) -> bool:
    """True when ``headers`` (lower-case names) carry ``api_key`` in ``X-API-Key`` or ``Authorization: Bearer``.

    Compared in constant time, so the answer's timing tells nothing about the key.
    """
    given = headers.get(API_KEY_HEADER)
    if given is None:
        auth = headers.get("authorization", "")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
    return given is not None and hmac.compare_digest(given.encode("latin-1", "replace"), api_key)


class GuardMiddleware:
    """Host allow-list, origin check, API key, clean paths and security headers, for HTTP and WebSocket.

    ``allowed_hosts``: Host names answered besides ``localhost`` and loopback addresses
    (any port; see :func:`hosts_to_allow`); any other Host gets 421 (a WebSocket: a refused
    handshake). ``allowed_origins``: other origins that may call the API (CORS is otherwise
    closed: a request whose ``Origin`` is not this server's is refused with 403).
    ``api_key``: when set, every route but :data:`PUBLIC_PATHS` needs it in ``X-API-Key``
    (or ``Authorization: Bearer``); a WebSocket to one of ``ticket_paths`` may show a
    ``tickets`` ticket in its query instead.
    """

    def __init__(
        self,
        app: ASGIApp,
        api_key: str | None = None,
        allowed_origins: tuple[str, ...] = (),
        allowed_hosts: tuple[str, ...] = (),
        tickets: TicketBook | None = None,
        ticket_paths: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}
        self.allowed_hosts = frozenset(normalize_host(h) for h in allowed_hosts)
        self.tickets = tickets
        self.ticket_paths = frozenset(ticket_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            status, body, extra = refusal
            if kind == "websocket":
                reason = f"{body['error']}"[:SHOWN_CHARS]
                await send({"type": "websocket.close", "code": WS_POLICY_CLOSE, "reason": reason})
            else:
                await _send_json(send, status, body, extra)
            return
        if kind == "websocket":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        page = path == "/" or path.startswith(PUBLIC_PREFIXES)

        async def headed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = COMMON_HEADERS + (PAGE_HEADERS if page else [])
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, headed_send)

    def _refusal(self, scope: Scope) -> tuple[int, dict, list[tuple[bytes, bytes]]] | None:
        """``(status, body, extra headers)`` of the answer refusing this request, or None to let it in."""
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if has_control_chars(path):
            hint = "percent-encoded control characters (such as %00) are never part of a path"
            return 400, _problem("the URL path has control characters", "BadRequest", hint), []
        host = headers.get("host", "")
        if not self._host_ok(host):
            shown = _shown(host) or "(none)"
            hint = "open it as http://127.0.0.1:PORT/, or start it with --allow-host NAME for the name you use"
            return MISDIRECTED, _problem(f"this server does not answer to the host name {shown}",
                                         "MisdirectedRequest", hint), []  # fmt: skip
        origin = headers.get("origin")
        if origin is not None and not self._origin_ok(origin, host):
            hint = "start the server with --allow-origin to allow that site"
            return 403, _problem(f"requests from {_shown(origin)} are not allowed", "Forbidden", hint), []
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.api_key is None or public or scope.get("method") == "OPTIONS" or self._key_ok(headers):
            return None
        if scope["type"] == "websocket" and self._ticket_ok(scope):
            return None
        hint = "send it in the X-API-Key header (the page: open it as /#key=YOUR_KEY)"
        return 401, _problem("this server needs an API key", "Unauthorized", hint), [(b"www-authenticate", b"Bearer")]

    def _host_ok(self, host: str) -> bool:
        name = host_name(host)
        return name is not None and (name in self.allowed_hosts or is_loopback(name))

    def _origin_ok(self, origin: str, host: str) -> bool:
        """An allowed origin, or this server's own: same authority as the (already checked) Host, http(s)/ws(s)."""
        o = origin.rstrip("/").lower()
        if o in self.allowed_origins:
            return True
        parts = urlsplit(o)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.netloc != host.lower():
            return False
        return self._host_ok(parts.netloc)

    def _ticket_ok(self, scope: Scope) -> bool:
        if self.tickets is None or scope.get("path", "") not in self.ticket_paths:
            return False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.get(TICKET_PARAM, [])
        return len(given) == 1 and self.tickets.redeem(given[0])

    def _key_ok(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        return key_matches(headers, self.api_key)
