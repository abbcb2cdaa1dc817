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


TORCH_CPU_INSTALL = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
"""The CPU-only PyTorch wheel (about 200 MB); a plain ``pip install torch`` on Linux pulls the CUDA build (GBs)."""
MISSING_DEPENDENCY_EXIT = 4  # as an unavailable backend: something this machine lacks


def missing_torch_line(command: str | None) -> str:
    """One line: PyTorch is missing, and the exact command for a CPU-only install."""
    prefix = f"lpstudio {command}" if command else "lpstudio"
    return (
        f"{prefix}: error: PyTorch (torch) is not installed -> for a CPU-only machine: "
        f"{TORCH_CPU_INSTALL} (a plain `pip install torch` on Linux pulls the multi-GB CUDA build); "
        "with an NVIDIA GPU: pip install torch"
    )


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        print(missing_torch_line(None), file=sys.stderr)
        return MISSING_DEPENDENCY_EXIT
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 1
    try:
        return int(handler(args) or 0)
    except ModuleNotFoundError as exc:
        if exc.name != "torch":
            raise
        print(missing_torch_line(args.command), file=sys.stderr)
        return MISSING_DEPENDENCY_EXIT
    except LPStudioError as exc:
        print(error_line(args.command, exc), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"lpstudio {args.command}: interrupted", file=sys.stderr)
        return 130
