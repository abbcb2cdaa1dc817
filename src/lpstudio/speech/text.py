"""Text for speech: which voice speaks it, and where it splits into sentences (the unit of streaming)."""

from __future__ import annotations

import re

from ..errors import CommandError

VOICES: tuple[str, ...] = ("ko", "en-us")
"""The eSpeak voices lpstudio speaks with: Korean and American English."""
AUTO: str = "auto"
VOICE_ALIASES: dict[str, str] = {"kr": "ko", "korean": "ko", "en": "en-us", "english": "en-us", "en_us": "en-us"}

MAX_TEXT_CHARS: int = 20_000
"""Longest text ``speak`` takes (about 25 minutes of speech); it is spoken sentence by sentence."""
SENTENCE_MAX_CHARS: int = 240
"""Sentences longer than this are split further at commas, then at spaces (keeps latency low)."""

DEFAULT_SENTENCES: dict[str, str] = {"ko": "안녕하세요, 반갑습니다.", "en-us": "Hello, nice to meet you."}
"""What the portrait says when asked to talk without being told what."""

_HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\uac00-\ud7a3\ud7b0-\ud7ff]")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？…])\s+|\n+")
_CLAUSE_END = re.compile(r"(?<=[,;:，、])\s+")


def detect_language(text: str) -> str:
    """``"ko"`` when the text has any Hangul, else ``"en-us"``."""
    return "ko" if _HANGUL.search(text) else "en-us"


def resolve_voice(voice: str | None, text: str) -> str:
    """The eSpeak voice for ``text``: ``voice`` itself, or detected for ``None``/``"auto"``."""
    if voice is None or voice.strip().lower() == AUTO:
        return detect_language(text)
    v = voice.strip().lower()
    v = VOICE_ALIASES.get(v, v)
    if v not in VOICES:
        raise CommandError(f"unknown voice {voice!r}", hint=f"use one of {', '.join(VOICES)} or {AUTO}")
    return v


def check_text(text: str) -> str:
    """``text`` stripped; :class:`CommandError` when it is empty or too long."""
    if not isinstance(text, str) or not text.strip():
        raise CommandError("nothing to say: the text is empty", hint="give a sentence, e.g. '안녕하세요, 반갑습니다'")
    if len(text) > MAX_TEXT_CHARS:
        raise CommandError(
            f"the text has {len(text)} characters", hint=f"say at most {MAX_TEXT_CHARS} characters at a time"
        )
    return text.strip()


def _split_long(piece: str, limit: int) -> list[str]:
    if len(piece) <= limit:
        return [piece]
    out: list[str] = []
    for clause in _CLAUSE_END.split(piece):
        while len(clause) > limit:
            cut = clause.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            out.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if clause:
            out.append(clause)
    return [p for p in out if p]


def split_sentences(text: str, limit: int = SENTENCE_MAX_CHARS) -> list[str]:
    """Sentences of ``text`` in order (long ones split at commas, then spaces), never empty."""
    out: list[str] = []
    for piece in _SENTENCE_END.split(text):
        piece = piece.strip()
        if piece:
            out.extend(_split_long(piece, limit))
    return out
