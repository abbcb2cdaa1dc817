"""How the expression parameters move the implicit keypoints.

Each expression parameter adds ``value * coefficient`` to fixed coordinates of
the source expression deformation ``exp`` (B,21,3). The keypoint indices and
coefficients are the official editing panel's (``gradio_pipeline.py``,
``update_delta_new_*``); the application order is fixed by
:data:`EXPRESSION_ORDER` and matters only through rounding. The head pose and
``mov_z`` parameters act on the rotation and scale instead (see
:mod:`lpstudio.engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .params import EditParams

X, Y, Z = 0, 1, 2


@dataclass(frozen=True)
class Offset:
    """``exp[:, kp, axis] += value * per_unit``."""

    kp: int
    axis: int
    per_unit: float


@dataclass(frozen=True)
class ExpressionEdit:
    """The keypoint offsets of one parameter; ``negative`` replaces ``offsets`` for values < 0."""

    offsets: tuple[Offset, ...]
    negative: tuple[Offset, ...] | None = None

    def keypoints(self) -> list[int]:
        return sorted({o.kp for o in self.offsets + (self.negative or ())})


# Eye gaze: keypoints 11 and 15 are the pupils. Vertical gaze also moves the lids:
# the official code applies a "blink" of -eyeball_y/2 to keypoints 11, 13, 15, 16.
_EYEBALL_Y = (
    Offset(11, Y, -0.001),
    Offset(15, Y, -0.001),
    Offset(11, Y, 0.0005),  # blink * -0.001
    Offset(13, Y, -0.00015),  # blink * 0.0003
    Offset(15, Y, 0.0005),
    Offset(16, Y, -0.00015),
)

EXPRESSION_EDITS: dict[str, ExpressionEdit] = {
    "eyeball_x": ExpressionEdit(
        offsets=(Offset(11, X, 0.0007), Offset(15, X, 0.001)),
        negative=(Offset(11, X, 0.001), Offset(15, X, 0.0007)),
    ),
    "eyeball_y": ExpressionEdit(_EYEBALL_Y),
    "smile": ExpressionEdit(
        (
            Offset(20, Y, -0.01),
            Offset(14, Y, -0.02),
            Offset(17, Y, 0.0065),
            Offset(17, Z, 0.003),
            Offset(13, Y, -0.00275),
            Offset(16, Y, -0.00275),
            Offset(3, Y, -0.0035),
            Offset(7, Y, -0.0035),
        )
    ),
    "wink": ExpressionEdit(
        (
            Offset(11, Y, 0.001),
            Offset(13, Y, -0.0003),
            Offset(17, X, 0.0003),
            Offset(17, Y, 0.0003),
            Offset(3, Y, -0.0003),
        )
    ),
    "eyebrow": ExpressionEdit(
        offsets=(Offset(1, Y, 0.001), Offset(2, Y, -0.001)),
        negative=(Offset(1, X, -0.001), Offset(2, X, 0.001), Offset(1, Y, 0.0003), Offset(2, Y, -0.0003)),
    ),
    "lip_variation_zero": ExpressionEdit((Offset(19, X, 1.0),)),
    "lip_variation_one": ExpressionEdit(
        (Offset(14, Y, 0.001), Offset(3, Y, -0.0005), Offset(7, Y, -0.0005), Offset(17, Z, -0.0005))
    ),
    "lip_variation_two": ExpressionEdit((Offset(20, Z, -0.001), Offset(20, Y, -0.001), Offset(14, Y, -0.001))),
    "lip_variation_three": ExpressionEdit((Offset(19, Y, 0.001), Offset(19, Z, 0.0001), Offset(17, Y, -0.0001))),
    "mov_x": ExpressionEdit((Offset(5, X, -1.0),)),  # the official panel applies -mov_x
    "mov_y": ExpressionEdit((Offset(5, Y, 1.0),)),
}

EXPRESSION_ORDER: tuple[str, ...] = (
    "eyeball_x",
    "eyeball_y",
    "smile",
    "wink",
    "eyebrow",
    "lip_variation_zero",
    "lip_variation_one",
    "lip_variation_two",
    "lip_variation_three",
    "mov_x",
    "mov_y",
)
"""Order in which the official panel adds the offsets (gaze first, then smile...)."""


def edit_expression(exp: torch.Tensor, params: Sequence[EditParams]) -> torch.Tensor:
    """Source expression (1,21,3) or (B,21,3) -> edited copies (B,21,3), one per parameter set."""
    b = len(params)
    out = exp.expand(b, *exp.shape[1:]).clone()
    for name in EXPRESSION_ORDER:
        values = torch.tensor([getattr(p, name) for p in params], dtype=out.dtype, device=out.device)
        if not bool(values.any()):
            continue
        edit = EXPRESSION_EDITS[name]
        if edit.negative is None:
            groups = [(edit.offsets, values)]
        else:  # official: the positive set for value > 0, the other set otherwise
            positive = values > 0
            groups = [
                (edit.offsets, torch.where(positive, values, 0.0)),
                (edit.negative, torch.where(positive, 0.0, values)),
            ]
        for offsets, v in groups:
            for o in offsets:
                out[:, o.kp, o.axis] += v * o.per_unit
    return out
