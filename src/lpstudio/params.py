"""The 17 editing parameters of the official LivePortrait editing panel.

:data:`PARAM_SPECS` lists them in the official panel order with their slider
ranges (from the official Gradio app), and :class:`EditParams` is one validated
set of values. The order in which the engine *applies* them is fixed by
:mod:`lpstudio.editing`, not by this list.

``eye_ratio`` and ``lip_ratio`` are targets for the eye/lip retargeting MLPs.
Their neutral value depends on the source photo (its own eyes-open and lip-open
ratios, rounded to 2 decimals), so in :class:`EditParams` they default to
``None``, meaning "the source's own ratio: no retargeting".
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ParamError


@dataclass(frozen=True)
class ParamSpec:
    """Range and meaning of one editing parameter."""

    name: str
    minimum: float
    maximum: float
    neutral: float | None
    """Value that leaves the source unchanged; ``None`` for the source-dependent ratios."""
    unit: str
    label: str

    def check(self, value: Any) -> float:
        """Return ``value`` as a float, or raise :class:`ParamError` saying what is wrong."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ParamError(
                    f"parameter {self.name!r} must be a number, got {value!r}",
                    hint=f"use a value from {self.minimum:g} to {self.maximum:g}",
                ) from None
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(
                f"parameter {self.name!r} must be a finite number, got {value!r}",
                hint=f"use a value from {self.minimum:g} to {self.maximum:g}",
            )
        if not (self.minimum <= value <= self.maximum):
            raise ParamError(
                f"parameter {self.name!r} = {value:g} is outside its range {self.minimum:g} .. {self.maximum:g}",
                hint=f"use a value from {self.minimum:g} to {self.maximum:g}",
            )
        return value

    def clamp(self, value: float) -> float:
        """``value`` limited to the valid range."""
        return min(self.maximum, max(self.minimum, value))


# Official slider ranges (LivePortrait app.py, "Retargeting Image" panel), in panel order.
PARAM_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("eye_ratio", 0.0, 0.8, None, "eyes-open ratio", "target eyes-open ratio"),
    ParamSpec("lip_ratio", 0.0, 0.8, None, "lip-open ratio", "target lip-open ratio"),
    ParamSpec("head_pitch", -15.0, 15.0, 0.0, "degrees", "relative pitch"),
    ParamSpec("head_yaw", -25.0, 25.0, 0.0, "degrees", "relative yaw"),
    ParamSpec("head_roll", -15.0, 15.0, 0.0, "degrees", "relative roll"),
    ParamSpec("mov_x", -0.19, 0.19, 0.0, "keypoint units", "x-axis movement"),
    ParamSpec("mov_y", -0.19, 0.19, 0.0, "keypoint units", "y-axis movement"),
    ParamSpec("mov_z", 0.9, 1.2, 1.0, "scale factor", "z-axis movement"),
    ParamSpec("lip_variation_zero", -0.09, 0.09, 0.0, "keypoint units", "pouting"),
    ParamSpec("lip_variation_one", -20.0, 15.0, 0.0, "slider units", "pursing"),
    ParamSpec("lip_variation_two", 0.0, 15.0, 0.0, "slider units", "grin"),
    ParamSpec("lip_variation_three", -90.0, 120.0, 0.0, "slider units", "lip close <-> open"),
    ParamSpec("smile", -0.3, 1.3, 0.0, "slider units", "smile"),
    ParamSpec("wink", 0.0, 39.0, 0.0, "slider units", "wink"),
    ParamSpec("eyebrow", -30.0, 30.0, 0.0, "slider units", "eyebrow"),
    ParamSpec("eyeball_x", -30.0, 30.0, 0.0, "slider units", "eye gaze (horizontal)"),
    ParamSpec("eyeball_y", -63.0, 63.0, 0.0, "slider units", "eye gaze (vertical)"),
)

SPECS_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in PARAM_SPECS}
PARAM_NAMES: tuple[str, ...] = tuple(s.name for s in PARAM_SPECS)


def unknown_param_error(name: str) -> ParamError:
    """The error for an unknown parameter name, with the closest valid names."""
    close = difflib.get_close_matches(name, PARAM_NAMES, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else f"valid names: {', '.join(PARAM_NAMES)}"
    return ParamError(f"unknown parameter {name!r}", hint=hint)


@dataclass(frozen=True)
class EditParams:
    """One validated set of the 17 editing parameters (see :data:`PARAM_SPECS`).

    Build it with keywords, or from a mapping with :meth:`from_mapping`; every
    value is checked on construction.
    """

    eye_ratio: float | None = None
    lip_ratio: float | None = None
    head_pitch: float = 0.0
    head_yaw: float = 0.0
    head_roll: float = 0.0
    mov_x: float = 0.0
    mov_y: float = 0.0
    mov_z: float = 1.0
    lip_variation_zero: float = 0.0
    lip_variation_one: float = 0.0
    lip_variation_two: float = 0.0
    lip_variation_three: float = 0.0
    smile: float = 0.0
    wink: float = 0.0
    eyebrow: float = 0.0
    eyeball_x: float = 0.0
    eyeball_y: float = 0.0

    def __post_init__(self) -> None:
        for spec in PARAM_SPECS:
            value = getattr(self, spec.name)
            if value is None and spec.neutral is None:
                continue
            object.__setattr__(self, spec.name, spec.check(value))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> EditParams:
        """Build from ``{name: value}``; unknown names raise :class:`ParamError`."""
        for name in values:
            if name not in SPECS_BY_NAME:
                raise unknown_param_error(str(name))
        return cls(**dict(values))

    def replace(self, **changes: Any) -> EditParams:
        """A copy with some values changed (validated)."""
        for name in changes:
            if name not in SPECS_BY_NAME:
                raise unknown_param_error(name)
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, float | None]:
        """All 17 values in panel order."""
        return {name: getattr(self, name) for name in PARAM_NAMES}

    def changed(self) -> dict[str, float]:
        """Only the values that differ from neutral (ratios: those that are set)."""
        out: dict[str, float] = {}
        for spec in PARAM_SPECS:
            value = getattr(self, spec.name)
            if value is not None and value != spec.neutral:
                out[spec.name] = value
        return out


def parse_assignment(text: str) -> tuple[str, float]:
    """Parse one ``name=value`` command-line assignment (as in ``--set smile=1``)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ParamError(f"cannot read {text!r} as a parameter setting", hint="write it as name=value, e.g. smile=1.0")
    if name not in SPECS_BY_NAME:
        raise unknown_param_error(name)
    return name, SPECS_BY_NAME[name].check(raw.strip())
