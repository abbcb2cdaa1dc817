"""``lpstudio drive SOURCE.mp4 DRIVING``: a video as the source (official ``inference.py -s video -d ...``).

The options here are registered on ``drive`` (``add_video_source_options``);
:func:`run_video_source` runs when SOURCE is a video or a folder of frames.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .common import load_engine

VIDEO_SOURCE_ONLY = ("reference_frame", "normalize_lip", "source_eye_retargeting", "concat", "face_only")
"""Options that only mean something with a source video (a photo source refuses them)."""


def add_video_source_options(p: argparse.ArgumentParser) -> None:
    """The source-video options of ``drive`` (docs/VIDEO_SOURCE.md)."""
    from ..drive.source_video import DETECT_EVERY
    from ..drive.v2v import AUDIO_CHOICES

    g = p.add_argument_group("a video as the source")
    g.add_argument(
        "--no-smooth", action="store_true", help="do not smooth the motion (a source video is smoothed by default)"
    )
    g.add_argument(
        "--reference-frame",
        default=None,
        metavar="N|auto",
        help="relative motion against driving frame N (default 0); auto: the driving frame whose expression "
        "is nearest the source's first frame",
    )
    g.add_argument(
        "--normalize-lip",
        action="store_true",
        help="close the source's lips before animating (official flag_normalize_lip)",
    )
    g.add_argument(
        "--source-eye-retargeting",
        action="store_true",
        help="hold every source frame's eyes at the first frame's openness "
        "(official flag_source_video_eye_retargeting)",
    )
    g.add_argument(
        "--audio",
        choices=AUDIO_CHOICES,
        default=None,
        help="whose sound the output keeps (default: source for a source video, driving for a photo)",
    )
    g.add_argument(
        "--concat", action="store_true", help="also write OUTPUT_concat: driving | source | result side by side"
    )
    g.add_argument("--face-only", action="store_true", help="write the 512x512 animated face crop, not pasted back")
    g.add_argument(
        "--detect-every",
        type=int,
        default=DETECT_EVERY,
        metavar="N",
        help=f"while following the source's face, run the detector every N frames (default {DETECT_EVERY}; 0: only "
        "when the face is lost)",
    )
    g.add_argument("--max-frames", type=int, default=None, metavar="N", help="use at most N source frames")


def is_source_video(path: Path) -> bool:
    """SOURCE is a video file (by extension) or a folder of frames."""
    from ..drive.v2v import is_source_video as _is

    return _is(path)


def check_photo_only_options(args: argparse.Namespace) -> None:
    """A photo source: refuse the source-video options; map ``--audio`` onto ``--no-audio``."""
    from ..errors import ParamError

    given = [name for name in VIDEO_SOURCE_ONLY if getattr(args, name, None) not in (None, False)]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ParamError(
            f"{flag} needs a video as the source, but {args.source} is a photo",
            hint="give a source video (.mp4 ...), or leave the option out",
        )
    if args.audio == "source":
        raise ParamError(
            f"--audio source: the source {args.source} is a photo and has no sound", hint="use --audio driving or none"
        )
    if args.audio == "none":
        args.no_audio = True


def _check_output(output: Path) -> Path:
    from ..errors import ImageError
    from ..video import detect_format

    detect_format(output)  # VideoError naming the unsupported extension
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"cannot write {output}: folder {parent} does not exist", hint="create it first")
    return output


def run_video_source(args: argparse.Namespace, settings: object) -> int:
    """Run ``drive`` with a source video (``settings``: the DriveSettings built from the motion options)."""
    from dataclasses import replace

    from ..drive.pipeline import driving_kind
    from ..drive.source_video import open_source_video
    from ..drive.template import load_motion
    from ..drive.v2v import V2VOptions, drive_video_source
    from ..drive.v2v_motion import SMOOTH_OBSERVATION_VARIANCE, V2VMotion, parse_reference
    from ..errors import ParamError, VideoError
    from ..imageio import load_image
    from ..speech.audio import is_audio_path
    from ..video import probe_video

    output = _check_output(args.output)
    if args.save_motion is not None:
        raise ParamError(
            "--save-motion is not available with a source video",
            hint="save the motion of the driving video with a photo source",
        )
    if not args.driving.exists():
        raise VideoError(f"cannot read {args.driving}: no such file", hint="check the path")
    if is_audio_path(args.driving):  # dubbing: only the mouth follows the speech (docs/VIDEO_SOURCE_EDITS.md)
        from .video_edits import drive_video_by_audio

        return drive_video_by_audio(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ParamError(f"--max-frames must be at least 1, got {args.max_frames}")
    if args.detect_every < 0:
        raise ParamError(f"--detect-every must be 0 or positive, got {args.detect_every}")
    open_source_video(args.source, max_frames=args.max_frames)  # fail early: missing, not a video, 0 frames
    kind = driving_kind(args.driving)
    if kind == "video":
        probe_video(args.driving)
    elif kind == "template":
        load_motion(args.driving)
    else:
        load_image(args.driving)
    reference: int | str = 0
    if args.reference_frame is not None:
        reference = parse_reference(args.reference_frame)
    if args.smooth is not None and args.no_smooth:
        raise ParamError("--smooth and --no-smooth contradict each other", hint="give one of them")
    smooth = 0.0 if args.no_smooth else (args.smooth if args.smooth is not None else SMOOTH_OBSERVATION_VARIANCE)
    audio = args.audio or ("none" if args.no_audio else "source")
    motion = V2VMotion(
        settings=replace(settings, smooth=0.0),  # type: ignore[type-var]
        smooth=smooth,
        reference=reference,
        normalize_lip=args.normalize_lip,
        source_eye_retargeting=args.source_eye_retargeting,
    )
    options = V2VOptions(
        motion=motion,
        audio=audio,
        concat=args.concat,
        face_only=args.face_only,
        no_crop=args.no_crop,
        face_index=args.face_index,
        detect_every=args.detect_every,
        driving_precropped=args.driving_precropped,
        batch_size=args.batch_size,
        max_frames=args.max_frames,
        crf=args.crf,
        progress=not args.quiet,
    )
    start = time.perf_counter()
    needs_face = not args.no_crop or (kind != "template" and not args.driving_precropped)
    engine = load_engine(args, face=needs_face)
    summary = drive_video_source(engine, args.source, args.driving, output, options)
    for note in summary.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"wrote {output}: {summary.frames} frame{'s' if summary.frames != 1 else ''}, {float(summary.fps):.3g} fps "
        f"(the source's), {'with ' + audio + ' audio' if summary.audio else 'no audio'}, "
        f"{summary.frames_per_second:.2f} frames/s, {time.perf_counter() - start:.1f}s in all",
        file=sys.stderr,
    )
    if summary.faceless_frames:
        print(
            f"{summary.faceless_frames} driving frame{'s' if summary.faceless_frames != 1 else ''} had no face "
            "and reused the previous motion",
            file=sys.stderr,
        )
    return 0
