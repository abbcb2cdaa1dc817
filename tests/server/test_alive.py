"""The viewer first: background pieces (idle segments, gaze atlas), page-gone cancels, adaptive rate, cancel.

The renderer is the stand-in of fixed cost (benchmarks/standin_server.py); routes, sessions, admission,
the worker's scheduling, compositing and JPEG encoding are the real code.
"""

from __future__ import annotations

import io
import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from standin_server import StandInEngine

from lpstudio.params import EditParams
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.pacing import START_MARGIN, frames_at, paced_fps, start_wait_s
from lpstudio.server.pieces import GAZE_ID
from lpstudio.server.worker import PRIORITY_BACKGROUND, RenderJob, RenderWorker

WAIT_S = 30.0
"""Longest a test waits for background work of a few hundred stand-in frames (it takes a second or two)."""


def _wait(predicate, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _photo(seed: int, size: int = 96) -> bytes:
    rgb = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client: TestClient, seed: int, **form: str) -> str:
    res = client.post("/source-image", files={"file": (f"p{seed}.png", _photo(seed), "image/png")}, data=form)
    assert res.status_code == 200, res.text
    return res.json()["session"]


def _app(engine: StandInEngine, **limits: float):
    settings = ServerSettings(
        crop=False, fps=25.0, idle_default=False, idle_pieces=True, limits=ServiceLimits(**limits)
    )
    return create_app(engine, settings)


def _pieces(client: TestClient, session: str):
    state = client.app.state.lp
    return state.sources.peek(state.sessions.peek(session).digest).pieces


# ---------------------------------------------------------------------- the scheduler
class RecordingEngine:
    """Frames of fixed cost; each batch recorded (as job tags) when it starts."""

    def __init__(self, frame_s: float) -> None:
        self.frame_s = frame_s
        self.batches: list[list[int]] = []

    def edited_keypoints(self, state, params, stitching=True):
        return np.zeros((len(params), 21, 3), np.float32)

    def render_mixed(self, items):
        self.batches.append([state for state, _ in items])
        time.sleep(self.frame_s * len(items))
        return [np.zeros((2, 2, 3), np.uint8) for _ in items]


def test_a_clip_preempts_background_work_within_one_batch() -> None:
    engine = RecordingEngine(frame_s=0.01)
    worker = RenderWorker(engine, batch_size=4, background_batch_size=2)
    done: list[object] = []
    params = [EditParams()] * 200
    worker.submit(RenderJob(1, params, lambda i, f: None, done.append, PRIORITY_BACKGROUND))
    assert _wait(lambda: len(engine.batches) >= 3)
    at_submit = len(engine.batches)
    worker.submit(RenderJob(2, [EditParams()] * 8, lambda i, f: None, done.append))
    assert _wait(lambda: len(done) >= 1)
    worker.close()
    first_clip = next(i for i, b in enumerate(engine.batches) if 2 in b)
    assert first_clip <= at_submit + 1, engine.batches[at_submit - 1 : first_clip + 1]  # at most the one in flight
    clip_batches = [i for i, b in enumerate(engine.batches) if 2 in b]
    assert all(1 not in engine.batches[i] for i in range(first_clip, clip_batches[-1] + 1))  # none in between
    assert max(len(b) for b in engine.batches if 1 in b) <= 2  # background batches are small


@pytest.fixture()
def alive_client():
    engine = StandInEngine(frame_ms=2, prepare_ms=0)
    with TestClient(_app(engine, max_sessions=2, page_gone_s=60.0)) as client:
        yield client, engine


