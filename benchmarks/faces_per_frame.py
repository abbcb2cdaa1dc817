"""Time per frame of N faces against one face, on this machine, in one run (issue 21 §2).

Each frame's N faces go through the renderer as one batch (``lpstudio.group.render.render_group``),
so N faces cost one forward of batch N, not N forwards. The sources are pre-cropped faces (the
bundled astronaut, Grace Hopper and the cameraman from ``tests/data/faces``, and mirrors), so no face
models are needed; paste-back is not included (milliseconds next to a render).

    PYTHONPATH=src python benchmarks/faces_per_frame.py --weights-dir ~/lpstudio-synthetic --faces 1 2 4 --frames 3 --json

Without ``--weights-dir`` it writes synthetic weights (random, same shapes and cost) to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = (
    ROOT / "src" / "lpstudio" / "assets" / "astronaut.png",
    ROOT / "tests" / "data" / "faces" / "grace_hopper.jpg",
    ROOT / "tests" / "data" / "faces" / "cameraman.jpg",
)
WARM_UP_FRAMES = 1


def _sources(engine, n: int) -> list:  # noqa: ANN001
    from lpstudio.face import load_image

    images = [load_image(p).rgb for p in PHOTOS]
    images += [np.ascontiguousarray(im[:, ::-1]) for im in images]
    return [engine.prepare_source(images[i % len(images)], crop=False) for i in range(n)]


def measure(engine, n_faces: int, frames: int) -> dict:  # noqa: ANN001
    """Seconds per frame of ``n_faces`` faces (each frame's faces in one batch)."""
    from lpstudio.group.render import render_group
    from lpstudio.params import EditParams

    states = _sources(engine, n_faces)
    tracks = [[EditParams(smile=0.1 * (k % 5), head_yaw=float(k)) for k in range(frames)] for _ in states]
    warm = [t[:WARM_UP_FRAMES] for t in tracks]
    list(render_group(engine, states, warm, rows_per_batch=n_faces))
    start = time.perf_counter()
    count = sum(1 for _ in render_group(engine, states, tracks, rows_per_batch=n_faces))
    elapsed = time.perf_counter() - start
    return {"faces": n_faces, "frames": count, "s_per_frame": elapsed / count}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", type=Path, default=None)
    parser.add_argument("--faces", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="eager")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from lpstudio.engine import load_model

    weights = args.weights_dir
    if weights is None:
        from lpstudio.synthetic import write_synthetic_weights

        weights = write_synthetic_weights(Path(tempfile.mkdtemp(prefix="lp_faces_bench_")))
    engine = load_model(weights, device=args.device, face=False, backend=args.backend)
    rows = [measure(engine, n, args.frames) for n in args.faces]
    one = next((r["s_per_frame"] for r in rows if r["faces"] == 1), rows[0]["s_per_frame"] / rows[0]["faces"])
    for r in rows:
        r["ratio_to_one_face"] = r["s_per_frame"] / one
    if args.json:
        print(json.dumps({"device": str(engine.device), "backend": engine.backend.name, "rows": rows}, indent=2))
    else:
        for r in rows:
            print(f"{r['faces']} face(s): {r['s_per_frame']:.2f} s/frame ({r['ratio_to_one_face']:.2f}x one face)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
