"""``lpstudio serve``: the living-portrait web app on localhost."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import LPStudioError
from .common import add_engine_options, load_engine

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
ENV_API_KEY = "LPSTUDIO_API_KEY"
MIB = 1024 * 1024
MAX_PORT = 65535


def register(sub: argparse._SubParsersAction) -> None:
    from ..server.connection_limits import ConnectionLimits
    from ..server.limits import ServiceLimits

    d = ServiceLimits()
    dc = ConnectionLimits()
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
    p.add_argument("--no-idle", action="store_true", help="idle liveliness off by default")
    p.add_argument(
        "--prerender",
        choices=["auto", "on", "off"],
        default="auto",
        help="pre-render the preset buttons for each new photo in the background (auto: on with a GPU)",
    )
    sec = p.add_argument_group("access")
    sec.add_argument(
        "--api-key",
        default=None,
        help=f"require this key (X-API-Key header) for the API; default ${ENV_API_KEY}. "
        "Open the page as http://HOST:PORT/#key=KEY",
    )
    sec.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="another site (e.g. https://example.org) whose pages may call the API (CORS); repeatable; none by default",
    )
    sec.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name (or address) the browser may use to reach the server, besides localhost, 127.0.0.1, "
        "[::1] and the --host address; repeatable. Any other Host header is refused (421), which stops DNS "
        "rebinding. Needed with --host 0.0.0.0: e.g. --allow-host studio.lan --allow-host 192.168.1.5",
    )
    sec.add_argument("--no-access-log", action="store_true", help="no access log lines on stderr")
    lim = p.add_argument_group("limits")
    lim.add_argument(
        "--max-clip-seconds",
        type=float,
        default=d.max_clip_ms / 1000,
        help=f"longest clip (default {d.max_clip_ms / 1000:g})",
    )
    lim.add_argument(
        "--max-sessions",
        type=int,
        default=d.max_sessions,
        help=f"prepared photos kept in memory (default {d.max_sessions})",
    )
    lim.add_argument(
        "--session-memory-mb",
        type=float,
        default=d.max_session_memory_bytes / MIB,
        help=f"memory for prepared photos (default {d.max_session_memory_bytes // MIB} MB); idle ones go first",
    )
    lim.add_argument("--max-jobs", type=int, default=d.max_jobs, help=f"render jobs queued (default {d.max_jobs})")
    lim.add_argument(
        "--max-pending-frames", type=int, default=d.max_pending_frames,
        help=f"frames waiting to be rendered (default {d.max_pending_frames})",
    )  # fmt: skip
    lim.add_argument("--max-streams", type=int, default=d.max_streams, help=f"open streams (default {d.max_streams})")
    lim.add_argument(
        "--stall-timeout", type=float, default=d.stall_timeout_s,
        help=f"cut off a client that reads nothing for this many seconds (default {d.stall_timeout_s:g})",
    )  # fmt: skip
    lim.add_argument(
        "--drain-timeout", type=float, default=d.drain_timeout_s,
        help=f"on SIGTERM, let streams finish for up to this many seconds (default {d.drain_timeout_s:g})",
    )  # fmt: skip
    lim.add_argument(
        "--max-connections", type=int, default=dc.max_connections,
        help=f"open connections in all (default {dc.max_connections}, kept below the file-descriptor limit); "
        f"per client address {dc.max_per_client}; when full, the oldest one still sending its headers is closed",
    )  # fmt: skip
    lim.add_argument(
        "--upload-budget-mb", type=float, default=dc.body_budget_bytes / MIB,
        help=f"request bodies received at once, over all clients (default {dc.body_budget_bytes // MIB} MB); "
        "uploads beyond it get 429 before they are read",
    )  # fmt: skip
    p.add_argument(
        "--engine-factory",
        default=None,
        metavar="MODULE:CALLABLE",
        help="advanced: build the engine with CALLABLE(crop=...) instead of loading the weights "
        "(benchmarks/standin_server.py gives a stand-in renderer for load tests of the service)",
    )
    dist = p.add_argument_group("many GPUs (Ray Serve; pip install 'liveportrait-studio[ray]')")
    dist.add_argument("--ray", action="store_true", help="serve on Ray Serve: one render replica per GPU")
    dist.add_argument(
        "--replicas", default="1", help="render replicas: a number, or auto (autoscaling up to the GPUs; default 1)"
    )
    dist.add_argument(
        "--gpus-per-replica", default="auto", help="GPUs per replica (default auto: 1 with GPUs, else CPU replicas)"
    )
    dist.add_argument("--ray-address", default=None, help="an existing cluster (e.g. auto, or ray://HEAD:10001)")
    dist.add_argument(
        "--insecure-no-key",
        action="store_true",
        help="with --ray: serve a non-loopback --host without an API key (refused otherwise); "
        "only where a private network guards the port",
    )
    add_engine_options(p, default_backend="auto")
    p.set_defaults(handler=run)


def _limits(args: argparse.Namespace):  # noqa: ANN202
    from ..server.limits import ServiceLimits

    return ServiceLimits(
        max_clip_ms=args.max_clip_seconds * 1000,
        max_sessions=args.max_sessions,
        max_session_memory_bytes=int(args.session_memory_mb * MIB),
        max_jobs=args.max_jobs,
        max_pending_frames=args.max_pending_frames,
        max_streams=args.max_streams,
        stall_timeout_s=args.stall_timeout,
        drain_timeout_s=args.drain_timeout,
    )


def _connection_limits(args: argparse.Namespace):  # noqa: ANN202
    from ..server.connection_limits import ConnectionLimits

    return ConnectionLimits(max_connections=args.max_connections, body_budget_bytes=int(args.upload_budget_mb * MIB))


def _factory_engine(spec: str, crop: bool):  # noqa: ANN202
    module_name, _, attr = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr or "make_engine")
    except (ImportError, AttributeError) as exc:
        raise LPStudioError(
            f"--engine-factory {spec}: cannot import it ({exc})", hint="give MODULE:CALLABLE on the Python path"
        ) from None
    return factory(crop=crop)


def access_warning(host: str, api_key: str | None) -> str | None:
    """The warning printed when the server is reachable beyond this machine without a key."""
    from ..server.http import is_loopback

    if is_loopback(host) or api_key:
        return None
    return (
        f"WARNING: --host {host} is not a loopback address and no --api-key is set: anyone who can reach "
        "this machine can use the server (upload photos, spend its GPU). Set --api-key (or "
        f"${ENV_API_KEY}), or bind to 127.0.0.1."
    )


def host_note(host: str, allowed_hosts: tuple[str, ...]) -> str | None:
    """The note printed when the server listens on every interface but answers no name besides loopback."""
    from ..server.http import WILDCARD_HOSTS

    if host.strip().lower() not in WILDCARD_HOSTS or allowed_hosts:
        return None
    return (
        f"note: --host {host} listens on every interface, but only localhost, 127.0.0.1 and [::1] are "
        "answered: name the host or address other machines use with --allow-host NAME (repeatable)."
    )


def warm_up(engine: Any, batch_size: int) -> float:
    """Compile/capture every batch size the worker will use before the server reports ready; returns seconds.

    The worker renders batches of 1 to ``batch_size`` frames (first frames go out in small
    batches), which the backend maps onto its planned sizes; each is prepared here with
    a progress bar on stderr, so no user waits for a compile. Engines without
    ``warm_up`` (a stand-in from --engine-factory) are left as they are.
    """
    prepare = getattr(engine, "warm_up", None)
    if prepare is None:
        return 0.0
    if getattr(engine.backend, "needs_warm_up", False):
        name = engine.backend.name
        print(f"preparing the {name} backend for batches of 1 to {batch_size} frames...", file=sys.stderr)
    seconds = float(prepare(batch_size, progress=True))
    if seconds > 0:
        sizes = getattr(getattr(engine.backend, "plan", None), "sizes", None)
        planned = f" (batch sizes {', '.join(map(str, sizes))})" if sizes else ""
        print(f"warm-up done in {seconds:.1f} s{planned}", file=sys.stderr)
    return seconds


def check_port(host: str, port: int) -> None:
    """Fail in one line, before the model loads, when ``host:port`` cannot be listened on.

    Binds and closes a socket the way the server will (``SO_REUSEADDR``, so a port in
    TIME_WAIT counts as free): a port another program holds is an
    :class:`AddressInUseError` (exit code 6), a host that is not an address of this
    machine a plain bad-input error.
    """
    import errno
    import socket

    from ..errors import AddressInUseError

    if not 0 <= port <= MAX_PORT:
        raise LPStudioError(f"--port {port} is not a TCP port", hint=f"use 1 to {MAX_PORT}, e.g. --port {DEFAULT_PORT}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise LPStudioError(
            f"--host {host}: not an address of this machine ({exc.strerror})", hint="e.g. --host 127.0.0.1"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(
                    f"port {port} is in use on {host}: another program (perhaps another lpstudio serve) listens there",
                    hint=f"stop it, or use another port: lpstudio serve --port {port + 1}",
                ) from None
            raise LPStudioError(
                f"cannot listen on {host}:{port} ({exc.strerror})",
                hint=f"use a port above 1023 (e.g. --port {DEFAULT_PORT}) and an address of this machine",
            ) from None


def run(args: argparse.Namespace) -> int:
    from ..imageio import load_image
    from ..server import ServerSettings, create_app
    from ..server.http import hosts_to_allow
    from ..server.lifecycle import serve
    from ..server.live_messages import WS_MAX_SIZE

    limits = _limits(args)  # bad limits are reported before the model loads
    connections = _connection_limits(args)
    if args.batch_size < 1 or not (0 < args.fps <= limits.max_fps):
        raise LPStudioError(
            f"--batch-size must be >= 1 and --fps in (0, {limits.max_fps:g}]", hint="e.g. --batch-size 4 --fps 25"
        )
    if args.source is not None:
        load_image(args.source)  # a bad start-up portrait is reported before the model loads
    api_key = args.api_key or os.environ.get(ENV_API_KEY) or None
    allowed_hosts = hosts_to_allow(args.host, args.allow_host)  # a bad --allow-host before the model loads
    if args.ray:  # refuses a public bind without a key (one error line) unless --insecure-no-key
        return _run_on_ray(args, limits, api_key, allowed_hosts)
    check_port(args.host, args.port)  # a port in use is one line (exit 6), before minutes of loading
    for warning in (access_warning(args.host, api_key), host_note(args.host, allowed_hosts)):
        if warning:
            print(warning, file=sys.stderr)
    print("loading the model...", file=sys.stderr)
    crop = not args.no_crop
    engine = _factory_engine(args.engine_factory, crop) if args.engine_factory else load_engine(args, face=crop)
    warm_up(engine, args.batch_size)
    print(
        f"model ready: device {engine.device}, dtype {str(engine.dtype).replace('torch.', '')}, "
        f"backend {engine.backend.name} ({str(engine.backend.dtype).replace('torch.', '')})",
        file=sys.stderr,
    )
    settings = ServerSettings(
        crop=crop,
        fps=args.fps,
        batch_size=args.batch_size,
        idle_default=not args.no_idle,
        default_source=args.source,
        prerender=args.prerender == "on" or (args.prerender == "auto" and engine.device.type != "cpu"),
        api_key=api_key,
        allowed_origins=tuple(args.allow_origin),
        allowed_hosts=allowed_hosts,
        limits=limits,
    )
    app = create_app(engine, settings)
    key_part = "#key=..." if api_key else ""
    print(f"open http://{args.host}:{args.port}/{key_part} in your browser (Ctrl+C stops)", file=sys.stderr)
    serve(
        app,
        args.host,
        args.port,
        drain_timeout_s=limits.drain_timeout_s,
        access_log=not args.no_access_log,
        ws_max_size=WS_MAX_SIZE,
        connections=connections,
    )
    leave_cleanly()
    return 0


def leave_cleanly() -> None:
    """After the server stopped: let the render worker finish its batch, or leave without it.

    A daemon thread still inside a torch op at interpreter exit aborts the process with
    ``terminate called without an active exception`` (see
    :func:`lpstudio.server.lifecycle.finish_native_work`); if one is still busy after the
    wait, the process ends here with status 0 without running the interpreter's teardown
    (nothing is left to write: the server has stopped and outputs are written atomically).
    """
    from ..server.lifecycle import finish_native_work

    busy = finish_native_work()
    if busy:
        import logging

        print(f"leaving while {', '.join(busy)} is still busy", file=sys.stderr)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _run_on_ray(
    args: argparse.Namespace,
    limits,  # noqa: ANN001
    api_key: str | None,
    allowed_hosts: tuple[str, ...],
) -> int:
    """``serve --ray``: the same options, passed to :func:`lpstudio.server.ray_app.build_app`."""
    import dataclasses

    from ..server.ray_app import RayOptions, check_access, serve_on_ray
    from .common import weights_dir_for

    options = {
        "replicas": args.replicas,
        "gpus_per_replica": args.gpus_per_replica,
        "device": args.device,
        "dtype": args.dtype,
        "backend": args.backend,
        "backend_dtype": args.backend_dtype,
        "face_models": args.face_models,
        "engine_factory": args.engine_factory,
        "no_crop": args.no_crop,
        "fps": args.fps,
        "batch_size": args.batch_size,
        "no_idle": args.no_idle,
        "prerender": args.prerender == "on",
        "source": str(args.source) if args.source else None,
        "insecure_no_key": args.insecure_no_key,
        "allow_origin": tuple(args.allow_origin),
        "allow_host": allowed_hosts,
        "limits": {f.name: getattr(limits, f.name) for f in dataclasses.fields(limits)},
    }
    RayOptions.from_args(options)  # bad --replicas / --gpus-per-replica before any download or Ray start
    check_access(args.host, api_key, args.insecure_no_key)  # a public bind without a key: refused, before Ray
    warning = access_warning(args.host, api_key)  # --insecure-no-key: said once more
    if warning:
        print(warning, file=sys.stderr)
    weights = args.weights_dir if args.engine_factory else weights_dir_for(args)  # downloads once, here
    options["weights_dir"] = str(weights) if weights else None
    return serve_on_ray(options, host=args.host, port=args.port, address=args.ray_address, api_key=api_key)
