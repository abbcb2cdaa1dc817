"""A page's own expressions: slider settings saved under a name, usable in commands, exported as JSON.

An :class:`ExpressionLibrary` holds at most :data:`MAX_EXPRESSIONS` named parameter sets (absolute
values of the 17 editing parameters, only those that differ from the photo's own expression). Each
becomes a :class:`~.presets.Preset` whose gesture goes to those values (:class:`~.timeline.Abs`
targets: the saved face is reached whatever base it starts from), holds them and comes back, so
``"my_smile 하고 윙크"`` or ``"my_smile then wink"`` parse like a shipped preset while the library
is in force (:func:`~.custom.using_custom`).

Everything that comes in (a save, an imported file) is hostile input: names are checked
(:data:`MAX_NAME_CHARS`, letters, digits and ``_``, starting with a letter, not a shipped preset's
name or alias), values must be finite numbers and are clamped to the ranges of
:data:`~lpstudio.params.PARAM_SPECS`, unknown parameters are refused, and an import is bounded in
bytes (:data:`MAX_LIBRARY_JSON_BYTES`) and in count before anything is kept.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from ..errors import LPStudioError
from ..params import PARAM_NAMES, SPECS_BY_NAME, unknown_param_error
from .lexicon import ACTION_WORDS
from .presets import PRESETS, Preset
from .timeline import Abs, Easing, Gesture, Keyframe

MAX_EXPRESSIONS: int = 32
"""Saved expressions one session may hold."""
MAX_NAME_CHARS: int = 32
"""Longest saved name (characters)."""
MAX_LIBRARY_JSON_BYTES: int = 32 * 1024
"""Largest library file accepted on import (32 expressions of 17 values need ~8 KB)."""
LIBRARY_FORMAT: str = "lpstudio-expressions"
LIBRARY_VERSION: int = 1
NAME_RX = re.compile(r"[a-z가-힣][a-z0-9가-힣_]*")
"""A saved name: lower-case Latin letters, Hangul syllables, digits and ``_``, starting with a letter."""
NEUTRAL_TOLERANCE: float = 1e-6
"""A value closer than this to the photo's own is not part of the saved expression."""

ARRIVE_MS: float = 450.0
"""A saved expression reaches its values in this long (ease out) ..."""
HOLD_MS: float = 1200.0
"""... holds them this long ..."""
RETURN_MS: float = 600.0
"""... and goes back to the base pose in this long."""


class LibraryError(LPStudioError, ValueError):
    """A saved expression or an imported library is not acceptable (400)."""


def _reserved_names() -> frozenset[str]:
    words: set[str] = set()
    for p in PRESETS.values():
        words.update(w.lower().replace(" ", "_") for w in (p.name, *p.names_en))
        words.update(p.names_ko)
    words.update(w.replace(" ", "_") for w, _ in ACTION_WORDS)
    return frozenset(words)


def _korean_action_words() -> tuple[str, ...]:
    """Korean command words (stems such as ``웃``): a name starting with one would take over commands."""
    return tuple(w.replace(" ", "") for w, _ in ACTION_WORDS if re.match(r"[가-힣]", w))


def check_name(name: Any) -> str:
    """The canonical (lower-case, trimmed) form of a saved name, or :class:`LibraryError` saying what is wrong."""
    if not isinstance(name, str):
        raise LibraryError(f"an expression name must be text, got {type(name).__name__}", hint="e.g. my_smile")
    text = name.strip().lower().replace("-", "_").replace(" ", "_")
    shown = text if len(text) <= MAX_NAME_CHARS else text[: MAX_NAME_CHARS - 3] + "..."
    if not text:
        raise LibraryError("the expression needs a name", hint="e.g. my_smile or 내미소")
    if len(text) > MAX_NAME_CHARS:
        raise LibraryError(
            f"the name {shown!r} is {len(text)} characters long", hint=f"use at most {MAX_NAME_CHARS} characters"
        )
    if not NAME_RX.fullmatch(text):
        raise LibraryError(
            f"the name {shown!r} has characters a name cannot have",
            hint="use letters (a-z, 한글), digits and _, starting with a letter",
        )
    korean_start = next((w for w in _korean_action_words() if text.startswith(w)), None)
    if text in _reserved_names() or korean_start is not None:
        raise LibraryError(
            f"{shown!r} is the name of a built-in expression, which cannot be replaced",
            hint=f"pick another name, e.g. my_{text}" if text.isascii() else "pick another name",
        )
    return text


def clean_params(raw: Any, neutral: Mapping[str, float | None] | None = None) -> dict[str, float]:
    """Known parameter names -> finite values clamped to their ranges, without those equal to ``neutral``'s.

    ``neutral``: the photo's own values (``eye_ratio``/``lip_ratio`` of the photo, 0 or 1 for the rest).
    Raises :class:`LibraryError` for a non-object, and :class:`~lpstudio.errors.ParamError` for an
    unknown name or a value that is not a finite number.
    """
    if not isinstance(raw, Mapping):
        raise LibraryError("the parameters must be an object of name -> number", hint='e.g. {"smile": 0.8}')
    if len(raw) > len(PARAM_NAMES):
        raise LibraryError(f"{len(raw)} parameters given; there are {len(PARAM_NAMES)}")
    out: dict[str, float] = {}
    for name, value in raw.items():
        spec = SPECS_BY_NAME.get(name) if isinstance(name, str) else None
        if spec is None:
            raise unknown_param_error(str(name)[:MAX_NAME_CHARS])
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise LibraryError(f"parameter {name!r} must be a finite number, got {str(value)[:20]!r}")
        clamped = spec.clamp(float(value))
        own = (neutral or {}).get(name, spec.neutral)
        if own is not None and abs(clamped - float(own)) < NEUTRAL_TOLERANCE:
            continue
        out[name] = clamped
    return out


