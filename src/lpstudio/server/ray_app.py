"""lpstudio on Ray Serve: the same app and page, frames rendered by one replica per GPU.

Two deployments:

* ``RenderReplica`` (:mod:`.ray_render`): one engine per replica, ``num_gpus`` per replica
  (``num_cpus`` on a CPU-only cluster); fixed ``num_replicas`` or autoscaling on ongoing
  requests between ``min_replicas`` and ``max_replicas``; ``max_ongoing_requests`` chunks
  per replica and a bounded ``max_queued_requests``.
* ``LPStudioIngress``: the single-process server's FastAPI app
  (:func:`~lpstudio.server.app.create_app`) with :class:`~.ray_worker.RayRenderWorker` as
  its render part: same routes, page, limits (429 from :class:`ServiceLimits`) and NDJSON.
  Serve's proxy answers 503 past the ingress's own bounded queue.

Entry points: ``lpstudio serve --ray`` (:func:`serve_on_ray`), ``serve run
lpstudio.server.ray_app:build_app replicas=2 no_crop=true`` and the config in
``deploy/lpstudio-serve.yaml`` (``serve deploy``). :func:`build_app` takes the options of
:class:`RayOptions` as a dict of strings or typed values.

Access: the API key is never an option (deployment arguments are stored in Ray's GCS and shown
by its dashboard); the ingress reads ``LPSTUDIO_API_KEY`` from the environment of the node it
runs on, so every node's ``ray start`` must have it (``lpstudio serve --ray`` without
``--ray-address`` starts its own local Ray, which inherits the variable). Without a key the
ingress refuses to start when Serve's HTTP proxies bind a non-loopback address, unless
``insecure_no_key`` (``--insecure-no-key``) says a private network guards it
(:func:`check_access`). ``/health`` (:class:`HealthGate`) is 503 while no render replica is
live; without the key it says only its status and version, the replica details (nodes, pids,
actors, GPUs) go to callers with the key (or to anyone on a keyless loopback-only server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import LPStudioError
from .http import is_loopback, key_matches
from .limits import ServiceLimits
from .ray_render import BATCHING_WORKER, EngineSpec, render_replica_class
from .settings import ServerSettings

APP_NAME = "lpstudio"
DESCRIBE_TIMEOUT_S = 600.0
"""The ingress waits this long for a first replica (it may be loading weights or downloading them)."""
INGRESS_EXTRA_REQUESTS = 32
"""Room at the ingress beyond streams + jobs + photo intakes (info routes, the page, health checks)."""
INGRESS_MAX_QUEUED = 64
"""Requests Serve's proxy queues for the ingress before it answers 503."""
AUTO = "auto"
ENV_API_KEY = "LPSTUDIO_API_KEY"
"""Read in the ingress replica, from its node's environment: the key is never an option (configs and deployment
arguments are stored in Ray's GCS and shown by its dashboard)."""
SECRET_OPTIONS = ("api_key",)
"""Refused by :meth:`RayOptions.from_args`, with a pointer to :data:`ENV_API_KEY`."""
HEALTH_PATH = "/health"
HEALTH_RETRY_AFTER_S = 5
"""``Retry-After`` of a 503 ``/health`` without replicas: a replica loading the model takes seconds at least."""
STATUS_NO_REPLICAS = "no_replicas"
UNKNOWN_HOST = "unknown"
"""The bind address when Serve's HTTP options cannot be read: treated as non-loopback (fail closed)."""

