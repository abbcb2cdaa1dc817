"""``lpstudio face``: the faces found in a photo, their key points, crop and eye/lip ratios."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import check_output_path, sample_portrait
from .crop_args import add_crop_options, crop_options_from

SHEET_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "face",
        help="show the faces found in a photo: boxes, key points, crop, eye and lip ratios",
        description="Run the face pipeline on a photo and report every face (largest first): box and score, "
        "eye centres, nose tip and mouth corners, the square the networks see, and the eye/lip ratios the "
        "eye_ratio/lip_ratio parameters compare against. Coordinates are pixels of the upright photo.",
    )
    p.add_argument("photo", type=Path, nargs="?", default=None, help="the photo (default: the bundled sample)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("--sheet", type=Path, default=None, metavar="OUT.png", help="also draw what was found on the photo")
    p.add_argument(
        "--face-models",
        default="auto",
        choices=["auto", "insightface", "mediapipe"],
        help="insightface (files in the weights folder; non-commercial licence), mediapipe (Apache-2.0; "
        "pip install --no-deps mediapipe==0.10.21), auto (insightface when present, else mediapipe)",
    )
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="folder with the official files, for --face-models insightface "
        "(default: $LPSTUDIO_WEIGHTS_DIR or ~/.cache/lpstudio/weights)",
    )
    add_crop_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..face.models import open_face_pipeline
    from ..face.report import describe_faces, draw_sheet
    from ..imageio import load_image, save_image
    from ..weights import resolve_weights_dir

    crop = crop_options_from(args)  # bad values: one error line before any model loads
    sheet = check_output_path(args.sheet, SHEET_SUFFIXES) if args.sheet is not None else None
    photo = load_image(args.photo if args.photo is not None else sample_portrait())
    pipeline = open_face_pipeline(args.face_models, resolve_weights_dir(args.weights_dir), crop_options=crop)
    report = describe_faces(pipeline, photo.rgb)
    if sheet is not None:
        save_image(sheet, draw_sheet(photo.rgb, report))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_text(report, photo.source)
    if sheet is not None:
        print(f"wrote {sheet}", file=sys.stderr)
    return 0


def _print_text(report: dict, source: str) -> None:
    w, h = report["photo_size"]
    n = len(report["faces"])
    print(f"{source}: {w}x{h}, {n} face{'s' if n != 1 else ''} ({report['face_models']} face models)")
    for i, face in enumerate(report["faces"]):
        x0, y0, x1, y1 = face["box"]
        print(f"face {i}: box {x0:.0f},{y0:.0f} - {x1:.0f},{y1:.0f} (score {face['score']:.2f})")
        if face["keypoints"] is not None:
            pts = "  ".join(f"{k} {v[0]:.1f},{v[1]:.1f}" for k, v in face["keypoints"].items())
            print(f"  key points: {pts}")
        c = face["crop"]
        print(
            f"  crop: centre {c['center'][0]:.1f},{c['center'][1]:.1f}, side {c['size']:.1f}, {c['angle_deg']:.1f} deg"
        )
        left, right = face["eye_ratios"]
        eye, lip = face["eye_ratio"], face["lip_ratio"]
        print(f"  eye_ratio {eye:.2f} (left {left:.3f}, right {right:.3f}), lip_ratio {lip:.2f}")
    if report.get("faces_not_described"):
        print(f"({report['faces_not_described']} more faces not described)")
