"""What a video as the source costs: time per frame against a photo source, and memory over a long clip.

1. **time**: the same driving clip (N frames, ``--no-crop`` style: pre-cropped,
   so no face models are needed) drives a photo (F and M once) and a source
   video of N frames (F and M on every frame, plus the motion pass); both
   through the real engine on synthetic weights, interleaved over ``--rounds``
   (the minimum of each is kept, so background load hits both alike). Prints
   seconds per frame and the ratio v2v / photo.
2. **memory** (``--rss-frames``): a long synthetic source video through the
   whole v2v job with F, W and G replaced by stand-ins of the real output
   shapes (a (1,32,16,64,64) volume per frame, a 512x512 frame out), the
   smoother, decoding, re-cropping and encoding real (M too, unless
   ``--standin-motion``); the process RSS is read at checkpoints. Flat RSS means
   nothing grows with the clip.

    python benchmarks/v2v_cost.py --weights ~/lpstudio-synthetic --frames 4 --rss-frames 300 --rss-at 50,300

Writes nothing but temporary files; numbers go to stdout (``--json`` for JSON).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from lpstudio.drive.driving_motion import DriveSettings  # noqa: E402
from lpstudio.drive.pipeline import drive  # noqa: E402
from lpstudio.drive.v2v import V2VOptions, drive_video_source  # noqa: E402
from lpstudio.drive.v2v_motion import V2VMotion  # noqa: E402
from lpstudio.engine import load_model  # noqa: E402
from lpstudio.video_writer import write_video  # noqa: E402

FRAME_SIDE = 64
"""Side of the synthetic frames (pre-cropped faces, resized to 256 by the pipeline)."""

STANDIN_VOLUME = (1, 32, 16, 64, 64)
"""Shape of the appearance volume f_s the stand-in F returns (the real one's)."""


def rss_mib() -> float:
    """Resident set size of this process now, MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _clip(path: Path, n: int, seed: int, fps: int = 25) -> Path:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
    frames = [np.clip(base.astype(int) + rng.integers(-8, 9, base.shape), 0, 255).astype(np.uint8) for _ in range(n)]
    write_video(path, frames, Fraction(fps))
    return path


def time_per_frame(engine, tmp: Path, frames: int, rounds: int, batch: int) -> dict[str, float]:
    """Seconds per output frame, photo source vs video source, same driving clip (min over rounds)."""
    source = _clip(tmp / "source.mp4", frames, seed=1)
    driving = _clip(tmp / "driving.mp4", frames, seed=2)
    photo = np.random.default_rng(3).integers(0, 256, (FRAME_SIDE, FRAME_SIDE, 3), dtype=np.uint8)
    best = {"photo": float("inf"), "video": float("inf")}
    for _ in range(rounds):
        t = time.perf_counter()
        state = engine.prepare_source(photo, crop=False)
        drive(engine, state, driving, tmp / "p.mp4", DriveSettings(), batch_size=batch, precropped=True, progress=False)
        best["photo"] = min(best["photo"], (time.perf_counter() - t) / frames)
        t = time.perf_counter()
        options = V2VOptions(
            motion=V2VMotion(), no_crop=True, driving_precropped=True, batch_size=batch, progress=False
        )
        drive_video_source(engine, source, driving, tmp / "v.mp4", options)
        best["video"] = min(best["video"], (time.perf_counter() - t) / frames)
    return {
        "photo_s_per_frame": best["photo"],
        "video_s_per_frame": best["video"],
        "ratio": best["video"] / best["photo"],
    }


def rss_over_clip(
    engine, tmp: Path, frames: int, checkpoints: list[int], batch: int, standin_motion: bool
) -> dict[str, float]:
    """RSS (MiB) after each checkpoint frame of a long v2v run with stand-in F, W and G (and M if asked)."""
    source = _clip(tmp / "long.mp4", frames, seed=4)
    driving = _clip(tmp / "long_drv.mp4", frames, seed=5)
    engine.appearance = lambda x: torch.zeros(x.shape[0], *STANDIN_VOLUME[1:])  # type: ignore[method-assign]
    if standin_motion:  # M's real output for one input, repeated (the heads' shapes, none of its cost)
        one = engine.motion(torch.zeros(1, 3, 256, 256))

        def motion(x: torch.Tensor) -> object:
            return type(one)(*(v.expand(x.shape[0], *v.shape[1:]).clone() for v in one))

        engine.motion = motion  # type: ignore[method-assign]
    engine.render_mixed = lambda items: [np.zeros((512, 512, 3), np.uint8) for _ in items]  # type: ignore[method-assign]
    seen: dict[str, float] = {"start": rss_mib()}
    count = 0

    def hook(frame: np.ndarray) -> None:
        nonlocal count
        count += 1
        if count in checkpoints:
            seen[f"after_{count}"] = rss_mib()

    options = V2VOptions(no_crop=True, driving_precropped=True, batch_size=batch, progress=False)
    drive_video_source(engine, source, driving, tmp / "long_out.mp4", options, frame_hook=hook)
    return seen


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=Path, required=True, help="weights folder (e.g. synthetic: lpstudio.synthetic)")
    p.add_argument("--frames", type=int, default=4, help="frames of the timed clips")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--backend", default="eager")
    p.add_argument("--rss-frames", type=int, default=0, help="length of the memory run (0: skip it)")
    p.add_argument("--rss-at", default="50,300", help="frames after which RSS is read")
    p.add_argument("--standin-motion", action="store_true", help="memory run: M's output repeated, not computed")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    engine = load_model(args.weights, device="cpu", dtype="float32", backend=args.backend)
    out: dict[str, object] = {"torch_threads": torch.get_num_threads(), "frames": args.frames}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.frames > 0:
            out["time"] = time_per_frame(engine, tmp, args.frames, args.rounds, args.batch)
        if args.rss_frames > 0:
            at = [int(v) for v in args.rss_at.split(",")]
            out["rss_mib"] = rss_over_clip(engine, tmp, args.rss_frames, at, args.batch, args.standin_motion)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
