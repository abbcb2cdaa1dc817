"""End to end with the real renderer (synthetic weights, CPU): few frames, batch 1."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from drive_helpers import read_back

from lpstudio.drive.driving_motion import DriveSettings
from lpstudio.drive.pipeline import drive

NTSC = Fraction(30000, 1001)


def test_still_driving_video_renders_exactly_the_neutral_source(engine, make_video, tmp_path: Path) -> None:
    """Every frame identical to the first: zero relative motion, so every output frame is the neutral render.

    The official video path's neutral is the source keypoints x_s (t_z zeroed) stitched onto themselves.
    """
    rng = np.random.default_rng(5)
    source = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    still = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    video = make_video([still, still], fps=NTSC)
    state = engine.prepare_source(source, crop=False)
    frames: list[np.ndarray] = []
    out = tmp_path / "out.mp4"
    summary = drive(
        engine,
        state,
        video,
        out,
        DriveSettings(),
        batch_size=1,
        precropped=True,
        progress=False,
        frame_hook=frames.append,
    )
    neutral = next(engine.render_keypoints(state, engine.stitch(state.x_s, state.x_s), batch_size=1))
    assert len(frames) == 2
    for frame in frames:
        assert frame.shape == (512, 512, 3)
        np.testing.assert_array_equal(frame, neutral)
    # the file: one frame per driving frame, the driving fps, the driving audio
    n, fps, audio, size = read_back(out)
    assert (n, fps, audio, size) == (2, NTSC, True, (512, 512))
    assert summary.frames == 2 and summary.faceless_frames == 0 and summary.fps == NTSC and summary.audio
