"""A bounded amount of matching work per command, so no text can hold a worker for long.

Understanding a command runs the lexicon over its parts, sometimes more than once (a part of
modifiers is tried again with the action before it; :mod:`.speech_command` tries the tail after each
speech verb as a command of its own). Each of those passes is charged here, in *units*: one unit is
one character run through the lexicon scan (or through a close-match search for the hint). A command
whose understanding would cost more than :data:`MAX_COMMAND_WORK` units is refused with
:class:`CommandTooComplexError` (a :class:`~lpstudio.errors.CommandError`: HTTP 400) instead of
being worked on for longer.

The budget is deterministic (it counts work, not seconds), so the same command is understood, or
refused, the same way on a fast or a busy machine. It is opened by the entry points
(:func:`~lpstudio.expressions.language.parse_command`, :func:`~.phrases.parse_phrases`,
:func:`~.speech_command.split_speech`, the server's planning): nested calls share the outermost budget,
so a whole request is bounded, not each of its steps. Outside any budget, charging does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import CommandError

MAX_COMMAND_WORK: int = 60_000
"""Units one command may cost. Measured (split_speech + parse of the rest + parse of the whole): the
commands of ``tests/expressions`` and ``tests/speech/test_speech_command.py`` cost at most ~900 units,
natural 500-character commands up to ~4,100, adversarial 500-character ones (filler runs, repeated
particles, typo-like words, merged modifier parts) up to ~15,000; 125 speech verbs in a row would cost
~64,000 and are refused. At ~2 us per unit on one busy core, the budget is ~0.1-0.2 s of a worker."""


class CommandTooComplexError(CommandError):
    """A command would take more matching work than :data:`MAX_COMMAND_WORK` allows."""


@dataclass
class WorkBudget:
    """Units spent against a limit (one per command being understood)."""

    limit: int
    spent: int = 0

    def charge(self, units: int) -> None:
        """Count ``units`` of work; past the limit, raise :class:`CommandTooComplexError`."""
        self.spent += max(0, units)
        if self.spent > self.limit:
            raise CommandTooComplexError(
                "the command is too complex to understand in the time a request may take",
                hint="use shorter, simpler sentences (fewer repeated words, verbs and connectors), "
                "or split it into several commands",
            )


_CURRENT: ContextVar[WorkBudget | None] = ContextVar("lpstudio_command_budget", default=None)


@contextmanager
def command_budget(limit: int = MAX_COMMAND_WORK) -> Iterator[WorkBudget]:
    """The budget in force: a new one of ``limit`` units, or the enclosing one when there is one."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    budget = WorkBudget(limit)
    token = _CURRENT.set(budget)
    try:
        yield budget
    finally:
        _CURRENT.reset(token)


def charge(units: int) -> None:
    """Charge ``units`` to the budget in force (nothing happens outside :func:`command_budget`)."""
    budget = _CURRENT.get()
    if budget is not None:
        budget.charge(units)
