"""Crop controls: how large the face square is, where it sits, whether it turns, how sure detection must be.

One frozen :class:`CropOptions` travels with the face pipeline
(:attr:`FacePipeline.crop_options <lpstudio.face.pipeline.FacePipeline.crop_options>`,
or per call: ``analyze(photo, crop=...)``), so the source crop, the driving-video
crop and detection all read the same values; there is no global setting. The
defaults are the official ones (``src/config/argument_config.py`` and
``crop_config.py``), so crops are unchanged unless asked:

==================  ============================  =======  ==========================================
option              official name                 default  effect
==================  ============================  =======  ==========================================
``scale``           ``scale``                     2.3      square side over the landmark extent;
                                                           larger shows more hair and shoulders
``vx``              ``vx_ratio``                  0        shift right (+) / left (-), in sides
``vy``              ``vy_ratio``                  -0.125   shift down (+) / up (-), in sides
``rotate``          ``flag_do_rot``               True     turn the square with the head's roll
``driving_scale``   ``scale_crop_driving_video``  2.2      the same for driving-video frames
``driving_vx``      ``vx_ratio_crop_driving_video`` 0
``driving_vy``      ``vy_ratio_crop_driving_video`` -0.1
``det_thresh``      ``det_thresh``                None     minimum face score; None keeps each
                                                           detector's own (InsightFace 0.1,
                                                           MediaPipe 0.5 short / 0.6 full range)
==================  ============================  =======  ==========================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

from ..errors import ParamError
from .crop import CROP_SCALE, CROP_VX, CROP_VY

#: Square side over landmark extent for driving frames (official ``scale_crop_driving_video``).
DRIVING_CROP_SCALE: float = 2.2
#: Horizontal shift of driving crops (official ``vx_ratio_crop_driving_video``).
DRIVING_CROP_VX: float = 0.0
#: Vertical shift of driving crops, negative is up (official ``vy_ratio_crop_driving_video``).
DRIVING_CROP_VY: float = -0.1

#: Accepted ranges. Below a scale of 1 the square cuts through the face's own landmarks; above 4 the
#: face is under a quarter of the crop and the networks (trained near 2.3) lose detail. A shift of
#: more than half a side moves the face's centre out of the square.
SCALE_RANGE: tuple[float, float] = (1.0, 4.0)
SHIFT_RANGE: tuple[float, float] = (-0.5, 0.5)
DET_THRESH_RANGE: tuple[float, float] = (0.01, 0.99)

#: Field -> (command-line option, range, what it means) for the error messages.
_SPEC: dict[str, tuple[str, tuple[float, float], str]] = {
    "scale": ("--crop-scale", SCALE_RANGE, "crop square side over the face's landmark extent"),
    "vx": ("--crop-vx", SHIFT_RANGE, "horizontal shift of the crop, in crop sides"),
    "vy": ("--crop-vy", SHIFT_RANGE, "vertical shift of the crop, in crop sides (negative is up)"),
    "driving_scale": ("--driving-crop-scale", SCALE_RANGE, "driving crop side over the landmark extent"),
    "driving_vx": ("--driving-crop-vx", SHIFT_RANGE, "horizontal shift of the driving crop"),
    "driving_vy": ("--driving-crop-vy", SHIFT_RANGE, "vertical shift of the driving crop"),
    "det_thresh": ("--det-thresh", DET_THRESH_RANGE, "minimum face detection score"),
}


def option_name(field_name: str) -> str:
    """The command-line spelling of a field (``scale`` -> ``--crop-scale``)."""
    return _SPEC[field_name][0] if field_name in _SPEC else "--no-rotate"


@dataclass(frozen=True)
class CropOptions:
    """The crop controls (see the module table); checked when made.

    Raises:
        ParamError: a value that is not a finite number, or out of its range (one line, naming the option).
    """

    scale: float = CROP_SCALE
    vx: float = CROP_VX
    vy: float = CROP_VY
    rotate: bool = True
    driving_scale: float = DRIVING_CROP_SCALE
    driving_vx: float = DRIVING_CROP_VX
    driving_vy: float = DRIVING_CROP_VY
    det_thresh: float | None = None

    def __post_init__(self) -> None:
        for name, (flag, (lo, hi), what) in _SPEC.items():
            value = getattr(self, name)
            if value is None and name == "det_thresh":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ParamError(
                    f"{flag} must be a number ({what}), got {value!r}.", hint=f"use a value from {lo:g} to {hi:g}"
                )
            if not lo <= float(value) <= hi:
                default = getattr(CropOptions, name)
                hint = (
                    f"the official default is {default:g}"
                    if default is not None
                    else ("leave it out to keep each detector's own threshold")
                )
                message = f"{flag} {value:g} is out of range: the {what} must be from {lo:g} to {hi:g}."
                raise ParamError(message, hint=hint)
            object.__setattr__(self, name, float(value))
        if not isinstance(self.rotate, bool):
            raise ParamError(f"--no-rotate: rotate must be true or false, got {self.rotate!r}.")

    @property
    def is_default(self) -> bool:
        """Whether every value is the official default."""
        return self == CropOptions()

    def merged(self, overrides: dict[str, Any] | None) -> CropOptions:
        """These options with some fields replaced (checked again); unknown names are refused.

        Raises:
            ParamError: an unknown name or a bad value.
        """
        if not overrides:
            return self
        known = {f.name for f in fields(self)}
        for name in overrides:
            if name not in known:
                raise ParamError(f"unknown crop option '{name}'.", hint=f"use one of {', '.join(sorted(known))}")
        return replace(self, **overrides)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def parse_number(flag: str, text: str | float | None) -> float | None:
    """A command-line or form value as a float (None stays None).

    Raises:
        ParamError: not a number (one line naming ``flag``).
    """
    if text is None or isinstance(text, (int, float)) and not isinstance(text, bool):
        return None if text is None else float(text)
    try:
        return float(str(text).strip())
    except ValueError:
        raise ParamError(f"{flag} must be a number, got {str(text)[:40]!r}.") from None


__all__ = [
    "DET_THRESH_RANGE",
    "DRIVING_CROP_SCALE",
    "DRIVING_CROP_VX",
    "DRIVING_CROP_VY",
    "SCALE_RANGE",
    "SHIFT_RANGE",
    "CropOptions",
    "option_name",
    "parse_number",
]
