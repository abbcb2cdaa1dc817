"""``lpstudio say TEXT``: show how a command is understood (no weights needed).

``--dry-run --json`` prints the resolved timeline: ``{"fps", "duration_ms",
"n_frames", "base", "steps": [{"preset", "start_ms", "end_ms", "layer",
"intensity", "speed", "params"}], "frames": [{all 17 parameters}, ...]}`` plus
the parsed ``plan`` and the ``idle`` settings. The base pose is the nominal one
(eye ratio 0.35, lip ratio 0.0) unless ``--eye-ratio``/``--lip-ratio`` are given.
"""

from __future__ import annotations

import argparse
import json

from ..expressions.timeline import DEFAULT_FPS, NOMINAL_EYE_RATIO, NOMINAL_LIP_RATIO


def add_timeline_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``say`` and ``animate``."""
    p.add_argument("--fps", type=float, default=DEFAULT_FPS, help=f"frames per second (default {DEFAULT_FPS:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the idle liveliness (default 0)")
    p.add_argument("--no-idle", action="store_true", help="no idle blinks, breathing or saccades")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "say",
        help="show how a Korean/English expression command is understood (no weights needed)",
        description="Parse an expression command (e.g. '웃으면서 윙크해줘', 'smile then nod twice') and show "
        "the resolved timeline. Rendering is 'lpstudio animate PHOTO TEXT'.",
    )
    p.add_argument("text", help="the command, in Korean or English, or a precise sequence")
    p.add_argument("--dry-run", action="store_true", help="only resolve the timeline (the default: say never renders)")
    p.add_argument("--json", action="store_true", help="print the timeline as JSON, one object per frame")
    add_timeline_options(p)
    p.add_argument(
        "--eye-ratio",
        type=float,
        default=NOMINAL_EYE_RATIO,
        help=f"base eyes-open ratio (default {NOMINAL_EYE_RATIO})",
    )
    p.add_argument(
        "--lip-ratio",
        type=float,
        default=NOMINAL_LIP_RATIO,
        help=f"base lip-open ratio (default {NOMINAL_LIP_RATIO})",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..expressions.compose import build_timeline
    from ..params import EditParams

    base = EditParams(eye_ratio=args.eye_ratio, lip_ratio=args.lip_ratio)
    plan, timeline = build_timeline(args.text, idle=not args.no_idle, seed=args.seed)
    data = timeline.to_json(args.fps, base)
    if args.json:
        data["text"] = args.text
        data["plan"] = plan.to_json()
        data["idle"] = {"enabled": not args.no_idle, "seed": args.seed}
        print(json.dumps(data, ensure_ascii=False))
        return 0
    print(f"{args.text!r}: {data['duration_ms'] / 1000:.2f} s, {data['n_frames']} frames at {args.fps:g} fps")
    for s in data["steps"]:
        what = "idle liveliness" if s["layer"] < 0 else f"layer {s['layer']}"
        mods = "" if s["preset"] == "idle" else f"  intensity {s['intensity']:g}, speed {s['speed']:g}"
        print(f"  {s['start_ms']:>8.0f} - {s['end_ms']:>6.0f} ms  {s['preset']:<12} ({what}){mods}")
    return 0
