"""The bounds of the connection layer (:mod:`.connections`): the limits, the caps they give, the refusals.

:class:`ConnectionLimits` holds the bounds of one server; :func:`connection_cap` keeps its
connection caps below the file-descriptor limit (which :func:`raise_nofile_limit` raises at
serve start); the errors and :func:`error_response` are what a refused request is answered
with (raw HTTP/1.1 with a JSON body, since the refusal happens before any app sees it).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from http import HTTPStatus

from ..errors import LimitError, LPStudioError, OverloadedError, PayloadTooLargeError

log = logging.getLogger("lpstudio.server.connections")  # the connection layer's one log, as before the split

KIB = 1024
MIB = 1024 * KIB

FD_RESERVE = 256
"""File descriptors kept back from the connection cap: model and log files, spooled uploads, threads, Ray."""
NOFILE_TARGET = 65_536
"""Soft file-descriptor limit asked for at serve start when the hard limit allows it (or is unlimited)."""
MIN_CONNECTIONS = 16
"""The connection cap never goes below this, however low the descriptor limit."""


# ---------------------------------------------------------------------- limits and errors
@dataclass(frozen=True)
class ConnectionLimits:
    """Bounds on the connections of one server. Sizes in bytes, times in seconds."""

    max_head_bytes: int = 64 * KIB
    """Request line plus headers. Browsers send a few KiB; nginx allows 4 x 8 KiB by default, this is twice that."""
    head_timeout_s: float = 10.0
    """The whole request head must arrive within this long of the accept (or of the previous response's end)."""
    body_idle_timeout_s: float = 15.0
    """A body that makes no progress for this long is cut off (408); the same as the app's stream stall timeout."""
    body_min_rate_bytes_s: float = 32 * KIB
    """Slowest accepted upload on average (256 kbit/s): a 20 MB photo may take 640 s plus the grace."""
    body_grace_s: float = 10.0
    """Added to every body's time allowance (the size over the minimum rate), for start-up and small bodies."""
    max_connections: int = 4096
    """Open connections in all (further capped below the file-descriptor limit, see :func:`connection_cap`)."""
    max_per_client: int = 256
    """Open connections from one client address (a browser opens about 6 per site)."""
    body_budget_bytes: int = 96 * MIB
    """Request bodies being received at once: about four 20 MB photo uploads (30 x 19 MB would be 570 MB)."""
    retry_after_s: float = 2.0
    """``Retry-After`` given to a request refused for want of budget or connections."""

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise LimitError(
                    f"connection limit {name} must be a positive number, got {value!r}",
                    hint="see lpstudio serve --help for the limits",
                )


class RequestTimeoutError(LPStudioError):
    """The client took too long to send its request (head or body): answered 408 and closed."""

    http_status = 408


class HeadTooLargeError(PayloadTooLargeError):
    """The request line and headers are larger than the server accepts."""

    http_status = 431


class TooManyConnectionsError(OverloadedError):
    """Every connection slot is taken by a request in progress: the new connection is refused."""

    http_status = 503


def head_timeout_error(limits: ConnectionLimits) -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request headers did not arrive within {limits.head_timeout_s:g} s",
        hint="send the whole request head at once; check the network between you and the server",
    )


def head_too_large_error(limits: ConnectionLimits) -> HeadTooLargeError:
    return HeadTooLargeError(
        f"the request headers are larger than the limit of {limits.max_head_bytes // KIB} KiB",
        hint="send fewer or shorter headers (cookies, long URLs)",
    )


def body_timeout_error(reason: str) -> RequestTimeoutError:
    return RequestTimeoutError(
        f"the request body {reason}",
        hint="check the network and upload again; a slow link may need a smaller file",
    )


def budget_error(limits: ConnectionLimits, length: int) -> OverloadedError:
    return OverloadedError(
        f"the server is receiving too many uploads at once; this {_size(length)} body does not fit "
        f"in the {_size(limits.body_budget_bytes)} of uploads it receives at a time",
        reason="upload_budget",
        retry_after_s=limits.retry_after_s,
    )


class BadHTTPRequestError(LPStudioError):
    """The bytes received are not a valid HTTP/1.1 request (h11 could not parse them)."""

    http_status = 400


def bad_request_error() -> BadHTTPRequestError:
    return BadHTTPRequestError("the request is not valid HTTP/1.1", hint="check the client; send a well-formed request")


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MB" if n >= MIB else f"{max(1, n // KIB)} KB"


def error_response(error: LPStudioError, request_id: str) -> bytes:
    """The raw HTTP/1.1 response (``Connection: close``) a refused request gets: JSON, never a traceback."""
    status = int(getattr(error, "http_status", 400))
    body = json.dumps(
        {"error": error.message, "hint": error.hint, "kind": type(error).__name__, "request_id": request_id}
    ).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        "x-content-type-options: nosniff",
        f"x-request-id: {request_id}",
    ]
    retry = getattr(error, "retry_after_s", None)
    if retry is not None:
        lines.append(f"retry-after: {max(1, round(retry))}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


# ---------------------------------------------------------------------- file descriptors
def raise_nofile_limit(target: int = NOFILE_TARGET) -> int:
    """Raise the soft file-descriptor limit towards the hard one (up to ``target``); returns the soft limit.

    Cheap (one system call) and only ever raises. Where the platform has no ``resource``
    module (Windows), nothing is changed and ``target`` is assumed.
    """
    try:
        import resource
    except ImportError:
        return target
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = target if hard == resource.RLIM_INFINITY else min(hard, target)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
            soft = ceiling
        except (ValueError, OSError) as exc:
            log.warning("could not raise the file-descriptor limit from %d to %d: %s", soft, ceiling, exc)
    return target if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(limits: ConnectionLimits, nofile: int | None = None) -> tuple[int, int]:
    """(total, per client) connection caps: the limits, kept :data:`FD_RESERVE` below the descriptor limit."""
    if nofile is None:
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            nofile = NOFILE_TARGET if soft == resource.RLIM_INFINITY else int(soft)
        except ImportError:
            nofile = NOFILE_TARGET
    total = max(MIN_CONNECTIONS, min(limits.max_connections, nofile - FD_RESERVE))
    return total, min(limits.max_per_client, total)
