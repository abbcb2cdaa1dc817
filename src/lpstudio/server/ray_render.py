"""The render replica of the Ray Serve deployment: one engine per replica (one GPU each).

A replica owns its engine and backend and a :class:`~lpstudio.server.worker.RenderWorker`
that batches the frames of every request the replica holds (priorities, OOM splitting
and per-job fault isolation as in the single-process server). The ``serve-batch`` mode
uses ``@serve.batch`` instead (kept for the comparison in ``benchmarks/ray_scaling.py``).

Portrait state without sticky sessions: every request names the photo by digest and
carries a reference to its pixels in Ray's object store; a replica that has not seen the
digest prepares the :class:`~lpstudio.engine.SourceState` once (concurrent requests for it
wait for the same preparation) and keeps it in its own LRU bounded by count and bytes.
A replica that dies loses nothing but that cache.

Imports Ray lazily (only :func:`render_replica_class` needs it), so this module can be
read without the ``ray`` extra.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..engine import SourceState
from ..errors import LPStudioError
from ..params import EditParams
from .sessions import nbytes_of
from .worker import PRIORITY_CLIP, RenderWorker, render_frames

log = logging.getLogger(__name__)

MIB = 1024**2
BATCHING_WORKER = "worker"
BATCHING_SERVE = "serve-batch"
BATCHING_MODES = (BATCHING_WORKER, BATCHING_SERVE)
SERVE_BATCH_WAIT_S = 0.005
"""``@serve.batch``: how long the first call of a batch waits for others."""
SERVE_BATCH_MAX_CALLS = 8
"""``@serve.batch``: most calls (chunks of frames) gathered into one batch."""
REGISTRY_NAME = "lpstudio-replicas"
REGISTRY_NAMESPACE = "lpstudio"
HEARTBEAT_S = 1.0
"""How often a replica reports itself to the registry (``/health`` lists the replicas heard from lately)."""
STALE_AFTER_S = 4.0
"""A replica not heard from for this long is not listed (dead, or being replaced)."""


class PhotoGone(LPStudioError):
    """The photo of a request is no longer in the object store (its front end dropped it)."""

    http_status = 409

    def __init__(self, digest: str) -> None:
        super().__init__(f"photo {digest[:12]} is no longer on the server", hint="the page re-sends its photo")


@dataclass(frozen=True)
class EngineSpec:
    """How each replica builds its engine (plain values: it travels in a Serve config)."""

    weights_dir: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    backend: str = "eager"
    backend_dtype: str | None = None
    face_models: str = "auto"
    crop: bool = True
    engine_factory: str | None = None  # MODULE:CALLABLE(crop=...) instead of the weights (stand-ins, tests)
    batch_size: int = 4
    batching: str = BATCHING_WORKER
    cache_sources: int = 32
    cache_bytes: int = 512 * MIB
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if self.batching not in BATCHING_MODES:
            raise LPStudioError(f"batching must be one of {', '.join(BATCHING_MODES)}, got {self.batching!r}")
        if self.batch_size < 1 or self.cache_sources < 1 or self.cache_bytes < 1:
            raise LPStudioError("batch_size, cache_sources and cache_bytes must be positive")

    def build(self) -> Any:
        """The engine (loads the weights, or calls the factory); call inside the replica."""
        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        if self.engine_factory:
            module_name, _, attr = self.engine_factory.partition(":")
            factory = getattr(importlib.import_module(module_name), attr or "make_engine")
            return factory(crop=self.crop)
        from ..engine import load_model

        return load_model(
            self.weights_dir,
            device=self.device,
            dtype=self.dtype,
            face=self.crop,
            backend=self.backend,
            backend_dtype=self.backend_dtype,
            face_models=self.face_models,
        )


def light_state(state: SourceState) -> SourceState:
    """What the front end needs of a prepared photo (pose, ratios, face crop): no appearance volume, on the CPU.

    The (1,32,16,64,64) ``feature_3d`` and the raw motion heads stay in the replica; tensors move to
    the CPU so a front end without a GPU can read them.
    """

    def cpu(value: Any) -> Any:
        return value.detach().cpu() if isinstance(value, torch.Tensor) else value

    changes = {f.name: cpu(getattr(state, f.name)) for f in dataclasses.fields(state)}
    changes.update(feature_3d=torch.empty(0), motion=None, paster=None)
    return dataclasses.replace(state, **changes)


class StateCache:
    """Prepared photos of one replica by digest, least recently used dropped past a count or byte bound."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[SourceState, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, digest: str) -> SourceState | None:
        item = self._items.get(digest)
        if item is None:
            self.misses += 1
            return None
        self._items.move_to_end(digest)
        self.hits += 1
        return item[0]

    def put(self, digest: str, state: SourceState) -> None:
        size = nbytes_of(state)
        old = self._items.pop(digest, None)
        if old is not None:
            self.bytes -= old[1]
        self._items[digest] = (state, size)
        self.bytes += size
        while len(self._items) > 1 and (len(self._items) > self.capacity or self.bytes > self.max_bytes):
            _, (_, dropped) = self._items.popitem(last=False)
            self.bytes -= dropped
            self.evictions += 1

    def __len__(self) -> int:
        return len(self._items)


