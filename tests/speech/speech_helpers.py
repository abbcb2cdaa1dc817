"""Helpers of the speech tests: sentences, a skip mark, audio files written with PyAV, a stand-in engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lpstudio.speech.espeak import speech_available

KO_SENTENCE = "안녕하세요, 반갑습니다. 밥 먹었어요?"
EN_SENTENCE = "Hello, nice to meet you. My bumpy map is on the moon."

requires_speech = pytest.mark.skipif(
    not speech_available(), reason='eSpeak NG is not installed: pip install "liveportrait-studio[speech]"'
)


AUDIO_CODECS: dict[str, str] = {".wav": "pcm_s16le", ".mp3": "libmp3lame", ".m4a": "aac", ".mp4": "aac", ".mkv": "flac"}
AUDIO_CHUNK = 1024


def encode_audio(path: Path, samples: np.ndarray, rate: int, *, video: bool = False) -> Path:
    """Write ``samples`` (``(channels, n)`` float in [-1, 1]) with PyAV; with ``video`` add a black video track."""
    import av

    codec = AUDIO_CODECS[path.suffix]
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    with av.open(str(path), "w") as out:
        v = None
        if video:
            v = out.add_stream("libx264", rate=10)
            v.width = v.height = 32
            v.pix_fmt = "yuv420p"
        a = out.add_stream(codec, rate=rate)
        a.layout = layout
        for i in range(0, samples.shape[1], AUDIO_CHUNK):
            part = np.clip(samples[:, i : i + AUDIO_CHUNK], -1, 1).astype(np.float32)
            if codec == "pcm_s16le":  # packed 16-bit: (1, n * channels), channels interleaved
                arr = np.ascontiguousarray((part * 32767).astype(np.int16).T.reshape(1, -1))
                frame = av.AudioFrame.from_ndarray(arr, format="s16", layout=layout)
            else:
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(part), format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = i
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
        if v is not None:
            for k in range(max(1, int(10 * samples.shape[1] / rate))):
                vf = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
                vf.pts = k
                out.mux(v.encode(vf))
            out.mux(v.encode(None))
    return path


class StandInState:
    """The duck-typed source state: a base pose with the source's own ratios."""

    def neutral_params(self):
        from lpstudio.params import EditParams

        return EditParams(eye_ratio=0.3, lip_ratio=0.0)


class StandInEngine:
    """Renders each parameter set to a small frame whose brightness is the mouth opening (tests only).

    Pixel value = 128 + lip_variation_three, so a test can read the mouth back from the video.
    """

    def __init__(self, size: int = 32) -> None:
        self.size = size
        self.rendered: list = []

    def prepare_source(self, image, crop: bool = True, face_index=None) -> StandInState:
        return StandInState()

    def render(self, state, params, batch_size: int = 4) -> list[np.ndarray]:
        self.rendered.extend(params)
        out = []
        for p in params:
            v = int(np.clip(128 + p.lip_variation_three, 0, 255))
            out.append(np.full((self.size, self.size, 3), v, np.uint8))
        return out

    def paste_back(self, state, frame: np.ndarray) -> np.ndarray:
        return frame
