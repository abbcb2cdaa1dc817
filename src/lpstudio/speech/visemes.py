"""Phonemes (eSpeak IPA names, Korean and English) -> mouth shapes ("visemes").

A :class:`MouthShape` has four channels in [0, 1]: how far the mouth is open (jaw and lips), how
rounded/pursed the lips are ('우/오', "oo"), how spread ('이', "ee"), and how far they pout forward
('우', "w"). :mod:`lpstudio.speech.lipsync` turns a sequence of them into the official editing
parameters. Each phoneme also has a :class:`Role`:

* ``VOWEL`` — its own shape, scaled by loudness;
* ``BILABIAL`` (m/b/p, ㅁ/ㅂ/ㅍ/ㅃ) — lips fully closed, whatever the neighbours;
* ``LABIODENTAL`` (f/v) — lower lip to the upper teeth: almost closed;
* ``CONSONANT`` — a shape of its own (s, sh, w, j...);
* ``TRANSPARENT`` (h, k, g, ŋ and ㄱ/ㅋ/ㅎ) — no lip gesture of its own: the lips already take the
  next vowel's shape (anticipatory co-articulation) with the jaw partly open;
* ``PAUSE`` — rest.

The numbers are a design (like the presets), grounded in the usual viseme groupings: open vowels
a/ɐ/ɑ/æ open the jaw most, mid vowels e/ɛ/ʌ/ə less, close vowels i/ɯ (spread) and u/o (rounded)
least; diphthongs are two shapes one after the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(str, Enum):
    VOWEL = "vowel"
    BILABIAL = "bilabial"
    LABIODENTAL = "labiodental"
    CONSONANT = "consonant"
    TRANSPARENT = "transparent"
    PAUSE = "pause"


@dataclass(frozen=True)
class MouthShape:
    """Mouth targets in [0, 1]: ``open`` (jaw/lips apart), ``round`` (pursed), ``spread`` (grin), ``pout``."""

    open: float = 0.0
    round: float = 0.0
    spread: float = 0.0
    pout: float = 0.0

    def scaled_open(self, k: float) -> MouthShape:
        return MouthShape(self.open * k, self.round, self.spread, self.pout)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.open, self.round, self.spread, self.pout)


REST = MouthShape()
CHANNELS: tuple[str, ...] = ("open", "round", "spread", "pout")

# Single vowels. "open" vowels have open >= OPEN_VOWEL_MIN.
VOWEL_SHAPES: dict[str, MouthShape] = {
    "a": MouthShape(1.0),
    "ɐ": MouthShape(0.95),
    "ɑ": MouthShape(1.0, round=0.1),
    "æ": MouthShape(0.85, spread=0.35),
    "ɒ": MouthShape(0.85, round=0.35),
    "ʌ": MouthShape(0.7),
    "ɔ": MouthShape(0.7, round=0.6, pout=0.2),
    "ə": MouthShape(0.45),
    "ɚ": MouthShape(0.35, round=0.35, pout=0.2),
    "ɜ": MouthShape(0.45, round=0.2),
    "ɛ": MouthShape(0.65, spread=0.45),
    "e": MouthShape(0.5, spread=0.65),
    "ø": MouthShape(0.4, round=0.7, pout=0.3),
    "o": MouthShape(0.55, round=0.85, pout=0.4),
    "ɪ": MouthShape(0.3, spread=0.75),
    "i": MouthShape(0.22, spread=1.0),
    "y": MouthShape(0.2, round=0.9, pout=0.5),
    "ɨ": MouthShape(0.22, spread=0.5),
    "ɯ": MouthShape(0.22, spread=0.6),
    "ʊ": MouthShape(0.3, round=0.75, pout=0.4),
    "u": MouthShape(0.22, round=1.0, pout=0.6),
}
OPEN_VOWEL_MIN: float = 0.6
"""Vowels whose ``open`` is at least this count as open vowels ('아', "ah")."""

CONSONANT_SHAPES: dict[str, tuple[Role, MouthShape]] = {
    "w": (Role.CONSONANT, MouthShape(0.12, round=1.0, pout=0.6)),
    "ʍ": (Role.CONSONANT, MouthShape(0.12, round=1.0, pout=0.6)),
    "j": (Role.CONSONANT, MouthShape(0.18, spread=0.8)),
    "ɰ": (Role.CONSONANT, MouthShape(0.18, spread=0.5)),
    "ʃ": (Role.CONSONANT, MouthShape(0.18, round=0.55, pout=0.5)),
    "ʒ": (Role.CONSONANT, MouthShape(0.18, round=0.55, pout=0.5)),
    "tʃ": (Role.CONSONANT, MouthShape(0.18, round=0.5, pout=0.45)),
    "dʒ": (Role.CONSONANT, MouthShape(0.18, round=0.5, pout=0.45)),
    "tɕ": (Role.CONSONANT, MouthShape(0.16, round=0.3, spread=0.3, pout=0.25)),
    "dʑ": (Role.CONSONANT, MouthShape(0.16, round=0.3, spread=0.3, pout=0.25)),
    "ɕ": (Role.CONSONANT, MouthShape(0.16, spread=0.4)),
    "s": (Role.CONSONANT, MouthShape(0.12, spread=0.45)),
    "z": (Role.CONSONANT, MouthShape(0.12, spread=0.45)),
    "θ": (Role.CONSONANT, MouthShape(0.2, spread=0.3)),
    "ð": (Role.CONSONANT, MouthShape(0.2, spread=0.3)),
    "t": (Role.CONSONANT, MouthShape(0.2, spread=0.2)),
    "d": (Role.CONSONANT, MouthShape(0.2, spread=0.2)),
    "n": (Role.CONSONANT, MouthShape(0.2, spread=0.15)),
    "l": (Role.CONSONANT, MouthShape(0.28, spread=0.15)),
    "ɫ": (Role.CONSONANT, MouthShape(0.28)),
    "ɾ": (Role.CONSONANT, MouthShape(0.25)),
    "ɹ": (Role.CONSONANT, MouthShape(0.22, round=0.45, pout=0.3)),
    "r": (Role.CONSONANT, MouthShape(0.25)),
    "f": (Role.LABIODENTAL, MouthShape(0.05)),
    "v": (Role.LABIODENTAL, MouthShape(0.05)),
    "m": (Role.BILABIAL, REST),
    "b": (Role.BILABIAL, REST),
    "p": (Role.BILABIAL, REST),
    "ɸ": (Role.BILABIAL, REST),
    "β": (Role.BILABIAL, REST),
    "k": (Role.TRANSPARENT, REST),
    "ɡ": (Role.TRANSPARENT, REST),
    "g": (Role.TRANSPARENT, REST),
    "q": (Role.TRANSPARENT, REST),  # eSpeak's Korean ㄱ/ㅋ
    "ŋ": (Role.TRANSPARENT, REST),
    "h": (Role.TRANSPARENT, REST),
    "x": (Role.TRANSPARENT, REST),
    "ɦ": (Role.TRANSPARENT, REST),
    "ʔ": (Role.TRANSPARENT, REST),
}
TRANSPARENT_OPEN: float = 0.45
"""A transparent consonant opens the jaw this fraction of the next vowel's opening."""

