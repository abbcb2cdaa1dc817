"""``lpstudio edit``: edit one portrait with the 17 parameters and save an image."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..params import EditParams, parse_assignment
from .common import add_engine_options, check_output_path, load_engine, sample_portrait
from .faces import add_faces_option, check_faces_args

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "edit",
        help="edit a portrait (smile, head pose, gaze...) and save the image",
        description="Edit a portrait with the official editing parameters (see `lpstudio params`).",
    )
    p.add_argument(
        "source", type=Path, nargs="?", default=None, help="the portrait photo (default: the bundled sample portrait)"
    )
    p.add_argument(
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value, e.g. --set smile=1.0 --set head_yaw=10 (repeatable)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .jpg, .webp)")
    p.add_argument(
        "--no-crop", action="store_true", help="SOURCE is already a cropped face: no detection, resized to 256"
    )
    p.add_argument("--face-index", type=int, default=None, help="which face to use when there are several")
    add_faces_option(p)
    p.add_argument("--no-stitching", action="store_true", help="disable the stitching module")
    p.add_argument(
        "--expression-from", type=Path, default=None, metavar="PHOTO", help="copy the expression of another photo"
    )
    p.add_argument("--pose", action="store_true", help="with --expression-from: copy its head pose too")
    add_engine_options(p, crop_controls=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..imageio import load_image, save_image

    values = dict(parse_assignment(a) for a in args.assignments)
    params = EditParams.from_mapping(values)  # validate before loading anything
    output = check_output_path(args.output, IMAGE_SUFFIXES)
    choice = check_faces_args(args)
    if choice is not None and args.expression_from is not None:
        from ..errors import ParamError

        raise ParamError("--faces cannot be combined with --expression-from yet", hint="edit one face at a time")
    photo = load_image(args.source if args.source is not None else sample_portrait())

    start = time.perf_counter()
    engine = load_engine(args, face=not args.no_crop)
    if choice is not None:
        image = _edit_faces(engine, photo.rgb, choice, params, stitching=not args.no_stitching)
        save_image(output, image)
        print(
            f"wrote {output} ({image.shape[1]}x{image.shape[0]}) in {time.perf_counter() - start:.1f}s", file=sys.stderr
        )
        return 0
    state = engine.prepare_source(photo.rgb, crop=not args.no_crop, face_index=args.face_index)
    base = state.neutral_params()
    params = base.replace(**{k: v for k, v in params.changed().items()})
    if args.expression_from is not None:
        from ..drive.transfer import render_with_expression

        frame = render_with_expression(
            engine,
            state,
            args.expression_from,
            pose=args.pose,
            params=params,
            stitching=not args.no_stitching,
            crop=not args.no_crop,
        )
    else:
        frame = engine.render(state, [params], stitching=not args.no_stitching)[0]
    image = engine.paste_back(state, frame) if state.face is not None else frame
    save_image(output, image)
    print(f"wrote {output} ({image.shape[1]}x{image.shape[0]}) in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0


def _edit_faces(engine: object, rgb: object, choice: object, params: EditParams, *, stitching: bool) -> object:
    """The same edit on every chosen face: all faces in one render batch, pasted back into one photo."""
    from ..group.render import prepare_group, render_group_frames

    group = prepare_group(engine, rgb, choice)
    changed = params.changed()
    tracks = [[s.neutral_params().replace(**changed)] for s in group.states]
    print(f"faces {', '.join(map(str, group.indices))} of {len(group.boxes)} found", file=sys.stderr)
    return next(render_group_frames(engine, group, tracks, rows_per_batch=len(group), stitching=stitching))