log = logging.getLogger(__name__)
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class RayOptions:
    """Everything ``build_app`` accepts (the Serve config's ``args``)."""

    # replicas and resources
    replicas: int | str = 1  # a number, or "auto" (autoscaling between min_replicas and max_replicas)
    min_replicas: int = 1
    max_replicas: int | None = None  # default: the cluster's GPUs / gpus_per_replica (auto only)
    gpus_per_replica: float | str = AUTO  # "auto": 1 when the cluster has GPUs, else 0 (CPU replicas)
    cpus_per_replica: float = 1.0
    max_ongoing_requests: int = 4  # chunks (a batch of frames each) a replica holds
    max_queued_requests: int = 64
    target_ongoing_requests: float = 2.0
    health_check_period_s: float = 2.0
    batching: str = BATCHING_WORKER
    # engine (as lpstudio serve's engine options)
    weights_dir: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    backend: str = "eager"
    backend_dtype: str | None = None
    face_models: str = "auto"
    engine_factory: str | None = None
    torch_threads: int | None = None
    # app (as lpstudio serve's options)
    no_crop: bool = False
    fps: float = 25.0
    batch_size: int = 4
    no_idle: bool = False
    prerender: bool = False
    source: str | None = None
    insecure_no_key: bool = False  # serve a non-loopback bind without an API key (a private network guards it)
    allow_origin: tuple[str, ...] = ()
    allow_host: tuple[str, ...] = ()  # Host names answered besides loopback (lpstudio serve's --host, --allow-host)
    limits: dict[str, float] = field(default_factory=dict)  # ServiceLimits fields

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> RayOptions:
        """Options from ``serve run k=v`` strings or a config's typed values; unknown keys are an error."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        limit_names = {f.name for f in dataclasses.fields(ServiceLimits)}
        values: dict[str, Any] = {}
        limits: dict[str, float] = dict(args.get("limits") or {})
        for key, raw in args.items():
            if key == "limits":
                continue
            if key in limit_names:
                limits[key] = float(raw)
                continue
            if key in SECRET_OPTIONS:
                raise LPStudioError(
                    f"{key} is not an option of build_app: options are stored in Ray's GCS and shown by its dashboard",
                    hint=f"set {ENV_API_KEY} in the environment of every Ray node ({ENV_API_KEY}=... ray start ...)",
                )
            if key not in names:
                raise LPStudioError(
                    f"unknown option {key!r} for build_app",
                    hint=f"use one of {', '.join(sorted(names))} or a ServiceLimits field",
                )
            values[key] = _coerce(key, raw, cls.__dataclass_fields__[key].default)
        opts = cls(**values, limits=limits)
        opts.check()
        return opts

    def check(self) -> None:
        if self.replicas != AUTO and (not isinstance(self.replicas, int) or self.replicas < 1):
            raise LPStudioError(f"replicas must be a positive number or 'auto', got {self.replicas!r}")
        if self.min_replicas < 0 or (self.max_replicas is not None and self.max_replicas < max(1, self.min_replicas)):
            raise LPStudioError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if self.max_ongoing_requests < 1 or self.max_queued_requests < 1 or self.batch_size < 1:
            raise LPStudioError("max_ongoing_requests, max_queued_requests and batch_size must be >= 1")
        self.service_limits()  # raises on a bad limit

    def service_limits(self) -> ServiceLimits:
        ints = {f.name for f in dataclasses.fields(ServiceLimits) if isinstance(f.default, int)}
        return ServiceLimits(**{k: int(v) if k in ints else v for k, v in self.limits.items()})

    def gpus(self, cluster_gpus: float) -> float:
        """GPUs per replica: 0 on a CPU-only cluster (or device cpu) when "auto"."""
        if self.gpus_per_replica == AUTO:
            return 1.0 if cluster_gpus > 0 and self.device != "cpu" else 0.0
        return float(self.gpus_per_replica)

    def settings(self, api_key: str | None) -> ServerSettings:
        """The app's settings; ``api_key`` comes from the node's environment (:func:`key_from_environment`)."""
        return ServerSettings(
            crop=not self.no_crop,
            fps=self.fps,
            batch_size=self.batch_size,
            idle_default=not self.no_idle,
            default_source=Path(self.source) if self.source else None,
            prerender=self.prerender,
            api_key=api_key,
            allowed_origins=tuple(self.allow_origin),
            allowed_hosts=tuple(self.allow_host),
            limits=self.service_limits(),
        )

    def engine_spec(self, gpus: float) -> EngineSpec:
        limits = self.service_limits()
        return EngineSpec(
            weights_dir=self.weights_dir,
            device=("cpu" if gpus == 0 and self.device == "auto" else self.device),
            dtype=self.dtype,
            backend=self.backend,
            backend_dtype=self.backend_dtype,
            face_models=self.face_models,
            crop=not self.no_crop,
            engine_factory=self.engine_factory,
            batch_size=self.batch_size,
            batching=self.batching,
            cache_sources=limits.max_sessions,
            cache_bytes=limits.max_session_memory_bytes,
            torch_threads=self.torch_threads,
        )


def key_from_environment() -> str | None:
    """The API key of this node (``$LPSTUDIO_API_KEY``), or None."""
    return os.environ.get(ENV_API_KEY) or None


class InsecureBindError(LPStudioError):
    """Serving a non-loopback address without an API key, and ``insecure_no_key`` not given."""


def check_access(host: str, api_key: str | None, insecure_no_key: bool) -> None:
    """Refuse a non-loopback bind without a key unless ``insecure_no_key`` (an unknown host counts as non-loopback)."""
    if api_key or insecure_no_key or (host != UNKNOWN_HOST and is_loopback(host)):
        return
    raise InsecureBindError(
        f"refusing to serve on {host} without an API key: anyone who can reach it could use the render GPUs",
        hint=f"set {ENV_API_KEY} (on every Ray node), bind to 127.0.0.1, or pass --insecure-no-key "
        "(insecure_no_key: true) when a private network guards the port",
    )


def _serve_http_host() -> str:
    """The address Serve's HTTP proxies bind (asks the controller; blocking), or :data:`UNKNOWN_HOST`."""
    try:
        from ray.serve.context import _get_global_client  # no public API reads the running HTTP options

        client = _get_global_client()
        return str(client.http_config.host) if client is not None else UNKNOWN_HOST
    except Exception as exc:  # fail closed: an unknown bind is treated as a public one
        log.warning("cannot read Serve's HTTP options: %r", exc)
        return UNKNOWN_HOST


