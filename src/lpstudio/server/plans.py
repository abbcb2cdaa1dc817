"""Request bodies and what they mean: from a ``/generate`` request to a bounded timeline.

:func:`plan_clip` parses and checks a request against the
:class:`~lpstudio.server.limits.ServiceLimits` *before* anything is sampled or layered
(a command over a limit is a 400 naming the limit); :func:`sample_clip` then samples it.
Both are plain functions (run them off the event loop) that another front end can reuse.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CommandError, OverloadedError
from ..expressions.budget import command_budget
from ..expressions.cache import clip_key
from ..expressions.compose import IDLE_TAIL_MS, build_timeline
from ..expressions.idle import idle_timeline, with_idle
from ..expressions.language import Action
from ..expressions.presets import get_preset
from ..expressions.timeline import Timeline
from ..params import EditParams
from ..speech.clip import SpeechClip
from ..speech.command import TALK
from .limits import ServiceLimits
from .speech import SpeechMemo, SpeechStart, audio_start, speaking_command, talk_preset
from .worker import PRIORITY_BACKGROUND, PRIORITY_CLIP

T = TypeVar("T")
MAX_SEED = 2**32 - 1
REASON_PLANNING = "planning"
"""The refusal reason (metrics label) of a request refused because planning slots are full."""
IDLE_LOOP_MS = 4000.0
"""Length of the idle-liveliness loop the page plays while waiting."""


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    preset: str | None = Field(None, max_length=64, description="a preset name (see GET /expressions)")
    command: str | None = Field(
        None, max_length=10_000, description="free text in Korean or English, or the precise sequence syntax"
    )
    idle_loop: bool = Field(False, description="render the idle-liveliness loop instead of a command")
    intensity: float = Field(1.0, ge=0.0, le=3.0, allow_inf_nan=False)
    speed: float = Field(1.0, gt=0.0, le=4.0, allow_inf_nan=False)
    idle: bool | None = Field(None, description="layer idle liveliness under the command (default: server setting)")
    fps: float | None = Field(None, gt=0.0, le=120.0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    faces: list[int] | str | None = Field(
        None, max_length=64, description="faces to animate: numbers (0 = largest) or 'all'; default the session's face"
    )


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    params: dict[str, float | None] = Field(default_factory=dict, description="parameter values; the rest neutral")
    faces: list[int] | str | None = Field(
        None, max_length=64, description="faces to animate: numbers (0 = largest) or 'all'; default the session's face"
    )


@dataclass(frozen=True)
class ClipPlan:
    """What a request renders: the timeline, at which fps, with its step list for the page.

    A clip that speaks carries ``speech`` (its audio, on the clock of the frames): it is sampled at
    ``k * 1000 / fps`` for ``speech.clip.frame_count(fps)`` frames, and its audio goes in the
    ``start`` line.
    """

    timeline: Timeline
    fps: float
    steps: list[dict]
    plan: dict | None
    priority: int
    speech: SpeechStart | None = None
    requested_fps: float | None = None  # the rate asked for, when the adaptive rate (pacing.py) lowered it
    expected_start_s: float | None = None  # when it can start playing, predicted from the measured render rate

    def start_info(self) -> dict[str, Any]:
        info = {
            "fps": self.fps,
            "requested_fps": self.requested_fps or self.fps,
            "steps": self.steps,
            "plan": self.plan,
            "speaks": self.speech is not None,
        }
        if self.expected_start_s is not None:
            info["expected_start_s"] = self.expected_start_s
        return info

    @property
    def frame_count(self) -> int:
        """Frames this plan renders (what admission counts before sampling)."""
        if self.speech is not None:
            return self.speech.clip.frame_count(self.fps)
        return self.timeline.frame_count(self.fps)

    @property
    def audio_json(self) -> bytes | None:
        """The serialised ``audio`` object of the start line (None for a silent clip)."""
        return None if self.speech is None else self.speech.audio_json


def plan_clip(
    body: GenerateRequest, *, fps: float, idle: bool, limits: ServiceLimits, memo: SpeechMemo | None = None
) -> ClipPlan:
    """The bounded timeline of a request (raises LimitError / CommandError before sampling anything).

    A request that speaks gets its audio from ``memo`` when the same request was spoken before.
    Understanding the command is bounded by one work budget for the whole request
    (:mod:`lpstudio.expressions.budget`: CommandTooComplexError, a 400).
    """
    with command_budget():
        return _plan_clip(body, fps=fps, idle=idle, limits=limits, memo=memo)


def _plan_clip(
    body: GenerateRequest, *, fps: float, idle: bool, limits: ServiceLimits, memo: SpeechMemo | None
) -> ClipPlan:
    limits.check_fps(fps)
    if not body.idle_loop and (body.preset or (body.command and body.command.strip())):
        key = speech_key(body, fps=fps, idle=idle, limits=limits)

        def make() -> SpeechStart | None:
            clip = _speech(body, idle=idle, limits=limits)
            return None if clip is None else audio_start(clip, fps)

        speech = memo.get_or_make(key, make) if memo is not None else make()
        if speech is not None:
            return _speech_plan(speech, fps)
    if body.idle_loop:
        timeline = idle_timeline(min(IDLE_LOOP_MS, limits.max_clip_ms), body.seed)
        plan = None
    elif body.preset:
        preset = get_preset(body.preset)
        timeline = Action(preset.name, body.intensity, body.speed, 1, body.preset).timeline()
        limits.check_timeline(timeline, extra_ms=IDLE_TAIL_MS if idle else 0.0)
        plan = {"text": body.preset, "groups": [[{"preset": preset.name, "intensity": body.intensity,
                                                  "speed": body.speed, "repeat": 1}]]}  # fmt: skip
        if idle:
            timeline = with_idle(timeline, body.seed, tail_ms=IDLE_TAIL_MS)
    elif body.command and body.command.strip():
        limits.check_command(body.command)
        command_plan, timeline = build_timeline(
            body.command, idle=idle, seed=body.seed, max_duration_ms=limits.max_clip_ms, max_steps=limits.max_steps
        )
        plan = command_plan.to_json()
    else:
        raise CommandError("nothing to do: give a preset, a command or idle_loop", hint='e.g. {"command": "웃어줘"}')
    priority = PRIORITY_BACKGROUND if body.idle_loop else PRIORITY_CLIP
    return ClipPlan(timeline, fps, [s.to_json() for s in timeline.steps], plan, priority)


def speech_key(body: GenerateRequest, *, fps: float, idle: bool, limits: ServiceLimits) -> Hashable:
    """What a spoken request's audio is remembered under in a :class:`SpeechMemo`."""
    return ("generate", body.preset, body.command, body.speed, body.seed, idle, fps, limits.max_clip_ms)


