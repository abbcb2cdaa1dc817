"""Click -> first frame for 웃어봐 (smile) and 깜빡여봐 (blink) on a real ``lpstudio serve`` (docs/ALIVE.md).

The server is the real one with the real engine (``--backend auto`` by default, idle on, idle pieces
rendering in the background); without real weights it runs on the synthetic weights
(``lpstudio.synthetic``: noise, but the same networks and cost). The measuring page opens a
session, polls ``GET /idle`` as the page does (so its photo's idle segments render in the
background), waits ``--settle`` seconds, then clicks: ``POST /generate {"preset": ...}``. Reported
per click: the time to the first ``frame`` line (what the page can show first), the rate the
server chose (``start.fps``, with ``requested_fps``), the frames, when playback could start without a
stall (the page's rule, from the measured arrivals) and the whole stream's time.

"busy" runs the same with ``--others`` (3) other pages open, each polling ``/idle`` and clicking
presets in a loop, with their own photos (so their backgrounds render too).

    python benchmarks/alive.py                         # synthetic weights, quiet and busy
    python benchmarks/alive.py --weights-dir W --json  # real weights, JSON out
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLICKS = {"웃어봐": "smile", "깜빡여봐": "blink"}
POLL_S = 3.0
"""How often a page polls ``/idle`` (the page polls at least every 5 s)."""
START_TIMEOUT_S = 900.0
"""The server's start: loading, and with ``--backend auto`` a first calibration on a CPU, takes minutes."""
STREAM_TIMEOUT_S = 900.0
OTHER_PRESETS = ["surprise", "nod", "sad", "look_left"]
PHOTO_SIDE = 256


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photo(seed: int) -> bytes:
    """A small random photo (the server runs with --no-crop: it is the face crop)."""
    rgb = np.random.default_rng(seed).integers(0, 255, (PHOTO_SIDE, PHOTO_SIDE, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def start_server(port: int, weights: Path | None, backend: str, standin_frame_ms: float | None) -> subprocess.Popen:
    """``lpstudio serve`` on the weights, or (``standin_frame_ms``) on the stand-in renderer of that fixed cost."""
    paths = [str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    if standin_frame_ms is not None:
        env["LPSTUDIO_STANDIN_FRAME_MS"] = str(standin_frame_ms)
        engine = ["--engine-factory", "standin_server:make_engine"]
    else:
        engine = ["--weights-dir", str(weights), "--backend", backend]
    cmd = [sys.executable, "-m", "lpstudio", "serve", *engine,
           "--no-crop", "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/health", timeout=5)).status_code == 200:
                return
        await asyncio.sleep(1.0)
    raise SystemExit("the server did not start in time")


def playable_after_s(arrivals: list[float], fps: float, total: int) -> float:
    """When playback could start (s after the click) so each frame is there when due, from the arrivals."""
    return max(t - i / fps for i, t in enumerate(arrivals[:total])) if arrivals else float("nan")


async def click(client: httpx.AsyncClient, session: str, preset: str, first_only: bool = False) -> dict:
    """One click: POST /generate, the stream read to its end (``first_only``: to its first frame, then closed,
    which stops its render); times in seconds from the click."""
    sent = time.perf_counter()
    start: dict = {}
    arrivals: list[float] = []
    end: dict = {}
    async with client.stream("POST", "/generate", json={"session": session, "preset": preset},
                             timeout=STREAM_TIMEOUT_S) as res:  # fmt: skip
        if res.status_code != 200:
            return {"preset": preset, "status": res.status_code, "error": (await res.aread()).decode()[:200]}
        async for line in res.aiter_lines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if obj["type"] == "start":
                start = obj
            elif obj["type"] == "frame":
                arrivals.append(time.perf_counter() - sent)
                if first_only:
                    break
            else:
                end = obj
    fps = float(start.get("fps") or 0) or 1.0
    return {
        "preset": preset,
        "first_frame_s": round(arrivals[0], 2) if arrivals else None,
        "fps": start.get("fps"),
        "requested_fps": start.get("requested_fps"),
        "frames": start.get("frames"),
        "plays_from_s": round(playable_after_s(arrivals, fps, len(arrivals)), 2),
        "stream_s": round(time.perf_counter() - sent, 2),
        "end": end.get("type"),
    }


async def poll_idle(client: httpx.AsyncClient, session: str, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            await client.get("/idle", params={"session": session}, timeout=30)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_S)


async def other_page(client: httpx.AsyncClient, seed: int, stop: asyncio.Event) -> None:
    """Another page: its own photo, polling /idle, clicking presets one after another."""
    res = await client.post("/source-image", files={"file": (f"o{seed}.png", photo(seed), "image/png")})
    session = res.json()["session"]
    poller = asyncio.create_task(poll_idle(client, session, stop))
    i = seed
    while not stop.is_set():
        with contextlib.suppress(httpx.HTTPError):
            await click(client, session, OTHER_PRESETS[i % len(OTHER_PRESETS)])
        i += 1
    await poller


async def measured_rate(client: httpx.AsyncClient) -> float | None:
    with contextlib.suppress(httpx.HTTPError, ValueError):
        return (await client.get("/health", timeout=30)).json().get("render_fps")
    return None


async def measure(url: str, others: int, settle_s: float, first_only: bool = False) -> dict:
    """One measuring page (its own photo per run, so no click is served from an earlier run's cache)."""
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        stop = asyncio.Event()
        pages = [asyncio.create_task(other_page(client, 100 + k, stop)) for k in range(others)]
        res = await client.post("/source-image", files={"file": ("me.png", photo(1 + others), "image/png")})
        session = res.json()["session"]
        poller = asyncio.create_task(poll_idle(client, session, stop))
        await asyncio.sleep(settle_s)  # the idle pieces render meanwhile: the click arrives while they do
        while await measured_rate(client) is None:  # a page is clicked once it is alive (a frame was rendered)
            await asyncio.sleep(POLL_S)
        results = {}
        for label, preset in CLICKS.items():
            results[label] = await click(client, session, preset, first_only)
            await asyncio.sleep(settle_s)
        health = (await client.get("/health")).json()
        stop.set()
        for task in (poller, *pages):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        return {"clicks": results, "render_fps": health.get("render_fps"), "background": health.get("background")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights-dir", type=Path, default=None, help="real weights (default: synthetic, written once)")
    p.add_argument("--backend", default="auto")
    p.add_argument("--others", type=int, default=3, help="other pages open in the busy run")
    p.add_argument("--settle", type=float, default=10.0, help="seconds between loading and each click")
    p.add_argument("--only", choices=["quiet", "busy"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--url", default=None, help="measure a server already running there (no server is started)")
    p.add_argument("--first-frame-only", action="store_true", help="close each click's stream at its first frame")
    p.add_argument(
        "--standin-frame-ms",
        type=float,
        default=None,
        help="serve the stand-in renderer of this fixed cost a frame (the scheduler alone, whatever the load)",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights_dir
        if weights is None and args.url is None and args.standin_frame_ms is None:
            sys.path.insert(0, str(ROOT / "src"))
            from lpstudio.synthetic import write_synthetic_weights

            weights = write_synthetic_weights(Path(tmp) / "weights")
        port = free_port()
        proc = start_server(port, weights, args.backend, args.standin_frame_ms) if args.url is None else None
        url = args.url or f"http://127.0.0.1:{port}"
        report: dict = {"backend": args.backend, "cpus": os.cpu_count(), "standin_frame_ms": args.standin_frame_ms}
        try:

            async def run() -> None:
                async with httpx.AsyncClient(base_url=url) as c:
                    await wait_ready(c, proc)
                    report["health"] = {k: v for k, v in (await c.get("/health")).json().items()
                                        if k in ("device", "dtype", "backend", "backend_dtype", "fps")}  # fmt: skip
                for name, others in (("quiet", 0), ("busy", args.others)):
                    if args.only in (None, name):
                        report[name] = await measure(url, others, args.settle, args.first_frame_only)

            asyncio.run(run())
        finally:
            if proc is not None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(60)
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        print(f"backend {report.get('health')}")
        for name in ("quiet", "busy"):
            if name in report:
                for label, r in report[name]["clicks"].items():
                    print(f"{name:5s} {label}: first frame {r.get('first_frame_s')} s, {r.get('frames')} frames at "
                          f"{r.get('fps')} fps (asked {r.get('requested_fps')}), plays from {r.get('plays_from_s')} s, "
                          f"stream {r.get('stream_s')} s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
