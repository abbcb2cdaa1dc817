"""Free text (Korean or English) -> a :class:`~lpstudio.expressions.timeline.Timeline`.

Two input forms are accepted by :func:`parse_command`:

**Natural commands** such as ``"웃어줘"``, ``"살짝 웃으면서 윙크해 주세요"``,
``"smile then nod twice"`` or ``"천천히 세 번 깜빡여"``:

* *sequence* (one after the other): ``고 나서``, ``한 다음``, ``그리고``, a verb
  ending in ``-고``, ``then``, ``after that``, and the punctuation ``, . ; ! ?``;
* *layering* (at the same time): ``-(으)면서``, ``-며``, ``동시에``, ``and``,
  ``while``, ``with``, ``&``, ``+`` — the first action carries, the others start
  when it reaches its peak, and the carrier is held until they are done;
* *intensity* (``살짝``, ``활짝``, ``크게``, ``a little``, ``big``...), *speed*
  (``천천히``, ``빨리``, ``slowly``...), amplified by ``아주``/``very``...;
* *repetition* (``두 번``, ``3번``, ``twice``, ``3 times``, ``x3``, or
  reduplication such as ``깜빡깜빡``);
* verb forms and politeness endings are ignored (matching is by stem), and so
  are spacing, emoji and other symbols (an emoji alone, e.g. ``😉``, is read as
  its expression).

**Precise sequences** for power users, one item per line (or ``;``), in the
spirit of ComfyUI-AdvancedLivePortrait's ``idx=change:keep`` lines but with
names and milliseconds::

    smile=300:800             # reach the smile pose in 300 ms, hold 800 ms
    smile*0.5 wink=30=200:400 # half a smile plus wink=30 (absolute values)
    blink                     # play a whole preset (over the held pose)
    nod*1.5 x2 @0.8           # intensity 1.5, twice, at 0.8x speed
    wait 300                  # hold the current pose 300 ms
    0=400:0                   # back to the base pose in 400 ms

The sequence always ends at the base pose (a 400 ms return is added if needed).

Words that are not expressions (``뭐라고``, ``좀``, ``please``, ``can you``) are ignored
when a known action is present; a command without any known action raises
:class:`~lpstudio.errors.CommandError` listing the closest known words.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import CommandError
from .budget import MAX_COMMAND_WORK, CommandTooComplexError, command_budget
from .phrases import (
    DEFAULT_WINK,
    MAX_REPEAT,
    Action,
    CommandPlan,
    close_matches,
    normalize,
    parse_phrases,
    unknown_command_error,
)
from .precise import MIN_POSE_CHANGE_MS, POSE_RETURN_MS, is_precise, parse_precise
from .timeline import Timeline

MAX_COMMAND_CHARS: int = 500


def parse_command(text: str, *, strict: bool = False) -> CommandPlan:
    """Understand a free-text (Korean/English) or precise-sequence command.

    Words that are not expressions (fillers, politeness, quoting particles) are ignored when a
    known action is present. Raises :class:`CommandError` (with close matches) when no action is
    understood, when a word is a near-miss of an action word, or (``strict``) when any part that is
    not filler cannot be understood, and :class:`CommandTooComplexError` (a :class:`CommandError`)
    when understanding it would take more work than :data:`MAX_COMMAND_WORK` allows.
    """
    if not isinstance(text, str) or not text.strip():
        raise CommandError("empty command", hint="try '웃어줘', 'smile and wink', or 'blink twice'")
    if len(text) > MAX_COMMAND_CHARS:
        raise CommandError(f"command is {len(text)} characters long", hint=f"keep it under {MAX_COMMAND_CHARS}")
    if is_precise(text):
        return CommandPlan((), text, precise=parse_precise(text))
    with command_budget():
        return parse_phrases(text, strict=strict)


def command_timeline(text: str) -> Timeline:
    """``parse_command(text).timeline()``."""
    return parse_command(text).timeline()


def plan_summary(plan: CommandPlan) -> Mapping[str, object]:
    """A short JSON-friendly description of a plan."""
    return plan.to_json()


__all__ = [
    "DEFAULT_WINK",
    "MAX_COMMAND_CHARS",
    "MAX_COMMAND_WORK",
    "MAX_REPEAT",
    "MIN_POSE_CHANGE_MS",
    "POSE_RETURN_MS",
    "Action",
    "CommandPlan",
    "CommandTooComplexError",
    "close_matches",
    "command_timeline",
    "is_precise",
    "normalize",
    "parse_command",
    "parse_phrases",
    "parse_precise",
    "plan_summary",
    "unknown_command_error",
]
