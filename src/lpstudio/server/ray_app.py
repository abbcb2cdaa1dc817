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
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LPStudioError
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
"""Read in the ingress replica when ``api_key`` is not given (keys stay out of configs)."""
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
    api_key: str | None = None
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

    def settings(self) -> ServerSettings:
        return ServerSettings(
            crop=not self.no_crop,
            fps=self.fps,
            batch_size=self.batch_size,
            idle_default=not self.no_idle,
            default_source=Path(self.source) if self.source else None,
            prerender=self.prerender,
            api_key=self.api_key or os.environ.get(ENV_API_KEY) or None,
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

    from .app import create_app
    from .ray_worker import RayRenderWorker, RemoteEngineInfo

    @serve.ingress()
    class LPStudioIngress:
        """The single-process server's FastAPI app, rendering on the ``RenderReplica`` deployment."""

        def __init__(self, render: Any, options: dict[str, Any], inflight_calls: int) -> None:
            self.render = render
            self.options = RayOptions.from_args(options)
            self.inflight_calls = inflight_calls

        async def __serve_build_asgi_app__(self) -> Any:
            info = await asyncio.wait_for(self.render.describe.remote(), DESCRIBE_TIMEOUT_S)
            settings = self.options.settings()
            limits = settings.limits
            render, calls = self.render, self.inflight_calls

            def make_worker(engine: Any, settings: ServerSettings) -> RayRenderWorker:
                return RayRenderWorker(
                    render,
                    asyncio.get_running_loop(),
                    batch_size=settings.batch_size,
                    max_inflight_calls=calls,
                    photo_bytes=limits.max_session_memory_bytes,
                    photo_count=limits.max_sessions * 2,
                    retry_after_s=limits.retry_after_s,
                )

            return create_app(RemoteEngineInfo(info), settings, make_worker=make_worker)

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


def serve_on_ray(options: dict[str, Any], *, host: str, port: int, address: str | None) -> int:
    """``lpstudio serve --ray``: join (or start) a Ray cluster, run the app, stop on SIGTERM or Ctrl+C."""
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
    RayOptions.from_args(options)  # bad options are reported before Ray starts
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
