"""Audio -> mouth, checked against eSpeak's own speech, whose phoneme times are known.

Frame-level agreement: every 10 ms frame inside a vowel (30 ms away from its edges) should have the
mouth open, every frame inside a pause of 60 ms or more (30 ms from its edges) closed. The F1 score
of "open" against that truth is required to be at least MIN_F1 for a Korean and an English text;
measured on this machine: ko 0.98, en 0.996 (see the report / docs).
"""

from __future__ import annotations

import numpy as np
import pytest
from speech_helpers import requires_speech

from lpstudio.speech.analyser import HOP_MS, analyse, formants, lpc
from lpstudio.speech.audio import AudioClip, resample
from lpstudio.speech.espeak import synthesize
from lpstudio.speech.visemes import Role, viseme_of

MIN_F1 = 0.9
OPEN_THRESHOLD = 0.1
"""Mouth counted as open above this (10 % of a wide '아': lip_variation_three > 2.8)."""
EDGE_MS = 30.0
MIN_PAUSE_MS = 60.0
KO_TEXT = "오늘 날씨 좋네요. 우리 같이 밥 먹을까요? 감사합니다!"
EN_TEXT = "The quick brown fox jumps over the lazy dog. She sells sea shells, why would you think so?"


def open_f1(phonemes, open_at) -> tuple[float, int]:
    """F1 of the mouth being open (``open_at(times) > OPEN_THRESHOLD``) against vowel/pause truth; frames used."""
    tp = fp = fn = 0
    for p in phonemes:
        role = viseme_of(p.ipa).role
        if role is Role.VOWEL:
            truth = True
        elif role is Role.PAUSE and p.duration_ms >= MIN_PAUSE_MS:
            truth = False
        else:
            continue
        t = np.arange(p.start_ms + EDGE_MS, p.end_ms - EDGE_MS, HOP_MS)
        if not len(t):
            continue
        pred = open_at(t) > OPEN_THRESHOLD
        if truth:
            tp += int(pred.sum())
            fn += int((~pred).sum())
        else:
            fp += int(pred.sum())
    return 2 * tp / max(1, 2 * tp + fp + fn), tp + fp + fn


@pytest.fixture(scope="module")
def spoken():
    from lpstudio.speech.espeak import speech_available

    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    return {"ko": synthesize(KO_TEXT, "ko"), "en-us": synthesize(EN_TEXT, "en-us")}


@requires_speech
@pytest.mark.parametrize("voice", ["ko", "en-us"])
def test_opens_in_vowels_closes_in_pauses(spoken, voice: str) -> None:
    utt = spoken[voice]
    track = analyse(AudioClip.from_mono(utt.audio, utt.sample_rate)).track()
    f1, n = open_f1(utt.phonemes, lambda t: track.at(t)[0][:, 0])
    assert n > 100
    assert f1 >= MIN_F1, f"frame-level F1 {f1:.3f} < {MIN_F1}"


@requires_speech
def test_formants_give_the_shape(spoken) -> None:
    """High F2 spreads ('이'), low F2 rounds ('우/오'), high F1 opens ('아')."""
    per: dict[str, list[np.ndarray]] = {"i": [], "u": [], "a": []}
    f2: dict[str, list[float]] = {"i": [], "u": [], "a": []}
    for utt in spoken.values():
        an = analyse(AudioClip.from_mono(utt.audio, utt.sample_rate))
        hops = np.arange(len(an.loudness)) * an.hop_ms
        for p in utt.phonemes:
            key = {"i": "i", "iː": "i", "u": "u", "uː": "u", "o": "u", "oʊ": "u", "ɐ": "a", "ɑː": "a"}.get(p.ipa)
            sel = (hops >= p.start_ms + 20) & (hops < p.end_ms - 20) & an.voiced
            if key and sel.any():
                per[key].append(an.targets[sel].mean(axis=0))
                f2[key].append(float(np.nanmedian(an.f2_hz[sel])))
    mean = {k: np.mean(v, axis=0) for k, v in per.items()}
    assert all(len(v) >= 2 for v in per.values())
    assert np.median(f2["i"]) > 1800 > 1200 > np.median(f2["u"])
    assert mean["i"][2] > mean["u"][2] + 0.4 and mean["i"][2] > mean["a"][2]  # spread
    assert mean["u"][1] > mean["i"][1] + 0.4 and mean["u"][1] > mean["a"][1]  # round
    assert mean["a"][0] > mean["i"][0] + 0.2  # open


@requires_speech
def test_any_rate_mono_or_stereo(spoken) -> None:
    utt = spoken["en-us"]
    mono = AudioClip.from_mono(utt.audio, utt.sample_rate)
    hi = resample(utt.audio, utt.sample_rate, 44100)
    stereo = AudioClip(np.stack([hi, 0.8 * hi]), 44100)
    a, b = analyse(mono).track(), analyse(stereo).track()
    t = np.arange(0, utt.duration_ms, 10.0)
    va, vb = a.at(t)[0], b.at(t)[0]
    assert np.mean(np.abs(va - vb)) < 0.05 and np.abs(va[:, 0] - vb[:, 0]).max() < 0.3
    f1, _ = open_f1(utt.phonemes, lambda tt: b.at(tt)[0][:, 0])
    assert f1 >= MIN_F1


def test_silence_keeps_the_mouth_closed() -> None:
    track = analyse(AudioClip.from_mono(np.zeros(16000, np.float32), 16000)).track()
    assert np.all(track.values == 0.0)
    quiet_hiss = np.random.default_rng(0).normal(0, 1e-4, 16000).astype(np.float32)
    track = analyse(AudioClip.from_mono(quiet_hiss, 16000)).track()
    assert track.values[:, 0].max() < 0.05


def test_lpc_finds_known_resonances() -> None:
    """Two damped resonances at 500 and 1500 Hz (an 'ə'-like vowel) are found as F1 and F2."""
    rate = 10000
    n = 250
    t = np.arange(n) / rate
    rng = np.random.default_rng(1)
    excitation = np.zeros(n)
    excitation[::80] = 1.0  # 125 Hz pulses
    sig = np.zeros(n)
    for f, bw in ((500.0, 80.0), (1500.0, 120.0)):
        h = np.exp(-np.pi * bw * t) * np.sin(2 * np.pi * f * t)
        sig += np.convolve(excitation, h)[:n]
    sig += rng.normal(0, 1e-4, n)
    assert lpc(np.zeros(n)) is None
    f1, f2 = formants(sig, rate)
    assert f1 == pytest.approx(500, abs=60) and f2 == pytest.approx(1500, abs=120)
