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

import json
import tempfile
from pathlib import Path

import numpy as np
from video_source_steps import SOURCE_FPS, _video, parse_args, step_report

TONE_HZ = 150.0
"""Pitch of the stand-in speech (a voiced tone whose loudness rises and falls)."""
SYLLABLE_HZ = 4.0
SPEECH_RATE = 16_000


def main() -> None:
    from lpstudio.drive.dub_job import DubVideoJob
    from lpstudio.engine import load_model
    from lpstudio.speech.audio import AudioClip
    from lpstudio.speech.clip import speak_audio

    args = parse_args(__doc__.splitlines()[0])
    engine = load_model(args.weights, device=args.device, dtype="float32")
    t = np.arange(int(args.frames / SOURCE_FPS * SPEECH_RATE)) / SPEECH_RATE
    tone = np.sin(2 * np.pi * TONE_HZ * t) * (0.5 + 0.5 * np.sin(2 * np.pi * SYLLABLE_HZ * t)) * 0.6
    clip = speak_audio(AudioClip.from_mono(tone.astype(np.float32), SPEECH_RATE), idle=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        source = _video(root / "src.mp4", args.frames, 1)
        job = DubVideoJob(engine, source, clip, root / "out.mp4", no_crop=True, batch_size=args.batch_size)
        print(json.dumps(step_report(engine, job, source)))


if __name__ == "__main__":
    main()