class HealthGate:
    """``/health`` of the ingress: 503 while no render replica is live; details only for the key holder.

    Wraps the app (ASGI): runs its ``/health`` (whose body lists the replicas the registry heard
    from) and answers ``{"status", "version"}`` to callers without the key, the full body to
    callers with it. A server without a key shows the details only when it is loopback-only
    (``insecure_no_key`` false: :func:`check_access` refused any other bind).
    """

    def __init__(self, app: Any, api_key: str | None, insecure_no_key: bool) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.insecure_no_key = insecure_no_key

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != HEALTH_PATH:
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, capture)
        status = int(start.get("status", 500))
        raw = b"".join(chunks)
        try:
            body = json.loads(raw) if status in (200, 503) else None
        except ValueError:
            body = None
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
        if not isinstance(body, dict):  # not the health body (a refused origin, a wrong method): as it was
            await send({**start, "type": "http.response.start"})
            await send({"type": "http.response.body", "body": raw})
            return
        if not body.get("replicas") and body.get("status") == "ok":
            body["status"] = STATUS_NO_REPLICAS
            status = 503
        body["version"] = __version__
        if status == 503:
            headers.append((b"retry-after", str(HEALTH_RETRY_AFTER_S).encode()))
        out = body if self._details(scope) else {"status": body.get("status"), "version": __version__}
        data = json.dumps(out).encode()
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    def _details(self, scope: dict[str, Any]) -> bool:
        if self.api_key is None:
            return not self.insecure_no_key
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        return key_matches(headers, self.api_key)


def ingress_app(
    info: dict[str, Any],
    opts: RayOptions,
    render: Any,
    inflight_calls: int,
    *,
    host: str,
    api_key: str | None,
) -> Any:
    """The ingress's ASGI app: the single-process app on :class:`RayRenderWorker`, behind :class:`HealthGate`.

    Raises :class:`InsecureBindError` for a non-loopback ``host`` without ``api_key`` (see :func:`check_access`).
    """
    from .app import create_app
    from .ray_worker import RayRenderWorker, RemoteEngineInfo

    check_access(host, api_key, opts.insecure_no_key)
    settings = opts.settings(api_key)
    limits = settings.limits

    def make_worker(engine: Any, settings: ServerSettings) -> RayRenderWorker:
        return RayRenderWorker(
            render,
            asyncio.get_running_loop(),
            batch_size=settings.batch_size,
            max_inflight_calls=inflight_calls,
            photo_bytes=limits.max_session_memory_bytes,
            photo_count=limits.max_sessions * 2,
            retry_after_s=limits.retry_after_s,
        )

    app = create_app(RemoteEngineInfo(info), settings, make_worker=make_worker)
    return HealthGate(app, api_key, opts.insecure_no_key)


def _coerce(key: str, raw: Any, default: Any) -> Any:
    """A ``serve run`` string (or a config value) as the option's type."""
    if not isinstance(raw, str):
        return tuple(raw) if isinstance(default, tuple) else raw
    text = raw.strip()
    try:
        if key == "replicas":
            return AUTO if text.lower() == AUTO else int(text)
        if key == "gpus_per_replica":
            return AUTO if text.lower() == AUTO else float(text)
        if isinstance(default, bool):
            if text.lower() in TRUE_WORDS:
                return True
            if text.lower() in FALSE_WORDS:
                return False
            raise ValueError(text)
        if isinstance(default, int) or key in ("max_replicas", "torch_threads"):
            return int(text)
        if isinstance(default, float):
            return float(text)
        if isinstance(default, tuple):
            return tuple(x for x in text.split(",") if x)
    except ValueError:
        raise LPStudioError(f"option {key}={raw!r} is not valid", hint=f"e.g. {key}={default!r}") from None
    return text or None


def _cluster_gpus() -> float:
    import ray

    return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0


