"""Seconds per step of a dub job (``POST /video-source`` with ``speech``) against one clip frame.

    PYTHONPATH=src python benchmarks/video_dub_steps.py WEIGHTS_DIR [--frames 4] [--batch-size 1]

Synthetic weights are fine (``lpstudio weights synthetic ~/lpstudio-synthetic``). A ``--frames`` long
source of 64 px face crops (``--no-crop``, 5 fps) is dubbed with a tone as long as the video through a
:class:`~lpstudio.drive.dub_job.DubVideoJob`, one step at a time, as ``lpstudio serve`` runs it on its
model thread (``--batch-size``: W+G rows per step, two per dubbed frame; 1 on a CPU). Then one clip frame (W+G of
one row, what a viewer's frame costs) is timed on the same engine.

Prints one JSON object: per phase (``source``: F+M, ``render``: W+G) the steps' count, mean and longest
seconds; the clip frame's; the frames written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from video_source_steps import SOURCE_FPS, _video

TONE_HZ = 150.0
"""Pitch of the stand-in speech (a voiced tone whose loudness rises and falls)."""
SYLLABLE_HZ = 4.0
SPEECH_RATE = 16_000


def main() -> None:
    from lpstudio.drive.dub_job import DubVideoJob
    from lpstudio.drive.source_video import iter_source_crops, prepare_crop
    from lpstudio.engine import load_model
    from lpstudio.speech.audio import AudioClip
    from lpstudio.speech.clip import speak_audio

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    engine = load_model(args.weights, device=args.device, dtype="float32")
    t = np.arange(int(args.frames / SOURCE_FPS * SPEECH_RATE)) / SPEECH_RATE
    tone = np.sin(2 * np.pi * TONE_HZ * t) * (0.5 + 0.5 * np.sin(2 * np.pi * SYLLABLE_HZ * t)) * 0.6
    clip = speak_audio(AudioClip.from_mono(tone.astype(np.float32), SPEECH_RATE), idle=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _video(root / "src.mp4", args.frames, 1)
        job = DubVideoJob(engine, source, clip, root / "out.mp4", no_crop=True, batch_size=args.batch_size)
        steps: dict[str, list[float]] = {}
        while True:
            start = time.perf_counter()
            step = job.step()
            seconds = time.perf_counter() - start
            if step is None:
                break
            steps.setdefault(step.phase, []).append(seconds)
        state = prepare_crop(engine, next(iter_source_crops(source, None, no_crop=True)), paste_back=False)
        start = time.perf_counter()
        engine.render_mixed([(state, state.x_s[0])])
        clip_frame = time.perf_counter() - start
    report: dict[str, object] = {
        phase: {"steps": len(t), "mean_s": round(sum(t) / len(t), 3), "max_s": round(max(t), 3)}
        for phase, t in steps.items()
    }
    report["clip_frame_s"] = round(clip_frame, 3)
    report["frames"] = job.summary.frames
    print(json.dumps(report))


if __name__ == "__main__":
    main()
