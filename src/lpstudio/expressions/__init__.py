"""Expressions on command (issue 4).

Typical use::

    from lpstudio.expressions import parse_command, with_idle, render_timeline

    plan = parse_command("웃으면서 윙크해줘")          # CommandError if not understood
    timeline = with_idle(plan.timeline(), seed=7, tail_ms=800)
    params = timeline.sample(fps=25, base=state.neutral_params())   # list[EditParams]
    frames = render_timeline(engine, state, timeline, fps=25)        # (n, 512, 512, 3) uint8

Modules: :mod:`.timeline` (keyframes, easing, :class:`~.timeline.Gesture`, layering),
:mod:`.presets` (the named expressions), the command language in three rooms —
:mod:`.lexicon` (the word tables, data), :mod:`.phrases` (natural Korean/English
commands) and :mod:`.precise` (the precise sequence syntax) — with
:mod:`.language` as their one entry point (:func:`parse_command`), :mod:`.idle`
(blinks, breathing, saccades), :mod:`.cache` (rendered clips), :mod:`.render`
(engine glue), :mod:`.guide` (parameter guide).
"""

from __future__ import annotations

from .cache import ClipCache, clip_key, source_digest
from .idle import idle_gesture, idle_timeline, with_idle
from .language import Action, CommandPlan, command_timeline, is_precise, parse_command, parse_precise
from .presets import PRESET_NAMES, PRESETS, Preset, get_preset, preset_gesture
from .render import render_timeline
from .timeline import (
    DEFAULT_FPS,
    NOMINAL_EYE_RATIO,
    NOMINAL_LIP_RATIO,
    Abs,
    Easing,
    Gesture,
    Keyframe,
    Rel,
    Step,
    Timeline,
    ease,
    resolve_base,
    sequence,
)

__all__ = [
    "Abs",
    "Action",
    "ClipCache",
    "CommandPlan",
    "DEFAULT_FPS",
    "Easing",
    "Keyframe",
    "Gesture",
    "NOMINAL_EYE_RATIO",
    "NOMINAL_LIP_RATIO",
    "PRESETS",
    "PRESET_NAMES",
    "Preset",
    "Rel",
    "Step",
    "Timeline",
    "clip_key",
    "command_timeline",
    "ease",
    "get_preset",
    "idle_gesture",
    "idle_timeline",
    "is_precise",
    "parse_command",
    "parse_precise",
    "preset_gesture",
    "render_timeline",
    "resolve_base",
    "sequence",
    "source_digest",
    "with_idle",
]
