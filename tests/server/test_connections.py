"""The bounded connection layer of ``lpstudio serve`` under slow, huge and numerous connections.

A real uvicorn server, built by :func:`lpstudio.server.connections.server_config` as ``serve``
builds it, runs this module's tiny ASGI app in a subprocess on a loopback port, with
small limits (so each attack is over in seconds) and its file-descriptor limit pinned to
:data:`SERVER_NOFILE` (so a connection flood meets the same wall it meets in production
at 20,000 connections). The attacks use raw sockets on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

import lpstudio
from lpstudio.server.connection_limits import ConnectionLimits, raise_nofile_limit
from lpstudio.server.connections import server_config

HOST = "127.0.0.1"
SERVER_NOFILE = 1024
"""The server's own descriptor limit (soft and hard): a common default, below the 2,000-connection flood."""
SLOWLORIS = 2000
"""Connections of the slowloris test: twice the server's descriptor limit."""
HEALTH_LIMIT_S = 1.0
"""/health must answer within this long during every attack."""
SERVER_BOOT = (
    "import sys, types, runpy; from pathlib import Path; import lpstudio; "
    "pkg = types.ModuleType('lpstudio.server'); pkg.__path__ = [str(Path(lpstudio.__file__).parent / 'server')]; "
    "sys.modules['lpstudio.server'] = pkg; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)
"""Runs this file as the server without ``lpstudio.server/__init__`` (which loads the whole app and torch,
seconds the connection layer does not need)."""
START_S = 20.0
"""The test server must answer /health within this long of its start."""
LIMITS = ConnectionLimits(
    head_timeout_s=1.5,
    body_idle_timeout_s=2.0,
    body_grace_s=1.0,
    body_min_rate_bytes_s=64 * 1024,
    max_per_client=256,
    body_budget_bytes=4 * 1024 * 1024,
)
"""Small limits: every timeout is a second or two; the upload budget holds four 1 MiB uploads."""
UPLOAD_BYTES = 1024 * 1024
"""Declared size of each upload in the budget test (a quarter of the budget)."""
SLACK_S = 1.5
"""Allowance over a timeout for the server's timer and a loaded test machine."""


# ---------------------------------------------------------------------- the server under test
STREAM_CHUNKS = 40
STREAM_GAP_S = 0.1
"""``/stream`` sends a dot every 100 ms for 4 s: a request in progress while the flood runs."""

LATE_S = LIMITS.body_idle_timeout_s + 0.5
"""``/late`` starts reading its body only after this long: longer than the body idle timeout."""


async def tiny_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``/health`` answers at once, ``/stream`` streams dots; any other path reads the body and answers its size.

    A WebSocket echoes one text message.
    """
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        message = await receive()
        await send({"type": "websocket.send", "text": message.get("text") or ""})
        await send({"type": "websocket.close", "code": 1000})
        return
    if scope["type"] != "http":
        return
    if scope["path"] == "/late":
        await asyncio.sleep(LATE_S)  # busy before it reads the body (an admission queue, a slow dependency)
    if scope["path"] == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for _ in range(STREAM_CHUNKS):
            await send({"type": "http.response.body", "body": b".", "more_body": True})
            await asyncio.sleep(STREAM_GAP_S)
        await send({"type": "http.response.body", "body": b""})
        return
    received = 0
    if scope["path"] != "/health":
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    body = json.dumps({"ok": True, "received": received}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _serve_main(port: int, limits_json: str) -> None:
    """Subprocess entry: the descriptor limit pinned, then the same construction ``serve`` uses."""
    import resource

    import uvicorn

    resource.setrlimit(resource.RLIMIT_NOFILE, (SERVER_NOFILE, SERVER_NOFILE))
    limits = ConnectionLimits(**json.loads(limits_json))
    config = server_config(tiny_app, HOST, port, limits, nofile=raise_nofile_limit(), log_level="warning")
    uvicorn.Server(config).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """The running test server: its port and its log (stderr)."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    pytest.importorskip("resource")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("conn") / "server.log"
    src = str(Path(lpstudio.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER_BOOT, __file__, str(port), json.dumps(asdict(LIMITS))],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + START_S
        while True:
            try:
                if get(port, "/health", timeout=1.0)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the test server did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield Server(port, log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# ---------------------------------------------------------------------- raw HTTP
def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """Read one ``Connection: close`` response: (status, headers, body); status 0 when closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass  # reset by the server, or no answer in time: judged by what arrived
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return 0, {}, b""
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def trickle(
    sock: socket.socket, first: bytes, piece: bytes, every_s: float
) -> tuple[threading.Event, threading.Thread]:
    """Send ``first``, then ``piece`` every ``every_s`` on a thread until the returned event is set."""
    stop = threading.Event()

    def send() -> None:
        try:
            sock.sendall(first)
            while not stop.is_set():
                sock.sendall(piece)
                stop.wait(every_s)
        except OSError:
            pass  # the server closed it: what is expected

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return stop, sender


def get(port: int, path: str, timeout: float = HEALTH_LIMIT_S) -> tuple[int, float]:
    """GET ``path`` on a fresh connection: (status, seconds)."""
    start = time.monotonic()
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        status = read_response(sock, timeout)[0]
    return status, time.monotonic() - start


def assert_health_fast(port: int) -> None:
    try:
        status, seconds = get(port, "/health")
    except OSError as exc:
        pytest.fail(f"/health did not answer within {HEALTH_LIMIT_S} s: {exc!r}")
    assert status == 200 and seconds < HEALTH_LIMIT_S, (status, seconds)


def upload_head(length: int, path: str = "/upload") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n".encode()


def assert_json_error(body: bytes, kind: str, server: Server) -> None:
    """A refusal is JSON with a message, a hint and a request id that the server log has too."""
    error = json.loads(body)
    assert error["kind"] == kind and error["error"] and error["hint"]
    assert "Traceback" not in body.decode() and error["request_id"] in server.log()


# ---------------------------------------------------------------------- request head
def test_endless_header_is_cut_off_at_the_head_timeout_while_health_stays_fast(server: Server) -> None:
    """A head trickled forever (a few bytes every 50 ms, never ending) is closed with 408 at the time limit."""
    sock = socket.create_connection((HOST, server.port))
    start = time.monotonic()
    stop, sender = trickle(sock, f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Endless: ".encode(), b"aaaa", 0.05)
    try:
        for _ in range(3):
            assert_health_fast(server.port)
        status, headers, body = read_response(sock, LIMITS.head_timeout_s + SLACK_S + 2)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        sender.join(5)
        sock.close()
    assert status == 408, (status, elapsed)
    assert elapsed < LIMITS.head_timeout_s + SLACK_S
    assert headers["x-request-id"]
    assert_json_error(body, "RequestTimeoutError", server)
    assert_health_fast(server.port)


def test_50_mb_header_value_is_refused_at_once(server: Server) -> None:
    """A 50 MB header value gets 431 as soon as the head passes the size limit, not after 50 MB."""
    sock = socket.create_connection((HOST, server.port))
    value_bytes = 50 * 1024 * 1024
    block = b"a" * (1024 * 1024)

    def send_all() -> None:
        try:
            sock.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: ".encode())
            for _ in range(value_bytes // len(block)):
                sock.sendall(block)
            sock.sendall(b"\r\n\r\n")
        except OSError:
            pass  # refused and closed: what is expected

    sender = threading.Thread(target=send_all, daemon=True)
    start = time.monotonic()
    sender.start()
    try:
        status, _, body = read_response(sock, 15.0)
    finally:
        sock.close()
        sender.join(10)
    assert status == 431, status
    assert time.monotonic() - start < 5.0
    assert_json_error(body, "HeadTooLargeError", server)
    assert_health_fast(server.port)


def test_slow_head_on_a_kept_alive_connection_is_timed_too(server: Server) -> None:
    """After a first request, the next head on the same connection has the same time limit (no bypass)."""
    with socket.create_connection((HOST, server.port)) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        sock.settimeout(2.0)
        first = b""
        while b"\r\n\r\n" not in first:  # the whole first response, so no byte of it is taken for the answer
            first += sock.recv(65536)
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        length = int(
            next(v for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-length")
        )
        while len(body) < length:
            body += sock.recv(65536)
        start = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        sock.settimeout(0.25)
        while time.monotonic() - start < LIMITS.head_timeout_s + SLACK_S:
            try:
                sock.recv(1, socket.MSG_PEEK)
                break  # the server answered (or closed)
            except TimeoutError:
                sock.sendall(b"X-Slow: 1\r\n")  # one more header line every 250 ms, never the end
        status, _, body = read_response(sock, 2.0)
    assert status == 408 and time.monotonic() - start < LIMITS.head_timeout_s + SLACK_S
    assert_json_error(body, "RequestTimeoutError", server)


def test_a_client_waiting_for_100_continue_is_not_timed_out_while_the_app_is_busy(server: Server) -> None:
    """curl sends big uploads with ``Expect: 100-continue``: the wait for the app is not the client's stall."""
    with socket.create_connection((HOST, server.port)) as sock:
        head = upload_head(5, "/late").replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n")
        sock.sendall(head)
        sock.settimeout(LATE_S + SLACK_S + 2)
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim[:200]
        sock.sendall(b"hello")
        status, _, body = read_response(sock, 5.0)
    assert status == 200 and json.loads(body)["received"] == 5


# ---------------------------------------------------------------------- connections
def test_2000_slowloris_connections_leave_health_fast_and_requests_in_progress_alone(server: Server) -> None:
    """2,000 connections that send one byte and go silent: /health answers in < 1 s all along.

    They are twice the server's descriptor limit; the cap evicts the oldest waiting ones.
    A response in progress when the flood starts is not evicted and finishes.
    """
    soft = raise_nofile_limit()
    if soft < 2 * SLOWLORIS + 64:
        pytest.skip(f"this process may open only {soft} descriptors")
    busy = socket.create_connection((HOST, server.port))
    busy.sendall(f"GET /stream HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    sockets: list[socket.socket] = []
    start = time.monotonic()
    try:
        for i in range(SLOWLORIS):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, server.port))
            sockets.append(s)
            if i % 400 == 399:
                for t in sockets[-400:]:
                    try:
                        t.send(b"G")
                    except OSError:
                        pass  # evicted already
                assert_health_fast(server.port)
        flood_s = time.monotonic() - start
        for _ in range(3):
            assert_health_fast(server.port)
        status, _, body = read_response(busy, STREAM_CHUNKS * STREAM_GAP_S + 5)
        assert status == 200 and body.count(b".") == STREAM_CHUNKS, (status, body[-200:])
        assert flood_s < STREAM_CHUNKS * STREAM_GAP_S, flood_s  # the stream was still running during the flood
    finally:
        busy.close()
        for s in sockets:
            s.close()


# ---------------------------------------------------------------------- bodies
def test_chunked_body_that_stops_is_closed_after_the_body_idle_timeout(server: Server) -> None:
    sock = socket.create_connection((HOST, server.port))
    try:
        sock.sendall(
            f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n".encode()
        )
        start = time.monotonic()
        assert_health_fast(server.port)
        status, _, body = read_response(sock, LIMITS.body_idle_timeout_s + SLACK_S + 2)
        elapsed = time.monotonic() - start
    finally:
        sock.close()
    assert status == 408 and elapsed < LIMITS.body_idle_timeout_s + SLACK_S, (status, elapsed)
    assert_json_error(body, "RequestTimeoutError", server)


def test_chunked_body_that_trickles_forever_is_closed_after_its_total_time(server: Server) -> None:
    """Progress every 100 ms keeps the idle timer quiet; the total allowance (grace + size / rate) still ends it."""
    sock = socket.create_connection((HOST, server.port))
    start = time.monotonic()
    head = f"POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    stop, sender = trickle(sock, head, b"1\r\na\r\n", 0.1)
    try:
        status, _, body = read_response(sock, LIMITS.body_grace_s + SLACK_S + 3)
        elapsed = time.monotonic() - start
    finally:
        stop.set()
        sender.join(5)
        sock.close()
    # 10 bytes a second against 64 KiB/s: the allowance is the grace period (plus a timer tick).
    assert status == 408 and elapsed < LIMITS.body_grace_s + SLACK_S + 1, (status, elapsed)
    assert_json_error(body, "RequestTimeoutError", server)


def test_unfinished_uploads_beyond_the_budget_are_refused_at_once_and_the_budget_comes_back(server: Server) -> None:
    """30 uploads of 1 MiB each start and stall: the four the 4 MiB budget holds wait, the rest get 429 at once."""
    admitted_max = LIMITS.body_budget_bytes // UPLOAD_BYTES
    uploads = []
    start = time.monotonic()
    for _ in range(30):
        sock = socket.create_connection((HOST, server.port))
        sock.sendall(upload_head(UPLOAD_BYTES) + b"x" * 1000)
        uploads.append(sock)
    try:
        refused, waiting = [], []
        for sock in uploads:
            sock.settimeout(0.3)
            try:
                first = sock.recv(65536, socket.MSG_PEEK)
            except TimeoutError:
                first = None
            (refused if first else waiting).append(sock)
        assert len(waiting) == admitted_max and len(refused) == 30 - admitted_max
        for sock in refused:
            status, headers, body = read_response(sock, 2.0)
            assert status == 429 and int(headers["retry-after"]) >= 1
        assert time.monotonic() - start < LIMITS.body_idle_timeout_s  # refused before any body timeout
        assert_json_error(body, "OverloadedError", server)
        # While the budget is full, one more upload is refused too...
        with socket.create_connection((HOST, server.port)) as extra:
            extra.sendall(upload_head(UPLOAD_BYTES))
            assert read_response(extra, 2.0)[0] == 429
        # ...and once the stalled ones drop, the budget is back: a whole upload goes through.
        for sock in waiting:
            sock.close()
        deadline = time.monotonic() + 2.0
        while True:
            with socket.create_connection((HOST, server.port)) as again:
                again.sendall(upload_head(UPLOAD_BYTES) + b"y" * UPLOAD_BYTES)
                status, _, body = read_response(again, 5.0)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.05)  # the server sees the drops within a loop iteration or two
        assert status == 200 and json.loads(body)["received"] == UPLOAD_BYTES
    finally:
        for sock in uploads:
            sock.close()


def test_websocket_upgrade_still_works_through_the_bounded_protocol(server: Server) -> None:
    """The live page's WebSocket goes through the same protocol: the upgrade is handed on intact."""
    sync_client = pytest.importorskip("websockets.sync.client")
    with sync_client.connect(f"ws://{HOST}:{server.port}/live", open_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
    assert_health_fast(server.port)


# ---------------------------------------------------------------------- limits themselves
def test_serve_refuses_a_nonsense_connection_limit_before_loading_anything(capsys: pytest.CaptureFixture) -> None:
    from lpstudio.cli import main

    rc = main(["serve", "--no-crop", "--upload-budget-mb", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and "body_budget_bytes" in err and "Traceback" not in err and "loading the model" not in err


def test_connection_limits_refuse_nonsense_and_keep_below_the_descriptor_limit() -> None:
    from lpstudio.errors import LimitError
    from lpstudio.server.connection_limits import FD_RESERVE, connection_cap

    with pytest.raises(LimitError, match="head_timeout_s"):
        ConnectionLimits(head_timeout_s=0)
    total, per_client = connection_cap(ConnectionLimits(max_connections=4096, max_per_client=256), nofile=1024)
    assert total == 1024 - FD_RESERVE and per_client == 256
    assert connection_cap(ConnectionLimits(max_connections=100), nofile=65536) == (100, 100)


if __name__ == "__main__":
    _serve_main(int(sys.argv[1]), sys.argv[2])
