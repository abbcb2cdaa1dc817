"""``lpstudio weights``: download and verify the official weights, or write synthetic ones for an offline tour."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import WeightsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="download or verify the official LivePortrait weights")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)
    dl = wsub.add_parser("download", help="download the official files from the Hugging Face hub (resumable)")
    dl.add_argument("--dir", type=Path, default=None, help="target folder (default: $LPSTUDIO_WEIGHTS_DIR or cache)")
    dl.add_argument("--force", action="store_true", help="download again even if complete")
    dl.set_defaults(handler=run_download)
    ver = wsub.add_parser("verify", help="check every file's size and sha256 against the official list")
    ver.add_argument("--dir", type=Path, default=None, help="folder to check (default: $LPSTUDIO_WEIGHTS_DIR or cache)")
    ver.add_argument("--quick", action="store_true", help="check sizes only, not sha256")
    ver.set_defaults(handler=run_verify)
    path = wsub.add_parser("path", help="print the weights folder in use")
    path.set_defaults(handler=run_path)
    syn = wsub.add_parser(
        "synthetic",
        help="write deterministic synthetic weights (official layout, no download) for an offline tour; "
        "faces come out as noise",
    )
    syn.add_argument("dir", type=Path, metavar="DIR", help="folder to fill (new or empty; about 500 MB)")
    syn.add_argument("--seed", type=int, default=None, help="seed of the fill rule (default: the project's 1234)")
    syn.set_defaults(handler=run_synthetic)


def run_download(args: argparse.Namespace) -> int:
    from ..weights import default_weights_dir, download, repo_id

    target = args.dir.expanduser() if args.dir else default_weights_dir()
    print(f"downloading the official LivePortrait weights from {repo_id()} into {target}")
    paths = download(target, force=args.force)
    print(f"done: {len(paths)} files verified in {target}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..weights import is_synthetic, resolve_weights_dir, verify

    root = resolve_weights_dir(args.dir)
    checks = verify(root, check_hash=not args.quick)
    width = max(len(c.file.path) for c in checks)
    for c in checks:
        print(f"{c.status:>10}  {c.file.path:<{width}}  {c.detail}".rstrip())
    bad = [c for c in checks if not c.ok]
    if bad and is_synthetic(root):
        raise WeightsError(
            f"{root} holds synthetic weights (written by `lpstudio weights synthetic` for an offline tour; faces "
            f"come out as noise), not the official files: {len(bad)} of {len(checks)} files differ or are missing",
            hint="for real faces run `lpstudio weights download` (into another folder with --dir)",
        )
    if bad:
        raise WeightsError(
            f"{len(bad)} of {len(checks)} files in {root} are missing or damaged",
            hint="run `lpstudio weights download" + (f" --dir {args.dir}`" if args.dir else "`"),
        )
    print(f"all {len(checks)} files OK in {root}")
    return 0


def run_path(args: argparse.Namespace) -> int:
    from ..weights import resolve_weights_dir

    print(resolve_weights_dir(None))
    return 0


def run_synthetic(args: argparse.Namespace) -> int:
    import sys

    from ..weights import check_synthetic_target, write_synthetic

    check_synthetic_target(args.dir)  # a folder with real weights is refused before anything is said or written
    print(f"writing synthetic weights (official layout, about 500 MB) into {args.dir}...", file=sys.stderr)
    root = write_synthetic(args.dir, seed=args.seed)
    print(f"done: synthetic weights in {root}: faces come out as noise (a tour of the app, not a portrait)")
    print(f"try: lpstudio serve --weights-dir {root}   (add --no-crop if no face models are installed)")
    return 0
