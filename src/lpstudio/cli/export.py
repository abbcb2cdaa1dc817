"""``lpstudio export onnx --out DIR``: the engine's stages as ONNX files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_engine_options, weights_dir_for


def register(sub: argparse._SubParsersAction) -> None:
    from ..export import OPSET, STAGES

    p = sub.add_parser("export", help="export the model's stages (ONNX)")
    esub = p.add_subparsers(dest="export_format", metavar="FORMAT", required=True)
    onnx = esub.add_parser("onnx", help="one ONNX file per stage, dynamic batch axis (see lpstudio.export)")
    onnx.add_argument("--out", type=Path, required=True, help="output folder")
    onnx.add_argument(
        "--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)} (default: all)"
    )
    onnx.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (>= {OPSET}: 5-D GridSample)")
    onnx.add_argument(
        "--synthetic", action="store_true", help="export synthetic weights (no download; for testing the toolchain)"
    )
    add_engine_options(onnx)
    onnx.set_defaults(handler=run_onnx)


def run_onnx(args: argparse.Namespace) -> int:
    from ..engine import read_official_checkpoints
    from ..export import export_onnx
    from ..nets import Networks
    from ..weights import resolve_weights_dir

    networks = Networks()
    if args.synthetic:
        from ..synthetic import synthetic_checkpoints

        networks.load_official(synthetic_checkpoints())
    else:
        checkpoints, sources = read_official_checkpoints(resolve_weights_dir(weights_dir_for(args)))
        networks.load_official(checkpoints, sources)
    networks.eval().requires_grad_(False)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    paths = export_onnx(networks, args.out, stages, opset=args.opset, log=lambda m: print(m, file=sys.stderr))
    for stage, path in paths.items():
        print(f"{stage}: {path}")
    return 0
