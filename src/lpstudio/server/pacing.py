"""Adaptive rate: a clip that cannot start within the bound at the asked fps is rendered at a lower rate.

The page starts playing a clip when the rest of it, arriving at the render rate, will be there before
each frame is due (``bufferWaitS`` in ``web/app.js``, with its ``ETA_MARGIN``). With ``R`` frames a
second rendered (the server's own measured rate), ``Q`` frames of clips and previews queued ahead
and a clip of ``n`` frames at ``f`` fps, frame ``i`` arrives by ``(Q + i + 1) / R`` and is due
``i / f`` after playback starts, so playback can start after

    wait(f) = max over i of ((Q + i + 1) / R - i / f)
            = (Q + 1) / R                      if R >= f
            = (Q + n) / R - (n - 1) / f        otherwise.

:func:`paced_fps` picks the highest rate of :data:`RATE_STEPS` (at most the asked one, at least
:attr:`~.limits.ServiceLimits.min_adaptive_fps`) whose wait, times :data:`START_MARGIN`, is within
:attr:`~.limits.ServiceLimits.start_within_s`; when even the lowest rate cannot, the lowest. The clip
keeps its duration (fewer frames, same seconds): the timeline is sampled at the lower rate. A few fixed
steps (rather than any rate) keep the clip cache useful.
"""

from __future__ import annotations

import dataclasses
import math

from .limits import ServiceLimits
from .plans import ClipPlan
from .speech import audio_start

RATE_STEPS: tuple[float, ...] = (60.0, 50.0, 30.0, 25.0, 20.0, 15.0, 12.5, 10.0, 8.0, 6.0, 5.0)
"""Rates the adaptive rate chooses from (a clip is never rendered faster than asked)."""
START_MARGIN = 1.15
"""Safety factor on the predicted wait (the page's ``ETA_MARGIN``: render rates wobble)."""


def start_wait_s(frames: int, fps: float, render_fps: float, frames_ahead: int) -> float:
    """Seconds until a clip of ``frames`` at ``fps`` can start and play without a stall (formula above)."""
    if frames <= 0 or render_fps <= 0:
        return 0.0
    if render_fps >= fps:
        return (frames_ahead + 1) / render_fps
    return (frames_ahead + frames) / render_fps - (frames - 1) / fps


def frames_at(duration_s: float, fps: float) -> int:
    """Frames of a clip of ``duration_s`` at ``fps`` (first and last at the ends, as timelines sample)."""
    return int(math.ceil(duration_s * fps - 1e-9)) + 1


def paced_fps(
    requested: float, duration_s: float, render_fps: float | None, frames_ahead: int, limits: ServiceLimits
) -> float:
    """The rate to render a clip of ``duration_s`` asked at ``requested`` fps (rules in the module docstring)."""
    if render_fps is None or render_fps <= 0 or duration_s <= 0:
        return requested
    floor = min(requested, limits.min_adaptive_fps)
    candidates = [requested] + [r for r in RATE_STEPS if floor <= r < requested]
    if floor not in candidates:
        candidates.append(floor)
    for fps in candidates:
        wait = start_wait_s(frames_at(duration_s, fps), fps, render_fps, frames_ahead)
        if wait * START_MARGIN <= limits.start_within_s:
            return fps
    return candidates[-1]


def repaced(plan: ClipPlan, fps: float) -> ClipPlan:
    """``plan`` rendered at ``fps`` (same duration); a speaking clip's audio is re-timed to the new frames.

    CPU work for a speaking clip (the audio is serialised again): call it off the event loop.
    """
    if fps == plan.fps:
        return plan
    speech = plan.speech
    if speech is not None:
        speech = audio_start(speech.clip, fps)
    return dataclasses.replace(plan, fps=fps, speech=speech, requested_fps=plan.requested_fps or plan.fps)


def plan_duration_s(plan: ClipPlan) -> float:
    """How long a plan plays (seconds): its audio's length when it speaks, else its timeline's."""
    if plan.speech is not None:
        return plan.speech.clip.audio_ms / 1000.0
    return plan.timeline.duration_ms / 1000.0