def test_each_piece_is_rendered_once_per_photo_and_evicted_with_it(alive_client) -> None:
    client, engine = alive_client
    session = _upload(client, 1)
    assert _wait(lambda: client.get("/idle", params={"session": session}).json()["ready"])
    assert _wait(lambda: client.get("/gaze", params={"session": session}).json()["ready"])
    pieces = _pieces(client, session)
    rendered_before = sum(engine.batches)
    for _ in range(3):  # polls render nothing more
        client.get("/idle", params={"session": session})
    time.sleep(1.5)
    assert sum(engine.batches) == rendered_before
    assert {p.id: len(p.frames) for p in pieces.pieces} == dict(pieces.rendered)  # every frame once
    state = client.app.state.lp
    source = state.sources.peek(pieces.digest)
    assert source.nbytes > pieces.nbytes > 0  # counted in the source store's bound
    atlas = client.get("/gaze", params={"session": session}).json()
    assert atlas["cols"] >= 5 and atlas["rows"] >= 3
    assert len(atlas["frames"]) == atlas["rows"] and all(len(r) == atlas["cols"] for r in atlas["frames"])
    assert len({row[c] for row in atlas["frames"] for c in range(atlas["cols"])}) > 1  # the gaze moves
    seg = client.get("/idle/segment", params={"session": session, "id": "blink"}).json()
    assert seg["fps"] == 12.5 and len(seg["frames"]) == pieces.by_id["blink"].done
    # two more photos on a store of two: the first goes, and its pieces with it
    _upload(client, 2)
    _upload(client, 3)
    assert state.sources.peek(pieces.digest) is None
    assert client.get("/idle", params={"session": session}).status_code == 409


def test_idle_answers_the_contract_and_segments_404_before_they_are_rendered() -> None:
    engine = StandInEngine(frame_ms=2, prepare_ms=0)
    with TestClient(_app(engine, max_background_jobs=1)) as client:
        client.app.state.lp.background.render_pieces = False  # nothing renders: every segment is missing
        session = _upload(client, 4)
        body = client.get("/idle", params={"session": session, "seed": 5}).json()
        assert body["fps"] == 12.5 and body["ready"] is False and body["progress"][0] == 0
        ids = [s["id"] for s in body["segments"]]
        assert {"blink", "double_blink", "glance_left", "glance_right", "glance_up", "breath", "head_tilt",
                "look_away", "still"} <= set(ids)  # fmt: skip
        assert GAZE_ID not in ids
        items = body["schedule"]["items"]
        assert (
            body["schedule"]["seed"] == 5
            and items[-1]["start_s"] >= 290
            and set(i["segment"] for i in items) <= set(ids)
        )
        res = client.get("/idle/segment", params={"session": session, "id": "blink"})
        assert res.status_code == 404 and "not rendered yet" in res.json()["error"]
        assert "Traceback" not in res.text
        res = client.get("/idle/segment", params={"session": session, "id": "nope"})
        assert res.status_code == 404 and "one of" in res.json()["hint"]
        gaze = client.get("/gaze", params={"session": session}).json()
        assert gaze["ready"] is False and "frames" not in gaze and gaze["progress"] == [0, 15]


def test_a_replaced_photo_has_its_background_work_cancelled() -> None:
    engine = StandInEngine(frame_ms=20, prepare_ms=0)  # pieces take seconds: still rendering when replaced
    with TestClient(_app(engine, page_gone_s=60.0)) as client:
        state = client.app.state.lp
        old = _upload(client, 5)
        old_digest = state.sessions.peek(old).digest
        assert _wait(lambda: old_digest in state.background.jobs)
        new = _upload(client, 6, replaces=old)
        new_digest = state.sessions.peek(new).digest
        assert _wait(lambda: old_digest not in state.background.jobs and new_digest in state.background.jobs)
        progress = _pieces_progress(state, old_digest)
        time.sleep(0.5)
        assert _pieces_progress(state, old_digest) == progress  # nothing more renders for the old photo
        health = client.get("/health").json()
        assert health["background"]["jobs"] == 1 and health["background"]["cancelled_jobs"] >= 1
        assert "clips" in health and health["clips"]["pending_frames"] == 0


def _polled(client: TestClient, session: str) -> bool:
    """The page's poll (it keeps the page alive)."""
    return client.get("/idle", params={"session": session}).status_code == 200


def _pieces_progress(state, digest: str) -> tuple[int, int]:
    return state.sources.peek(digest).pieces.progress


