"""Phonemes -> mouth: lips shut on every m/b/p, open on every open vowel, look-ahead, co-articulation, loudness."""

from __future__ import annotations

import numpy as np
import pytest
from speech_helpers import EN_SENTENCE, KO_SENTENCE, requires_speech

from lpstudio.params import PARAM_NAMES
from lpstudio.speech import lipsync as L
from lpstudio.speech.clip import sample_timeline_at, sentence_clip
from lpstudio.speech.espeak import Phoneme
from lpstudio.speech.visemes import Role, is_bilabial, is_open_vowel, viseme_of

LV3 = PARAM_NAMES.index("lip_variation_three")
LIP = PARAM_NAMES.index("lip_ratio")
ROUND = PARAM_NAMES.index("lip_variation_one")
SPREAD = PARAM_NAMES.index("lip_variation_two")
CLOSED_BAND = L.CLOSED_SLIDER * 0.9
"""The 'closed' band of lip_variation_three: at most 90 % of the pressed-shut value (-12 -> <= -10.8)."""
OPEN_BAND = 0.3 * L.OPEN_SLIDER
"""An open vowel opens lip_variation_three to at least 30 % of a full '아'."""


def _at(clip, t_ms, base=None) -> np.ndarray:
    return sample_timeline_at(clip.timeline, np.atleast_1d(t_ms), base)


@requires_speech
@pytest.mark.parametrize(("text", "voice"), [(KO_SENTENCE, "ko"), (EN_SENTENCE, "en-us")])
def test_lips_shut_on_bilabials_and_open_on_open_vowels(text: str, voice: str) -> None:
    base = {"eye_ratio": 0.3, "lip_ratio": 0.2}  # a source with a slightly open mouth must still close
    clip = sentence_clip(text, voice)
    bilabials = [p for p in clip.phonemes if is_bilabial(p.ipa)]
    opens = [p for p in clip.phonemes if is_open_vowel(p.ipa)]
    assert len(bilabials) >= 4 and len(opens) >= 4
    for p in bilabials:
        row = _at(clip, (p.start_ms + p.end_ms) / 2, base)[0]
        assert row[LV3] <= CLOSED_BAND, f"{p.ipa} at {p.start_ms:.0f} ms: lip_variation_three {row[LV3]:.1f}"
        assert row[LIP] == pytest.approx(0.0, abs=1e-6), f"{p.ipa} at {p.start_ms:.0f} ms: lip_ratio {row[LIP]:.3f}"
    for p in opens:  # the mouth opens during the vowel (its widest point inside the vowel's interval)
        rows = _at(clip, np.linspace(p.start_ms, p.end_ms, 21), base)
        assert rows[:, LV3].max() >= OPEN_BAND, f"{p.ipa} at {p.start_ms:.0f} ms: {rows[:, LV3].max():.1f}"
        assert rows[:, LIP].max() > base["lip_ratio"]
    # pauses between sentences/clauses: mouth back at rest (neither open nor pressed)
    for p in clip.phonemes:
        if p.is_pause and p.duration_ms >= 150:
            row = _at(clip, (p.start_ms + p.end_ms) / 2, base)[0]
            assert abs(row[LV3]) < 0.15 * L.OPEN_SLIDER


@requires_speech
def test_rounded_and_spread_vowels() -> None:
    clip = sentence_clip("우우우 이이이", "ko")
    u = next(p for p in clip.phonemes if p.ipa.startswith("u"))
    i = next(p for p in clip.phonemes if p.ipa.startswith("i"))
    ru = _at(clip, (u.start_ms + u.end_ms) / 2)[0]
    ri = _at(clip, (i.start_ms + i.end_ms) / 2)[0]
    assert ru[ROUND] < -0.5 * L.ROUND_SLIDER and ri[ROUND] > ru[ROUND]  # 우: pursed (negative)
    assert ri[SPREAD] > 0.5 * L.SPREAD_SLIDER and ri[SPREAD] > ru[SPREAD]  # 이: spread


def _vowel_between(pauses_ms: float = 300.0, vowel_ms: float = 200.0) -> list[Phoneme]:
    return [
        Phoneme("_", 0, pauses_ms),
        Phoneme("a", pauses_ms, pauses_ms + vowel_ms, 2),
        Phoneme("_", pauses_ms + vowel_ms, 2 * pauses_ms + vowel_ms),
    ]


def test_look_ahead_opens_before_the_sound_and_closes_after() -> None:
    ph = _vowel_between()
    track = L.phoneme_track(ph, ph[-1].end_ms)
    vals, _ = track.at([300 - L.LOOKAHEAD_MS - 20, 300 - 10, 300, 400, 500 + 20, 800, 500 - L.RELEASE_LEAD_MS - 5])
    open_ = vals[:, 0]
    assert open_[0] < 0.02  # not yet
    assert open_[1] > 0.3  # the mouth is already opening before the vowel sounds
    assert open_[3] > 0.9  # reached in the middle
    assert 0.05 < open_[4] < open_[3]  # released smoothly after the sound
    assert open_[5] == 0.0  # at rest at the end
    assert open_[6] > 0.9  # the vowel keeps its shape nearly to its end


