"""``lpstudio drive``: animate a portrait with the motion of a driving video (official ``inference.py -s -d``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import add_engine_options, check_output_path, load_engine
from .faces import add_faces_option, check_faces_args

OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".gif", ".png", ".jpg", ".jpeg", ".webp", ".bmp")


def register(sub: argparse._SubParsersAction) -> None:
    from ..drive.driving_motion import DEFAULT_SMOOTH_VARIANCE, DRIVING_OPTIONS, REGIONS

    p = sub.add_parser(
        "drive",
        help="animate a portrait with a driving video (or image, saved motion, or speech audio)",
        description="Animate SOURCE (a photo) with the head and face motion of DRIVING: a video, an image, "
        "or a motion template (.npz from --save-motion, or an official .pkl), or speech audio (.wav, .mp3, .m4a: "
        "the portrait lip-syncs to it, as `lpstudio speak --audio`). The output keeps the driving "
        "video's frame rate and audio.",
    )
    p.add_argument("source", type=Path, help="the portrait photo, or a source video (docs/VIDEO_SOURCE.md)")
    p.add_argument(
        "driving", type=Path, help="driving video, image, motion template (.npz / official .pkl), or speech audio"
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output video (.mp4, .mov, .mkv); an image for a driving image"
    )
    crop = p.add_argument_group("cropping")
    crop.add_argument(
        "--driving-precropped",
        action="store_true",
        help="the driving video is already a square face crop (official default): resize only, no face detection",
    )
    crop.add_argument("--no-crop", action="store_true", help="SOURCE is already a cropped face (no paste-back)")
    crop.add_argument("--face-index", type=int, default=None, help="which face of SOURCE, largest first (default 0)")
    add_faces_option(crop)
    crop.add_argument(
        "--drive-face",
        action="append",
        default=[],
        metavar="FACE=FILE",
        help="drive face FACE (0 = largest) with its own video, motion template, image (its expression held) or "
        "speech audio (lip-sync), e.g. --drive-face 0=a.mp4 --drive-face 1=smile.jpg (repeatable; other chosen "
        "faces follow DRIVING)",
    )
    motion = p.add_argument_group("motion")
    motion.add_argument(
        "--absolute", action="store_true", help="use the driving frames' absolute pose/expression, not relative motion"
    )
    motion.add_argument("--region", choices=REGIONS, default="all", help="what the driving video moves (default all)")
    motion.add_argument("--multiplier", type=float, default=1.0, help="motion amplitude (official driving_multiplier)")
    motion.add_argument(
        "--driving-option",
        choices=DRIVING_OPTIONS,
        default="expression-friendly",
        help="expression-friendly scales the motion to the source's face size (official default)",
    )
    motion.add_argument(
        "--smooth",
        type=float,
        nargs="?",
        const=DEFAULT_SMOOTH_VARIANCE,
        default=None,
        metavar="VARIANCE",
        help=f"smooth the motion over time to remove jitter; larger is smoother (default when given: "
        f"{DEFAULT_SMOOTH_VARIANCE:g}; a source video is smoothed by default with the official 3e-07)",
    )
    motion.add_argument("--retarget-eyes", action="store_true", help="also follow the driving eyes-open ratio")
    motion.add_argument("--retarget-lip", action="store_true", help="also follow the driving lip-open ratio")
    motion.add_argument("--no-stitching", action="store_true", help="disable the stitching module")
    out = p.add_argument_group("output")
    out.add_argument("--no-audio", action="store_true", help="do not copy the driving video's audio")
    out.add_argument(
        "--save-motion", type=Path, default=None, metavar="MOTION.npz", help="also save the driving motion"
    )
    out.add_argument("--crf", type=int, default=None, help="x264 quality, lower is better (default 15)")
    out.add_argument("--batch-size", type=int, default=4, help="frames per batch (default 4)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    from .drive_video import add_video_source_options

    add_video_source_options(p)
    add_engine_options(p, default_backend="auto", crop_controls=True)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..drive.driving_motion import DriveSettings
    from ..drive.pipeline import drive, driving_kind
    from ..drive.template import MotionTemplateError, load_motion
    from ..errors import ParamError, VideoError
    from ..imageio import load_image
    from ..video import probe_video

    settings = DriveSettings(
        relative=not args.absolute,
        region=args.region,
        driving_option=args.driving_option,
        multiplier=args.multiplier,
        stitching=not args.no_stitching,
        retarget_eyes=args.retarget_eyes,
        retarget_lip=args.retarget_lip,
        smooth=args.smooth if args.smooth is not None and not args.no_smooth else 0.0,
    )
    if args.batch_size < 1:
        raise ParamError(f"--batch-size must be at least 1, got {args.batch_size}")
    from .drive_video import check_photo_only_options, is_source_video, run_video_source

    if is_source_video(args.source):  # a video as the source (official v2v)
        return run_video_source(args, settings)
    check_photo_only_options(args)
    output = check_output_path(args.output, OUTPUT_SUFFIXES)
    if args.save_motion is not None and args.save_motion.suffix.lower() != ".npz":
        raise MotionTemplateError(f"cannot write {args.save_motion}: motion templates are .npz", hint="name it *.npz")
    if not args.driving.exists():
        raise VideoError(f"cannot read {args.driving}: no such file", hint="check the path")
    from ..speech.audio import is_audio_path

    if args.faces is not None or args.drive_face:  # several faces (lpstudio.group.drive)
        return _drive_faces(args, settings, output)
    if is_audio_path(args.driving):  # speech audio: lip-sync (the `speak --audio` path)
        from .speak import drive_by_audio

        return drive_by_audio(args)
    kind = driving_kind(args.driving)
    photo = load_image(args.source)
    # fail early, before loading the models, on an unusable driving file
    if kind == "video":
        probe_video(args.driving)
    elif kind == "template":
        load_motion(args.driving)
    else:
        load_image(args.driving)

    start = time.perf_counter()
    needs_face = not args.no_crop or (kind != "template" and not args.driving_precropped)
    engine = load_engine(args, face=needs_face)
    state = engine.prepare_source(photo.rgb, crop=not args.no_crop, face_index=args.face_index)
    summary = drive(
        engine,
        state,
        args.driving,
        output,
        settings,
        batch_size=args.batch_size,
        precropped=args.driving_precropped,
        audio=not args.no_audio,
        save_motion_to=args.save_motion,
        crf=args.crf,
        progress=not args.quiet,
    )
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    parts = [f"wrote {output}: {summary.frames} frame{'s' if summary.frames != 1 else ''}"]
    if summary.kind != "image":
        parts.append(f"{float(summary.fps):.3g} fps")
        parts.append("with audio" if summary.audio else "no audio")
    parts.append(f"{summary.frames_per_second:.2f} frames/s rendering, {time.perf_counter() - start:.1f}s in all")
    print(", ".join(parts), file=sys.stderr)
    if summary.faceless_frames:
        print(
            f"{summary.faceless_frames} driving frame{'s' if summary.faceless_frames != 1 else ''} had no face "
            "and reused the previous motion",
            file=sys.stderr,
        )
    if summary.template is not None:
        print(f"saved the driving motion to {summary.template}", file=sys.stderr)
    return 0


def _drive_faces(args: argparse.Namespace, settings: object, output: Path) -> int:
    """``--faces`` / ``--drive-face``: each chosen face follows its own driving (or DRIVING), one video."""
    from ..group.drive import drive_group, parse_drive_faces, read_drivings
    from ..group.render import detect_boxes, prepare_group
    from ..group.selection import resolve_faces
    from ..imageio import load_image

    choice = check_faces_args(args)
    own = parse_drive_faces(args.drive_face)
    photo = load_image(args.source).rgb
    read = read_drivings([args.driving, *own.values()])  # an unusable driving fails before the models load
    start = time.perf_counter()
    engine = load_engine(args, face=True)
    boxes = detect_boxes(engine, photo)
    if len(boxes):
        resolve_faces(tuple(own), len(boxes))  # a --drive-face index out of range: the usual one-line error
    group = prepare_group(engine, photo, choice if choice is not None else (), extra=list(own), boxes=boxes)
    drivings = {i: own.get(i, args.driving) for i in group.indices}
    summary = drive_group(
        engine,
        group,
        drivings,
        output,
        settings,
        main=args.driving,
        batch_size=args.batch_size,
        precropped=args.driving_precropped,
        audio=not args.no_audio,
        crf=args.crf,
        progress=not args.quiet,
        read=read,
    )
    faces = ", ".join(f"{i} <- {drivings[i].name}" for i in group.indices)
    print(
        f"wrote {output}: {summary.frames} frame{'s' if summary.frames != 1 else ''}, {float(summary.fps):.3g} fps, "
        f"{'with audio' if summary.audio else 'no audio'}, faces {faces}, "
        f"{time.perf_counter() - start:.1f}s in all",
        file=sys.stderr,
    )
    return 0
