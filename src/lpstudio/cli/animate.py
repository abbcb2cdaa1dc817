"""``lpstudio animate PHOTO TEXT -o OUT``: render an expression command to a video.

The output format follows ``-o``: ``.mp4`` (H.264), ``.webm`` (VP9), ``.gif``,
or a folder name (PNG frames). Rendered clips can be cached with ``--cache-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import LPStudioError
from .say import add_timeline_options

DEFAULT_BATCH_SIZE: int = 4


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "animate",
        help="make a photo perform an expression command and write a video",
        description="Render a Korean/English expression command (e.g. '웃어줘') on a portrait photo.",
    )
    p.add_argument("photo", help="portrait photo (PNG/JPEG)")
    p.add_argument("text", help="the command, e.g. '웃어줘', 'smile and wink', 'blink twice'")
    p.add_argument("-o", "--output", required=True, help="output .mp4/.webm/.gif, or a folder for PNG frames")
    add_timeline_options(p)
    p.add_argument("--weights", metavar="DIR", help="weights folder (default: the engine's default)")
    p.add_argument("--device", help="torch device, e.g. cuda or cpu (default: best available)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--no-crop", action="store_true", help="use the photo as the face crop as-is")
    p.add_argument("--paste-back", action="store_true", help="paste the face back into the full photo")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    p.add_argument("--cache-dir", help="cache rendered clips in this folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..expressions.cache import ClipCache, source_digest
    from ..expressions.compose import build_timeline
    from ..expressions.render import render_timeline
    from ..videoio import VideoWriter, detect_format
    from .params import load_image

    fmt = detect_format(args.output)  # fail on a bad output name before loading anything
    _, timeline = build_timeline(args.text, idle=not args.no_idle, seed=args.seed)
    n_frames = timeline.frame_count(args.fps)
    image = load_image(args.photo)
    try:
        from ..engine import load_model  # type: ignore[import-not-found]
    except ImportError as exc:
        raise LPStudioError(
            "the engine (lpstudio.engine) is not available in this build", hint=f"import failed: {exc}"
        ) from None
    engine = load_model(weights_dir=args.weights, device=args.device, dtype=args.dtype)
    crop = not args.no_crop
    state = engine.prepare_source(image, crop=crop)

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
            batch_size=args.batch_size,
            paste_back=args.paste_back,
            cache=cache,
            source_id=source_digest(image, crop=crop),
            engine_settings={"weights": args.weights, "device": args.device, "dtype": args.dtype},
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
