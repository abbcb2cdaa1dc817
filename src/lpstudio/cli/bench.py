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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="batch size 1 and one timed iteration (unless given explicitly)"
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="the long sweep: every registered backend in each of its dtypes, batch sizes 1,4,8, 3 iterations, "
        "no time budget unless --budget-s (can take an hour on a 2-core CPU)",
    )
    p.add_argument(
        "--backends", type=_csv, default=None, help="comma-separated subset (default: the plan's; --full: all)"
    )
    p.add_argument("--dtypes", type=_csv, default=None, help="comma-separated dtypes (default: each backend's own)")
    p.add_argument(
        "--batch-sizes",
        type=_ints,
        default=None,
        help="comma-separated (default 1,4 on CPU, 1,4,8 on CUDA; --quick: 1)",
    )
    p.add_argument("--iters", type=_positive_int, default=None, help="timed iterations per batch size (default 2)")
    p.add_argument(
        "--mixed-batch",
        type=int,
        default=None,
        help="batch size of the server-path mode (distinct sources in one batch; default: the largest; 0: off)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="time budget in seconds: steps predicted to run past it are skipped and listed in the report "
        "(default: the plan's, see docs/BENCH.md; --full: none)",
    )
    p.add_argument("--seed", type=int, default=None, help="synthetic weights seed")
    p.add_argument("--quiet", action="store_true", help="no progress bar or messages")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import BenchOptions, format_report, run_bench

    opts = BenchOptions.quick_options() if args.quick else BenchOptions(full=args.full)
    opts.device = args.device
    for name in ("backends", "dtypes", "batch_sizes", "iters", "seed", "mixed_batch", "budget_s"):
        value = getattr(args, name)
        if value is not None:
            setattr(opts, name, value)
    if not args.quiet:
        opts.log = lambda msg: print(f"bench: {msg}", file=sys.stderr, flush=True)
        opts.progress = sys.stderr.isatty() or not args.json  # a bar on a terminal; plain lines in logs
    report = run_bench(opts)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        from ..atomic import atomic_output

        with atomic_output(args.out) as partial:  # an earlier report survives a failed write
            partial.write_text(text + "\n", encoding="utf-8")
    print(text if args.json else format_report(report))
    return 0
