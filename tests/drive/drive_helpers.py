"""Helpers of the driving tests: write a driving video with PyAV, read an output back."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np

AUDIO_RATE = 16_000


def write_video(
    path: Path,
    frames: Sequence[np.ndarray],
    fps: Fraction | int = 24,
    *,
    audio: bool = True,
    codec: str = "libx264",
    pix_fmt: str = "yuv444p",
) -> Path:
    """Encode RGB frames (and a sine audio track of the same length) with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=Fraction(fps))
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = pix_fmt
        if codec == "libx264":
            video.options = {"qp": "0"}  # lossless: decoded frames equal each other when the inputs do
        sound = out.add_stream("aac", rate=AUDIO_RATE) if audio else None
        if sound is not None:
            sound.layout = "mono"
        for i, rgb in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = i
            out.mux(video.encode(vf))
        out.mux(video.encode(None))
        if sound is not None:
            n = int(AUDIO_RATE * len(frames) / Fraction(fps))
            wave = (0.3 * np.sin(np.arange(n) * 2 * np.pi * 440 / AUDIO_RATE)).astype(np.float32)[None]
            af = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            af.sample_rate, af.pts = AUDIO_RATE, 0
            out.mux(sound.encode(af))
            out.mux(sound.encode(None))
    return path


def read_back(path: Path) -> tuple[int, Fraction, bool, tuple[int, int]]:
    """(decoded frame count, fps, has audio, (width, height)) of a written video."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        n = sum(1 for _ in c.decode(stream))
        return n, Fraction(stream.average_rate), bool(c.streams.audio), (stream.width, stream.height)


def empty_video(path: Path) -> Path:
    """An .mp4 written with a video stream and no frame at all (the muxer then keeps no track)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        out.start_encoding()
    return path
