"""Speech prosody on the rest of the face: small nods on stressed syllables, brows on emphasis,
blinks at pauses. Each gesture is a :class:`~lpstudio.expressions.timeline.Gesture` placed as a
:class:`~lpstudio.expressions.timeline.Step` (the same machinery as the presets), so they layer over
the mouth and under idle liveliness.

* **Phrases** are runs of phonemes between pauses of at least :data:`PHRASE_PAUSE_MS`.
* **Nods**: the first primary-stressed vowel of each phrase (else its loudest vowel) gets a nod of
  :data:`NOD_DEG` that peaks shortly after the vowel starts; further primary-stressed vowels get a
  smaller one, never closer than :data:`NOD_MIN_GAP_MS` to the previous nod.
* **Emphasis**: a stressed vowel at least :data:`EMPHASIS_DB` louder than the median vowel, or the
  first stressed vowel of a sentence that ends with '!', lifts the brows and widens the eyes a
  little (the same small ``eyebrow`` lift the 'talk' preset uses), at most one per phrase.
* **Blinks**: in a pause of at least :data:`BLINK_PAUSE_MS` (and between sentences), one blink
  (the 'blink' preset), no closer than :data:`BLINK_MIN_GAP_MS` to the previous one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..expressions.presets import PITCH_DOWN, preset_gesture
from ..expressions.timeline import Easing, Gesture, Keyframe, Rel, Step
from .espeak import Phoneme
from .visemes import Role, viseme_of

PHRASE_PAUSE_MS: float = 120.0
NOD_DEG: float = 1.6
"""Head pitch of a phrase-accent nod (degrees, chin down)."""
MINOR_NOD_FACTOR: float = 0.55
NOD_LEAD_MS: float = 60.0
"""A nod starts this long before its vowel."""
NOD_PEAK_MS: float = 170.0
NOD_DURATION_MS: float = 480.0
NOD_MIN_GAP_MS: float = 550.0
EMPHASIS_DB: float = 3.0
BROW_LIFT: float = -3.0
"""``eyebrow`` offset of an emphasis (the small lift of the 'talk' preset)."""
BROW_EYES_WIDER: float = 0.08
"""``eye_ratio`` offset of an emphasis, as a fraction of the source's own ratio."""
BROW_GAZE_UP: float = 2.0
BROW_DURATION_MS: float = 650.0
BLINK_PAUSE_MS: float = 140.0
BLINK_MIN_GAP_MS: float = 1800.0
BLINK_OFFSET_MS: float = 30.0
"""A blink starts this long after its pause begins."""

LAYER: int = 1
"""Layer of the prosody steps (the mouth is layer 0)."""


def _nod(strength: float) -> Gesture:
    return Gesture(
        "speech_nod",
        [
            Keyframe(NOD_PEAK_MS, {"head_pitch": strength * NOD_DEG * PITCH_DOWN}, Easing.EASE_OUT),
            Keyframe(NOD_PEAK_MS + 150.0, {"head_pitch": -0.2 * strength * NOD_DEG * PITCH_DOWN}),
        ],
        NOD_DURATION_MS,
        apex_ms=NOD_PEAK_MS,
        release_ms=NOD_PEAK_MS,
    )


def _brows() -> Gesture:
    held = {"eyebrow": BROW_LIFT, "eye_ratio": Rel(BROW_EYES_WIDER), "eyeball_y": BROW_GAZE_UP}
    return Gesture(
        "speech_emphasis",
        [Keyframe(140.0, held, Easing.EASE_OUT), Keyframe(360.0, held)],
        BROW_DURATION_MS,
        apex_ms=140.0,
        release_ms=360.0,
    )


def _levels(audio: np.ndarray | None, sample_rate: int, phonemes: Sequence[Phoneme]) -> list[float]:
    out = []
    for p in phonemes:
        if audio is None:
            out.append(0.0)
            continue
        a, b = int(p.start_ms * sample_rate / 1000), int(p.end_ms * sample_rate / 1000)
        seg = audio[a : max(b, a + 1)]
        rms = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64)))) if len(seg) else 0.0
        out.append(20 * math.log10(rms) if rms > 0 else -120.0)
    return out


def phrases(phonemes: Sequence[Phoneme]) -> list[list[int]]:
    """Indices of the phonemes of each phrase (runs between pauses of at least :data:`PHRASE_PAUSE_MS`)."""
    out: list[list[int]] = [[]]
    for i, p in enumerate(phonemes):
        if p.is_pause:
            if p.duration_ms >= PHRASE_PAUSE_MS and out[-1]:
                out.append([])
            continue
        out[-1].append(i)
    return [ph for ph in out if ph]


def prosody_steps(
    phonemes: Sequence[Phoneme],
    duration_ms: float,
    *,
    audio: np.ndarray | None = None,
    sample_rate: int = 22050,
    exclaim: bool = False,
    blink_at_start: bool = False,
) -> list[Step]:
    """Nods, emphasis and blinks for timed phonemes; every step ends by ``duration_ms``.

    ``blink_at_start``: the clip continues a previous one (the next sentence): the pause between
    them, split over the two clips, gets its blink at the start of this one.
    """
    steps: list[Step] = []
    levels = _levels(audio, sample_rate, phonemes)
    vowels = [i for i, p in enumerate(phonemes) if viseme_of(p.ipa).role is Role.VOWEL]
    median = float(np.median([levels[i] for i in vowels])) if vowels else 0.0

    def place(motion: Gesture, start: float, preset: str, intensity: float = 1.0) -> bool:
        start = max(0.0, start)
        if start + motion.duration_ms > duration_ms:
            return False
        steps.append(Step(motion, start, preset, LAYER, intensity))
        return True

    last_nod = -math.inf
    first_phrase = True
    for phrase in phrases(phonemes):
        pv = [i for i in phrase if i in set(vowels)]
        if not pv:
            continue
        stressed = [i for i in pv if phonemes[i].stress == 2]
        accent = stressed[0] if stressed else max(pv, key=lambda i: levels[i])
        for i in [accent] + [s for s in stressed if s != accent]:
            t = phonemes[i].start_ms - NOD_LEAD_MS
            if abs(t - last_nod) < NOD_MIN_GAP_MS:
                continue
            strength = 1.0 if i == accent else MINOR_NOD_FACTOR
            if place(_nod(strength), t, "speech_nod", strength):
                last_nod = t
        loud = [i for i in stressed if audio is not None and levels[i] >= median + EMPHASIS_DB]
        emphasis = loud[0] if loud else (accent if exclaim and first_phrase else None)
        if emphasis is not None:
            place(_brows(), phonemes[emphasis].start_ms - NOD_LEAD_MS, "speech_emphasis")
        first_phrase = False

    blink = preset_gesture("blink")
    last_blink = -math.inf
    for i, p in enumerate(phonemes):
        first_pause = i == 0 and p.is_pause and blink_at_start
        if not first_pause and (not p.is_pause or p.duration_ms < BLINK_PAUSE_MS or i == 0):
            continue
        t = p.start_ms + BLINK_OFFSET_MS
        if t - last_blink >= BLINK_MIN_GAP_MS and place(blink, t, "speech_blink"):
            last_blink = t
    return steps
