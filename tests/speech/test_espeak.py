"""eSpeak NG through ctypes: audio and one timed event per phoneme, Korean and English; missing library."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lpstudio.errors import CommandError, SpeechUnavailableError
from lpstudio.speech import espeak
from lpstudio.speech.text import detect_language, resolve_voice, split_sentences
from lpstudio.speech.visemes import is_bilabial, is_vowel

SRC = Path(__file__).resolve().parents[2] / "src"
END_TOLERANCE_MS = 50.0


@pytest.mark.parametrize("which", ["ko_utterance", "en_utterance"])
def test_phoneme_events_are_timed_and_cover_the_audio(which: str, request: pytest.FixtureRequest) -> None:
    utt = request.getfixturevalue(which)
    assert utt.sample_rate > 8000 and utt.audio.dtype == np.float32 and utt.audio.ndim == 1
    assert np.abs(utt.audio).max() > 0.05  # it speaks
    ph = utt.phonemes
    assert len(ph) > 15
    starts = [p.start_ms for p in ph]
    assert all(b > a for a, b in zip(starts, starts[1:])), "phoneme times must increase"
    assert all(p.end_ms > p.start_ms for p in ph)
    assert all(abs(a.end_ms - b.start_ms) < 1e-6 for a, b in zip(ph, ph[1:])), "each phoneme ends where the next starts"
    assert abs(utt.duration_ms - ph[-1].end_ms) <= END_TOLERANCE_MS
    names = [p.ipa for p in ph]
    assert any(is_bilabial(n) for n in names) and sum(is_vowel(n) for n in names) >= 8
    assert any(p.is_pause for p in ph)  # the comma and the full stop
    assert any(p.stress == 2 for p in ph)
    assert not any(("ˈ" in n or "ˌ" in n) for n in names)  # stress marks moved to .stress


def test_korean_sentence_has_its_syllables(ko_utterance) -> None:
    """안녕하세요, 반갑습니다: the vowels ㅏ ㅕ ㅏ ㅔ ㅛ ... and the ㅂ of 반/갑/습 as bilabials."""
    names = [p.ipa for p in ko_utterance.phonemes]
    assert sum(is_bilabial(n) for n in names) >= 4  # 반 갑 습 밥(x2)
    assert "ɐ" in names or "a" in names


def test_rate_changes_the_length(en_utterance) -> None:
    fast = espeak.synthesize("Hello, nice to meet you. My bumpy map is on the moon.", "en-us", rate=300)
    assert fast.duration_ms < 0.75 * en_utterance.duration_ms


def test_bad_settings_are_refused() -> None:
    with pytest.raises(CommandError, match="rate"):
        espeak.synthesize("hi", "en-us", rate=5000)
    with pytest.raises(CommandError, match="pitch"):
        espeak.synthesize("hi", "en-us", pitch=-1)
    with pytest.raises(CommandError, match="empty"):
        espeak.synthesize("   ", "en-us")


def test_language_detection_and_voices() -> None:
    assert detect_language("안녕하세요") == "ko"
    assert detect_language("hello 안녕") == "ko"
    assert detect_language("Nice to meet you!") == "en-us"
    assert resolve_voice("auto", "안녕") == "ko" and resolve_voice("EN", "안녕") == "en-us"
    with pytest.raises(CommandError, match="unknown voice"):
        resolve_voice("klingon", "qapla")
    assert split_sentences("Hi there. How are you?\n안녕!") == ["Hi there.", "How are you?", "안녕!"]
    long = "word, " * 100
    assert all(len(s) <= 240 for s in split_sentences(long)) and len(split_sentences(long)) > 1


def test_missing_library_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(espeak.ENV_LIBRARY, "/no/such/libespeak-ng.so")
    monkeypatch.setattr(espeak, "_ENGINE", [])
    with pytest.raises(SpeechUnavailableError) as info:
        espeak.synthesize("hello", "en-us")
    message = str(info.value)
    assert "\n" not in message and "pip install" in message and "liveportrait-studio[speech]" in message
    assert info.value.exit_code == 4
    assert espeak.speech_available() is False


def _cli(args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(SRC), **env_extra)
    return subprocess.run(
        [sys.executable, "-m", "lpstudio", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_speak_without_the_library_fails_in_one_line_and_the_rest_works() -> None:
    env = {espeak.ENV_LIBRARY: "/no/such/libespeak-ng.so"}
    res = _cli(["speak", "안녕하세요", "--dry-run", "--json"], env)
    assert res.returncode == 4
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "Traceback" not in res.stderr
    ok = _cli(["say", "웃어줘", "--dry-run", "--json"], env)
    assert ok.returncode == 0 and '"frames"' in ok.stdout