class RenderReplica:
    """One Serve replica: ``prepare`` a photo, ``render`` a chunk of frames, ``describe`` itself.

    Requests are small (one chunk of a clip: at most a batch of frames), so ``max_ongoing_requests``
    bounds the frames a replica holds; the front end sends the chunks of one clip to any replica.
    """

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = EngineSpec(**spec)
        self.engine = self.spec.build()
        warm_up = getattr(self.engine, "warm_up", None)  # compile/capture each batch size before taking requests
        if warm_up is not None:
            warm_up(self.spec.batch_size)
        self.worker = RenderWorker(self.engine, self.spec.batch_size)
        self.cache = StateCache(self.spec.cache_sources, self.spec.cache_bytes)
        self._preparing: dict[str, asyncio.Future] = {}
        self._lock = threading.Lock()  # the serve-batch mode's engine calls run on a thread
        self.frames = 0
        self.requests = 0
        self.render_s = 0.0
        self.started = time.time()
        self.identity = _identity(self.engine)
        self._metrics = _ReplicaMetrics(self.identity["replica"])
        self.worker.on_batch = self._metrics.on_batch
        self._stop = threading.Event()
        threading.Thread(target=self._heartbeat, name="lpstudio-heartbeat", daemon=True).start()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    # ------------------------------------------------------------------ API
    async def describe(self) -> dict[str, Any]:
        """Who this replica is and what it did (for ``/health``)."""
        return self._describe()

    def _heartbeat(self) -> None:
        """Report to the registry every :data:`HEARTBEAT_S` (a thread: independent of the request loop)."""
        import ray

        registry = None
        while not self._stop.wait(HEARTBEAT_S if registry is not None else 0.0):
            try:
                registry = registry or replica_registry()
                ray.get(registry.beat.remote(self._describe()), timeout=STALE_AFTER_S)
            except Exception as exc:  # the registry restarts; health is best effort
                log.debug("heartbeat failed: %r", exc)
                registry = None
                self._stop.wait(HEARTBEAT_S)

    def _describe(self) -> dict[str, Any]:
        return {
            **self.identity,
            "frames_rendered": self.frames,
            "requests": self.requests,
            "render_fps": round(self.frames / self.render_s, 2) if self.render_s > 0 else None,
            "prepared_photos": len(self.cache),
            "prepared_bytes": self.cache.bytes,
            "cache_hits": self.cache.hits,
            "cache_misses": self.cache.misses,
            "batching": self.spec.batching,
            "uptime_s": round(time.time() - self.started, 1),
        }

    async def prepare(self, digest: str, photo: list[Any], face_index: int | None) -> SourceState:
        """Prepare the photo (``photo[0]``: an ObjectRef to its (H,W,3) uint8 pixels); the light state back."""
        return light_state(await self._state(digest, photo, face_index))

    async def render(
        self,
        digest: str,
        photo: list[Any],
        face_index: int | None,
        params: Sequence[EditParams],
        priority: int = PRIORITY_CLIP,
    ) -> dict[str, Any]:
        """Frames of ``params`` on the photo: ``{"replica": id, "frames": (N,512,512,3) uint8, "ms": float}``."""
        started = time.perf_counter()
        state = await self._state(digest, photo, face_index)
        if self.spec.batching == BATCHING_SERVE:
            frames = await self._render_batched((state, list(params)))
        else:
            frames = await self._render_worker(state, params, priority)
        elapsed = time.perf_counter() - started
        self.frames += len(frames)
        self.requests += 1
        self.render_s += elapsed
        self._metrics.on_request(len(frames))
        return {"replica": self.identity["replica"], "frames": np.stack(frames), "ms": elapsed * 1000}

    # ------------------------------------------------------------------ internals
    async def _state(self, digest: str, photo: list[Any], face_index: int | None) -> SourceState:
        state = self.cache.get(digest)
        if state is not None:
            return state
        task = self._preparing.get(digest)
        if task is None:
            task = asyncio.ensure_future(self._prepare(digest, photo, face_index))
            self._preparing[digest] = task
            task.add_done_callback(lambda _t, d=digest: self._preparing.pop(d, None))
        return await asyncio.shield(task)

    async def _prepare(self, digest: str, photo: list[Any], face_index: int | None) -> SourceState:
        import ray

        try:
            rgb = await photo[0]
        except ray.exceptions.RayError:
            raise PhotoGone(digest) from None
        crop = self.spec.crop
        future = self.worker.prepare_source(rgb, digest=digest, crop=crop, face_index=face_index)
        state = await asyncio.wrap_future(future)
        self.cache.put(digest, state)
        return state

    async def _render_worker(self, state: SourceState, params: Sequence[EditParams], priority: int) -> list:
        return await render_frames(self.worker, state, params, priority=priority)

    async def _render_batched(self, request: tuple[SourceState, list[EditParams]]) -> list[np.ndarray]:
        return await self._serve_batch(request)

    def _render_many(self, requests: list[tuple[SourceState, list[EditParams]]]) -> list[list[np.ndarray]]:
        """One W+G batch over the frames of several calls (the ``serve-batch`` mode), on a thread."""
        items: list[tuple[SourceState, torch.Tensor]] = []
        counts = []
        with self._lock:
            for state, params in requests:
                x_d = self.engine.edited_keypoints(state, params)
                items.extend((state, x_d[i]) for i in range(len(params)))
                counts.append(len(params))
            started = time.perf_counter()
            frames = self.engine.render_mixed(items)
            self._metrics.on_batch(len(items), time.perf_counter() - started)
        out, at = [], 0
        for n in counts:
            out.append(list(frames[at : at + n]))
            at += n
        return out

    async def _serve_batch(self, request: tuple[SourceState, list[EditParams]]) -> list[np.ndarray]:
        raise NotImplementedError  # replaced by render_replica_class with a @serve.batch method