def saved_preset(name: str, values: Mapping[str, float]) -> Preset:
    """The preset of a saved expression: reach ``values`` (absolute), hold, return to the base."""
    targets = {n: Abs(float(v)) for n, v in values.items()}

    def build() -> Gesture:
        arrive, release = ARRIVE_MS, ARRIVE_MS + HOLD_MS
        keys = [Keyframe(arrive, targets, Easing.EASE_OUT), Keyframe(release, targets)]
        return Gesture(name, keys, release + RETURN_MS, apex_ms=arrive, release_ms=release)

    return Preset(name, (name,), (name,), "saved expression", build, pose=targets)


class ExpressionLibrary:
    """One session's saved expressions, at most ``capacity``, in the order they were saved."""

    def __init__(self, capacity: int = MAX_EXPRESSIONS) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, dict[str, float]] = OrderedDict()

    def save(self, name: Any, params: Any, neutral: Mapping[str, float | None] | None = None) -> str:
        """Keep ``params`` under ``name`` (replacing a saved one of that name); returns the canonical name."""
        key = check_name(name)
        values = clean_params(params, neutral)
        if not values:
            raise LibraryError(
                f"{key!r} would be the photo's own expression", hint="move a slider (or drag the face) first"
            )
        if key not in self._items and len(self._items) >= self.capacity:
            raise LibraryError(
                f"the library is full ({self.capacity} expressions)", hint="delete one before saving another"
            )
        self._items[key] = values
        return key

    def delete(self, name: Any) -> None:
        key = check_name(name)
        if self._items.pop(key, None) is None:
            raise LibraryError(f"no saved expression is called {key!r}")

    def presets(self) -> dict[str, Preset]:
        """Canonical name -> preset, for :func:`~.custom.using_custom`."""
        return {name: saved_preset(name, values) for name, values in self._items.items()}

    def to_json(self) -> dict[str, Any]:
        """The exportable form: ``{"format", "version", "expressions": [{"name", "params"}]}``."""
        return {
            "format": LIBRARY_FORMAT,
            "version": LIBRARY_VERSION,
            "expressions": [{"name": n, "params": dict(v)} for n, v in self._items.items()],
        }

    def import_json(self, data: Any, neutral: Mapping[str, float | None] | None = None) -> list[str]:
        """Add the expressions of an exported library (all or none); returns their names.

        ``data``: the parsed JSON object, or its text/bytes (checked against :data:`MAX_LIBRARY_JSON_BYTES`
        before parsing). Every entry is checked before any is kept; a name already saved is replaced.
        """
        if isinstance(data, (bytes, str)):
            size = len(data.encode("utf-8") if isinstance(data, str) else data)
            if size > MAX_LIBRARY_JSON_BYTES:
                raise LibraryError(
                    f"the library file is {size} bytes; the limit is {MAX_LIBRARY_JSON_BYTES}",
                    hint=f"a library holds at most {MAX_EXPRESSIONS} expressions",
                )
            try:
                data = json.loads(data)
            except (ValueError, RecursionError):
                raise LibraryError("the library file is not JSON", hint="choose a file exported by this page") from None
        if not isinstance(data, Mapping) or data.get("format") != LIBRARY_FORMAT:
            raise LibraryError(
                "the file is not an lpstudio expression library", hint="choose a file exported by this page"
            )
        if data.get("version") != LIBRARY_VERSION:
            raise LibraryError(f"library version {str(data.get('version'))[:12]!r} is not supported",
                               hint=f"this server reads version {LIBRARY_VERSION}")  # fmt: skip
        entries = data.get("expressions")
        if not isinstance(entries, list):
            raise LibraryError("the library has no list of expressions")
        if len(entries) > self.capacity:
            raise LibraryError(f"the library holds {len(entries)} expressions; the limit is {self.capacity}")
        checked: dict[str, dict[str, float]] = {}
        for i, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise LibraryError(f"expression {i + 1} of the library is not an object")
            try:
                key = check_name(entry.get("name"))
                values = clean_params(entry.get("params"), neutral)
            except LPStudioError as exc:
                raise LibraryError(f"expression {i + 1} of the library: {exc.message}", hint=exc.hint) from None
            if values:
                checked[key] = values
        if len(set(self._items) | set(checked)) > self.capacity:
            raise LibraryError(
                f"importing would make {len(set(self._items) | set(checked))} expressions; the limit is "
                f"{self.capacity}",
                hint="delete some saved expressions first",
            )
        self._items.update(checked)
        return list(checked)

    def names(self) -> list[str]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
