"""``lpstudio weights``: download and verify the official weights."""

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


def run_download(args: argparse.Namespace) -> int:
    from ..weights import default_weights_dir, download, repo_id

    target = args.dir.expanduser() if args.dir else default_weights_dir()
    print(f"downloading the official LivePortrait weights from {repo_id()} into {target}")
    paths = download(target, force=args.force)
    print(f"done: {len(paths)} files verified in {target}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from ..weights import resolve_weights_dir, verify

    root = resolve_weights_dir(args.dir)
    checks = verify(root, check_hash=not args.quick)
    width = max(len(c.file.path) for c in checks)
    for c in checks:
        print(f"{c.status:>10}  {c.file.path:<{width}}  {c.detail}".rstrip())
    bad = [c for c in checks if not c.ok]
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
