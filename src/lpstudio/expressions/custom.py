"""Session-defined expression names in force while one request is understood.

A page may save its own expressions ("my_smile") and use them in commands
(``"my_smile 하고 윙크"``). The names live in the page's session on the server
(:mod:`lpstudio.expressions.library`); while that session's command is parsed and
planned, :func:`using_custom` makes them visible to the lexicon scan
(:mod:`.phrases`) and to :func:`~.presets.get_preset`, through a context variable, so
nothing global changes and two requests on two threads never see each other's names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_ACTIVE: ContextVar[Mapping[str, Any] | None] = ContextVar("lpstudio_custom_expressions", default=None)
_PATTERNS: ContextVar[tuple[tuple[re.Pattern[str], str, str], ...]] = ContextVar("lpstudio_custom_patterns", default=())


def name_words(name: str) -> str:
    """How a saved name reads in a normalised command: ``my_smile`` -> ``my smile`` (``_`` is a space there)."""
    return " ".join(name.replace("_", " ").split())


def name_pattern(name: str) -> re.Pattern[str]:
    """The pattern of a saved name in a normalised command: its words, spaces between them free.

    It never starts inside another word, and a name ending in a Latin letter or digit never ends
    inside one (a Korean name may take verb endings: ``내미소해줘``).
    """
    words = name_words(name).split()
    body = r"\s*".join(re.escape(w) for w in words)
    tail = r"(?![a-z0-9])" if re.search(r"[a-z0-9]$", words[-1]) else ""
    return re.compile(r"(?<![a-z0-9가-힣])" + body + tail)


@contextmanager
def using_custom(presets: Mapping[str, Any] | None) -> Iterator[None]:
    """Make ``presets`` (canonical name -> :class:`~.presets.Preset`) known for the duration of the block."""
    items = dict(presets or {})
    patterns = tuple((name_pattern(name), name, name_words(name).split()[0]) for name in items)
    token = _ACTIVE.set(items)
    token_rx = _PATTERNS.set(patterns)
    try:
        yield
    finally:
        _PATTERNS.reset(token_rx)
        _ACTIVE.reset(token)


def active_custom() -> Mapping[str, Any]:
    """The session-defined presets in force (empty outside :func:`using_custom`)."""
    return _ACTIVE.get() or {}


def custom_patterns() -> tuple[tuple[re.Pattern[str], str, str], ...]:
    """``(pattern, name, anchor)`` of each session-defined name in force (for the lexicon scan)."""
    return _PATTERNS.get()