def test_nothing_renders_for_a_closed_or_gone_page() -> None:
    engine = StandInEngine(frame_ms=20, prepare_ms=0)
    with TestClient(_app(engine, page_gone_s=0.6)) as client:
        state = client.app.state.lp
        closed = _upload(client, 7)
        closed_digest = state.sessions.peek(closed).digest
        assert _wait(lambda: _polled(client, closed) and closed_digest in state.background.jobs)
        # sendBeacon sends text/plain
        res = client.post(
            "/session/close", content=json.dumps({"session": closed}), headers={"content-type": "text/plain"}
        )
        assert res.json() == {"closed": True}
        assert _wait(lambda: closed_digest not in state.background.jobs, 5)
        before = _pieces_progress(state, closed_digest)
        gone = _upload(client, 8)
        gone_digest = state.sessions.peek(gone).digest
        assert _wait(lambda: _polled(client, gone) and gone_digest in state.background.jobs)
        assert _wait(lambda: gone_digest not in state.background.jobs, 5)  # no request for 0.6 s: gone
        progress = _pieces_progress(state, gone_digest)
        time.sleep(0.5)
        assert _pieces_progress(state, gone_digest) == progress
        assert _pieces_progress(state, closed_digest) == before
        assert not progress[0] == progress[1]  # it was stopped, not finished
        bad = client.post("/session/close", content=b"not json", headers={"content-type": "text/plain"})
        assert bad.status_code == 400 and "JSON object" in bad.json()["error"]


# ---------------------------------------------------------------------- adaptive rate
def test_paced_rate_starts_within_the_bound_and_keeps_the_duration() -> None:
    limits = ServiceLimits(start_within_s=15.0)
    for render_fps, ahead, duration in [(0.3, 0, 3.0), (2.0, 10, 2.5), (4.0, 0, 8.0), (40.0, 0, 3.0), (1.0, 40, 2.0)]:
        fps = paced_fps(25.0, duration, render_fps, ahead, limits)
        assert limits.min_adaptive_fps <= fps <= 25.0
        frames = frames_at(duration, fps)
        assert (frames - 1) / fps == pytest.approx(duration, abs=1 / fps)  # same seconds, fewer frames
        wait = start_wait_s(frames, fps, render_fps, ahead) * START_MARGIN
        assert wait <= limits.start_within_s or fps == limits.min_adaptive_fps, (render_fps, ahead, fps, wait)
        if fps < 25.0:  # the next rate up would not start in time
            assert start_wait_s(frames_at(duration, 25.0), 25.0, render_fps, ahead) * START_MARGIN > 15.0
    assert paced_fps(25.0, 3.0, None, 0, limits) == 25.0  # no measurement yet: as asked


def _lines(res) -> list[dict]:
    return [json.loads(line) for line in res.text.splitlines() if line.strip()]


def test_a_slow_server_renders_a_clip_at_a_lower_rate_that_starts_in_time() -> None:
    engine = StandInEngine(frame_ms=50, prepare_ms=0)  # 20 fps: a 25 fps smile would wait before playing
    with TestClient(_app(engine, start_within_s=0.5)) as client:
        session = client.post("/session", json={}).json()["session"]
        state = client.app.state.lp
        warm = client.post("/generate", json={"session": session, "preset": "blink", "fps": 5})
        assert warm.status_code == 200 and state.worker.measured_fps is not None
        res = client.post("/generate", json={"session": session, "preset": "smile", "idle": False})
        lines = _lines(res)
        start, frames, end = lines[0], [x for x in lines if x["type"] == "frame"], lines[-1]
        assert start["requested_fps"] == 25.0 and start["fps"] < 25.0 and start["clip"]
        assert 0 < start["expected_start_s"] <= 0.5 or start["fps"] == 5.0  # the server's own prediction
        assert start["frames"] == len(frames) == end["frames"] and end["cancelled"] is False
        asked = client.post("/generate", json={"session": session, "preset": "smile", "idle": False, "fps": 5})
        slow = _lines(asked)[0]
        duration = (start["frames"] - 1) / start["fps"]
        assert duration == pytest.approx((slow["frames"] - 1) / slow["fps"], abs=0.25)  # the clip's real length


# ---------------------------------------------------------------------- cancel
def test_cancel_stops_the_render_within_one_batch_and_ends_the_stream() -> None:
    engine = StandInEngine(frame_ms=40, prepare_ms=0)
    with TestClient(_app(engine, stream_buffer_frames=200)) as client:
        session = client.post("/session", json={}).json()["session"]
        got: list[dict] = []
        ready = threading.Event()

        def read() -> None:
            body = {"session": session, "command": "웃어줘 그리고 끄덕여줘", "idle": False}
            with client.stream("POST", "/generate", json=body) as res:
                for line in res.iter_lines():
                    if line.strip():
                        got.append(json.loads(line))
                        if sum(x["type"] == "frame" for x in got) >= 2:
                            ready.set()

        reader = threading.Thread(target=read)
        reader.start()
        assert ready.wait(WAIT_S)
        clip = got[0]["clip"]
        assert client.post("/generate/cancel", json={"session": session, "clip": "nope"}).json() == {"cancelled": False}
        res = client.post("/generate/cancel", json={"session": session, "clip": clip})
        batches_at_cancel = len(engine.batches)
        assert res.json() == {"cancelled": True}
        reader.join(WAIT_S)
        time.sleep(0.3)
        assert len(engine.batches) <= batches_at_cancel + 1  # at most the batch in flight
        assert got[-1]["type"] == "end" and got[-1]["cancelled"] is True
        assert got[-1]["frames"] < got[0]["frames"]


