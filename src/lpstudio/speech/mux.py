"""Checking a speaking clip's streams; the clip itself is written by :class:`lpstudio.video_writer.VideoWriter`.

Speaking clips are written by the one video writer (``audio_channels`` and
:meth:`~lpstudio.video_writer.VideoWriter.add_audio`), so they follow its policy: audio and video
interleaved on one clock, the audio cut or padded to exactly ``frames / fps`` seconds, and the
output written to a partial beside the target that replaces it only when complete.
:func:`stream_durations` reads back what a player sees, for the tests and benchmarks.
"""

from __future__ import annotations

import os
from fractions import Fraction

from ..video import H264_CRF

DEFAULT_CRF: int = H264_CRF
"""x264 quality of a speaking clip: the same as every video lpstudio writes."""


def stream_durations(path: str | os.PathLike[str]) -> dict[str, float]:
    """Durations of a written file's streams, in seconds.

    ``video_s``/``audio_s``: from the container (what players use; the AAC encoder's priming is
    removed by the edit list). ``video_decoded_s``: decoded frames / fps. ``audio_decoded_s``:
    decoded samples / rate, which still include part of the encoder's priming (under one AAC frame).
    """
    import av

    out: dict[str, float] = {}
    with av.open(str(path)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        whole = float(c.duration / 1_000_000) if c.duration else 0.0  # some containers keep no stream durations
        out["video_s"] = float(v.duration * v.time_base) if v.duration else whole
        out["audio_s"] = float(a.duration * a.time_base) if a.duration else whole
        fps = Fraction(v.average_rate)
        n = sum(1 for _ in c.decode(v))
        out["video_frames"] = float(n)
        out["video_decoded_s"] = float(n / fps)
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        out["audio_decoded_s"] = sum(f.samples for f in c.decode(a)) / a.codec_context.sample_rate
    return out
