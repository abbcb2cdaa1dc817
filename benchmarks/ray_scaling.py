"""Frames/s of the Ray Serve deployment with 1 and 2 render replicas (stand-in renderer of fixed cost).

The app is the real one (:func:`lpstudio.server.ray_app.build_app`: ingress with the FastAPI
routes, admission, compositing and JPEG encoding; render replicas with their worker and
photo cache; Ray's object store for photos and frames); only the model's W+G is replaced
by the stand-in of ``benchmarks/standin_server.py``, which sleeps ``--frame-ms`` per frame
(a GPU's time, not this machine's CPU). ``--users`` concurrent clients ask for distinct
clips (no sharing, no cache) for ``--duration`` seconds and count the frames they receive.

    python benchmarks/ray_scaling.py                        # 1 and 2 replicas, worker batching
    python benchmarks/ray_scaling.py --batching both        # also @serve.batch with 2 replicas
    python benchmarks/ray_scaling.py --json

Projection to real GPUs: frames/s of the deployment ~ min(replicas x per-replica frames/s,
the ingress's ceiling). The per-replica figure on a GPU comes from
``lpstudio bench --device cuda --json`` (frames/s of the chosen backend and batch size).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
OBJECT_STORE_BYTES = 300 * 1024**2
CLIP_MS = 800
"""Each request: a smile of CLIP_MS (distinct per request, so nothing is shared or cached)."""
START_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _user(base: str, session: str, stop_at: float, user: int, fps: float, out: dict) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        k = 0
        while time.monotonic() < stop_at:
            k += 1
            body = {"session": session, "command": f"smile={CLIP_MS + user * 1000 + k}:0", "fps": fps}
            sent = time.perf_counter()
            first = None
            async with client.stream("POST", "/generate", json=body) as response:
                if response.status_code != 200:
                    out["refused"] += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                async for line in response.aiter_lines():
                    if line.startswith('{"type":"frame"'):
                        if first is None:
                            first = (time.perf_counter() - sent) * 1000
                        if time.monotonic() < stop_at:
                            out["frames"] += 1
                    elif '"type": "error"' in line:
                        out["errors"] += 1
            if first is not None:
                out["first_ms"].append(first)


async def _load(base: str, users: int, duration: float, fps: float) -> dict:
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S) as client:
        session = (await client.post("/session", json={})).json()["session"]
        await client.post("/render", json={"session": session, "params": {}})  # every replica warm
    out: dict = {"frames": 0, "refused": 0, "errors": 0, "first_ms": []}
    started = time.monotonic()
    await asyncio.gather(*(_user(base, session, started + duration, u, fps, out) for u in range(users)))
    out["elapsed_s"] = duration
    return out


def run_one(replicas: int, batching: str, args: argparse.Namespace) -> dict:
    from ray import serve

    from lpstudio.server.ray_app import build_app

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    app = build_app(
        {
            "replicas": str(replicas),
            "cpus_per_replica": "0.5",
            "engine_factory": "standin_server:make_engine",
            "no_crop": "true",
            "no_idle": "true",
            "batch_size": str(args.batch_size),
            "batching": batching,
            "max_ongoing_requests": "4",
        }
    )
    serve.run(app, name="lpstudio", route_prefix="/")
    try:
        result = asyncio.run(_load(f"http://127.0.0.1:{port}", args.users, args.duration, args.fps))
    finally:
        serve.shutdown()
    fps = result["frames"] / result["elapsed_s"]
    first = sorted(result["first_ms"])
    ceiling = replicas * 1000.0 / args.frame_ms
    return {
        "replicas": replicas,
        "batching": batching,
        "frames_per_s": round(fps, 1),
        "ceiling_frames_per_s": round(ceiling, 1),
        "efficiency": round(fps / ceiling, 3),
        "first_frame_ms_p50": round(statistics.median(first), 1) if first else None,
        "refused": result["refused"],
        "errors": result["errors"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frame-ms", type=float, default=40.0, help="stand-in W+G cost per frame (default 40)")
    parser.add_argument("--users", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per configuration")
    parser.add_argument("--fps", type=float, default=25.0, help="fps of the requested clips")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--batching", choices=["worker", "serve-batch", "both"], default="worker")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    import ray

    sys.path.insert(0, str(ROOT / "src"))  # this checkout's lpstudio, as the replicas get it
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")])
    env = {"PYTHONPATH": path, "LPSTUDIO_STANDIN_FRAME_MS": str(args.frame_ms), "LPSTUDIO_STANDIN_PREPARE_MS": "50"}
    ray.init(
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        log_to_driver=False,
    )
    runs = [(1, "worker"), (2, "worker")]
    if args.batching in ("serve-batch", "both"):
        runs += [(1, "serve-batch"), (2, "serve-batch")]
        if args.batching == "serve-batch":
            runs = runs[2:]
    results = []
    try:
        for replicas, batching in runs:
            results.append(run_one(replicas, batching, args))
            if not args.json:
                print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        ray.shutdown()
    by = {(r["replicas"], r["batching"]): r["frames_per_s"] for r in results}
    summary = {
        "frame_ms": args.frame_ms,
        "users": args.users,
        "duration_s": args.duration,
        "runs": results,
        "speedup_2_over_1": {
            b: round(by[(2, b)] / by[(1, b)], 2) for b in {r["batching"] for r in results} if by.get((1, b))
        },
    }
    print(json.dumps(summary, indent=None if args.json else 2))
    return 0 if all(r["errors"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
