"""``lpstudio serve``: the living-portrait web app on localhost."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_engine_options, load_engine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="start the living-portrait web app on localhost",
        description="Start the web app: the portrait smiles, blinks, talks... on command.",
    )
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--source", type=Path, default=None, help="portrait shown at start (default: the bundled sample)")
    p.add_argument(
        "--no-crop", action="store_true", help="portraits are already cropped faces: no face models are loaded"
    )
    p.add_argument("--fps", type=float, default=25.0, help="frames per second of rendered clips (default 25)")
    p.add_argument("--batch-size", type=int, default=4, help="frames rendered together (default 4)")
    p.add_argument("--max-sessions", type=int, default=8, help="pages served at once before the oldest is dropped")
    p.add_argument("--no-idle", action="store_true", help="idle liveliness off by default")
    p.add_argument(
        "--prerender",
        choices=["auto", "on", "off"],
        default="auto",
        help="pre-render the preset buttons for each new photo in the background (auto: on with a GPU)",
    )
    add_engine_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..imageio import load_image
    from ..server import ServerSettings, create_app
    from ..server.live import WS_MAX_SIZE

    if args.source is not None:
        load_image(args.source)  # a bad start-up portrait is reported before the model loads
    print("loading the model...", file=sys.stderr)
    engine = load_engine(args, face=not args.no_crop)
    print(
        f"model ready: device {engine.device}, dtype {str(engine.dtype).replace('torch.', '')}, "
        f"backend {engine.backend.name} ({str(engine.backend.dtype).replace('torch.', '')})",
        file=sys.stderr,
    )
    settings = ServerSettings(
        crop=not args.no_crop,
        fps=args.fps,
        batch_size=args.batch_size,
        max_sessions=args.max_sessions,
        idle_default=not args.no_idle,
        default_source=args.source,
        prerender=args.prerender == "on" or (args.prerender == "auto" and engine.device.type != "cpu"),
    )
    app = create_app(engine, settings)
    print(f"open http://{args.host}:{args.port}/ in your browser (Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", ws_max_size=WS_MAX_SIZE)
    return 0
