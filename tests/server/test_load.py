"""The short load test (CI version of benchmarks/load.py): concurrent pages against a live server with the
stand-in renderer, in a separate process. No timing assertions: errors (other than 429) must be zero, the
server's peak RSS must stay under its stated bound, and it must drain and exit cleanly on SIGTERM.

The second test runs the server with small caches (16 MB of clips, 64 MB of prepared photos) and enough
churn to fill them: the caches must sit at their bounds, and the server's RSS growth must stay under
:data:`LEAK_BYTES` (which the sum of its configured bounds is under too); with the full caches holding
over 55 MB of that growth, a leak of that size fails it."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import load  # benchmarks/load.py, on the path through conftest (service_helpers)

from lpstudio.server.limits import MIB, ServiceLimits

CI_USERS = 12
CI_DURATION_S = 12.0
LEAK_BYTES = 200 * MIB
"""A leak this large must fail the bounded-memory test: the configured bounds add up to less."""
CHURN_PHOTOS = 14
"""Distinct photos uploaded during the churn run: ~9 MB each, about twice the 64 MB of prepared photos."""
CHURN_COMMANDS = 24
"""Distinct clips asked for during the churn run (~1-2 MB of lines each): several times the 16 MB clip cache."""
CHURN_LIMITS = {
    "clip_cache_bytes": 16 * MIB,
    "max_session_memory_bytes": 64 * MIB,
    "max_history_bytes": 16 * MIB,
    "speech_memo_bytes": 4 * MIB,
    "stream_buffer_frames": 3,
    "max_jobs": 16,
    "max_streams": 32,
    "max_pending_sources": 2,
    "max_decodes": 1,
    "max_upload_bytes": 2 * MIB,
    "max_upload_pixels": 1_000_000,
    # every page of the test comes from 127.0.0.1: the per-client quotas are other tests' subject
    "max_streams_per_client": 64,
    "max_streams_per_session": 64,
    "max_photos_per_client": 64,
}
SERVER = """
import json, sys
from standin_server import make_engine
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.lifecycle import serve
limits = ServiceLimits(**json.loads(sys.argv[2]))
app = create_app(make_engine(), ServerSettings(crop=False, fps=25.0, idle_default=False, limits=limits))
serve(app, "127.0.0.1", int(sys.argv[1]), drain_timeout_s=limits.drain_timeout_s, access_log=False)
"""
STOP_TIMEOUT_S = 60.0
CACHE_FULL_SHARE = 0.5
"""The clip cache counts as full from this share of its bound: dropping its least recently used clip (one
entry of up to ~8 MB at 25 fps) leaves it anywhere above that."""
MALLOC_ARENAS = 2
"""glibc keeps freed memory per thread arena (up to 8 per core, each holding tens of MB it has used once), which
is RSS that is neither held data nor a leak; two arenas keep the measured growth to what the server holds."""


def test_short_load_run_has_no_errors_and_bounded_memory():
    args = argparse.Namespace(
        users=CI_USERS, duration=CI_DURATION_S, frame_ms=4.0, prepare_ms=50.0, server_args=[], server_log=None
    )
    result = asyncio.run(load.run_load(args))
    assert result["errors"] == 0, result["error_kinds"]
    assert result["served"] > CI_USERS, result
    assert result["frames_received"] > 0 and result["first_frame_ms_p50"] is not None
    assert result["peak_rss_mb"] <= result["rss_bound_mb"], result
    assert result["server_exit_code"] == 0 and not result["server_traceback"]


def _metric(text: str, name: str) -> float:
    return next(float(x.split()[1]) for x in text.splitlines() if x.startswith(name + " "))


async def _churn(url: str, pid: int) -> dict:
    """Pages as in benchmarks/load.py, plus an uploader of distinct photos and a client of distinct clips."""
    stats = load.Stats()
    async with httpx.AsyncClient(base_url=url, timeout=load.REQUEST_TIMEOUT_S) as warm:
        # Every kind of request once before the baseline, so one-time costs (a decoder's first use, speech
        # synthesis loading its voice, first allocations of each path) are not taken for growth.
        sid = (await warm.post("/session")).json()["session"]
        for body in ({"preset": "blink"}, {"preset": "talk"}, {"idle_loop": True}, {"command": "smile then nod"}):
            await warm.post("/generate", json={"session": sid, **body})
        await warm.post("/render", json={"session": sid, "params": {"smile": 0.5}})
        files = {"file": ("warm.png", load._photo(99), "image/png")}
        await warm.post("/source-image", files=files)
    baseline = load._rss_bytes(pid)
    peak = [baseline]
    stop = asyncio.Event()
    poller = asyncio.create_task(load.poll_rss(pid, peak, stop))
    async with httpx.AsyncClient(base_url=url, timeout=load.REQUEST_TIMEOUT_S) as client:

        async def uploads() -> None:
            for i in range(CHURN_PHOTOS):
                files = {"file": (f"c{i}.png", load._photo(100 + i), "image/png")}
                for _ in range(20):  # obey 429 like the page
                    res = await client.post("/source-image", files=files)
                    if res.status_code != 429:
                        break
                    await asyncio.sleep(0.2)
                assert res.status_code == 200, res.text

        async def clips() -> None:
            for i in range(CHURN_COMMANDS):
                body = {"session": sid, "command": f"smile={100 + i}:800"}
                for _ in range(20):
                    async with client.stream("POST", "/generate", json=body) as res:
                        lines = [line async for line in res.aiter_lines()]
                    if res.status_code != 429:
                        break
                    await asyncio.sleep(0.2)
                assert res.status_code == 200 and json.loads(lines[-1])["type"] == "end", lines[-1][:200]

        deadline = time.monotonic() + CI_DURATION_S
        pages = [load.Page(i, url, client, stats, deadline) for i in range(CI_USERS)]
        await asyncio.gather(uploads(), clips(), *(p.run() for p in pages))
        metrics = (await client.get("/metrics")).text
    stop.set()
    await poller
    peak[0] = max(peak[0], load._rss_bytes(pid, "VmHWM"))
    return {"stats": stats, "baseline": baseline, "peak": peak[0], "metrics": metrics}


def test_caches_fill_to_their_bounds_and_memory_growth_stays_under_them():
    limits = ServiceLimits(**CHURN_LIMITS)
    bound = limits.memory_bound_bytes()
    assert bound < LEAK_BYTES, bound / MIB  # so a leak of LEAK_BYTES cannot hide under the bound
    port = load._free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(load.ROOT / "src"), str(load.ROOT / "benchmarks")]),
           "LPSTUDIO_STANDIN_FRAME_MS": "2", "LPSTUDIO_STANDIN_PREPARE_MS": "20",
           "MALLOC_ARENA_MAX": str(MALLOC_ARENAS)}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), json.dumps(CHURN_LIMITS)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(load.wait_ready(url, proc))
        result = asyncio.run(_churn(url, proc.pid))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        stderr = proc.stderr.read() if proc.stderr else ""
    stats, metrics = result["stats"], result["metrics"]
    assert stats.errors == 0, stats.error_kinds
    cache = _metric(metrics, "lpstudio_clip_cache_bytes")
    photos = _metric(metrics, "lpstudio_prepared_photos_bytes")
    n_photos = _metric(metrics, "lpstudio_prepared_photos")
    photo_size = photos / max(1.0, n_photos)
    # within one clip of its bound: an entry is a whole clip, up to several MB (a long idle loop)
    assert limits.clip_cache_bytes * CACHE_FULL_SHARE <= cache <= limits.clip_cache_bytes, cache / MIB
    assert limits.max_session_memory_bytes - 1.5 * photo_size <= photos <= limits.max_session_memory_bytes, (
        photos / MIB,
        photo_size / MIB,
    )
    assert _metric(metrics, "lpstudio_source_evictions_total") > 0  # the churn did push photos out
    growth = result["peak"] - result["baseline"]
    # Under LEAK_BYTES, while the caches alone (asserted full above) grew by over 45 MB since the baseline
    # (taken after one request of each kind): a leak of LEAK_BYTES on top fails it. Measured: 143-182 MiB of
    # growth in three runs, against ~182 MiB of configured bounds.
    assert growth <= LEAK_BYTES, (growth / MIB, bound / MIB)
    assert rc == 0 and "Traceback" not in stderr, stderr[-2000:]
