"""Running the app under uvicorn with a graceful stop.

On SIGTERM the server *drains*: it keeps listening but answers new work with 503
(``Retry-After``), lets the streams in flight finish up to ``drain_timeout_s``, then
ends the rest with an ``error`` line, stops, and the process exits with status 0.
A second SIGTERM, or Ctrl+C, stops at once (uvicorn's own behaviour).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
import threading
import time
from types import FrameType

from fastapi import FastAPI

from ..errors import AddressInUseError, ShuttingDownError
from .connection_limits import ConnectionLimits, raise_nofile_limit
from .connections import server_config
from .streams import bounded_listener

log = logging.getLogger(__name__)

AFTER_ABORT_S = 3.0
"""After the deadline: time for the ended streams to send their last line."""
GRACEFUL_CLOSE_S = 5.0
THREAD_PREFIX = "lpstudio-"
"""Names of lpstudio's own background threads (render worker, JPEG encoders, drain...)."""
DRAIN_THREAD = "lpstudio-drain"
FINISH_RENDER_S = 60.0
"""After the server stopped, how long the render worker may take to finish the batch it is in (a CPU
batch takes tens of seconds) before the process leaves without it."""
"""uvicorn's own wait for idle keep-alive connections once draining is done."""


class _IncompleteResponseFilter(logging.Filter):
    """uvicorn reports a stream we cut off on purpose (stalled client) as an error; it is not one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "returned without completing response" not in record.getMessage()


class _CancelledAtShutdownFilter(logging.Filter):
    """A request still waiting for its frame when uvicorn's graceful close runs out is cancelled, and uvicorn
    logs that as an "Exception in ASGI application" with a traceback; it is one line of shutdown news."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            record.msg, record.args = "a request still waiting at shutdown was cancelled", ()
            record.exc_info, record.exc_text = None, None
        return True


def begin_drain(app: FastAPI) -> None:
    """Refuse new work (503) from now on; work in flight carries on."""
    app.state.lp.admission.begin_drain()


def drain(app: FastAPI, timeout_s: float) -> bool:
    """Drain and wait: True when everything in flight finished within ``timeout_s``.

    Otherwise the remaining jobs are ended with :class:`ShuttingDownError` (their viewers
    get an ``error`` line) and False is returned. Call from a thread, not the event loop.
    """
    state = app.state.lp
    begin_drain(app)
    if state.admission.wait_idle(timeout_s):
        return True
    n = state.worker.fail_all(ShuttingDownError("the server is shutting down; this clip was cut short"))
    log.warning("drain deadline passed: %d render job(s) ended", n)
    state.admission.wait_idle(AFTER_ABORT_S)
    return False


def serve(
    app: FastAPI,
    host: str,
    port: int,
    *,
    drain_timeout_s: float = 30.0,
    access_log: bool = True,
    ws_max_size: int | None = None,
    connections: ConnectionLimits | None = None,
) -> None:
    """Serve ``app`` until SIGTERM (drain, then stop) or Ctrl+C; ``ws_max_size`` bounds WebSocket messages.

    ``connections`` bounds request heads, bodies, open connections and upload bytes
    (:mod:`.connections`); the file-descriptor limit is raised first so the cap has room.
    """
    logging.getLogger("uvicorn.error").addFilter(_IncompleteResponseFilter())
    logging.getLogger("uvicorn.error").addFilter(_CancelledAtShutdownFilter())
    if access_log:
        access = logging.getLogger("lpstudio.access")
        if not access.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False
    config = server_config(
        app,
        host,
        port,
        connections,
        nofile=raise_nofile_limit(),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=int(GRACEFUL_CLOSE_S),
        **({} if ws_max_size is None else {"ws_max_size": ws_max_size}),
    )
    server = _DrainingServer(config, app, drain_timeout_s)
    send_buffer = getattr(app.state, "socket_send_buffer_bytes", None)
    try:
        sockets = None if send_buffer is None else [bounded_listener(host, port, send_buffer)]
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise AddressInUseError(  # taken between the CLI's early check and now
            f"port {port} is in use on {host}", hint=f"use another port: --port {port + 1}"
        ) from None
    server.run(sockets)


class _DrainingServer:
    """uvicorn's server with SIGTERM turned into a drain (composition keeps uvicorn's API at arm's length)."""

    def __init__(self, config, app: FastAPI, drain_timeout_s: float) -> None:  # noqa: ANN001
        import uvicorn

        outer = self

        class Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: FrameType | None) -> None:
                if sig == signal.SIGTERM and not outer.draining and not self.should_exit:
                    outer.draining = True
                    threading.Thread(target=outer._drain_then_stop, name=DRAIN_THREAD, daemon=True).start()
                    return  # not recorded: the process exits normally (status 0) after the drain
                super().handle_exit(sig, frame)

        self.app = app
        self.drain_timeout_s = drain_timeout_s
        self.draining = False
        self.server = Server(config)

    def _drain_then_stop(self) -> None:
        try:
            log.warning("SIGTERM: draining (up to %.0f s), new work gets 503", self.drain_timeout_s)
            drain(self.app, self.drain_timeout_s)
        except Exception:
            log.exception("drain failed")
        finally:
            self.server.should_exit = True

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve (on ``sockets`` when given, else on the configured host and port)."""
        self.server.run(sockets=sockets)


def finish_native_work(timeout_s: float = FINISH_RENDER_S) -> list[str]:
    """Wait until lpstudio's daemon threads (render worker, JPEG encoders) have left native code; the names left.

    Why: at interpreter exit, Python 3.11-3.13 end a daemon thread that wakes up inside a C++
    call (a torch op that released the GIL) with ``pthread_exit``, whose unwinding through C++
    frames aborts the process: ``terminate called without an active exception``, exit status 134
    (reproduced with a daemon thread in ``torch.mm`` at exit). The worker was told to stop when
    the app shut down and leaves after its batch; this waits for that, up to ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    said = False
    for thread in threading.enumerate():
        if not (thread.daemon and thread.name.startswith(THREAD_PREFIX)) or thread.name == DRAIN_THREAD:
            continue
        if thread.is_alive() and not said:
            log.warning("waiting for the frames being rendered to finish (up to %.0f s)...", timeout_s)
            said = True
        thread.join(max(0.0, deadline - time.monotonic()))
    return [
        t.name
        for t in threading.enumerate()
        if t.daemon and t.name.startswith(THREAD_PREFIX) and t.is_alive() and t.name != DRAIN_THREAD
    ]