# Marks that do not change the lip shape: length, tense (eSpeak's Korean "p-"), aspiration,
# palatalisation, syllabic, nasalised, non-release, ties.
_DROP = str.maketrans("", "", "ː-ʰʲ̩̃̚͡ˑ'")


@dataclass(frozen=True)
class Viseme:
    """One phoneme's mouth: its role and one or two shapes (a diphthong glides from the first to the second)."""

    role: Role
    shapes: tuple[MouthShape, ...]

    @property
    def is_open_vowel(self) -> bool:
        return self.role is Role.VOWEL and self.shapes[0].open >= OPEN_VOWEL_MIN


PAUSE_VISEME = Viseme(Role.PAUSE, (REST,))


def _vowels_of(name: str) -> list[MouthShape]:
    return [VOWEL_SHAPES[ch] for ch in name if ch in VOWEL_SHAPES]


def viseme_of(ipa: str) -> Viseme:
    """The viseme of one eSpeak IPA phoneme name (stress marks already removed; ``"_"`` is a pause).

    Unknown names fall back by their letters: vowels found in them, else a labial/neutral consonant.
    """
    if ipa in ("", "_"):
        return PAUSE_VISEME
    name = ipa.translate(_DROP)
    if not name:
        return PAUSE_VISEME
    if name in CONSONANT_SHAPES:
        role, shape = CONSONANT_SHAPES[name]
        return Viseme(role, (shape,))
    vowels = _vowels_of(name)
    if vowels:
        if name[0] in ("w", "j") and len(name) > 1:  # Korean on-glides: 와/워/위, 야/여/요
            glide = CONSONANT_SHAPES[name[0]][1]
            return Viseme(Role.VOWEL, (glide, vowels[-1]))
        return Viseme(Role.VOWEL, tuple(vowels[:2]))
    for ch in name:  # affricates and other clusters: the first letter that is known
        if ch in CONSONANT_SHAPES:
            role, shape = CONSONANT_SHAPES[ch]
            return Viseme(role, (shape,))
    return Viseme(Role.CONSONANT, (MouthShape(0.2),))


def is_bilabial(ipa: str) -> bool:
    """Whether the phoneme closes the lips (m/b/p, ㅁ/ㅂ/ㅍ/ㅃ)."""
    return viseme_of(ipa).role is Role.BILABIAL


def is_vowel(ipa: str) -> bool:
    return viseme_of(ipa).role is Role.VOWEL


def is_open_vowel(ipa: str) -> bool:
    """Whether the phoneme is an open vowel ('아', "ah", "æ"...)."""
    return viseme_of(ipa).is_open_vowel
