"""``lpstudio animate PHOTO TEXT -o OUT``: render an expression command to a video.

A source video instead of PHOTO layers the command on the video's own motion
(:mod:`lpstudio.cli.video_edits`).

The output format follows ``-o``: ``.mp4`` (H.264), ``.webm`` (VP9), ``.gif``,
or a folder name (PNG frames). Rendered clips can be cached with ``--cache-dir``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from .common import add_engine_options, load_engine
from .faces import add_faces_option, check_faces_args
from .say import add_timeline_options

DEFAULT_BATCH_SIZE: int = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "animate",
        help="make a photo perform an expression command and write a video",
        description="Render a Korean/English expression command (e.g. '웃어줘') on a portrait photo, or over a "
        "source video's own motion (docs/VIDEO_SOURCE_EDITS.md).",
    )
    p.add_argument("photo", help="portrait photo (PNG/JPEG), or a source video (.mp4, ... or a folder of frames)")
    p.add_argument("text", nargs="?", default=None, help="the command, e.g. '웃어줘', 'smile and wink', 'blink twice'")
    p.add_argument("-o", "--output", required=True, help="output .mp4/.webm/.gif, or a folder for PNG frames")
    add_timeline_options(p)
    p.add_argument("--no-crop", action="store_true", help="the photo is already a cropped face (resized to 256)")
    p.add_argument("--face-index", type=int, default=None, help="which face to use when there are several")
    p.add_argument("--face-only", action="store_true", help="write the 512x512 face crop instead of the full photo")
    add_faces_option(p)
    p.add_argument(
        "--lip-ratio",
        type=float,
        default=None,
        help="target lip-open ratio held on every frame (official retargeting; 0 = silent lips), e.g. over a video",
    )
    add_engine_options(p, default_backend="auto", crop_controls=True)
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--cache-dir", help="cache rendered clips in this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from .video_edits import animate_video, check_lip_ratio, is_source_video

    if is_source_video(args.photo):  # a source video: the command over its own motion
        return animate_video(args)
    from ..errors import CommandError
    from ..expressions.cache import ClipCache, source_digest
    from ..expressions.compose import build_timeline
    from ..expressions.render import render_timeline
    from ..group.commands import check_face_commands, split_face_commands
    from ..imageio import load_image
    from ..video import detect_format
    from ..video_writer import VideoWriter

    fmt = detect_format(args.output)  # fail on a bad output name before loading anything
    lip_ratio = check_lip_ratio(args.lip_ratio)
    if args.text is None:
        raise CommandError("what should the portrait do?", hint='give a command, e.g. "웃어줘"')
    choice = check_faces_args(args)
    per_face = split_face_commands(args.text)
    if per_face is not None or choice is not None:
        if per_face is not None:
            check_face_commands(per_face)  # every face's part understood before loading anything
        else:
            build_timeline(args.text, idle=not args.no_idle, seed=args.seed)
        return _animate_faces(args, fmt, choice, per_face)
    _, timeline = build_timeline(args.text, idle=not args.no_idle, seed=args.seed)
    n_frames = timeline.frame_count(args.fps)
    image = load_image(args.photo).rgb

    crop = not args.no_crop
    engine = load_engine(args, face=crop)
    state = engine.prepare_source(image, crop=crop, face_index=args.face_index)
    base = state.neutral_params() if lip_ratio is None else replace(state.neutral_params(), lip_ratio=lip_ratio)

    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=n_frames, unit="frame", desc="rendering")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    cache = ClipCache(args.cache_dir) if args.cache_dir else None
    try:
        frames = render_timeline(
            engine,
            state,
            timeline,
            fps=args.fps,
            base=base,
            batch_size=args.batch_size,
            paste_back=crop and not args.face_only,
            cache=cache,
            source_id=source_digest(image, crop=crop),
            engine_settings={
                "weights": str(args.weights_dir),
                "device": str(engine.device),
                "dtype": str(engine.dtype),
                "backend": engine.backend.name,
            },
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    with VideoWriter(args.output, args.fps, fmt) as writer:
        for f in frames:
            writer.write(f)
    print(f"wrote {Path(args.output)} ({len(frames)} frames, {len(frames) / args.fps:.2f} s, {fmt})")
    return 0


def _animate_faces(args: argparse.Namespace, fmt: str, choice: object, per_face: list | None) -> int:
    """Several faces of the photo, each on its own track (a per-face command) or all on the same one."""
    from ..errors import ParamError
    from ..group.commands import resolve_face_commands
    from ..group.plan import face_params, face_timelines
    from ..group.render import detect_boxes, prepare_group, render_group_frames
    from ..imageio import load_image
    from ..video_writer import VideoWriter

    if args.no_crop:
        raise ParamError("a command for several faces needs a full photo, not --no-crop", hint="leave out --no-crop")
    image = load_image(args.photo).rgb
    engine = load_engine(args, face=True)
    boxes = detect_boxes(engine, image)
    commands = resolve_face_commands(per_face, boxes) if per_face is not None and len(boxes) else None
    if choice is None and commands is not None:
        choice = ()  # only the faces the command names
    group = prepare_group(engine, image, choice, extra=list(commands or ()), boxes=boxes)
    timelines = face_timelines(
        group.indices, commands if commands is not None else args.text, idle=not args.no_idle, seed=args.seed
    )
    tracks = face_params(timelines, [s.neutral_params() for s in group.states], args.fps)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tracks[0]), unit="frame", desc=f"rendering {len(group)} faces")
    count = 0
    try:
        with VideoWriter(args.output, args.fps, fmt) as writer:
            for frame in render_group_frames(
                engine, group, tracks, rows_per_batch=args.batch_size, paste_back=not args.face_only
            ):
                writer.write(frame)
                count += 1
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    faces = ", ".join(map(str, group.indices))
    print(f"wrote {Path(args.output)} ({count} frames, {count / args.fps:.2f} s, {fmt}, faces {faces})")
    return 0
