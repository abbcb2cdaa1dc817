"""Long video jobs as a sequence of small steps, so a server can interleave them with its viewers.

A :class:`SteppedJob` is a generator of :class:`JobStep` (one batch of model work each) behind a small
interface: the CLI calls :meth:`~SteppedJob.run`, a server calls :meth:`~SteppedJob.step` one at a time on
its render thread and :meth:`~SteppedJob.close` to stop early. Subclasses write :meth:`_all_steps` and set
``self.writer`` while their output is being written (a partial file, moved into place when it is complete).
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class JobStep:
    """Where a job stands after one step.

    Attributes:
        phase: e.g. ``"source"`` (tracking the source), ``"driving"`` (driving motion) or ``"render"``.
        done: frames of this phase done so far.
        total: frames of this phase (None when a header did not say).
        units_done, units_total: frames of all phases done / expected (an estimate until the clip's
            length is known), for one progress bar.
    """

    phase: str
    done: int
    total: int | None
    units_done: int = 0
    units_total: int = 0


class SteppedJob:
    """A job done step by step; a subclass provides :meth:`_all_steps` and sets ``summary``."""

    summary: Any
    writer: Any = None

    def __init__(self) -> None:
        self._steps = self._all_steps()

    def _all_steps(self) -> Generator[JobStep, None, None]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[JobStep]:
        return self._steps

    def step(self) -> JobStep | None:
        """Do the next step (at most one batch of model work); None once the job is complete."""
        return next(self._steps, None)

    def run(self) -> Any:
        """Do every step; the summary of the finished output."""
        for _ in self._steps:
            pass
        return self.summary

    def close(self) -> None:
        """Stop early: the partial output is removed (idempotent; a finished job is left as it is)."""
        self._steps.close()

    @property
    def partial_path(self) -> Path | None:
        """The partial file the output is being written to (None before writing starts or after)."""
        return None if self.writer is None else self.writer.partial_path