def _speech(body: GenerateRequest, *, idle: bool, limits: ServiceLimits) -> SpeechClip | None:
    """The speaking clip of a request (the talk preset, or a command that speaks), else None."""
    if body.idle_loop:
        return None
    if body.preset:
        if get_preset(body.preset).name != TALK:
            return None
        return talk_preset(speed=body.speed, idle=idle, seed=body.seed, limits=limits)
    if body.command and body.command.strip():
        return speaking_command(body.command, idle=idle, seed=body.seed, limits=limits)
    return None


def _speech_plan(speech: SpeechStart, fps: float) -> ClipPlan:
    """The plan of a speaking clip (its audio serialised off the event loop)."""
    clip = speech.clip
    plan = clip.info.get("plan") if isinstance(clip.info.get("plan"), dict) else None
    steps = [s.to_json() for s in clip.timeline.main_steps]
    return ClipPlan(clip.timeline, fps, steps, plan, PRIORITY_CLIP, speech)


def speech_plan(clip: SpeechClip, fps: float, limits: ServiceLimits) -> ClipPlan:
    """The plan of an uploaded speech's clip (its length was bounded while decoding)."""
    limits.check_fps(fps)
    steps = [s.to_json() for s in clip.timeline.main_steps]
    return ClipPlan(clip.timeline, fps, steps, None, PRIORITY_CLIP, audio_start(clip, fps))


