"""Load test of the service: many concurrent pages against a live ``lpstudio serve`` on loopback.

The server is the real ``lpstudio serve`` (routes, sessions, admission, worker batching,
compositing, JPEG encoding, drain on SIGTERM) with the stand-in renderer of
``benchmarks/standin_server.py`` in place of the model (``--engine-factory``): what is
measured is the service layer; the model's speed is ``lpstudio bench``'s job.

Each simulated page opens a session (most on the default portrait, some with their own
photo), then for the whole run asks for the idle loop, presets, typed commands and slider
previews with short pauses, obeying ``Retry-After`` on 429/503 and re-sending its photo on
409, like the page does. Reported: requests, served, 429s, errors (anything else: other
statuses, ``error`` lines, dropped streams), first-frame latency (request sent -> first
frame line received) p50/p99, the server's peak RSS and the bound it must stay under.

    python benchmarks/load.py --users 50 --duration 150          # the figures in docs/RELIABILITY.md
    python benchmarks/load.py --users 12 --duration 12 --json    # the CI version

Exit status 0 when there were no errors, the peak RSS stayed under the bound, and the
server drained and exited cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["smile", "blink", "talk", "surprise", "wink_right", "nod", "look_left", "sad"]
COMMANDS = ["웃으면서 윙크해줘", "smile then nod", "blink twice", "살짝 웃어줘", "smile=300:600", "surprise and blink"]
THINK_S = (0.2, 1.0)
OWN_PHOTO_SHARE = 0.3
DISTINCT_PHOTOS = 12
START_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 120.0
RSS_POLL_S = 0.25
MIB = 1024 * 1024
CLIENT_KEEPALIVE_S = 2.0
"""Idle connections are not reused after this (below uvicorn's 5 s keep-alive), as browsers avoid the race
of sending on a connection the server is closing."""
PAGES_PER_OCTET = 250
"""Pages per 127.0.x.0/24 block of loopback source addresses (.2 to .251)."""


@dataclass
class Stats:
    requests: int = 0
    served: int = 0
    rejected: int = 0  # 429 and 503
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    first_frame_ms: list[float] = field(default_factory=list)  # presets and commands
    idle_first_frame_ms: list[float] = field(default_factory=list)  # idle loops (background priority)
    preview_ms: list[float] = field(default_factory=list)
    frames: int = 0
    shared: int = 0
    cached: int = 0

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_bytes(pid: int, field_name: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _photo(index: int) -> bytes:
    """A distinct 256x256 portrait-sized PNG per index (a separate prepared photo on the server)."""
    rng = np.random.default_rng(1000 + index)
    yy, xx = np.mgrid[0:256, 0:256]
    img = np.stack([(xx + 40 * index) % 256, (yy * 2) % 256, (xx + yy) % 256], -1).astype(np.uint8)
    img[96:160, 96:160] = rng.integers(0, 255, 3, dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def start_server(port: int, frame_ms: float, prepare_ms: float, extra: list[str]) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
        "LPSTUDIO_STANDIN_FRAME_MS": str(frame_ms),
        "LPSTUDIO_STANDIN_PREPARE_MS": str(prepare_ms),
    }
    cmd = [sys.executable, "-m", "lpstudio", "serve", "--engine-factory", "standin_server:make_engine",
           "--no-crop", "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_ready(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read() if proc.stderr else ''}")
            try:
                if (await client.get(f"{url}/health", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the server did not start")


class Page:
    """One simulated browser page."""

    def __init__(self, index: int, url: str, client: httpx.AsyncClient, stats: Stats, deadline: float) -> None:
        self.index = index
        self.url = url
        self.client = client
        self.stats = stats
        self.deadline = deadline
        self.rng = random.Random(index)
        self.photo = _photo(index % DISTINCT_PHOTOS) if self.rng.random() < OWN_PHOTO_SHARE else None
        self.session: str | None = None

    async def _backoff(self, res: httpx.Response, attempt: int) -> None:
        self.stats.rejected += 1
        wait = max(float(res.headers.get("Retry-After", "1") or 1), 0.5 * 2**attempt)
        await asyncio.sleep(min(wait, 15.0) * self.rng.uniform(0.8, 1.2))

    async def open(self) -> None:
        for attempt in range(20):
            if time.monotonic() > self.deadline:
                return
            self.stats.requests += 1
            try:
                if self.photo is None:
                    res = await self.client.post(f"{self.url}/session", timeout=REQUEST_TIMEOUT_S)
                else:
                    files = {"file": (f"p{self.index}.png", self.photo, "image/png")}
                    res = await self.client.post(f"{self.url}/source-image", files=files, timeout=REQUEST_TIMEOUT_S)
            except httpx.HTTPError as exc:
                self.stats.error(f"session:{type(exc).__name__}")
                return
            if res.status_code == 200:
                self.stats.served += 1
                self.session = res.json()["session"]
                return
            if res.status_code in (429, 503):
                await self._backoff(res, attempt)
                continue
            self.stats.error(f"session:{res.status_code}")
            return

    async def run(self) -> None:
        await self.open()
        attempt = 0
        while self.session is not None and time.monotonic() < self.deadline:
            r = self.rng.random()
            if r < 0.25:
                status = await self.stream({"idle_loop": True})
            elif r < 0.6:
                status = await self.stream({"preset": self.rng.choice(PRESETS), "idle": self.rng.random() < 0.5})
            elif r < 0.8:
                status = await self.stream({"command": self.rng.choice(COMMANDS), "idle": self.rng.random() < 0.5})
            else:
                status = await self.preview()
            if status in (429, 503):
                attempt += 1
                continue
            attempt = 0
            if status == 409:
                await self.open()
            await asyncio.sleep(self.rng.uniform(*THINK_S))

    async def preview(self) -> int:
        body = {"session": self.session, "params": {"smile": round(self.rng.uniform(0, 1.3), 2),
                                                    "head_yaw": round(self.rng.uniform(-15, 15), 1)}}  # fmt: skip
        self.stats.requests += 1
        sent = time.perf_counter()
        try:
            res = await self.client.post(f"{self.url}/render", json=body, timeout=REQUEST_TIMEOUT_S)
        except httpx.HTTPError as exc:
            self.stats.error(f"render:{type(exc).__name__}")
            return 0
        if res.status_code == 200 and res.headers.get("content-type") == "image/jpeg" and res.content:
            self.stats.served += 1
            self.stats.preview_ms.append((time.perf_counter() - sent) * 1000)
        elif res.status_code in (429, 503):
            await self._backoff(res, 0)
        elif res.status_code != 409:
            self.stats.error(f"render:{res.status_code}")
        return res.status_code

    async def stream(self, what: dict) -> int:
        body = {"session": self.session, **what}
        self.stats.requests += 1
        sent = time.perf_counter()
        first: float | None = None
        end: dict | None = None
        n_frames = expected = 0
        try:
            async with self.client.stream("POST", f"{self.url}/generate", json=body, timeout=REQUEST_TIMEOUT_S) as res:
                if res.status_code != 200:
                    await res.aread()
                    if res.status_code in (429, 503):
                        await self._backoff(res, 0)
                    elif res.status_code != 409:
                        self.stats.error(f"generate:{res.status_code}")
                    return res.status_code
                async for line in res.aiter_lines():
                    if line.startswith('{"type":"frame"'):
                        n_frames += 1
                        if first is None:
                            first = (time.perf_counter() - sent) * 1000
                        continue
                    msg = json.loads(line)
                    if msg["type"] == "start":
                        expected = msg["frames"]
                    elif msg["type"] == "end":
                        end = msg
                    elif msg["type"] == "error":
                        self.stats.error(f"generate:error-line:{msg.get('kind')}")
                        return 200
        except httpx.HTTPError as exc:
            phase = "before-start" if expected == 0 else f"after-{n_frames}-of-{expected}-frames"
            self.stats.error(f"generate:{type(exc).__name__}:{phase}")
            return 0
        if end is None or n_frames != expected:
            self.stats.error("generate:incomplete")
            return 200
        self.stats.served += 1
        self.stats.frames += n_frames
        self.stats.shared += bool(end.get("shared"))
        self.stats.cached += bool(end.get("cached"))
        if first is not None:
            (self.stats.idle_first_frame_ms if what.get("idle_loop") else self.stats.first_frame_ms).append(first)
        return 200


async def poll_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], _rss_bytes(pid))
        await asyncio.sleep(RSS_POLL_S)


def _metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def _rejections(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith("lpstudio_rejections_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.split()[-1])
    return out


def page_address(index: int) -> str:
    """The loopback address page ``index`` connects from (127.0.x.y; Linux routes all of 127.0.0.0/8 to lo).

    Distinct pages are distinct users to the server, whose per-client caps (streams, photos, fair
    shares) go by address: from one address, 50 pages would be one greedy client."""
    return f"127.0.{1 + index // PAGES_PER_OCTET}.{2 + index % PAGES_PER_OCTET}"


def page_client(index: int) -> httpx.AsyncClient:
    """An HTTP client for one page: its own address and a few keep-alive connections (a browser's share)."""
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=CLIENT_KEEPALIVE_S)
    transport = httpx.AsyncHTTPTransport(local_address=page_address(index), limits=limits)
    return httpx.AsyncClient(transport=transport)


async def run_load(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from lpstudio.server.limits import ServiceLimits

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_server(port, args.frame_ms, args.prepare_ms, args.server_args)
    try:
        await wait_ready(url, proc)
        async with httpx.AsyncClient() as warm:  # the first session and clip, so the baseline includes them
            sid = (await warm.post(f"{url}/session", timeout=REQUEST_TIMEOUT_S)).json()["session"]
            await warm.post(f"{url}/generate", json={"session": sid, "preset": "blink"}, timeout=REQUEST_TIMEOUT_S)
        baseline = _rss_bytes(proc.pid)
        bound = baseline + ServiceLimits().memory_bound_bytes()
        stats = Stats()
        peak = [baseline]
        stop = asyncio.Event()
        poller = asyncio.create_task(poll_rss(proc.pid, peak, stop))
        started = time.monotonic()
        async with contextlib.AsyncExitStack() as stack:
            deadline = started + args.duration
            clients = [await stack.enter_async_context(page_client(i)) for i in range(args.users)]
            pages = [Page(i, url, c, stats, deadline) for i, c in enumerate(clients)]
            await asyncio.gather(*(p.run() for p in pages))
            metrics = (await clients[0].get(f"{url}/metrics")).text
        elapsed = time.monotonic() - started
        stop.set()
        await poller
        peak[0] = max(peak[0], _rss_bytes(proc.pid, "VmHWM"))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
        stderr = proc.stderr.read() if proc.stderr else ""
        if args.server_log:
            Path(args.server_log).write_text(stderr)

    def pct(values: list[float], q: float) -> float | None:
        return round(float(np.percentile(values, q)), 1) if values else None

    return {
        "users": args.users,
        "duration_s": round(elapsed, 1),
        "frame_ms": args.frame_ms,
        "prepare_ms": args.prepare_ms,
        "requests": stats.requests,
        "served": stats.served,
        "rejected_429_503": stats.rejected,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "streams_shared": stats.shared,
        "streams_cached": stats.cached,
        "frames_received": stats.frames,
        "frames_rendered": _metric(metrics, "lpstudio_frames_rendered_total"),
        "streams_cut_stalled": _metric(metrics, "lpstudio_streams_stalled_total"),
        "server_rejections": _rejections(metrics),
        "first_frame_ms_p50": pct(stats.first_frame_ms, 50),
        "first_frame_ms_p99": pct(stats.first_frame_ms, 99),
        "idle_first_frame_ms_p50": pct(stats.idle_first_frame_ms, 50),
        "idle_first_frame_ms_p99": pct(stats.idle_first_frame_ms, 99),
        "preview_ms_p50": pct(stats.preview_ms, 50),
        "preview_ms_p99": pct(stats.preview_ms, 99),
        "baseline_rss_mb": round(baseline / MIB, 1),
        "peak_rss_mb": round(peak[0] / MIB, 1),
        "rss_bound_mb": round(bound / MIB, 1),
        "server_exit_code": rc,
        "server_traceback": "Traceback" in stderr,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=50, help="concurrent simulated pages (default 50)")
    p.add_argument("--duration", type=float, default=150.0, help="seconds of load (default 150)")
    p.add_argument("--frame-ms", type=float, default=4.0, help="stand-in W+G cost per frame (default 4 ms)")
    p.add_argument("--prepare-ms", type=float, default=50.0, help="stand-in prepare cost per photo (default 50 ms)")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    p.add_argument("--server-log", default=None, help="write the server's stderr to this file")
    p.add_argument("server_args", nargs="*", help="extra `lpstudio serve` options (after --)")
    args = p.parse_args(argv)
    result = asyncio.run(run_load(args))
    ok = (
        result["errors"] == 0
        and result["peak_rss_mb"] <= result["rss_bound_mb"]
        and result["server_exit_code"] == 0
        and not result["server_traceback"]
    )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
        print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
