"""``lpstudio params``: the guide to the 17 editing parameters (text, JSON, markdown, contact sheet)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ImageError, LPStudioError

DEFAULT_SHEET_IMAGE: str = "astronaut.png"


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
    p.add_argument(
        "--image", metavar="PHOTO", help="source photo for --sheet (default: the bundled astronaut)"
    )
    p.add_argument("--weights", metavar="DIR", help="weights folder (default: the engine's default)")
    p.add_argument("--device", help="torch device, e.g. cuda or cpu")
    p.add_argument("--no-crop", action="store_true", help="use the photo as the face crop as-is")
    p.set_defaults(handler=run)


def load_image(path: str | None) -> object:
    """An RGB uint8 array from ``path`` (or the bundled astronaut photo)."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    src = Path(path) if path else Path(__file__).resolve().parent.parent / "assets" / DEFAULT_SHEET_IMAGE
    try:
        with Image.open(src) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise ImageError(f"photo {str(src)!r} does not exist") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageError(f"cannot read photo {str(src)!r}: {exc}", hint="use a PNG or JPEG image") from None


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
    from PIL import Image

    from ..expressions.guide import contact_sheet

    try:
        from ..engine import load_model  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LPStudioError(
            "the engine (lpstudio.engine) is not available in this build", hint=f"import failed: {exc}"
        ) from None
    engine = load_model(weights_dir=args.weights, device=args.device)
    image = load_image(args.image)
    state = engine.prepare_source(image, crop=not args.no_crop)
    sheet = contact_sheet(lambda ps: engine.render(state, ps), state.neutral_params())
    out = Path(args.sheet)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0
