"""Faults: an exception in one batch, a NaN frame, out of memory, a client that never reads, a client that
disconnects mid-stream, SIGTERM during a stream. The renderer is the stand-in (benchmarks/standin_server.py):
the service layer is what is tested."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from service_helpers import BENCHMARKS, free_port, live_server
from standin_server import StandInEngine

from lpstudio.errors import NonFiniteOutputError, RenderError
from lpstudio.params import EditParams
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.worker import PRIORITY_BACKGROUND, RenderJob, RenderWorker

NAN_SMILE = 0.4321
RAISE_SMILE = 0.6543
WAIT_S = 30.0
ROOT = Path(__file__).resolve().parents[2]


def _state(engine: StandInEngine):
    from lpstudio.engine import LivePortrait  # noqa: F401  (the stand-in uses its to_uint8)

    rgb = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    return engine.prepare_source(rgb, crop=False)


def _collect(worker: RenderWorker, state, smiles, priority=1):
    frames: list[int] = []
    done: list[BaseException | None] = []
    job = RenderJob(state, [EditParams(smile=s) for s in smiles], lambda i, f: frames.append(i), done.append, priority)
    worker.submit(job)
    return job, frames, done


def _wait(cond, timeout=WAIT_S) -> None:
    deadline = time.time() + timeout
    while not cond():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.01)


# ---------------------------------------------------------------------- worker level
def test_exception_in_a_batch_fails_only_its_jobs_and_the_worker_carries_on():
    engine = StandInEngine(frame_ms=1, prepare_ms=0, raise_smile=RAISE_SMILE)
    state = _state(engine)
    worker = RenderWorker(engine, batch_size=4)
    gate = threading.Event()
    worker.call(gate.wait)  # hold the worker while the jobs are queued, so they share batches
    bad, _, bad_done = _collect(worker, state, [0.1, RAISE_SMILE, 0.1])
    mate, _, mate_done = _collect(worker, state, [0.2, 0.2, 0.2])
    other, other_frames, other_done = _collect(worker, state, [0.3] * 3, priority=PRIORITY_BACKGROUND)
    gate.set()
    _wait(lambda: bad_done and mate_done and other_done)
    after, after_frames, after_done = _collect(worker, state, [0.1, 0.2])
    _wait(lambda: after_done)
    worker.close()
    assert isinstance(bad_done[0], RuntimeError) and "injected" in str(bad_done[0])
    assert isinstance(mate_done[0], RuntimeError), "the job sharing the failed batch is failed too"
    assert other_done == [None] and other_frames == [0, 1, 2], "a job outside the batch is untouched"
    assert after_done == [None] and after_frames == [0, 1], "the worker serves after the fault"
    assert worker.batch_failures == 1


def test_nan_frame_fails_only_its_job_and_is_counted():
    engine = StandInEngine(frame_ms=1, prepare_ms=0, nan_smile=NAN_SMILE)
    state = _state(engine)
    worker = RenderWorker(engine, batch_size=4)
    gate = threading.Event()
    worker.call(gate.wait)
    _, _, bad_done = _collect(worker, state, [0.1, NAN_SMILE])
    _, good_frames, good_done = _collect(worker, state, [0.2, 0.2])
    gate.set()
    _wait(lambda: bad_done and good_done)
    worker.close()
    assert isinstance(bad_done[0], NonFiniteOutputError)
    assert "backend standin" in bad_done[0].message and "float32" in bad_done[0].message
    assert good_done == [None] and sorted(good_frames) == [0, 1], "the good frames of the same batch arrive"
    assert engine.nonfinite_events == 1


def test_to_uint8_never_turns_nan_into_black():
    import torch

    from lpstudio.engine import LivePortrait

    images = torch.full((3, 3, 4, 4), 0.5)
    images[1, 0, 0, 0] = float("inf")
    with pytest.raises(NonFiniteOutputError) as info:
        LivePortrait.to_uint8(images)
    assert info.value.frames == [1]
    assert info.value.partial[1] is None and int(info.value.partial[0][0, 0, 0]) == 127


def test_out_of_memory_splits_the_batch_then_fails_only_at_one_frame():
    engine = StandInEngine(frame_ms=0, prepare_ms=0, oom_over=1)
    state = _state(engine)
    worker = RenderWorker(engine, batch_size=4)
    gate = threading.Event()
    worker.call(gate.wait)
    _, frames, done = _collect(worker, state, [0.1] * 9)
    gate.set()
    _wait(lambda: done)
    assert done == [None] and sorted(frames) == list(range(9))
    assert worker.oom_splits > 0 and max(engine.batches[1:]) <= 4
    engine.oom_over = 0  # now even one frame does not fit
    _, _, done = _collect(worker, state, [0.1, 0.2])
    _wait(lambda: done)
    worker.close()
    assert isinstance(done[0], RenderError) and "out of memory" in done[0].message


# ---------------------------------------------------------------------- HTTP level
@pytest.fixture()
def faulty_client():
    engine = StandInEngine(frame_ms=1, prepare_ms=0, nan_smile=NAN_SMILE, raise_smile=RAISE_SMILE)
    app = create_app(engine, ServerSettings(crop=False, fps=10.0, idle_default=False))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.engine = engine  # type: ignore[attr-defined]
        yield c


def test_nan_preview_is_an_error_never_a_black_frame(faulty_client):
    c = faulty_client
    sid = c.post("/session").json()["session"]
    res = c.post("/render", json={"session": sid, "params": {"smile": NAN_SMILE}})
    assert res.status_code == 500 and res.headers["content-type"] == "application/json"
    body = res.json()
    assert body["kind"] == "NonFiniteOutputError" and "standin" in body["error"] and "Traceback" not in res.text
    assert c.post("/render", json={"session": sid, "params": {"smile": 0.5}}).status_code == 200
    metrics = c.get("/metrics").text
    assert "lpstudio_nonfinite_frames_total 1.0" in metrics


def test_fault_in_a_stream_gives_an_error_line_and_the_server_serves_on(faulty_client):
    c = faulty_client
    sid = c.post("/session").json()["session"]
    lines = [
        json.loads(x)
        for x in c.post("/generate", json={"session": sid, "command": "smile=0.6543=300:200"}).text.splitlines()
    ]
    assert lines[0]["type"] == "start" and lines[-1]["type"] == "error"
    assert "Traceback" not in lines[-1]["error"]
    ok = [json.loads(x) for x in c.post("/generate", json={"session": sid, "preset": "blink"}).text.splitlines()]
    assert ok[-1]["type"] == "end" and ok[-1]["frames"] == ok[0]["frames"]


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_client_that_never_reads_is_cut_off_and_its_frames_are_not_rendered():
    engine = StandInEngine(frame_ms=1, prepare_ms=0)
    limits = ServiceLimits(stall_timeout_s=1.5, stream_buffer_frames=8)
    app = create_app(engine, ServerSettings(crop=False, fps=25.0, idle_default=False, limits=limits))
    with live_server(app) as url:
        sid = httpx.post(f"{url}/session").json()["session"]
        port = int(url.rsplit(":", 1)[1])
        body = json.dumps({"session": sid, "command": "smile=300:25000"}).encode()
        total = 25 * 25 + 10
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(
            b"POST /generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )  # ...and never read
        try:
            deadline = time.time() + WAIT_S
            while time.time() < deadline:
                m = httpx.get(f"{url}/metrics").text
                if _metric(m, "lpstudio_streams_stalled_total") >= 1 and _metric(m, "lpstudio_open_streams") == 0:
                    break
                time.sleep(0.2)
            else:
                pytest.fail("the stalled stream was not cut off")
            time.sleep(0.5)
            rendered = _metric(httpx.get(f"{url}/metrics").text, "lpstudio_frames_rendered_total")
            assert rendered < total / 2, f"{rendered} of {total} frames rendered for a client that never read"
            assert _metric(m, "lpstudio_pending_frames") == 0
            ok = httpx.post(f"{url}/generate", json={"session": sid, "preset": "blink"}, timeout=WAIT_S)
            assert ok.status_code == 200 and json.loads(ok.text.splitlines()[-1])["type"] == "end"
        finally:
            sock.close()


def test_client_that_disconnects_mid_stream_cancels_its_frames():
    engine = StandInEngine(frame_ms=5, prepare_ms=0)
    app = create_app(engine, ServerSettings(crop=False, fps=25.0, idle_default=False))
    with live_server(app) as url:
        sid = httpx.post(f"{url}/session").json()["session"]
        with httpx.stream("POST", f"{url}/generate", json={"session": sid, "command": "smile=300:20000"}) as res:
            for line in res.iter_lines():
                if '"frame"' in line:
                    break
        deadline = time.time() + WAIT_S
        while time.time() < deadline:
            health = httpx.get(f"{url}/health").json()
            if health["open_streams"] == 0 and health["pending_frames"] == 0 and health["queued_jobs"] == 0:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the disconnected stream kept its work: {health}")
        rendered = _metric(httpx.get(f"{url}/metrics").text, "lpstudio_frames_rendered_total")
        assert rendered < 200, f"{rendered} of 510 frames rendered after the client left"


# ---------------------------------------------------------------------- SIGTERM (a real `lpstudio serve`)
def _serve(port: int, *extra: str, frame_ms: float = 30) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(BENCHMARKS)]),
        "LPSTUDIO_STANDIN_FRAME_MS": str(frame_ms),
        "LPSTUDIO_STANDIN_PREPARE_MS": "0",
    }
    cmd = [sys.executable, "-m", "lpstudio", "serve", "--engine-factory", "standin_server:make_engine",
           "--no-crop", "--no-idle", "--port", str(port), "--no-access-log", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"lpstudio serve exited: {proc.stderr.read()}")
    proc.kill()
    pytest.fail("lpstudio serve did not start")


def test_sigterm_drains_streams_in_flight_refuses_new_work_and_exits_cleanly():
    port = free_port()
    proc = _serve(port, "--drain-timeout", "30")
    url = f"http://127.0.0.1:{port}"
    try:
        sid = httpx.post(f"{url}/session").json()["session"]
        lines: list[dict] = []
        with httpx.stream(
            "POST", f"{url}/generate", json={"session": sid, "command": "smile=300:3000"}, timeout=60
        ) as res:
            it = res.iter_lines()
            for line in it:
                lines.append(json.loads(line))
                if lines[-1]["type"] == "frame":
                    break
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            refused = httpx.post(f"{url}/generate", json={"session": sid, "preset": "blink"})
            lines += [json.loads(x) for x in it]
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        assert refused.json()["kind"] == "ShuttingDownError"
        assert lines[-1]["type"] == "end" and lines[-1]["frames"] == lines[0]["frames"], "the stream was not finished"
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_sigterm_past_the_drain_deadline_ends_streams_with_an_error_line():
    port = free_port()
    proc = _serve(port, "--drain-timeout", "1")
    url = f"http://127.0.0.1:{port}"
    try:
        sid = httpx.post(f"{url}/session").json()["session"]
        with httpx.stream(
            "POST", f"{url}/generate", json={"session": sid, "command": "smile=300:25000"}, timeout=60
        ) as res:
            it = res.iter_lines()
            first = [json.loads(next(it)), json.loads(next(it))]
            proc.send_signal(signal.SIGTERM)
            rest = [json.loads(x) for x in it]
        assert first[1]["type"] == "frame"
        assert rest[-1]["type"] == "error" and "shutting down" in rest[-1]["error"]
        assert proc.wait(30) == 0
        assert "Traceback" not in proc.communicate(timeout=10)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


TRICKLE_FPS = 25.0
TRICKLE_LINES = 60
TRICKLE_STALL_S = 0.5


def _trickle(send_s: float) -> tuple[int, bool]:
    """Stream a 60-frame clip at 25 fps to a client whose every send takes ``send_s``; (frames sent, cut off)."""
    import asyncio

    from lpstudio.server.streams import NDJSONResponse, SharedClip, Viewer, frame_line

    async def run() -> tuple[int, bool]:
        clip = SharedClip.replay(None, "k", [frame_line(i, b"jpeg") for i in range(TRICKLE_LINES)])  # type: ignore[arg-type]
        viewer = Viewer(clip, {"fps": TRICKLE_FPS}, time.perf_counter())
        response = NDJSONResponse(viewer, TRICKLE_STALL_S, lambda: None)
        frames = [0]

        async def send(message: dict) -> None:
            if message.get("body", b"").startswith(b'{"type":"frame"'):
                await asyncio.sleep(send_s)
                frames[0] += 1

        async def receive() -> dict:
            await asyncio.Event().wait()  # the client never disconnects
            return {}

        await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        return frames[0], viewer.stalled

    return asyncio.run(run())


def test_a_client_trickling_slower_than_playback_is_cut_off_by_its_progress():
    """Each send takes 0.1 s (under the 0.5 s stall time, so no single send stalls) while the clip plays at
    25 fps (0.04 s a frame): the client falls behind playback by 0.06 s a frame and is cut off once that
    reaches the stall time, long before the clip ends; a client keeping up with playback is not."""
    sent, cut = _trickle(0.1)
    behind_per_frame = 0.1 - 1 / TRICKLE_FPS
    assert cut and sent <= TRICKLE_STALL_S / behind_per_frame + 2 < TRICKLE_LINES, sent
    sent, cut = _trickle(0.02)
    assert not cut and sent == TRICKLE_LINES
