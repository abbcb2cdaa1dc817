"""Seconds per step of a video-source job (what a clip arriving during it may wait for) against one clip frame.

    PYTHONPATH=src python benchmarks/video_source_steps.py WEIGHTS_DIR [--frames 4] [--batch-size 1]

Synthetic weights are fine (``lpstudio weights synthetic ~/lpstudio-synthetic``). A ``--frames`` long
source of 64 px face crops (``--no-crop``) is driven by a video of as many frames through a
:class:`~lpstudio.drive.v2v.V2VJob`, one step at a time, as ``lpstudio serve`` runs it on its model
thread (``--batch-size``: the server's background batch, 1 on a CPU). Then one clip frame (W+G of one
row, what a viewer's frame costs) is timed on the same engine.

Prints one JSON object: per phase the number of steps and their mean and longest seconds, and the clip frame's.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

SIDE = 64
SOURCE_FPS = 5


def _video(path: Path, n: int, seed: int) -> Path:
    import av

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=Fraction(SOURCE_FPS))
        stream.width = stream.height = SIDE
        stream.pix_fmt = "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    path.write_bytes(buf.getvalue())
    return path


def parse_args(description: str) -> argparse.Namespace:
    """The options both step benchmarks take."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("weights", type=Path)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    return ap.parse_args()


def step_report(engine: object, job: object, source: Path) -> dict[str, object]:
    """Run ``job`` one step at a time, then time one clip frame (W+G of one row) of ``source``'s first crop:
    per phase the steps' count, mean and longest seconds, the clip frame's seconds and the frames written."""
    from lpstudio.drive.source_video import iter_source_crops, prepare_crop

    steps: dict[str, list[float]] = {}
    while True:
        start = time.perf_counter()
        step = job.step()  # type: ignore[attr-defined]
        seconds = time.perf_counter() - start
        if step is None:
            break
        steps.setdefault(step.phase, []).append(seconds)
    state = prepare_crop(engine, next(iter_source_crops(source, None, no_crop=True)), paste_back=False)
    start = time.perf_counter()
    engine.render_mixed([(state, state.x_s[0])])  # type: ignore[attr-defined]
    clip_frame = time.perf_counter() - start
    report: dict[str, object] = {
        phase: {"steps": len(t), "mean_s": round(sum(t) / len(t), 3), "max_s": round(max(t), 3)}
        for phase, t in steps.items()
    }
    report["clip_frame_s"] = round(clip_frame, 3)
    report["frames"] = job.summary.frames  # type: ignore[attr-defined]
    return report


def main() -> None:
    from lpstudio.drive.v2v import V2VJob, V2VOptions
    from lpstudio.engine import load_model

    args = parse_args(__doc__.splitlines()[0])
    engine = load_model(args.weights, device=args.device, dtype="float32")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source, driving = _video(root / "src.mp4", args.frames, 1), _video(root / "drv.mp4", args.frames, 2)
        options = V2VOptions(
            no_crop=True, driving_precropped=True, batch_size=args.batch_size, progress=False, audio="none"
        )
        job = V2VJob(engine, source, driving, root / "out.mp4", options)
        print(json.dumps(step_report(engine, job, source)))


if __name__ == "__main__":
    main()