def clip_cache_key(digest: str, plan: ClipPlan, base: EditParams, settings_key: str) -> str:
    """What determines a clip's lines: the photo, the timeline as sampled, the audio it is spoken with (two
    texts never share frames), the engine and display settings."""
    extra = {"engine": settings_key}
    if plan.speech is not None:
        extra["audio"] = plan.speech.audio_key
        extra["frames"] = str(plan.frame_count)
    return clip_key(digest, plan.timeline.key(plan.fps, base), extra)


def sample_clip(plan: ClipPlan, base: EditParams) -> list[EditParams]:
    """One parameter set per frame (bounded by the limits checked in :func:`plan_clip`)."""
    if plan.speech is not None:
        return plan.speech.clip.sample(plan.fps, base)
    return plan.timeline.sample(plan.fps, base)


class PlanningSlots:
    """At most ``size`` requests planned at once, ``queue`` more waiting for a slot; past that a 429 at once.

    Planning runs on the shared worker threads (photo decoding, sampling and encoding use them too);
    capping it keeps a flood of distinct commands from starving everyone else, while a short queue
    (waiting on the event loop, holding no thread) lets the ordinary burst of a few pages asking at
    once through. A slot is held until the planning function has *finished* on its thread (not
    merely until its caller stopped waiting), so a client that disconnects does not free a slot while
    its work still runs; a request cancelled before a thread took its work frees its slot at once.
    Use from one event loop; the worker threads hand their slot back through that loop.
    """

    def __init__(
        self,
        size: int,
        *,
        queue: int = 0,
        retry_after_s: float = 1.0,
        on_reject: Callable[[str], None] | None = None,
    ) -> None:
        self.size = size
        self.queue = queue
        self.retry_after_s = retry_after_s
        self._on_reject = on_reject
        self._lock = threading.Lock()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.busy = 0
        """Slots held (work running, or about to run, on a thread)."""

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return len(self._waiters)

    def _refuse(self) -> OverloadedError:
        if self._on_reject is not None:
            self._on_reject(REASON_PLANNING)
        return OverloadedError(
            f"the server is busy: {self.size} requests are being planned and {self.waiting} wait (the limit)",
            reason=REASON_PLANNING,
            retry_after_s=self.retry_after_s,
        )

    async def _acquire(self) -> None:
        if self.busy < self.size and not self._waiters:
            self.busy += 1
            return
        if len(self._waiters) >= self.queue:
            raise self._refuse()
        ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(ticket)
        try:
            await ticket  # a finishing request hands its slot over (busy stays as it is)
        except asyncio.CancelledError:
            if ticket in self._waiters:
                self._waiters.remove(ticket)  # gave up before a slot came
            elif ticket.done() and not ticket.cancelled():
                self._release()  # a slot came as the wait was cancelled: pass it on
            raise

    def _release(self) -> None:
        """Hand a slot to the oldest waiter, or free it (on the event loop)."""
        while self._waiters:
            ticket = self._waiters.popleft()
            if not ticket.done():
                ticket.set_result(None)
                return
        self.busy -= 1

    async def run(self, off_loop: Callable[[Callable[[], T]], Awaitable[T]], fn: Callable[[], T]) -> T:
        """``await off_loop(fn)`` in a slot (after a wait in the queue), or :class:`OverloadedError` when full."""
        await self._acquire()
        loop = asyncio.get_running_loop()
        state = {"started": False, "abandoned": False}

        def in_slot() -> T:
            with self._lock:
                if state["abandoned"]:  # its caller is gone and its slot already freed: do nothing
                    raise asyncio.CancelledError
                state["started"] = True
            try:
                return fn()
            finally:
                try:
                    loop.call_soon_threadsafe(self._release)
                except RuntimeError:  # the loop has closed (shutdown): nothing waits for the slot
                    pass

        try:
            return await off_loop(in_slot)
        finally:
            with self._lock:
                never_ran = not state["started"]
                state["abandoned"] = never_ran
            if never_ran:  # cancelled before a thread took it: it never will
                self._release()
