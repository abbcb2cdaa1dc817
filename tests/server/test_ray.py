"""lpstudio on Ray Serve: same routes and frames as the single-process server, spread, faults, back-pressure.

One local Ray instance for the module (2 CPUs, a small object store, no dashboard) runs the
app of :func:`lpstudio.server.ray_app.build_app` with 2 CPU render replicas on the synthetic
weights in pre-cropped mode (``--no-crop``). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

ray = pytest.importorskip("ray", reason="Ray Serve is not installed: pip install -e '.[ray]' runs these tests")
serve = pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install -e '.[ray]'")

from service_helpers import free_port  # noqa: E402

import lpstudio  # noqa: E402
from lpstudio.errors import LPStudioError, OverloadedError  # noqa: E402
from lpstudio.server import ServerSettings, ServiceLimits, create_app  # noqa: E402
from lpstudio.server.ray_app import (  # noqa: E402
    ENV_API_KEY,
    InsecureBindError,
    RayOptions,
    build_app,
    deployment_options,
    ingress_app,
)
from lpstudio.server.ray_worker import PriorityGate, ReplicaLostError, _ray_error  # noqa: E402
from lpstudio.server.worker import PRIORITY_CLIP  # noqa: E402

OBJECT_STORE_BYTES = 200 * 1024**2
START_TIMEOUT_S = 180.0
REQUEST_TIMEOUT_S = 90.0
RECOVER_TIMEOUT_S = 120.0
FPS = 2.0
REPLICAS = 2
MAX_JOBS = 3
PARAMS = {"smile": 0.6, "head_yaw": 8.0, "eyeball_x": 3.0}
LONG_CLIP = "smile=1000:1000"  # 6 frames at 2 fps
JPEG_TOLERANCE = 2
SPREAD_ROUNDS = 6
"""Clips tried for one whose own chunks went to both replicas (Serve's router sees queue lengths late)."""
SPREAD_CLIP_MS = 310  # 3 frames at 2 fps (two chunks: 1 + 2 frames, both in flight), distinct per round
TEST_KEY = "lpstudio-test-key-not-a-secret"
"""The API key of the module's cluster: set in the environment Ray inherits, never passed as an option."""
PUBLIC_HEALTH_KEYS = {"status", "version"}


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(np.int16)


def _lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line) for line in response.iter_lines() if line.strip()]


def _limits() -> ServiceLimits:
    return ServiceLimits(max_jobs=MAX_JOBS, max_sessions=4)