class ReplicaRegistry:
    """A small named Ray actor: the replicas' latest reports, for ``/health`` (no render state lives here)."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[float, dict[str, Any]]] = {}

    def beat(self, info: dict[str, Any]) -> None:
        self._items[info["replica"]] = (time.monotonic(), info)

    def live(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        self._items = {k: v for k, v in self._items.items() if now - v[0] < STALE_AFTER_S}
        return sorted((info for _, info in self._items.values()), key=lambda i: i["replica"])


def replica_registry() -> Any:
    """The registry actor, created on first use (detached: it outlives whichever replica made it)."""
    import ray

    actor = ray.remote(num_cpus=0, max_restarts=-1)(ReplicaRegistry)
    return actor.options(
        name=REGISTRY_NAME, namespace=REGISTRY_NAMESPACE, lifetime="detached", get_if_exists=True
    ).remote()


def _identity(engine: Any) -> dict[str, Any]:
    """Replica id, actor name, node, pid and the devices it was given."""
    import ray
    from ray import serve

    ctx = ray.get_runtime_context()
    try:
        replica = serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside Serve (direct use in a test)
        replica = f"pid{os.getpid()}"
    return {
        "replica": replica,
        "actor_name": ctx.get_actor_name(),
        "node_id": ctx.get_node_id(),
        "pid": os.getpid(),
        "device": str(engine.device),
        "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
        "dtype": str(engine.dtype).replace("torch.", ""),
        "backend": engine.backend.name,
        "backend_dtype": str(engine.backend.dtype).replace("torch.", ""),
    }


class _ReplicaMetrics:
    """lpstudio's own metrics of a replica through Ray's metrics (exported with Ray's, per replica)."""

    def __init__(self, replica: str) -> None:
        from ray.util import metrics

        tags = {"replica": replica}
        self.frames = metrics.Counter(
            "lpstudio_replica_frames_rendered", "Frames rendered by this replica", tag_keys=("replica",)
        )
        self.requests = metrics.Counter(
            "lpstudio_replica_requests", "Render calls (chunks) served by this replica", tag_keys=("replica",)
        )
        self.batch_ms = metrics.Histogram(
            "lpstudio_replica_render_batch_ms",
            "Milliseconds per W+G batch on this replica",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000],
            tag_keys=("replica",),
        )
        for m in (self.frames, self.requests, self.batch_ms):
            m.set_default_tags(tags)

    def on_batch(self, frames: int, seconds: float) -> None:
        self.frames.inc(frames)
        self.batch_ms.observe(seconds * 1000)

    def on_request(self, frames: int) -> None:
        self.requests.inc()


def render_replica_class() -> type:
    """:class:`RenderReplica` with its ``@serve.batch`` method bound (needs Ray)."""
    from ray import serve

    class ServeRenderReplica(RenderReplica):
        @serve.batch(max_batch_size=SERVE_BATCH_MAX_CALLS, batch_wait_timeout_s=SERVE_BATCH_WAIT_S)
        async def _serve_batch(self, requests: list[tuple[SourceState, list[EditParams]]]) -> list[list[np.ndarray]]:
            return await asyncio.to_thread(self._render_many, requests)

    ServeRenderReplica.__name__ = ServeRenderReplica.__qualname__ = "RenderReplica"
    return ServeRenderReplica
