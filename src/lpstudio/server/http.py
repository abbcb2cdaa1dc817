"""HTTP guards around the app (pure ASGI middleware, cheap and framework-light).

* :class:`BodyLimitMiddleware`: a ``Content-Length`` over the route's limit is answered
  413 before the body is read; a chunked body is cut off with 413 as soon as it passes it.
* :class:`GuardMiddleware`: security headers (a CSP without inline script, ``nosniff``,
  ``frame-ancestors 'none'``), the optional API key, and a closed cross-origin policy:
  a state-changing request from another origin is refused unless that origin is allowed.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The page's Content-Security-Policy: its own script and style files only, no inline script."""
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
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


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


class GuardMiddleware:
    """Security headers, the API key and the origin check.

    ``api_key``: when set, every route but :data:`PUBLIC_PATHS` needs it in ``X-API-Key``
    (or ``Authorization: Bearer``). ``allowed_origins``: other origins that may call the
    API (CORS is otherwise closed: a browser request from another site is refused).
    """

    def __init__(self, app: ASGIApp, api_key: str | None = None, allowed_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.allowed_origins = {o.rstrip("/").lower() for o in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        method = scope.get("method", "GET")
        origin = headers.get("origin")
        if origin and method not in SAFE_METHODS and not self._origin_ok(origin, headers.get("host", "")):
            await _send_json(
                send,
                403,
                {"error": f"requests from {origin[:100]} are not allowed", "kind": "Forbidden",
                 "hint": "start the server with --allow-origin to allow that site"},
            )  # fmt: skip
            return
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if self.api_key is not None and not public and method != "OPTIONS" and not self._key_ok(headers):
            await _send_json(
                send,
                401,
                {"error": "this server needs an API key", "kind": "Unauthorized",
                 "hint": "send it in the X-API-Key header (the page: open it as /#key=YOUR_KEY)"},
                [(b"www-authenticate", b"Bearer")],
            )  # fmt: skip
            return
        page = path == "/" or path.startswith(PUBLIC_PREFIXES)

        async def headed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = COMMON_HEADERS + (PAGE_HEADERS if page else [])
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)

        await self.app(scope, receive, headed_send)

    def _origin_ok(self, origin: str, host: str) -> bool:
        o = origin.rstrip("/").lower()
        if o in self.allowed_origins:
            return True
        parts = urlsplit(o)
        return bool(parts.netloc) and parts.netloc == host.lower()

    def _key_ok(self, headers: dict[str, str]) -> bool:
        assert self.api_key is not None
        given = headers.get(API_KEY_HEADER)
        if given is None:
            auth = headers.get("authorization", "")
            given = auth[7:] if auth.lower().startswith("bearer ") else None
        return given is not None and hmac.compare_digest(given.encode("latin-1", "replace"), self.api_key)
