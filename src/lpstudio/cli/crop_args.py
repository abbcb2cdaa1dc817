"""The crop controls on the command line: ``--crop-scale/-vx/-vy``, ``--driving-crop-*``, ``--det-thresh``...

Added to ``edit``, ``animate``, ``speak``, ``drive``, ``face`` and ``serve``
(through :func:`lpstudio.cli.common.add_engine_options` with ``crop_controls=True``,
and by ``face`` itself); :func:`crop_options_from` turns them into one frozen
:class:`~lpstudio.face.crop_options.CropOptions`, checked before any model loads
(a bad value is one error line and exit status 2).
"""

from __future__ import annotations

import argparse

from ..face.crop_options import (
    DET_THRESH_RANGE,
    SCALE_RANGE,
    SHIFT_RANGE,
    CropOptions,
    parse_number,
)

#: (option, CropOptions field, help) of the numeric controls; values are parsed by :func:`crop_options_from`.
_NUMERIC: tuple[tuple[str, str, str], ...] = (
    (
        "--crop-scale",
        "scale",
        "source crop side over the face's landmark extent (official scale, default 2.3; "
        f"{SCALE_RANGE[0]:g}-{SCALE_RANGE[1]:g}): larger shows more hair, hats and shoulders, smaller is a close-up",
    ),
    (
        "--crop-vx",
        "vx",
        f"move the source crop right (+) or left (-), in crop sides (official vx_ratio, default 0; "
        f"{SHIFT_RANGE[0]:g} to {SHIFT_RANGE[1]:g})",
    ),
    ("--crop-vy", "vy", "move the source crop down (+) or up (-), in crop sides (official vy_ratio, default -0.125)"),
    (
        "--driving-crop-scale",
        "driving_scale",
        "driving-video crop side over the landmark extent (official scale_crop_driving_video, default 2.2)",
    ),
    ("--driving-crop-vx", "driving_vx", "move the driving crop right/left (official vx_ratio_crop_driving_video, 0)"),
    ("--driving-crop-vy", "driving_vy", "move the driving crop down/up (official vy_ratio_crop_driving_video, -0.1)"),
    (
        "--det-thresh",
        "det_thresh",
        f"minimum face detection score ({DET_THRESH_RANGE[0]:g}-{DET_THRESH_RANGE[1]:g}; "
        "default: each detector's own, InsightFace 0.1, MediaPipe 0.5/0.6): lower finds faint faces, higher "
        "ignores doubtful ones",
    ),
)


def add_crop_options(parser: argparse.ArgumentParser) -> None:
    """Add the crop-control group to a sub-command's parser."""
    group = parser.add_argument_group("crop controls (see docs/FACES.md)")
    for flag, field, text in _NUMERIC:
        group.add_argument(flag, dest=f"crop_{field}", default=None, metavar="X", help=text)
    group.add_argument(
        "--no-rotate",
        dest="crop_no_rotate",
        action="store_true",
        help="keep the source crop upright instead of turning it with the head's roll (official flag_do_rot=False)",
    )


def crop_options_from(args: argparse.Namespace) -> CropOptions:
    """The :class:`CropOptions` of parsed arguments (official defaults for anything not given).

    Raises:
        ParamError: a value that is not a number or out of range (names the option).
    """
    values: dict[str, object] = {}
    for flag, field, _ in _NUMERIC:
        raw = getattr(args, f"crop_{field}", None)
        if raw is not None:
            values[field] = parse_number(flag, raw)
    if getattr(args, "crop_no_rotate", False):
        values["rotate"] = False
    return CropOptions(**values)  # type: ignore[arg-type]


__all__ = ["add_crop_options", "crop_options_from"]
