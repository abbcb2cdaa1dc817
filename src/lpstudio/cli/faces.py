"""``--faces all|0,2``: the group-photo option shared by ``edit``, ``animate``, ``speak`` and ``drive``."""

from __future__ import annotations

import argparse

FACES_HELP = (
    "animate several faces of a group photo: 'all' or face numbers such as 0,2 (numbered from 0, largest first; "
    "`lpstudio face PHOTO` lists them). Each face is cropped, rendered (all faces of a frame in one batch) and "
    "pasted back into one photo. Default: one face (--face-index, the largest)"
)


def add_faces_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--faces`` to a sub-command."""
    parser.add_argument("--faces", default=None, metavar="all|0,2", help=FACES_HELP)


def check_faces_args(args: argparse.Namespace) -> object:
    """The parsed ``--faces`` choice (None: the default single face), checked before any model work.

    Raises:
        ParamError: a bad ``--faces`` value, or ``--faces`` with ``--no-crop`` or ``--face-index``.
    """
    from ..errors import ParamError
    from ..group.selection import parse_faces_option

    choice = parse_faces_option(args.faces)
    if choice is not None and getattr(args, "no_crop", False):
        raise ParamError("--faces needs a full photo, not --no-crop", hint="leave out --no-crop to choose faces")
    if choice is not None and getattr(args, "face_index", None) is not None:
        raise ParamError(
            "--faces and --face-index both choose faces", hint="use one of them (--faces 1 = --face-index 1)"
        )
    return choice
