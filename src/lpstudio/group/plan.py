"""Per-face parameter tracks: one timeline per chosen face, all sampled to the same length.

A face with its own command (:mod:`lpstudio.group.commands`) follows it; with a shared command
every chosen face does the same; a chosen face without a command only keeps idle liveliness
(or stays still with ``idle=False``). Each face's idle liveliness has its own seed
(``seed + face index``), so the people in a photo do not blink in unison. Shorter tracks hold
their last frame (the base pose) until the longest ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..expressions.compose import IDLE_TAIL_MS, build_timeline
from ..expressions.idle import idle_timeline
from ..expressions.timeline import DEFAULT_FPS, Timeline
from ..params import EditParams


def face_timelines(
    indices: Sequence[int],
    commands: Mapping[int, str] | str | None,
    *,
    idle: bool = True,
    seed: int = 0,
) -> list[Timeline]:
    """One timeline per face of ``indices`` (face numbers, largest first).

    ``commands``: a per-face mapping, one command for every face, or None (idle only).
    Raises :class:`~lpstudio.errors.CommandError` / :class:`~lpstudio.errors.LimitError` as
    :func:`~lpstudio.expressions.compose.build_timeline` does.
    """
    texts = {i: (commands.get(i) if isinstance(commands, Mapping) else commands) for i in indices}
    built: dict[int, Timeline] = {}
    for i in indices:
        text = texts[i]
        if text:
            built[i] = build_timeline(text, idle=idle, seed=seed + i)[1]
    longest = max((t.duration_ms for t in built.values()), default=IDLE_TAIL_MS)
    out = []
    for i in indices:
        if i in built:
            out.append(built[i])
        elif idle:
            out.append(idle_timeline(longest, seed + i))
        else:
            out.append(Timeline([], longest))
    return out


def face_params(
    timelines: Sequence[Timeline], bases: Sequence[EditParams], fps: float = DEFAULT_FPS
) -> list[list[EditParams]]:
    """Each face's timeline sampled at ``fps`` on its own base pose, padded to the longest with its last frame."""
    tracks = [t.sample(fps, b) for t, b in zip(timelines, bases, strict=True)]
    n = max(len(t) for t in tracks)
    return [t + [t[-1]] * (n - len(t)) for t in tracks]
