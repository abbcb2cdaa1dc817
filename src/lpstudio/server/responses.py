"""How the app answers errors: every error is a JSON body with a message, never a traceback.

A user-facing :class:`~lpstudio.errors.LPStudioError` keeps its status and message; a library's
text (FFmpeg's, Pillow's) stays on the error's cause and goes to the server log only. Each answer
carries the request's id (the one its access-log line has), so a client can quote it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LPStudioError
from .metrics import new_request_id, printable, request_id

log = logging.getLogger(__name__)

VALIDATION_ERRORS_SHOWN = 5
"""Problems of an invalid request listed in its 422 answer (the rest are left out)."""


def _request_id(request: Request) -> str:
    """The request's id: the client quotes it; the access log line and the error log line carry the same."""
    return request_id(request.scope) or new_request_id()


def error_response(exc: LPStudioError, request_id: str | None = None) -> JSONResponse:
    """The JSON error of a user-facing error: message, hint, kind, the request id, ``Retry-After`` when it has one."""
    body = {"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__}
    if request_id is not None:
        body["request_id"] = request_id
    headers = {}
    retry = getattr(exc, "retry_after_s", None)
    if retry is not None:
        headers["Retry-After"] = str(max(1, round(retry)))
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error is JSON with a message; nothing reaches a client as a traceback."""

    @app.exception_handler(LPStudioError)
    async def _lp_error(request: Request, exc: LPStudioError) -> JSONResponse:
        # A library's text (FFmpeg's, Pillow's) stays here, on the error's cause: logged, never sent.
        rid = _request_id(request)
        cause = exc.__cause__
        detail = f" (cause: {type(cause).__name__}: {cause})" if cause is not None else ""
        log.log(logging.WARNING if cause is not None else logging.INFO, "request %s: %s %s -> %s: %s%s",
                rid, request.method, printable(request.url.path), type(exc).__name__, exc.message, detail)  # fmt: skip
        return error_response(exc, rid)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:VALIDATION_ERRORS_SHOWN]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where[:80]}: {str(err.get('msg', 'invalid'))[:200]}")
        body = {
            "error": "invalid request: " + "; ".join(problems),
            "hint": "see the API schema at /docs",
            "kind": "ValidationError",
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        cause = exc.__cause__
        if isinstance(cause, UnicodeDecodeError):
            message, hint = "the request body is not UTF-8 text", "send JSON encoded as UTF-8"
        elif isinstance(cause, RecursionError):
            message, hint = "the JSON body is nested too deeply", "send a flat JSON object (see /docs)"
        else:
            message, hint = str(exc.detail), None
        body = {"error": message, "hint": hint, "kind": "HTTPError"}
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        rid = _request_id(request)
        log.exception("request %s: internal error on %s %s", rid, request.method, printable(request.url.path))
        body = {
            "error": f"internal error (request id {rid})",
            "hint": "the server log has the details: quote the request id when you report it",
            "kind": "InternalError",
            "request_id": rid,
        }
        return JSONResponse(body, status_code=500)
