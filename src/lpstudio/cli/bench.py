"""``lpstudio bench``: time the render backends on synthetic weights (no download)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark every render backend against the float32 eager reference (synthetic weights)",
        description="Times F, M, W, G and stitching, render frames/s at several batch sizes, peak memory, "
        "time to first frame and PSNR of each backend vs the float32 eager reference, in one run. "
        "JSON schema: docs/BENCH.md.",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--json", action="store_true", help="print the JSON report on stdout (progress on stderr)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    p.add_argument(
        "--quick", action="store_true", help="batch size 1 and one timed iteration (unless given explicitly)"
    )
    p.add_argument("--backends", type=_csv, default=None, help="comma-separated subset (default: all registered)")
    p.add_argument("--dtypes", type=_csv, default=None, help="comma-separated dtypes (default: each backend's own)")
    p.add_argument("--batch-sizes", type=_ints, default=None, help="comma-separated (default 1,4,8; --quick: 1)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations per batch size (default 3; --quick: 1)")
    p.add_argument("--seed", type=int, default=None, help="synthetic weights seed")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, format_report, run_bench

    opts = BenchOptions.quick_options() if args.quick else BenchOptions()
    opts.device = args.device
    for name in ("backends", "dtypes", "batch_sizes", "iters", "seed"):
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    if not args.quiet:
        opts.log = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
    report = run_bench(opts)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text if args.json else format_report(report))
    return 0
