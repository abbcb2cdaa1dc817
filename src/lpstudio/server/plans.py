"""Request bodies and what they mean: from a ``/generate`` request to a bounded timeline.

:func:`plan_clip` parses and checks a request against the
:class:`~lpstudio.server.limits.ServiceLimits` *before* anything is sampled or layered
(a command over a limit is a 400 naming the limit); :func:`sample_clip` then samples it.
Both are plain functions (run them off the event loop) that another front end can reuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import CommandError
from ..expressions.cache import clip_key
from ..expressions.compose import IDLE_TAIL_MS, build_timeline
from ..expressions.idle import idle_timeline, with_idle
from ..expressions.language import Action
from ..expressions.presets import get_preset
from ..expressions.timeline import Timeline
from ..params import EditParams
from .limits import ServiceLimits
from .worker import PRIORITY_BACKGROUND, PRIORITY_CLIP

MAX_SEED = 2**32 - 1
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


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    params: dict[str, float | None] = Field(default_factory=dict, description="parameter values; the rest neutral")


@dataclass(frozen=True)
class ClipPlan:
    """What a request renders: the timeline, at which fps, with its step list for the page."""

    timeline: Timeline
    fps: float
    steps: list[dict]
    plan: dict | None
    priority: int

    def start_info(self) -> dict[str, Any]:
        return {"fps": self.fps, "steps": self.steps, "plan": self.plan}


def plan_clip(body: GenerateRequest, *, fps: float, idle: bool, limits: ServiceLimits) -> ClipPlan:
    """The bounded timeline of a request (raises LimitError / CommandError before sampling anything)."""
    limits.check_fps(fps)
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


def clip_cache_key(digest: str, plan: ClipPlan, base: EditParams, settings_key: str) -> str:
    """What determines a clip's lines: the photo, the timeline as sampled, the engine and display settings."""
    return clip_key(digest, plan.timeline.key(plan.fps, base), {"engine": settings_key})


def sample_clip(plan: ClipPlan, base: EditParams) -> list[EditParams]:
    """One parameter set per frame (bounded by the limits checked in :func:`plan_clip`)."""
    return plan.timeline.sample(plan.fps, base)