def deployment_options(opts: RayOptions, cluster_gpus: float) -> dict[str, Any]:
    """The render deployment's Serve options: resources, replicas or autoscaling, bounded queues."""
    gpus = opts.gpus(cluster_gpus)
    actor = {"num_gpus": gpus, "num_cpus": opts.cpus_per_replica} if gpus > 0 else {"num_cpus": opts.cpus_per_replica}
    out: dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": opts.max_ongoing_requests,
        "max_queued_requests": opts.max_queued_requests,
        "health_check_period_s": opts.health_check_period_s,
        "graceful_shutdown_timeout_s": opts.service_limits().drain_timeout_s,
    }
    if opts.replicas == AUTO:
        default_max = int(cluster_gpus // gpus) if gpus > 0 and cluster_gpus >= gpus else 1
        out["autoscaling_config"] = {
            "min_replicas": opts.min_replicas,
            "max_replicas": max(opts.max_replicas or default_max, max(1, opts.min_replicas)),
            "target_ongoing_requests": opts.target_ongoing_requests,
        }
    else:
        out["num_replicas"] = int(opts.replicas)
    return out


def max_replicas_of(options: dict[str, Any]) -> int:
    auto = options.get("autoscaling_config")
    return int(auto["max_replicas"]) if auto else int(options["num_replicas"])


def ingress_class() -> type:
    """The ingress deployment class (needs Ray): builds the app inside its replica."""
    from ray import serve

    @serve.ingress()
    class LPStudioIngress:
        """The single-process server's FastAPI app, rendering on the ``RenderReplica`` deployment."""

        def __init__(self, render: Any, options: dict[str, Any], inflight_calls: int) -> None:
            self.render = render
            self.options = RayOptions.from_args(options)
            self.inflight_calls = inflight_calls

        async def __serve_build_asgi_app__(self) -> Any:
            api_key = key_from_environment()  # this node's: never in the deployment's arguments
            host = await asyncio.to_thread(_serve_http_host)
            check_access(host, api_key, self.options.insecure_no_key)  # before waiting for a replica
            info = await asyncio.wait_for(self.render.describe.remote(), DESCRIBE_TIMEOUT_S)
            return ingress_app(info, self.options, self.render, self.inflight_calls, host=host, api_key=api_key)

    return LPStudioIngress


def build_app(args: dict[str, Any] | None = None) -> Any:
    """The Serve application (``serve run lpstudio.server.ray_app:build_app k=v ...``, or a config's ``args``)."""
    from ray import serve

    opts = RayOptions.from_args(dict(args or {}))
    cluster_gpus = _cluster_gpus()
    render_options = deployment_options(opts, cluster_gpus)
    gpus = opts.gpus(cluster_gpus)
    render = serve.deployment(render_replica_class(), name="RenderReplica").options(**render_options)
    limits = opts.service_limits()
    ingress = serve.deployment(ingress_class(), name="LPStudioIngress").options(
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=limits.max_streams + limits.max_jobs + limits.max_pending_sources
        + INGRESS_EXTRA_REQUESTS,
        max_queued_requests=INGRESS_MAX_QUEUED,
        graceful_shutdown_timeout_s=limits.drain_timeout_s,
    )  # fmt: skip
    inflight = max_replicas_of(render_options) * opts.max_ongoing_requests
    plain = {k: v for k, v in dataclasses.asdict(opts).items() if k != "limits"}
    plain["limits"] = dict(opts.limits)
    return ingress.bind(render.bind(dataclasses.asdict(opts.engine_spec(gpus))), plain, inflight)


def serve_on_ray(
    options: dict[str, Any], *, host: str, port: int, address: str | None, api_key: str | None = None
) -> int:
    """``lpstudio serve --ray``: join (or start) a Ray cluster, run the app, stop on SIGTERM or Ctrl+C.

    ``api_key`` (``--api-key`` or ``$LPSTUDIO_API_KEY``) never goes into ``options``: a local Ray
    started here inherits it through this process's environment; the nodes of an existing
    cluster (``address``) must have ``$LPSTUDIO_API_KEY`` set themselves.
    """
    import signal
    import sys
    import threading

    try:
        import ray
        from ray import serve
    except ImportError:
        raise LPStudioError(
            "--ray needs Ray Serve, which is not installed", hint="pip install 'liveportrait-studio[ray]'"
        ) from None
    opts = RayOptions.from_args(options)  # bad options are reported before Ray starts
    check_access(host, api_key, opts.insecure_no_key)
    if api_key and address is not None and api_key != key_from_environment():
        raise LPStudioError(
            "--api-key cannot reach the nodes of an existing Ray cluster (--ray-address)",
            hint=f"set {ENV_API_KEY} in the environment of every node's `ray start` and of this command",
        )
    if api_key:
        os.environ[ENV_API_KEY] = api_key  # the local Ray started below (raylet, replicas) inherits it
    ray.init(address=address, ignore_reinit_error=True, include_dashboard=False)
    app = build_app(options)
    serve.start(http_options={"host": host, "port": port})
    print(f"starting {APP_NAME} on Ray Serve (replicas load the model)...", file=sys.stderr)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    print(f"open http://{host}:{port}/ in your browser (Ctrl+C stops)", file=sys.stderr)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("stopping: replicas drain their requests", file=sys.stderr)
    serve.shutdown()
    ray.shutdown()
    return 0
