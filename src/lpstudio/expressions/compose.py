"""From a command to the timeline that is rendered: parse, then add idle liveliness."""

from __future__ import annotations

from .idle import with_idle
from .language import CommandPlan, parse_command
from .timeline import Timeline

IDLE_LEAD_IN_MS: float = 0.0
IDLE_TAIL_MS: float = 600.0
"""With idle on, the clip runs on this long after the command, so idle visibly resumes."""


def build_timeline(
    text: str,
    *,
    idle: bool = True,
    seed: int = 0,
    lead_in_ms: float = IDLE_LEAD_IN_MS,
    tail_ms: float = IDLE_TAIL_MS,
) -> tuple[CommandPlan, Timeline]:
    """``(plan, timeline)`` for ``text``; with ``idle`` the command is layered over seeded idle liveliness."""
    plan = parse_command(text)
    timeline = plan.timeline()
    if idle:
        timeline = with_idle(timeline, seed, lead_in_ms=lead_in_ms, tail_ms=tail_ms)
    return plan, timeline
