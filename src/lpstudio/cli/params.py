"""``lpstudio params``: the guide to the 17 editing parameters (text, JSON, markdown, contact sheet)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_engine_options, load_engine, sample_portrait


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "params",
        help="explain the 17 editing parameters (ranges, keypoints, effects); render a contact sheet",
        description="Explain the 17 editing parameters. With --sheet, render one row per parameter at "
        "minimum / neutral / maximum (needs weights).",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the guide as JSON")
    out.add_argument("--markdown", action="store_true", help="print docs/PARAMETERS.md")
    out.add_argument("--sheet", metavar="OUT.png", help="render a contact sheet with the engine")
    p.add_argument("--image", metavar="PHOTO", help="source photo for --sheet (default: the bundled astronaut)")
    p.add_argument("--no-crop", action="store_true", help="the photo is already a cropped face")
    add_engine_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..expressions.guide import guide_json, guide_markdown, guide_text

    if args.json:
        print(json.dumps(guide_json(), ensure_ascii=False, indent=2))
        return 0
    if args.markdown:
        sys.stdout.write(guide_markdown())
        return 0
    if not args.sheet:
        print(guide_text())
        return 0
    return _sheet(args)


def _sheet(args: argparse.Namespace) -> int:
    from ..expressions.guide import contact_sheet
    from ..imageio import load_image, save_image

    engine = load_engine(args, face=not args.no_crop)
    image = load_image(args.image if args.image else sample_portrait()).rgb
    state = engine.prepare_source(image, crop=not args.no_crop)
    sheet = contact_sheet(lambda ps: engine.render(state, ps), state.neutral_params())
    out = Path(args.sheet)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(out, sheet)
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0
