"""JSON payloads that carry a speaking clip's audio to a page, on the clock of its frames.

A front end (the web app's ``/generate`` stream) sends :func:`audio_payload` in its ``start`` line
(or, streaming sentence by sentence, one per sentence in an ``audio`` line before that sentence's
frames). The page decodes the WAV with Web Audio and starts it at the same moment as frame 0
(``start_ms`` later for a later sentence): frame ``k`` is shown at ``k * 1000 / fps`` ms after that
moment, and the audio is padded to exactly ``n_frames / fps`` s, so both end together.
"""

from __future__ import annotations

import base64
from typing import Any

from .audio import wav_bytes
from .clip import SpeechClip

MAX_INLINE_WAV_BYTES: int = 8 * 1024 * 1024
"""Largest WAV sent inline as base64 (about 3 minutes of 22 kHz mono); longer clips should be streamed
sentence by sentence or served by URL."""


def audio_payload(clip: SpeechClip, fps: float, *, start_ms: float = 0.0, url: str | None = None) -> dict[str, Any]:
    """``{"format": "wav", "sample_rate", "channels", "start_ms", "duration_ms", "fps", "n_frames",
    "frame_ms", "language", "text", "phonemes", "wav_base64" | "url"}``.

    ``duration_ms`` equals ``n_frames * frame_ms`` (the audio is padded to the video's length).
    With ``url`` the WAV is not inlined (the caller serves :func:`~.audio.wav_bytes` there).
    """
    audio = clip.padded_audio(fps)
    n = clip.frame_count(fps)
    out: dict[str, Any] = {
        "format": "wav",
        "sample_rate": audio.sample_rate,
        "channels": audio.channels,
        "start_ms": round(start_ms, 3),
        "duration_ms": round(audio.duration_ms, 3),
        "speech_ms": round(clip.audio_ms, 3),
        "fps": fps,
        "n_frames": n,
        "frame_ms": 1000.0 / fps,
        "language": clip.language,
        "text": clip.text,
        "phonemes": [p.to_json() for p in clip.phonemes],
    }
    if url is not None:
        out["url"] = url
        return out
    data = wav_bytes(audio)
    if len(data) > MAX_INLINE_WAV_BYTES:
        raise ValueError(f"{len(data)} bytes of WAV is too much to inline; serve it by URL or stream by sentence")
    out["wav_base64"] = base64.b64encode(data).decode("ascii")
    return out