def test_attack_and_release_times() -> None:
    """A step up reaches 10 % -> 90 % in ATTACK_MS, a step down in RELEASE_MS (co-articulation speed)."""
    n = 400
    step = np.zeros((n, 1))
    step[100:250] = 1.0
    y = L.smooth(step)[:, 0]
    up = np.flatnonzero(y[100:] >= 0.9)[0] - np.flatnonzero(y[100:] >= 0.1)[0]
    down = np.flatnonzero(y[250:] <= 0.1)[0] - np.flatnonzero(y[250:] <= 0.9)[0]
    assert up * L.STEP_MS == pytest.approx(L.ATTACK_MS, abs=2 * L.STEP_MS)
    assert down * L.STEP_MS == pytest.approx(L.RELEASE_MS, abs=2 * L.STEP_MS)
    assert 40 <= L.ATTACK_MS <= 60 and 40 <= L.RELEASE_MS <= 60


def test_neighbours_blend_and_transparent_consonants_anticipate() -> None:
    """'hu': the h already has the rounding of the u (anticipatory co-articulation)."""
    ph = [Phoneme("_", 0, 200), Phoneme("h", 200, 300), Phoneme("u", 300, 450, 2), Phoneme("_", 450, 700)]
    targets, closure = L.phoneme_targets(ph, 700)
    h_mid = int(250 / L.STEP_MS)
    assert targets[h_mid, 1] == pytest.approx(1.0)  # round like the u
    assert targets[h_mid, 0] < 0.5 * targets[int(380 / L.STEP_MS), 0] + 1e-9  # jaw only partly open
    assert not closure.any()


def test_short_bilabial_still_closes_for_a_frame() -> None:
    """A 30 ms 'p' between open vowels closes over at least CLOSURE_MIN_MS (a frame at 25 fps)."""
    ph = [
        Phoneme("_", 0, 150),
        Phoneme("a", 150, 300),
        Phoneme("p", 300, 330),
        Phoneme("a", 330, 480),
        Phoneme("_", 480, 700),
    ]
    track = L.phoneme_track(ph, 700)
    t = np.arange(0, 700, 1.0)
    _, closure = track.at(t)
    shut = t[closure >= 1.0 - 1e-9]
    assert shut.max() - shut.min() >= L.CLOSURE_MIN_MS - 1
    assert shut.min() <= 315 <= shut.max()
    offs = L.parameter_offsets(*track.at([315.0]))
    assert offs["lip_variation_three"][0] == pytest.approx(L.CLOSED_SLIDER)


def test_loudness_scales_the_opening() -> None:
    rate = 16000
    loud = 0.5 * np.sin(np.arange(rate // 5) * 2 * np.pi * 200 / rate)
    audio = np.concatenate([np.zeros(rate // 10), loud, np.zeros(rate // 10), 0.1 * loud, np.zeros(rate // 10)])
    ph = [
        Phoneme("_", 0, 100),
        Phoneme("a", 100, 300),
        Phoneme("_", 300, 400),
        Phoneme("a", 400, 600),
        Phoneme("_", 600, 700),
    ]
    gains = L.loudness_gains(audio.astype(np.float32), rate, ph)
    assert gains[1] >= 1.0 and gains[3] < gains[1] - 0.2
    assert gains[0] == gains[2] == 1.0  # pauses are not scaled
    track = L.phoneme_track(ph, 700, gains)
    a_loud, a_soft = track.at([220.0, 520.0])[0][:, 0]
    assert a_soft < 0.8 * a_loud


def test_motions_start_and_end_at_the_base_pose() -> None:
    ph = _vowel_between()
    motions = L.mouth_motions(L.phoneme_track(ph, ph[-1].end_ms))
    base = {n: 0.0 for n in PARAM_NAMES}
    base.update(eye_ratio=0.3, lip_ratio=0.1, mov_z=1.0)
    for m in motions:
        ends = m.offsets(np.array([0.0, m.duration_ms]), base)
        assert all(np.allclose(v, 0.0) for v in ends.values())


@pytest.mark.parametrize(
    ("ipa", "role"),
    [("ɐ", Role.VOWEL), ("aɪ", Role.VOWEL), ("p-", Role.BILABIAL), ("m", Role.BILABIAL), ("q", Role.TRANSPARENT),
     ("f", Role.LABIODENTAL), ("s-", Role.CONSONANT), ("_", Role.PAUSE), ("wʌ", Role.VOWEL), ("iː", Role.VOWEL)],
)  # fmt: skip
def test_visemes(ipa: str, role: Role) -> None:
    assert viseme_of(ipa).role is role


def test_diphthongs_glide_between_two_shapes() -> None:
    v = viseme_of("aɪ")
    assert len(v.shapes) == 2 and v.shapes[0].open > v.shapes[1].open and v.shapes[1].spread > v.shapes[0].spread
    assert is_open_vowel("ɑː") and not is_open_vowel("i") and is_bilabial("b")
