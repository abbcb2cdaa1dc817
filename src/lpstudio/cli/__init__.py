"""The ``lpstudio`` command line.

Each sub-command lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args) -> int``. :func:`main` turns every :class:`LPStudioError` into
a plain message on stderr and an exit code: users never see a traceback for a
bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ..errors import LPStudioError

# Sub-command modules, in the order they appear in ``lpstudio --help``.
COMMAND_MODULES: tuple[str, ...] = (
    "serve",
    "edit",
    "animate",
    "speak",
    "drive",
    "face",
    "say",
    "params",
    "weights",
    "bench",
    "export",
)


def error_line(command: str, exc: LPStudioError) -> str:
    """One line: ``lpstudio CMD: error: what was wrong -> what to do`` (printable whatever the input held)."""
    text = " ".join(exc.message.split())
    if exc.hint:
        text += " -> " + " ".join(exc.hint.split())
    line = f"lpstudio {command}: error: {text}"
    return line.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates from odd argv bytes


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="lpstudio",
        description="Make a portrait photo come alive (LivePortrait engine, CLI and web app).",
    )
    parser.add_argument("--version", action="version", version=f"lpstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        return int(handler(args) or 0)
    except LPStudioError as exc:
        print(error_line(args.command, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lpstudio {args.command}: interrupted", file=sys.stderr)
        return 130
