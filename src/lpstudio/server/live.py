"""The live mirror's transport: a WebSocket that takes camera frames and answers rendered frames.

``GET /live?session=ID`` (WebSocket; optional query ``region``, ``smooth``,
``multiplier``, ``retarget_eyes``, ``retarget_lip``, ``stitching``).

Guarded like the HTTP API (:class:`~lpstudio.server.http.GuardMiddleware`): an
allowed Host, no foreign ``Origin`` (a browser always sends one on a WebSocket),
and on a server with an API key either the ``X-API-Key`` header (scripts) or a
``ticket`` from ``POST /live/ticket`` in the query (browsers cannot set headers on
a WebSocket): single-use, good for ``expires_s`` seconds. A refused handshake is
answered 403 before the socket opens.

Messages from the page:

- **binary**: one camera frame, :func:`~lpstudio.server.live_messages.pack_frame` layout: a 4-byte big-endian
  header length ``n``, ``n`` bytes of UTF-8 JSON ``{"id": int, "t": number}``
  (frame id and capture time on the page's clock, both echoed back), then the
  JPEG bytes;
- **text**: JSON control: ``{"type": "reset"}`` (the next frame is the new
  neutral), ``{"type": "settings", "region": "exp", ...}`` (same keys as the
  query), ``{"type": "ping"}`` (answered ``pong`` once every earlier message
  has been read).

Messages to the page: **binary** results in the same layout, header
``{"type": "frame", "id", "t", "face", "held", "neutral", "image", "dropped",
"server_ms", "timings_ms", "width", "height"}`` and the JPEG of the portrait as
shown (empty when there is nothing to show yet); **text** JSON ``ready``,
``pong``, ``settings`` and ``error`` (``{"type": "error", "id", "error",
"hint"}``; the socket stays usable) messages. A socket that cannot go on is
closed with a code and a reason: 1008 (bad session or query), 1013 (too many
live cameras in all or from this client, or the server is draining before a
stop), 1001 (the server began draining while the socket was open), 4408 (idle:
nothing received for ``idle_timeout_s`` while no frame was being rendered), 1011
(internal error; the reason has an id to quote, the details are in the server log).

Backpressure, "newest frame wins": each socket has one frame in flight. Frames
that arrive meanwhile replace each other in a one-frame slot; the ones
replaced are dropped (counted in the next result's ``dropped``), never queued.
The page sends its next frame when a result arrives (or after a timeout), so
on a slow device the server renders the newest picture, not a backlog.

Work stays off the event loop: JPEG decoding, paste-back and encoding in
threads, face tracking and motion extraction as one call on the render worker
(the model's thread), warping and decoding as a render job at interactive
priority (batched with other sessions' frames). Each frame is admitted like a
one-frame preview (:meth:`~lpstudio.server.admission.Admission.admit_job`): past
the service's bounds it is answered with an ``error`` (busy) and dropped, so live
cameras cannot push clips and previews out of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ..drive.driving_motion import DriveSettings
from ..drive.live import DEFAULT_VERIFY_EVERY, LIVE_REGIONS, LiveDriver, LiveResult
from ..errors import ImageError, LPStudioError, ParamError, ShuttingDownError
from .http import TICKET_PARAM, TicketBook
from .live_messages import (
    JPEG_MAGIC,
    MAX_CAMERA_PIXELS,
    MAX_MESSAGE_BYTES,
    MAX_TEXT_BYTES,
    LiveProtocolError,
    _capture_time,
    _frame_id,
    decode_camera_jpeg,
    describe_settings,
    pack_frame,
    parse_settings,
    unpack_frame,
)
from .sessions import Source, encode_jpeg
from .worker import PRIORITY_INTERACTIVE, RenderJob

LIVE_PATH = "/live"
TICKET_PATH = LIVE_PATH + "/ticket"

log = logging.getLogger(__name__)

LIVE_JPEG_QUALITY = 80
"""Quality of the rendered frames sent back (lower than clips': latency matters more)."""

CLOSE_GOING_AWAY = 1001
"""RFC 6455: the server is going down (here: it began draining while the socket was open)."""
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_IDLE = 4408
"""Application close code (4000-4999 are the application's, RFC 6455): idle, after HTTP's 408 Request Timeout."""
MAX_REASON_CHARS = 120
"""Close reasons are cut to this (the protocol allows 123 bytes of UTF-8)."""
ERROR_ID_BYTES = 6
"""Random bytes of the id an internal error is reported with (quoted by the user, found in the log)."""


@dataclass
class LiveConfig:
    """Limits of the live route (``app.state.live_config``; set it before serving to change them)."""

    max_sockets: int = 2
    # One camera per client address: one client cannot hold every socket (behind a reverse proxy every
    # client shares the proxy's address; raise it there).
    max_sockets_per_client: int = 1
    # The page sends a frame at least every 2 s while its camera is on (RESEND_MS in live.js), so this
    # long without a message means the page is gone or stuck; a frame still rendering postpones it.
    idle_timeout_s: float = 30.0
    max_message_bytes: int = MAX_MESSAGE_BYTES
    max_pixels: int = MAX_CAMERA_PIXELS
    jpeg_quality: int = LIVE_JPEG_QUALITY
    frame_timeout_s: float = 120.0  # one frame's server work (a CPU takes seconds per frame)
    verify_every: int = DEFAULT_VERIFY_EVERY


class LiveHub:
    """Counts the open live sockets, in all and per client (touched on the event loop only)."""

    def __init__(self) -> None:
        self.active = 0
        self.frames = 0
        self.dropped = 0
        self.per_client: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # why sockets were refused after the handshake

    def open(self, client: str) -> None:
        self.active += 1
        self.per_client[client] += 1

    def close(self, client: str) -> None:
        self.active -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]


