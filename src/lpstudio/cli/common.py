"""Options and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ImageError

ENV_BACKEND = "LPSTUDIO_BACKEND"
"""Overrides the ``auto`` default of --backend (e.g. ``eager`` in CI, where a calibration is not wanted)."""


def add_engine_options(
    parser: argparse.ArgumentParser, *, default_backend: str = "eager", crop_controls: bool = False
) -> None:
    """--weights-dir, --device, --dtype, --backend (default ``default_backend``), --backend-dtype, ...

    ``crop_controls``: also the crop controls (``--crop-scale``... :mod:`lpstudio.cli.crop_args`)
    of the commands that crop faces.

    ``serve``, ``animate``, ``speak`` and ``drive`` default to ``auto`` (fast by default);
    one-frame commands (``edit``, ``params``) keep the ``eager`` reference, where a
    first-use calibration would cost more than it saves. ``$LPSTUDIO_BACKEND`` replaces
    an ``auto`` default.
    """
    import os

    if default_backend == "auto":
        default_backend = os.environ.get(ENV_BACKEND) or default_backend
    group = parser.add_argument_group("engine")
    group.add_argument(
        "--weights-dir",
        type=Path,
        default=None,
        help="folder with the official weights (official layout, e.g. a checkout's pretrained_weights/); "
        "default: $LPSTUDIO_WEIGHTS_DIR or ~/.cache/lpstudio/weights",
    )
    group.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps")
    group.add_argument(
        "--dtype", default="float32", choices=["float32", "float16", "bfloat16"], help="compute precision"
    )
    group.add_argument(
        "--backend",
        default=default_backend,
        help=f"render backend for warping+decoding (default {default_backend}): auto (the fastest that holds "
        "40 dB against float32 eager on this machine, calibrated on first use and cached), eager (the reference), "
        "fused, compile, cudagraph, onnxruntime, tensorrt (see `lpstudio bench`)",
    )
    group.add_argument(
        "--recalibrate",
        action="store_true",
        help="with --backend auto: calibrate again instead of using the cached choice",
    )
    group.add_argument(
        "--backend-dtype",
        default=None,
        choices=["float32", "float16", "bfloat16"],
        help="compute precision of the backend (default: --dtype); e.g. bfloat16 on a CPU with AVX512-BF16",
    )
    group.add_argument(
        "--face-models",
        default="auto",
        choices=["auto", "insightface", "mediapipe"],
        help="face detection/landmark models: insightface (downloaded with the weights; non-commercial licence), "
        "mediapipe (Apache-2.0; pip install --no-deps mediapipe==0.10.21), auto (insightface when its files are "
        "present, else mediapipe when installed)",
    )
    group.add_argument(
        "--no-download",
        action="store_true",
        help="never download the weights (by default they are downloaded to the default folder on first use)",
    )
    if crop_controls:
        from .crop_args import add_crop_options

        add_crop_options(parser)


def weights_dir_for(args: argparse.Namespace) -> Path | None:
    """The weights folder for this run, downloading the official files on first use.

    Only the default folder is filled automatically; an explicit ``--weights-dir``
    (or ``$LPSTUDIO_WEIGHTS_DIR``) is used as given, so a wrong path is an error,
    not a 650 MB surprise.
    """
    import os

    from ..checkpoint import MODULE_FILES
    from ..weights import ENV_WEIGHTS_DIR, default_weights_dir, download

    if args.weights_dir is not None or os.environ.get(ENV_WEIGHTS_DIR) or args.no_download:
        return args.weights_dir
    root = default_weights_dir()
    if not all((root / rel).is_file() for rel in MODULE_FILES.values()):
        import sys

        print(f"first use: downloading the official LivePortrait weights (about 650 MB) into {root}", file=sys.stderr)
        download(root, insightface=getattr(args, "face_models", "auto") != "mediapipe")
    return root


def check_output_path(path: Path, suffixes: tuple[str, ...]) -> Path:
    """Fail early (before any model work) when the output cannot be written."""
    if path.suffix.lower() not in suffixes:
        raise ImageError(
            f"cannot write {path}: unsupported extension {path.suffix or '(none)'}",
            hint=f"use one of {', '.join(suffixes)}",
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ImageError(f"cannot write {path}: folder {parent} does not exist", hint="create it first")
    return path


def sample_portrait() -> Path:
    """The bundled public-domain sample portrait (NASA astronaut photo, see README)."""
    from importlib import resources

    return Path(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))


def load_engine(args: argparse.Namespace, *, face: bool):
    """The engine for a sub-command, from the shared engine options (downloads on first use)."""
    import sys

    from ..engine import AUTO_BACKEND, load_model
    from .crop_args import crop_options_from

    crop_options = crop_options_from(args)  # a bad value is one error line before anything loads
    options = {"progress": True, "recalibrate": bool(getattr(args, "recalibrate", False))}
    engine = load_model(
        weights_dir_for(args),
        device=args.device,
        dtype=args.dtype,
        face=face,
        backend=args.backend,
        backend_dtype=args.backend_dtype,
        backend_options=options if args.backend == AUTO_BACKEND else None,
        face_models=getattr(args, "face_models", "auto"),
        crop_options=crop_options,
    )
    choice = getattr(engine, "backend_choice", None)
    if choice is not None:
        print(choice.summary(), file=sys.stderr)
    set_plan = getattr(engine.backend, "set_plan", None)
    batch_size = getattr(args, "batch_size", None)
    if set_plan is not None and isinstance(batch_size, int) and batch_size >= 1:
        from ..backends.planned import ShapePlan

        set_plan(ShapePlan.for_batch_size(batch_size))  # compiled/graph backends prepare the sizes it uses
    return engine