def test_the_new_routes_sit_behind_the_guard() -> None:
    engine = StandInEngine(frame_ms=1, prepare_ms=0)
    with TestClient(_app(engine)) as client:
        session = client.post("/session", json={}).json()["session"]
        evil = {"origin": "http://evil.example"}
        for method, path, kwargs in [
            ("get", "/idle", {"params": {"session": session}}),
            ("get", "/gaze", {"params": {"session": session}}),
            ("post", "/session/close", {"content": json.dumps({"session": session})}),
            ("post", "/generate/cancel", {"json": {"session": session, "clip": "x"}}),
        ]:
            res = getattr(client, method)(path, headers=evil, **kwargs)
            assert res.status_code == 403, (path, res.status_code)
        other_host = client.get("/idle", params={"session": session}, headers={"host": "evil.example"})
        assert other_host.status_code == 421
        assert client.get("/idle", params={"session": session}).status_code == 200  # the session was not closed


def test_cancel_detaches_only_its_viewer_from_a_shared_render() -> None:
    engine = StandInEngine(frame_ms=20, prepare_ms=0)
    with TestClient(_app(engine, stream_buffer_frames=200)) as client:
        session = client.post("/session", json={}).json()["session"]
        body = {"session": session, "command": "끄덕여줘", "idle": False}
        streams: dict[str, list[dict]] = {"a": [], "b": []}
        started = {"a": threading.Event(), "b": threading.Event()}

        def read(name: str) -> None:
            with client.stream("POST", "/generate", json=body) as res:
                for line in res.iter_lines():
                    if line.strip():
                        streams[name].append(json.loads(line))
                        if any(x["type"] == "frame" for x in streams[name]):
                            started[name].set()

        readers = [threading.Thread(target=read, args=(name,)) for name in ("a", "b")]
        for reader in readers:
            reader.start()
        assert started["a"].wait(WAIT_S) and started["b"].wait(WAIT_S)
        assert streams["a"][0]["shared"] or streams["b"][0]["shared"]  # one joined the other's render
        clip = streams["a"][0]["clip"]
        assert clip != streams["b"][0]["clip"]  # ids are per viewer
        assert client.post("/generate/cancel", json={"session": session, "clip": clip}).json() == {"cancelled": True}
        for reader in readers:
            reader.join(WAIT_S)
        a_end, b_end = streams["a"][-1], streams["b"][-1]
        assert a_end["type"] == "end" and a_end["cancelled"] is True
        assert b_end["type"] == "end" and b_end["cancelled"] is False
        assert b_end["frames"] == streams["b"][0]["frames"]  # the other viewer got the whole clip


def test_a_speaking_clip_at_a_lower_rate_keeps_its_audio_and_length() -> None:
    from lpstudio.server.pacing import plan_duration_s, repaced
    from lpstudio.server.plans import GenerateRequest, plan_clip
    from lpstudio.speech import speech_available

    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    limits = ServiceLimits()
    plan = plan_clip(GenerateRequest(session="-", preset="talk"), fps=25.0, idle=False, limits=limits)
    slow = repaced(plan, 8.0)
    assert slow.fps == 8.0 and slow.requested_fps == 25.0 and slow.start_info()["requested_fps"] == 25.0
    assert plan_duration_s(slow) == plan_duration_s(plan) > 0
    assert slow.frame_count == pytest.approx(plan_duration_s(plan) * 8.0, abs=1)  # fewer frames, same seconds
    audio, before = json.loads(slow.audio_json), json.loads(plan.audio_json)
    assert audio["speech_ms"] == before["speech_ms"] and audio["text"] == before["text"]  # the same speech
    assert audio["fps"] == 8.0 and audio["n_frames"] == slow.frame_count  # on the clock of the new frames
