"""From a command to the timeline that is rendered: parse, check its size, then add idle liveliness."""

from __future__ import annotations

from ..errors import LimitError
from .idle import with_idle
from .language import CommandPlan, parse_command
from .timeline import Timeline

IDLE_LEAD_IN_MS: float = 0.0
IDLE_TAIL_MS: float = 600.0
"""With idle on, the clip runs on this long after the command, so idle visibly resumes."""

MAX_CLIP_MS: float = 10 * 60 * 1000.0
"""Longest clip a command may describe by default (the CLI's bound; the web app's is smaller, see
:class:`lpstudio.server.limits.ServiceLimits`)."""
MAX_STEPS: int = 256
"""Most motions (steps) a command may place on its timeline by default."""


def check_timeline(
    timeline: Timeline,
    *,
    max_duration_ms: float = MAX_CLIP_MS,
    max_steps: int = MAX_STEPS,
    extra_ms: float = 0.0,
) -> None:
    """Refuse a timeline longer than ``max_duration_ms`` (counting ``extra_ms`` still to be added) or
    with more than ``max_steps`` steps, before anything is sampled or layered on it.

    Raises :class:`~lpstudio.errors.LimitError` naming the limit.
    """
    duration = timeline.duration_ms + max(0.0, extra_ms)
    if duration > max_duration_ms:
        raise LimitError(
            f"the command describes a {duration / 1000:.1f} s clip; the limit is {max_duration_ms / 1000:g} s",
            hint="use shorter holds and waits, or fewer repetitions",
        )
    steps = len(timeline.main_steps)
    if steps > max_steps:
        raise LimitError(
            f"the command has {steps} steps; the limit is {max_steps}",
            hint="split it into several commands",
        )


def build_timeline(
    text: str,
    *,
    idle: bool = True,
    seed: int = 0,
    lead_in_ms: float = IDLE_LEAD_IN_MS,
    tail_ms: float = IDLE_TAIL_MS,
    max_duration_ms: float = MAX_CLIP_MS,
    max_steps: int = MAX_STEPS,
) -> tuple[CommandPlan, Timeline]:
    """``(plan, timeline)`` for ``text``; with ``idle`` the command is layered over seeded idle liveliness.

    The command's size is checked (:func:`check_timeline`) before idle liveliness, whose cost
    grows with the clip's length, is built.
    """
    plan = parse_command(text)
    timeline = plan.timeline()
    check_timeline(
        timeline,
        max_duration_ms=max_duration_ms,
        max_steps=max_steps,
        extra_ms=(lead_in_ms + tail_ms) if idle else 0.0,
    )
    if idle:
        timeline = with_idle(timeline, seed, lead_in_ms=lead_in_ms, tail_ms=tail_ms)
    return plan, timeline
