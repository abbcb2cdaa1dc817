"""Time per output frame of edits over a source video against the same edit on a photo.

    PYTHONPATH=src python benchmarks/source_edits_cost.py WEIGHTS_DIR [--frames 3] [--backend eager]

Synthetic weights are fine (``lpstudio weights synthetic ~/lpstudio-synthetic``). Three runs of ``--frames`` frames on the same 256 px face (``--no-crop``), all
through the engine's public paths, one after the other in one process:

* ``photo``: ``animate PHOTO "윙크해줘"`` — one prepared source, W+G per frame;
* ``video``: the same command over a video of those frames — F and M per frame, then W+G;
* ``dub``: dubbing the video — F and M per frame, then two W+G rows per frame (unchanged + dubbed).

Prints one JSON object: seconds per frame of each, and the ratios to ``photo``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

WINK_MS_PER_FRAME = 100.0  # frames 100 ms apart: all inside the 1.05 s wink


def main() -> None:
    from lpstudio.drive.source_edits import command_items, dub_items, render_source_edits
    from lpstudio.drive.source_video import iter_source_frames
    from lpstudio.engine import load_model
    from lpstudio.expressions.compose import build_timeline
    from lpstudio.speech.audio import AudioClip
    from lpstudio.speech.clip import speak_audio
    from lpstudio.video_writer import write_video

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--backend", default="eager")
    ap.add_argument("--batch-size", type=int, default=2)
    args = ap.parse_args()

    engine = load_model(args.weights, device="cpu", backend=args.backend)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 256, (256, 256, 3), dtype=np.uint8) for _ in range(args.frames)]
    fps = 1000.0 / WINK_MS_PER_FRAME
    _, timeline = build_timeline("윙크해줘", idle=False)
    sr = 16_000
    t = np.arange(int(sr * args.frames / fps)) / sr
    clip = speak_audio(AudioClip.from_mono((0.3 * np.sin(2 * np.pi * 180 * t)).astype(np.float32), sr), idle=False)
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "v.mp4"
        write_video(video, faces, fps)

        start = time.perf_counter()
        state = engine.prepare_source(faces[0], crop=False)
        params = timeline.sample_at(np.arange(args.frames) * WINK_MS_PER_FRAME, state.neutral_params())
        from lpstudio.params import PARAM_NAMES, EditParams

        rows = [EditParams(**dict(zip(PARAM_NAMES, map(float, r), strict=True))) for r in params]
        list(engine.render_iter(state, rows, batch_size=args.batch_size))
        out["photo_s_per_frame"] = (time.perf_counter() - start) / args.frames

        for name, mouth_only in (("video", False), ("dub", True)):
            start = time.perf_counter()
            frames = iter_source_frames(engine, video, no_crop=True)
            items = dub_items(frames, clip.timeline, fps) if mouth_only else command_items(frames, timeline, fps)
            n = sum(1 for _ in render_source_edits(engine, items, batch_size=args.batch_size, mouth_only=mouth_only))
            out[f"{name}_s_per_frame"] = (time.perf_counter() - start) / n
    out["video_over_photo"] = out["video_s_per_frame"] / out["photo_s_per_frame"]
    out["dub_over_photo"] = out["dub_s_per_frame"] / out["photo_s_per_frame"]
    print(json.dumps({k: round(v, 3) for k, v in out.items()} | {"frames": args.frames, "backend": args.backend}))


if __name__ == "__main__":
    main()
