"""Measure the live mirror end to end: camera frame (JPEG) -> WebSocket -> rendered portrait back.

``python -m lpstudio.server.live_bench [--device cpu|cuda] [--backend eager] [--backend-dtype float32]
[--frames 20] [--warmup 2] [--weights-dir DIR] [--json]``

Starts the real app (``serve --no-crop`` settings, no face models) on a free
127.0.0.1 port in this process, on synthetic weights made in memory unless
``--weights-dir`` is given, and plays a "webcam" made from the bundled photo
(640x480, the head drifting and turning a little) through the ``/live``
socket the way the page does: newest frame wins, so the next frame is sent
when the previous result arrived. Per frame it records the camera-to-screen
latency (capture time -> JPEG encoded, sent, rendered, pasted, encoded,
received and decoded) and the server's own step timings; fps is results per
second over the timed frames. The first ``--warmup`` frames (compilation,
caches) are not timed.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import sys
import threading
import time
import urllib.request
from importlib import resources
from typing import Any

import cv2
import numpy as np

CAMERA_SIZE = (640, 480)
"""Width, height of the simulated webcam."""

CAMERA_JPEG_QUALITY = 80
"""What the page's canvas.toBlob(..., 0.8) gives, roughly."""

CAMERA_PERIOD_FRAMES = 30
"""The simulated head movement repeats every this many frames."""

START_TIMEOUT_S = 60.0


def camera_frames(n: int) -> list[np.ndarray]:
    """``n`` RGB frames of the bundled portrait, centred, drifting and turning a little (640x480)."""
    bgr = cv2.imread(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))
    photo = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    w, h = CAMERA_SIZE
    cx, cy = photo.shape[1] / 2, photo.shape[0] / 2
    frames = []
    for i in range(n):
        phase = 2 * np.pi * (i % CAMERA_PERIOD_FRAMES) / CAMERA_PERIOD_FRAMES
        m = cv2.getRotationMatrix2D((cx, cy), 6.0 * np.sin(phase), h / photo.shape[0])
        m[0, 2] += w / 2 - cx + 8 * np.cos(phase)
        m[1, 2] += h / 2 - cy
        frames.append(cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT))
    return frames


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "mean": round(statistics.fmean(ordered), 1),
        "p50": round(ordered[len(ordered) // 2], 1),
        "p90": round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def measure(engine: Any, frames: int = 20, warmup: int = 2) -> dict[str, Any]:
    """Run the camera loop against a fresh app around ``engine``; returns the figures (see module doc)."""
    import uvicorn
    from websockets.sync.client import connect

    from . import ServerSettings, create_app
    from .live_messages import WS_MAX_SIZE, pack_frame, unpack_frame
    from .sessions import encode_jpeg

    app = create_app(engine, ServerSettings(crop=False, idle_default=False))
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_max_size=WS_MAX_SIZE)
    )
    thread = threading.Thread(target=server.run, name="live-bench-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the measuring server did not start")
        time.sleep(0.02)
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/session", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=600) as res:
            session = json.loads(res.read())["session"]
        camera = camera_frames(warmup + frames)
        latencies: list[float] = []
        server_ms: list[float] = []
        steps: dict[str, list[float]] = {}
        with connect(f"ws://127.0.0.1:{port}/live?session={session}", max_size=WS_MAX_SIZE,
                     open_timeout=60) as ws:  # fmt: skip
            ready = json.loads(ws.recv(timeout=60))
            if ready.get("type") != "ready":
                raise RuntimeError(f"the live socket refused: {ready}")
            started = None
            for i, rgb in enumerate(camera):
                if i == warmup:
                    started = time.perf_counter()
                t0 = time.perf_counter()
                ws.send(pack_frame({"id": i, "t": t0 * 1000}, encode_jpeg(rgb, CAMERA_JPEG_QUALITY)))
                while True:
                    message = ws.recv(timeout=600)
                    if isinstance(message, bytes):
                        break
                    info = json.loads(message)
                    if info.get("type") == "error":
                        raise RuntimeError(f"frame {i}: {info['error']}")
                header, jpeg = unpack_frame(message)
                if jpeg:
                    cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)  # the page decodes to show it
                if i >= warmup:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    server_ms.append(header["server_ms"])
                    for key, value in header["timings_ms"].items():
                        steps.setdefault(key, []).append(value)
            elapsed = time.perf_counter() - (started or time.perf_counter())
    finally:
        server.should_exit = True
        thread.join(10)
    return {
        "device": str(engine.device),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "backend": engine.backend.name,
        "backend_dtype": str(engine.backend.dtype).replace("torch.", ""),
        "camera": f"{CAMERA_SIZE[0]}x{CAMERA_SIZE[1]} JPEG q{CAMERA_JPEG_QUALITY}",
        "frames": frames,
        "warmup": warmup,
        "fps": round(frames / elapsed, 3) if elapsed > 0 else None,
        "latency_ms": _summary(latencies),
        "server_ms": _summary(server_ms),
        "steps_ms": {k: round(statistics.fmean(v), 1) for k, v in steps.items()},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpstudio.server.live_bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto (default cpu)")
    p.add_argument("--dtype", default="float32", help="engine dtype (default float32)")
    p.add_argument("--backend", default="eager", help="render backend (default eager)")
    p.add_argument("--backend-dtype", default=None, help="backend compute dtype (default: --dtype)")
    p.add_argument("--frames", type=int, default=20, help="timed frames (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed frames first (default 2)")
    p.add_argument("--weights-dir", default=None, help="official weights (default: synthetic weights in memory)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.frames < 1 or args.warmup < 0:
        p.error("--frames must be at least 1 and --warmup at least 0")

    from ..engine import LivePortrait, load_model

    print("building the engine...", file=sys.stderr)
    if args.weights_dir:
        engine = load_model(args.weights_dir, args.device, args.dtype, backend=args.backend,
                            backend_dtype=args.backend_dtype)  # fmt: skip
    else:
        from ..synthetic import synthetic_checkpoints

        engine = LivePortrait.from_checkpoints(synthetic_checkpoints(), args.device, args.dtype,
                                               backend=args.backend, backend_dtype=args.backend_dtype)  # fmt: skip
    report = measure(engine, args.frames, args.warmup)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        lat = report["latency_ms"]
        print(
            f"live on {report['device']} {report['backend']}/{report['backend_dtype']}: {report['fps']} fps, "
            f"camera-to-screen latency p50 {lat['p50']} ms (p90 {lat['p90']}, mean {lat['mean']}) over "
            f"{report['frames']} frames; server steps (ms): {report['steps_ms']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