# ---------------------------------------------------------------------- without a cluster
def test_options_parse_serve_run_strings_and_autoscale() -> None:
    opts = RayOptions.from_args({"replicas": "auto", "max_replicas": "8", "no_crop": "true", "max_jobs": "5"})
    assert opts.replicas == "auto" and opts.no_crop is True and opts.service_limits().max_jobs == 5
    gpu = deployment_options(opts, cluster_gpus=8.0)
    assert gpu["ray_actor_options"]["num_gpus"] == 1.0
    assert gpu["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 8, "target_ongoing_requests": 2.0}
    cpu = deployment_options(RayOptions.from_args({"replicas": "3"}), cluster_gpus=0.0)
    assert cpu["num_replicas"] == 3 and "num_gpus" not in cpu["ray_actor_options"]
    with pytest.raises(LPStudioError, match="unknown option 'replica'"):
        RayOptions.from_args({"replica": "2"})
    with pytest.raises(LPStudioError, match="not valid"):
        RayOptions.from_args({"no_crop": "maybe"})


def test_cli_refuses_bad_replicas_before_starting_anything(capsys: pytest.CaptureFixture[str]) -> None:
    from lpstudio.cli import main

    assert main(["serve", "--ray", "--replicas", "0", "--no-crop"]) == 2
    err = capsys.readouterr().err
    assert "replicas must be a positive number or 'auto', got 0" in err and "Traceback" not in err
    assert not ray.is_initialized()


def test_ray_errors_become_service_errors() -> None:
    from ray.serve.exceptions import BackPressureError

    busy = _ray_error(BackPressureError(num_queued_requests=9, max_queued_requests=8), retry_after_s=3.0)
    assert isinstance(busy, OverloadedError) and busy.http_status == 429 and busy.retry_after_s == 3.0
    died = _ray_error(ray.exceptions.ActorDiedError(), retry_after_s=1.0)
    assert isinstance(died, ReplicaLostError) and died.http_status == 503
    own = LPStudioError("bad photo", hint="another one")
    assert _ray_error(own, 1.0) is own


def test_priority_gate_serves_previews_before_clips() -> None:
    async def scenario() -> list[str]:
        gate = PriorityGate(1)
        order: list[str] = []
        await gate.acquire(0)  # held

        async def take(name: str, priority: int) -> None:
            await gate.acquire(priority)
            order.append(name)
            gate.release()

        tasks = [asyncio.create_task(take("background", 2)), asyncio.create_task(take("clip", 1))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(take("preview", 0)))
        await asyncio.sleep(0)
        gate.release()
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return order

    assert asyncio.run(scenario()) == ["preview", "clip", "background"]


class _Registry:
    """Stands in for the replica registry actor: ``live.remote()`` answers the given replicas."""

    def __init__(self, replicas: list[dict]) -> None:
        self.replicas = replicas
        self.live = self

    async def remote(self) -> list[dict]:
        return [dict(r) for r in self.replicas]


def test_health_is_503_without_live_replicas_and_lists_them_only_with_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ingress's app: no live replica is a 503; without the key only status and version, never pids/nodes."""
    import lpstudio.server.ray_render as ray_render

    replicas: list[dict] = []
    monkeypatch.setattr(ray_render, "replica_registry", lambda: _Registry(replicas))
    opts = RayOptions.from_args({"no_crop": "true", "no_idle": "true"})
    app = ingress_app({"device": "cpu"}, opts, object(), 4, host="0.0.0.0", api_key=TEST_KEY)
    keyed = {"x-api-key": TEST_KEY}
    with TestClient(app) as c:
        empty = c.get("/health")
        assert empty.status_code == 503 and int(empty.headers["retry-after"]) >= 1
        assert empty.json() == {"status": "no_replicas", "version": lpstudio.__version__}
        assert c.get("/health", headers=keyed).status_code == 503
        replicas.append({"replica": "r1", "pid": 4242, "node_id": "node-abc", "actor_name": "SERVE_REPLICA::x"})
        public = c.get("/health")
        assert public.status_code == 200 and public.json() == {"status": "ok", "version": lpstudio.__version__}
        assert "4242" not in public.text and "node-abc" not in public.text
        for wrong in ({"x-api-key": "nope"}, {"authorization": "Bearer nope"}):
            assert set(c.get("/health", headers=wrong).json()) == PUBLIC_HEALTH_KEYS
        detailed = c.get("/health", headers={"authorization": f"Bearer {TEST_KEY}"})
        assert detailed.status_code == 200 and detailed.json()["replicas"][0]["pid"] == 4242
        assert c.get("/params").status_code == 401  # the rest of the API needs the key too


def _deployment_texts(app: object) -> list[bytes]:
    """Everything Serve stores of an application's deployments (init arguments, config, actor options), as bytes."""
    from ray import cloudpickle
    from ray.serve.deployment import Application

    out: list[bytes] = []
    pending = [app]
    while pending:
        deployment = pending.pop()._bound_deployment
        replica = deployment._replica_config
        args = [a for a in (*replica.init_args, *replica.init_kwargs.values())]
        pending += [a for a in args if isinstance(a, Application)]
        plain = [a for a in args if not isinstance(a, Application)]
        out += [cloudpickle.dumps(plain), repr(deployment._deployment_config).encode()]
        out += [repr(replica.ray_actor_options).encode()]
    return out


def test_api_key_stays_out_of_the_deployments(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--api-key`` / ``$LPSTUDIO_API_KEY`` reach the ingress through its node's environment, not its arguments."""
    from lpstudio.cli import main
    from lpstudio.server import ray_app

    monkeypatch.setenv(ENV_API_KEY, TEST_KEY)
    texts = _deployment_texts(build_app({"replicas": "2", "no_crop": "true"}))
    assert len(texts) == 6 and not any(TEST_KEY.encode() in t for t in texts)
    with pytest.raises(LPStudioError, match="api_key is not an option") as refused:
        RayOptions.from_args({"api_key": TEST_KEY})
    assert ENV_API_KEY in (refused.value.hint or "")
    calls: list[tuple[dict, dict]] = []
    monkeypatch.setattr(ray_app, "serve_on_ray", lambda options, **kw: calls.append((options, kw)) or 0)
    monkeypatch.delenv(ENV_API_KEY)
    given = ["serve", "--ray", "--no-crop", "--engine-factory", "x:y", "--host", "0.0.0.0", "--api-key", TEST_KEY]
    assert main(given) == 0
    ((options, kw),) = calls
    assert TEST_KEY not in repr(options) and kw["api_key"] == TEST_KEY
    assert TEST_KEY not in repr(_deployment_texts(build_app(options)))


def test_public_bind_without_a_key_is_refused_unless_insecure_no_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lpstudio.cli import main
    from lpstudio.server import ray_app

    monkeypatch.delenv(ENV_API_KEY, raising=False)
    calls: list[dict] = []
    monkeypatch.setattr(ray_app, "serve_on_ray", lambda options, **kw: calls.append(options) or 0)
    base = ["serve", "--ray", "--no-crop", "--engine-factory", "x:y"]
    assert main([*base, "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without an API key" in err and "--insecure-no-key" in err, err
    assert not calls and not ray.is_initialized()
    assert main([*base, "--host", "0.0.0.0", "--insecure-no-key"]) == 0 and calls[-1]["insecure_no_key"] is True
    assert main([*base, "--host", "127.0.0.1"]) == 0  # loopback: no key needed
    # the ingress itself (serve deploy / serve run never pass through the CLI), and an unreadable bind address
    opts = RayOptions.from_args({"no_crop": "true"})
    for host in ("0.0.0.0", "10.1.2.3", ray_app.UNKNOWN_HOST):
        with pytest.raises(InsecureBindError):
            ingress_app({}, opts, object(), 4, host=host, api_key=None)
    insecure = RayOptions.from_args({"no_crop": "true", "insecure_no_key": "true"})
    assert ingress_app({}, insecure, object(), 4, host="0.0.0.0", api_key=None) is not None


def test_api_key_option_cannot_reach_an_existing_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--api-key`` with ``--ray-address``: the nodes would not have it, so it is refused before Ray starts."""
    from lpstudio.server.ray_app import serve_on_ray

    monkeypatch.delenv(ENV_API_KEY, raising=False)
    options = {"no_crop": True}
    with pytest.raises(LPStudioError, match="cannot reach the nodes") as refused:
        serve_on_ray(options, host="127.0.0.1", port=1, address="ray://head:10001", api_key=TEST_KEY)
    assert ENV_API_KEY in (refused.value.hint or "")
    with pytest.raises(InsecureBindError):
        serve_on_ray(options, host="0.0.0.0", port=1, address=None, api_key=None)
    assert not ray.is_initialized() and ENV_API_KEY not in os.environ


# ---------------------------------------------------------------------- on a local cluster
@pytest.fixture(scope="module")
def ray_url(synthetic_weights_dir: Path):
    """The Ray Serve app on a free loopback port: 2 CPU replicas, synthetic weights, pre-cropped photos."""
    src = str(Path(lpstudio.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH", "")) if p)
    old_key = os.environ.get(ENV_API_KEY)
    os.environ[ENV_API_KEY] = TEST_KEY  # as `lpstudio serve --ray --api-key`: the local Ray inherits it
    ray.init(
        num_cpus=2,
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
        log_to_driver=False,
    )
    port = free_port()
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_app(
            {
                "replicas": str(REPLICAS),
                "cpus_per_replica": "0.5",
                "weights_dir": str(synthetic_weights_dir),
                "device": "cpu",
                # the test process's thread count: the same reduction order, so the same pixels
                "torch_threads": str(torch.get_num_threads()),
                "no_crop": "true",
                "no_idle": "true",
                "fps": str(FPS),
                "batch_size": "2",
                "max_jobs": str(MAX_JOBS),
                "max_sessions": "4",
            }
        )
        failure: list[BaseException] = []

        def run() -> None:
            try:
                serve.run(app, name="lpstudio", route_prefix="/")
            except BaseException as exc:  # reported below
                failure.append(exc)

        starter = threading.Thread(target=run, daemon=True)
        starter.start()
        starter.join(START_TIMEOUT_S)
        if starter.is_alive() or failure:
            pytest.fail(f"the Ray Serve app did not start within {START_TIMEOUT_S:g} s: {failure}")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()
        if old_key is None:
            os.environ.pop(ENV_API_KEY, None)
        else:
            os.environ[ENV_API_KEY] = old_key


@pytest.fixture(scope="module")
def client(ray_url: str):
    with httpx.Client(base_url=ray_url, timeout=REQUEST_TIMEOUT_S, headers={"x-api-key": TEST_KEY}) as c:
        yield c


@pytest.fixture(scope="module")
def session(client: httpx.Client) -> str:
    response = client.post("/session", json={})
    assert response.status_code == 200, response.text
    return response.json()["session"]


def _replicas(client: httpx.Client) -> list[dict]:
    body = client.get("/health").json()
    assert body["distributed"] == "ray"
    return body["replicas"]


def _wait_replicas(client: httpx.Client, n: int, timeout_s: float, without: str | None = None) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        replicas = _replicas(client)
        if len(replicas) == n and all(r["replica"] != without for r in replicas):
            return replicas
        time.sleep(1.0)
    pytest.fail(f"{n} live replicas (without {without}) were not listed within {timeout_s:g} s: {replicas}")


def test_health_lists_replicas_and_devices(client: httpx.Client, ray_url: str) -> None:
    replicas = _wait_replicas(client, REPLICAS, 30.0)
    assert {r["device"] for r in replicas} == {"cpu"} and len({r["replica"] for r in replicas}) == REPLICAS
    assert all(r["actor_name"].startswith("SERVE_REPLICA::") and r["backend"] == "eager" for r in replicas)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    # the key came from the environment the cluster inherited: without it, a minimal health and a 401
    public = httpx.get(f"{ray_url}/health", timeout=REQUEST_TIMEOUT_S)
    assert public.status_code == 200 and public.json() == {"status": "ok", "version": lpstudio.__version__}
    assert httpx.post(f"{ray_url}/session", json={}, timeout=REQUEST_TIMEOUT_S).status_code == 401


def test_render_equals_the_single_process_server(client: httpx.Client, session: str, engine) -> None:
    response = client.post("/render", json={"session": session, "params": PARAMS})
    assert response.status_code == 200, response.text
    settings = ServerSettings(crop=False, fps=FPS, idle_default=False, limits=_limits())
    with TestClient(create_app(engine, settings)) as local:
        sid = local.post("/session", json={}).json()["session"]
        expected = local.post("/render", json={"session": sid, "params": PARAMS})
    assert expected.status_code == 200
    a, b = _image(response.content), _image(expected.content)
    assert a.shape == b.shape == (512, 512, 3)
    assert int(np.abs(a - b).max()) <= JPEG_TOLERANCE
    source = _image(client.get("/source-image", params={"session": session}).content)
    assert np.abs(source - a).mean() > 1.0  # the parameters changed the picture


def _clip_chunks(client: httpx.Client, frames: int) -> list[dict]:
    """The chunks of the last clip job of ``frames`` frames, as the ingress recorded them (start, frames, replica)."""
    jobs = client.get("/health").json()["recent_jobs"]
    clips = [j for j in jobs if j["priority"] == PRIORITY_CLIP and j["frames"] == frames]
    assert clips, jobs
    return clips[-1]["chunks"]


def test_generate_streams_a_clip_spread_over_both_replicas(client: httpx.Client, session: str) -> None:
    """A clip's own chunks (first frame alone, then batches, two in flight) go to both replicas.

    Serve's router picks by queue lengths it may see late, so both in-flight chunks of one clip
    can land on one replica: up to :data:`SPREAD_ROUNDS` distinct clips are rendered, each judged
    by its own chunks only, and one must have used both replicas.
    """
    _wait_replicas(client, REPLICAS, 30.0)
    placements: list[list[str]] = []
    for attempt in range(SPREAD_ROUNDS):
        command = f"smile={SPREAD_CLIP_MS + 10 * attempt}:0"  # distinct: rendered, not served from the clip cache
        with client.stream("POST", "/generate", json={"session": session, "command": command}) as response:
            assert response.status_code == 200
            lines = _lines(response)
        kinds = [line["type"] for line in lines]
        assert kinds[0] == "start" and kinds[-1] == "end" and not lines[0]["shared"], (kinds, lines[-1])
        n = lines[0]["frames"]
        frames = [line for line in lines if line["type"] == "frame"]
        assert [f["index"] for f in frames] == list(range(n)) and n >= 3
        assert _image(base64.b64decode(frames[-1]["jpeg"])).shape == (512, 512, 3)
        chunks = sorted(_clip_chunks(client, n), key=lambda c: c["start"])
        # exactly this clip's frames, each rendered once: the first alone, then in batches
        assert [i for c in chunks for i in range(c["start"], c["start"] + c["frames"])] == list(range(n))
        assert chunks[0]["frames"] == 1 and len(chunks) >= 2
        placements.append([c["replica"] for c in chunks])
        if len(set(placements[-1])) == REPLICAS:
            break
    assert len(set(placements[-1])) == REPLICAS, f"no clip's own chunks reached both replicas: {placements}"


KILL_ATTEMPTS = 3  # Serve's router may place every in-flight chunk of the clip on the replica left alive


def _stream_killing(client: httpx.Client, session: str, victim: dict) -> list[dict]:
    """Lines of a clip during which ``victim`` is killed, right after the first frame arrives."""
    lines: list[dict] = []
    with client.stream("POST", "/generate", json={"session": session, "command": LONG_CLIP}) as response:
        assert response.status_code == 200
        for raw in response.iter_lines():
            if not raw.strip():
                continue
            lines.append(json.loads(raw))
            if lines[-1]["type"] == "frame" and len(lines) == 2:
                # the first frame is here: the clip's next chunks are in flight on the replicas
                ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
    return lines


def test_killed_replica_ends_the_stream_with_an_error_line_and_comes_back(client: httpx.Client, session: str) -> None:
    outcomes: list[list[str]] = []
    for _ in range(KILL_ATTEMPTS):
        victim = _wait_replicas(client, REPLICAS, RECOVER_TIMEOUT_S)[0]
        lines = _stream_killing(client, session, victim)
        outcomes.append([x["type"] for x in lines])
        # the victim held none of this clip's chunks: the clip must have ended normally
        assert lines[-1]["type"] in ("error", "end"), outcomes
        again = client.post("/render", json={"session": session, "params": PARAMS})
        assert again.status_code == 200, again.text
        back = _wait_replicas(client, REPLICAS, RECOVER_TIMEOUT_S, without=victim["replica"])
        assert victim["replica"] not in {r["replica"] for r in back}
        if lines[-1]["type"] == "error":
            assert "replica" in lines[-1]["error"] and lines[-1]["kind"] == "ReplicaLostError"
            break
    else:
        pytest.fail(f"no kill landed on a replica holding the clip in {KILL_ATTEMPTS} tries: {outcomes}")


def test_over_capacity_is_refused_at_once(client: httpx.Client, session: str) -> None:
    with ExitStack() as streams:
        for i in range(MAX_JOBS):
            body = {"session": session, "command": f"smile={1100 + 100 * i}:1000"}  # distinct: no shared render
            response = streams.enter_context(client.stream("POST", "/generate", json=body))
            assert response.status_code == 200
        started = time.monotonic()
        refused = client.post("/generate", json={"session": session, "command": "smile=1900:1000"}, timeout=20)
        preview = client.post("/render", json={"session": session, "params": {"smile": 0.3}}, timeout=20)
        elapsed = time.monotonic() - started
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "busy" in refused.json()["error"]
    assert preview.status_code == 429
    assert elapsed < 10.0  # refused at once, not queued


def test_deploy_config_is_a_valid_serve_config_with_valid_args() -> None:
    import yaml
    from ray.serve.schema import ServeDeploySchema

    path = Path(__file__).resolve().parents[2] / "deploy" / "lpstudio-serve.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    validate = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
    schema = validate(config)  # raises on a config Serve would refuse
    assert schema.applications[0].import_path == "lpstudio.server.ray_app:build_app"
    opts = RayOptions.from_args(config["applications"][0]["args"])
    assert opts.replicas == "auto" and opts.service_limits().max_streams == 512
    render = deployment_options(opts, cluster_gpus=8.0)
    assert render["autoscaling_config"]["max_replicas"] == 8 and render["ray_actor_options"]["num_gpus"] == 1.0
