"""Fixtures of the speech tests: eSpeak utterances (skipped without the library), audio files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from speech_helpers import EN_SENTENCE, KO_SENTENCE, encode_audio

from lpstudio.speech.espeak import speech_available


@pytest.fixture(scope="session")
def ko_utterance():
    from lpstudio.speech.espeak import synthesize

    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    return synthesize(KO_SENTENCE, "ko")


@pytest.fixture(scope="session")
def en_utterance():
    from lpstudio.speech.espeak import synthesize

    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    return synthesize(EN_SENTENCE, "en-us")


@pytest.fixture()
def audio_file(tmp_path: Path) -> Callable[..., Path]:
    def make(name: str, samples: np.ndarray, rate: int, **kwargs) -> Path:
        return encode_audio(tmp_path / name, np.atleast_2d(samples), rate, **kwargs)

    return make
