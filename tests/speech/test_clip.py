"""Speaking clips: frame count, JSON, streaming by sentence, prosody, the user's audio."""

from __future__ import annotations

import math

import numpy as np
import pytest
from speech_helpers import requires_speech

from lpstudio.params import PARAM_NAMES
from lpstudio.speech.audio import AudioClip
from lpstudio.speech.clip import concat, iter_speech, speak_audio, speak_text
from lpstudio.speech.espeak import Phoneme
from lpstudio.speech.prosody import BLINK_PAUSE_MS, prosody_steps

pytestmark = requires_speech


@pytest.mark.parametrize("fps", [25.0, 30.0, 12.5])
def test_frame_count_and_json(fps: float) -> None:
    clip = speak_text("안녕하세요, 반갑습니다.", idle=False)
    data = clip.to_json(fps)
    assert data["language"] == "ko" and data["fps"] == fps
    assert len(data["frames"]) == data["n_frames"] == math.ceil(data["audio_ms"] * fps / 1000)
    assert set(data["frames"][0]) == set(PARAM_NAMES)
    assert data["audio_ms"] == pytest.approx(1000 * clip.audio.n_samples / clip.audio.sample_rate)
    ph = data["phonemes"]
    assert {"ipa", "start_ms", "end_ms"} <= set(ph[0])
    assert ph[0]["start_ms"] == 0 and ph[-1]["end_ms"] == pytest.approx(data["audio_ms"], abs=1e-3)
    # the clip starts at the portrait's own pose
    base = data["base"]
    assert all(data["frames"][0][n] == pytest.approx(base[n], abs=1e-6) for n in PARAM_NAMES)


def test_streaming_by_sentence_equals_the_whole() -> None:
    text = "Hello there. How are you today? 저는 잘 지내요."
    parts = list(iter_speech(text, seed=3))
    assert [p.language for p in parts] == ["en-us", "en-us", "ko"]  # auto: per sentence
    whole = concat(parts)
    assert whole.language == "mixed"
    assert whole.audio_ms == pytest.approx(sum(p.audio_ms for p in parts))
    again = speak_text(text, seed=3)  # eSpeak may differ by a few ms from call to call
    assert again.audio_ms == pytest.approx(whole.audio_ms, abs=50.0)
    # the parts laid end to end sample to the same frames as the joined clip
    fps, t0, rows = 25.0, 0.0, []
    from lpstudio.speech.clip import sample_timeline_at

    k = 0
    for p in parts:
        end = t0 + p.audio_ms
        n_end = math.ceil(end * fps / 1000 - 1e-9)
        rows.append(sample_timeline_at(p.timeline, [j * 1000 / fps - t0 for j in range(k, n_end)]))
        k, t0 = n_end, end
    assert np.allclose(np.concatenate(rows), whole.sample_array(fps))


def test_iter_speech_is_lazy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first sentence is ready before the others are synthesised (frames can start early)."""
    from lpstudio.speech import clip as clip_module

    calls: list[str] = []
    real = clip_module.synthesize

    def spy(text: str, voice: str, **kw):
        calls.append(text)
        return real(text, voice, **kw)

    monkeypatch.setattr(clip_module, "synthesize", spy)
    it = iter_speech("One. Two. Three.")
    first = next(it)
    assert calls == ["One."] and first.text == "One."
    assert len(list(it)) == 2 and len(calls) == 3


def test_prosody_nods_on_stress_blinks_in_pauses() -> None:
    clip = speak_text("Hello, nice to meet you.   I am so glad you came!", idle=False)
    steps = clip.timeline.steps
    nods = [s for s in steps if s.preset == "speech_nod"]
    blinks = [s for s in steps if s.preset == "speech_blink"]
    brows = [s for s in steps if s.preset == "speech_emphasis"]
    assert nods and blinks and brows
    stressed = [p.start_ms for p in clip.phonemes if p.stress == 2]
    for s in nods:  # a nod starts shortly before a stressed (or phrase-accent) vowel
        assert min(abs(s.start_ms + 60.0 - t) for t in stressed + [p.start_ms for p in clip.phonemes]) < 1.0
    pauses = [p for p in clip.phonemes if p.is_pause]
    for b in blinks:  # in a long pause, or in the pause between two sentences
        pause = next(p for p in pauses if p.start_ms <= b.start_ms < p.end_ms)
        between = any(abs(p.end_ms - pause.start_ms) < 1e-6 for p in pauses)  # tail + lead-in
        assert pause.duration_ms >= BLINK_PAUSE_MS or between
    assert all(s.end_ms <= clip.audio_ms + 1e-6 for s in steps)
    pitch = PARAM_NAMES.index("head_pitch")
    arr = clip.sample_array(25)
    assert np.abs(arr[:, pitch]).max() > 0.5  # the head does move


def test_prosody_on_made_up_phonemes() -> None:
    ph = [Phoneme("_", 0, 100), Phoneme("a", 100, 300, 2), Phoneme("_", 300, 700), Phoneme("i", 700, 900, 0)]
    steps = prosody_steps(ph, 1300)
    names = [s.preset for s in steps]
    assert names.count("speech_nod") == 2  # one accent per phrase (the second has no stress: its loudest vowel)
    assert names.count("speech_blink") == 1


def test_user_audio_clip(en_utterance) -> None:
    audio = AudioClip.from_mono(en_utterance.audio, en_utterance.sample_rate)
    clip = speak_audio(audio, seed=1)
    assert clip.phonemes == () and clip.language is None
    assert clip.audio_ms == pytest.approx(en_utterance.duration_ms)
    data = clip.to_json(25)
    assert data["n_frames"] == math.ceil(data["audio_ms"] * 25 / 1000) and data["phonemes"] == []
    lv3 = np.array([f["lip_variation_three"] for f in data["frames"]])
    assert lv3.max() > 10 and lv3[0] == 0


def test_audio_payload_for_a_page() -> None:
    import base64
    import io
    import wave

    from lpstudio.speech.payload import audio_payload

    clip = speak_text("Nice to meet you.", idle=False)
    p = audio_payload(clip, 25)
    assert p["n_frames"] == clip.frame_count(25) and p["duration_ms"] == pytest.approx(p["n_frames"] * 40.0, abs=0.05)
    with wave.open(io.BytesIO(base64.b64decode(p["wav_base64"]))) as w:
        assert w.getframerate() == p["sample_rate"] and w.getnframes() == round(
            p["duration_ms"] * w.getframerate() / 1000
        )
    by_url = audio_payload(clip, 25, start_ms=1200, url="/speech/1.wav")
    assert "wav_base64" not in by_url and by_url["url"] == "/speech/1.wav" and by_url["start_ms"] == 1200