# ---------------------------------------------------------------------- one socket
class LiveConnection:
    """One page's camera stream: a reader (this coroutine) and a renderer task sharing a one-frame slot."""

    def __init__(self, ws: WebSocket, lp: Any, source: Source, driver: LiveDriver, config: LiveConfig,
                 hub: LiveHub) -> None:  # fmt: skip
        self.ws = ws
        self.lp = lp
        self.source = source
        self.driver = driver
        self.config = config
        self.hub = hub
        self._send_lock = asyncio.Lock()
        self._slot: tuple[dict[str, Any], bytes, float] | None = None
        self._has_frame = asyncio.Event()
        self._dropped = 0
        self._last_jpeg: bytes | None = None
        self._job: RenderJob | None = None
        self._rendering = False

    # ------------------------------------------------------------------ sending
    async def send_json(self, obj: Mapping[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send_text(json.dumps(obj, ensure_ascii=False))

    async def send_frame(self, header: Mapping[str, Any], payload: bytes) -> None:
        async with self._send_lock:
            await self.ws.send_bytes(pack_frame(header, payload))

    async def send_error(self, exc: BaseException, frame_id: int | None = None) -> str | None:
        """Tell the page; an unexpected error is logged with an id, and only the id is sent (returned)."""
        error_id = None
        if isinstance(exc, LPStudioError):
            body = {"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__}
        else:
            error_id = secrets.token_hex(ERROR_ID_BYTES)
            log.error("live frame failed (error id %s)", error_id, exc_info=exc)
            body = {
                "error": f"live rendering failed: internal error (id {error_id})",
                "hint": "the server log has the details: quote the id when you report it",
                "kind": "InternalError",
                "error_id": error_id,
            }
        await self.send_json({"type": "error", "id": frame_id, **body})
        return error_id

    # ------------------------------------------------------------------ reading
    async def read(self) -> None:
        """Read messages until the page goes away or is idle; frames go to the slot, control is handled at once."""
        idle_s = self.config.idle_timeout_s
        while True:
            try:
                message = await asyncio.wait_for(self.ws.receive(), timeout=idle_s)
            except asyncio.TimeoutError:
                if self._slot is not None or self._rendering:
                    continue  # the page waits for our answer: not idle
                reason = f"idle: no message for {idle_s:g} s, the live socket was closed"
                with contextlib.suppress(Exception):
                    await self.ws.close(CLOSE_IDLE, reason[:MAX_REASON_CHARS])
                return
            if message["type"] == "websocket.disconnect":
                return
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                await self._on_binary(data)
            elif text is not None:
                await self._on_text(text)

    async def _on_binary(self, data: bytes) -> None:
        frame_id: int | None = None
        try:
            if len(data) > self.config.max_message_bytes:
                raise LiveProtocolError(
                    f"the camera frame message is {len(data)} bytes, more than {self.config.max_message_bytes}",
                    hint="send a smaller or lower-quality JPEG (640x480 at quality 0.8 is about 50 kB)",
                )
            header, payload = unpack_frame(data)
            frame_id = _frame_id(header)
            _capture_time(header)
            if not payload.startswith(JPEG_MAGIC):
                raise ImageError(
                    f"camera frame {frame_id} ({len(payload)} bytes) is not a JPEG",
                    hint="send canvas.toBlob(..., 'image/jpeg') bytes after the header",
                )
        except LPStudioError as exc:
            await self.send_error(exc, frame_id)
            return
        if self._slot is not None:  # newest frame wins: the unrendered one is dropped
            self._dropped += 1
            self.hub.dropped += 1
        self._slot = (header, payload, time.perf_counter())
        self._has_frame.set()

    async def _on_text(self, text: str) -> None:
        try:
            if len(text) > MAX_TEXT_BYTES:
                raise LiveProtocolError(f"a control message of {len(text)} characters is too long")
            try:
                msg = json.loads(text)
            except json.JSONDecodeError:
                raise LiveProtocolError(
                    "text messages must be JSON control messages",
                    hint='send camera frames as binary; control as {"type": "reset"} or {"type": "settings", ...}',
                ) from None
            kind = msg.get("type") if isinstance(msg, dict) else None
            if kind == "ping":
                await self.send_json({"type": "pong", "frames": self.driver.frames})
            elif kind == "reset":
                self.driver.request_reset()
                await self.send_json({"type": "settings", "reset": True, **describe_settings(self.driver.settings)})
            elif kind == "settings":
                values = {k: v for k, v in msg.items() if k != "type"}
                settings = parse_settings(values, self.driver.next_settings)
                self.driver.request_settings(settings)
                await self.send_json({"type": "settings", "reset": False, **describe_settings(settings)})
            else:
                raise LiveProtocolError(f"unknown control message type {kind!r}", hint="use ping, reset or settings")
        except LPStudioError as exc:
            await self.send_error(exc)

    # ------------------------------------------------------------------ rendering
    async def render_loop(self) -> None:
        """Take the newest frame, render it, send it; repeat. Errors of one frame are reported, not fatal."""
        while True:
            await self._has_frame.wait()
            self._has_frame.clear()
            if self._slot is None:
                continue
            header, payload, received = self._slot
            self._slot = None
            dropped, self._dropped = self._dropped, 0
            frame_id = int(header["id"])
            self._rendering = True
            try:
                reply, jpeg = await asyncio.wait_for(
                    self._process(header, payload, received), timeout=self.config.frame_timeout_s
                )
            except ShuttingDownError as exc:  # the server began draining: this socket ends here
                await self.send_error(exc, frame_id)
                await self.ws.close(CLOSE_GOING_AWAY, exc.message[:MAX_REASON_CHARS])
                return
            except asyncio.TimeoutError:
                await self.send_error(
                    LiveProtocolError(
                        f"camera frame {frame_id} took more than {self.config.frame_timeout_s:g} s",
                        hint="the renderer is busy; the next frame is taken as soon as it is free",
                    ),
                    frame_id,
                )
                continue
            except LPStudioError as exc:
                await self.send_error(exc, frame_id)
                continue
            finally:
                self._rendering = False
                if self._job is not None:
                    self._job.cancel()
                    self._job = None
            reply["dropped"] = dropped
            self.hub.frames += 1
            await self.send_frame(reply, jpeg)

    async def _process(self, header: dict[str, Any], payload: bytes, received: float) -> tuple[dict[str, Any], bytes]:
        # Admitted like a one-frame preview before any work; busy or draining raises (the frame is dropped).
        ticket = self.lp.admission.admit_job(1)
        try:
            return await self._process_admitted(header, payload, received, ticket)
        finally:
            ticket.release()

    async def _process_admitted(self, header: dict[str, Any], payload: bytes, received: float,
                                ticket: Any) -> tuple[dict[str, Any], bytes]:  # fmt: skip
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        rgb = await asyncio.to_thread(decode_camera_jpeg, payload, self.config.max_pixels)
        t1 = time.perf_counter()
        timings["decode"] = (t1 - t0) * 1000
        result: LiveResult = await asyncio.wrap_future(self.lp.worker.call(lambda: self.driver.step(rgb)))
        timings.update(result.timings_ms)
        jpeg = b""
        held = not result.face and result.x_d is not None
        if result.face and result.x_d is not None:
            t2 = time.perf_counter()
            frame = await self._render(result.x_d, ticket)
            t3 = time.perf_counter()
            jpeg = await asyncio.to_thread(self._compose_jpeg, frame)
            timings.update(render=(t3 - t2) * 1000, encode=(time.perf_counter() - t3) * 1000)
            self._last_jpeg = jpeg
        elif held and self._last_jpeg is not None:
            jpeg = self._last_jpeg  # the last motion, already rendered
        h, w = self.source.display.shape[:2]
        reply = {
            "type": "frame",
            "id": int(header["id"]),
            "t": header.get("t"),
            "face": result.face,
            "held": held,
            "neutral": result.neutral,
            "image": bool(jpeg),
            "server_ms": round((time.perf_counter() - received) * 1000, 1),
            "timings_ms": {k: round(v, 1) for k, v in timings.items()},
            "width": w,
            "height": h,
        }
        return reply, jpeg

    def _compose_jpeg(self, frame: np.ndarray) -> bytes:
        return encode_jpeg(self.source.compose(frame), self.config.jpeg_quality)

    async def _render(self, x_d: Any, ticket: Any) -> np.ndarray:
        """W+G of one frame on the render worker at interactive priority, under the frame's admission ticket."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()
        out: list[np.ndarray] = []

        def on_frame(index: int, frame: np.ndarray) -> None:
            out.append(frame)

        def on_done(exc: BaseException | None) -> None:
            def settle() -> None:
                if not done.done():
                    done.set_exception(exc) if exc is not None else done.set_result(None)

            loop.call_soon_threadsafe(settle)

        state = self.source.state
        # x_d is given, so params only sizes the job (one frame); the worker never edits it.
        self._job = RenderJob(state, [state.neutral_params()], on_frame, on_done, priority=PRIORITY_INTERACTIVE,
                              x_d=x_d, ticket=ticket)  # fmt: skip
        self.lp.worker.submit(self._job)
        await done
        if not out:
            raise LiveProtocolError("the frame was cancelled before it was rendered", hint="send the next frame")
        return out[0]


# ---------------------------------------------------------------------- route
def live_config(app: FastAPI) -> LiveConfig:
    """The app's live limits (created by :func:`register_live`)."""
    return app.state.live_config


def register_live(app: FastAPI, config: LiveConfig | None = None) -> None:
    """Add the ``/live`` WebSocket route (and its ticket and status routes) to the app made by
    :func:`~lpstudio.server.app.create_app`, which gives the guard the same ``app.state.live_tickets``."""
    app.state.live_config = config or LiveConfig()
    app.state.live_hub = LiveHub()
    if getattr(app.state, "live_tickets", None) is None:
        app.state.live_tickets = TicketBook()

    @app.post(TICKET_PATH, summary="Live mirror: a single-use ticket that opens /live?ticket=... (needs the API key)")
    async def live_ticket() -> dict[str, Any]:
        tickets: TicketBook = app.state.live_tickets
        return {"ticket": tickets.issue(), "expires_s": tickets.ttl_s, "param": TICKET_PARAM}

    @app.websocket(LIVE_PATH)
    async def live(websocket: WebSocket) -> None:
        config: LiveConfig = websocket.app.state.live_config
        hub: LiveHub = websocket.app.state.live_hub
        lp = websocket.app.state.lp
        client = websocket.client.host if websocket.client else "-"
        await websocket.accept()
        refusal = _refusal(lp, config, hub, client)
        if refusal is not None:
            reason, hint = refusal
            await websocket.send_text(json.dumps({"type": "error", "id": None, "error": reason, "hint": hint}))
            await websocket.close(CLOSE_TRY_AGAIN, reason[:MAX_REASON_CHARS])
            return
        hub.open(client)
        try:
            await _serve(websocket, lp, config, hub)
        finally:
            hub.close(client)

    @app.get(LIVE_PATH + "/status", summary="Live mirror: limits and open cameras")
    async def live_status() -> dict[str, Any]:
        cfg, hub = app.state.live_config, app.state.live_hub
        return {
            "path": LIVE_PATH,
            "active": hub.active,
            "max_sockets": cfg.max_sockets,
            "max_sockets_per_client": cfg.max_sockets_per_client,
            "idle_timeout_s": cfg.idle_timeout_s,
            "refused": dict(hub.refused),
            "max_message_bytes": cfg.max_message_bytes,
            "max_pixels": cfg.max_pixels,
            "frames": hub.frames,
            "dropped": hub.dropped,
            "regions": list(LIVE_REGIONS),
        }


def _refusal(lp: Any, config: LiveConfig, hub: LiveHub, client: str) -> tuple[str, str] | None:
    """``(reason, hint)`` when a new live socket must be closed at once: draining, or too many sockets."""
    try:
        lp.admission.check_open()
    except ShuttingDownError as exc:
        hub.refused["draining"] += 1
        return exc.message, exc.hint or "try again in a moment"
    if hub.active >= config.max_sockets:
        hub.refused["sockets"] += 1
        return (f"too many live cameras ({hub.active} in use, at most {config.max_sockets})",
                "close another camera tab and try again")  # fmt: skip
    if hub.per_client[client] >= config.max_sockets_per_client:
        hub.refused["per_client"] += 1
        reason = (
            f"too many live cameras from this client ({hub.per_client[client]} open, "
            f"at most {config.max_sockets_per_client} each)"
        )
        return reason, "close the camera in your other tab and try again"
    return None


async def _serve(ws: WebSocket, lp: Any, config: LiveConfig, hub: LiveHub) -> None:
    query = dict(ws.query_params)
    query.pop(TICKET_PARAM, None)  # the guard has redeemed it
    session_id = query.pop("session", None)
    try:
        if not session_id:
            raise ParamError("the live socket needs ?session=ID", hint="open a session with POST /session first")
        if not getattr(lp.worker, "supports_live", True):
            raise ParamError(
                "the live mirror runs on the single-process server only", hint="use `lpstudio serve` without --ray"
            )
        _, source = lp.resolve(session_id)
        settings = parse_settings(query, DriveSettings())
        driver = LiveDriver(lp.engine, source.state, settings, precropped=not lp.settings.crop,
                            verify_every=config.verify_every)  # fmt: skip
    except LPStudioError as exc:
        await ws.send_text(json.dumps({"type": "error", "id": None, "error": exc.message, "hint": exc.hint,
                                       "kind": type(exc).__name__}))  # fmt: skip
        await ws.close(CLOSE_POLICY, exc.message[:120])
        return
    conn = LiveConnection(ws, lp, source, driver, config, hub)
    h, w = source.display.shape[:2]
    await conn.send_json({
        "type": "ready", "session": session_id, "width": w, "height": h, "crop": lp.settings.crop,
        "landmarks": driver.cropper.face is not None, "max_message_bytes": config.max_message_bytes,
        "max_pixels": config.max_pixels, "regions": list(LIVE_REGIONS), **describe_settings(driver.settings),
    })  # fmt: skip
    renderer = asyncio.create_task(conn.render_loop())
    try:
        reader = asyncio.create_task(conn.read())
        done, _ = await asyncio.wait({reader, renderer}, return_when=asyncio.FIRST_COMPLETED)
        if renderer in done and renderer.exception() is not None:  # a bug, not a bad frame: say so and close
            exc = renderer.exception()
            with contextlib.suppress(Exception):
                error_id = await conn.send_error(exc)  # type: ignore[arg-type]
                await ws.close(CLOSE_INTERNAL, f"live rendering failed: internal error (id {error_id})")
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await reader
    except WebSocketDisconnect:
        pass
    finally:
        renderer.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
            await renderer
        if conn._job is not None:
            conn._job.cancel()
        if ws.client_state == WebSocketState.CONNECTED and ws.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await ws.close()
