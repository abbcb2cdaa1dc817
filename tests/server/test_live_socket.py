"""The live mirror's WebSocket protocol with a stand-in renderer (the tracking, motion and keypoints are real).

The stand-in replaces only warp+decode (``render_mixed``): each frame's grey
level follows its driving keypoints, and it can be held on a gate so the
tests can send frames while one is "rendering". One test renders for real.
"""

from __future__ import annotations

import io
import json
import logging
import threading

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from lpstudio.engine import LivePortrait
from lpstudio.face import FacePipeline
from lpstudio.server import ServerSettings, create_app
from lpstudio.server.limits import ServiceLimits
from lpstudio.server.live import LiveConfig
from lpstudio.server.live_messages import MAX_MESSAGE_BYTES, pack_frame, unpack_frame
from lpstudio.server.sessions import encode_jpeg
from standin_models import empty_det_outputs, write_face_models

KEY = "live-test-key"
GATE_TIMEOUT_S = 60.0  # a blocked stand-in render gives up after this (a failing test, never a hang)
CLOSE_WAIT_S = 30.0  # a socket the server should close and has not by then is a failing test, never a hang


class StandinRender:
    """``render_mixed`` replacement: records x_d, answers grey frames, optionally waits on ``gate``."""

    def __init__(self) -> None:
        self.calls: list[torch.Tensor] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.fail = False

    def __call__(self, items):
        self.entered.set()
        if self.fail:
            raise RuntimeError("the device fell over")
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise RuntimeError("the test never opened the gate")
        frames = []
        for _state, x_d in items:
            self.calls.append(x_d.detach().cpu().clone())
            frames.append(np.full((512, 512, 3), int(x_d.abs().sum() * 997) % 200 + 30, np.uint8))
        return frames


def _jpeg(rgb: np.ndarray) -> bytes:
    return encode_jpeg(rgb, 95)


def _camera(seed: int, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def _frame(frame_id: int, rgb: np.ndarray, t: float = 1000.0) -> bytes:
    return pack_frame({"id": frame_id, "t": t + frame_id}, _jpeg(rgb))


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def standin_engine(engine) -> LivePortrait:
    """The synthetic networks in a new engine whose warp+decode is the stand-in."""
    e = LivePortrait(engine.networks, "cpu", "float32")
    e.render_mixed = StandinRender()  # type: ignore[method-assign]
    return e


@pytest.fixture()
def render(standin_engine) -> StandinRender:
    r = standin_engine.render_mixed
    r.calls.clear()
    r.gate.set()
    r.entered.clear()
    r.fail = False
    return r


@pytest.fixture(scope="module")
def live_client(standin_engine):
    app = create_app(
        standin_engine, ServerSettings(crop=False, fps=2.0, idle_default=False, limits=ServiceLimits(max_sessions=4))
    )
    with TestClient(app) as c:
        yield c


@pytest.fixture()
def live_session(live_client) -> str:
    return live_client.post("/session", json={}).json()["session"]


def _ready(ws) -> dict:
    msg = json.loads(ws.receive_text())
    assert msg["type"] == "ready", msg
    return msg


def _result(ws) -> tuple[dict, bytes]:
    return unpack_frame(ws.receive_bytes())


def test_pack_unpack_round_trip_and_bad_headers() -> None:
    header, payload = unpack_frame(pack_frame({"id": 3, "t": 1.5}, b"\xff\xd8\xffabc"))
    assert header == {"id": 3, "t": 1.5} and payload == b"\xff\xd8\xffabc"
    from lpstudio.server.live_messages import LiveProtocolError

    for bad, message in [(b"\x00\x00", "too short"), (b"\x00\x00\x10\x00{}", "header length"),
                         (b"\x00\x00\x00\x02[]", "JSON object"), (b"\x00\x00\x00\x02{x", "not JSON")]:  # fmt: skip
        with pytest.raises(LiveProtocolError, match=message):
            unpack_frame(bad)


def test_frame_ids_and_capture_times_echo_back(live_client, live_session, render) -> None:
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        ready = _ready(ws)
        assert (ready["width"], ready["height"], ready["crop"], ready["region"]) == (512, 512, False, "all")
        for i, frame_id in enumerate((5, 6, 42)):
            ws.send_bytes(_frame(frame_id, _camera(i)))
            header, jpeg = _result(ws)
            assert header["type"] == "frame" and header["id"] == frame_id and header["t"] == 1000.0 + frame_id
            assert header["face"] is True and header["image"] is True and header["dropped"] == 0
            assert header["neutral"] is (i == 0)
            assert set(header["timings_ms"]) >= {"decode", "crop", "motion", "render", "encode"}
            assert _image(jpeg).shape == (512, 512, 3)
    assert len(render.calls) == 3


def test_stale_frames_are_dropped_newest_wins(live_client, live_session, render) -> None:
    """Ten frames sent while one renders: the server renders the first and the newest, not all eleven."""
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        _ready(ws)
        render.gate.clear()
        ws.send_bytes(_frame(0, _camera(0)))
        assert render.entered.wait(GATE_TIMEOUT_S), "the first frame never reached the renderer"
        for frame_id in range(1, 11):
            ws.send_bytes(_frame(frame_id, _camera(frame_id)))
        ws.send_text(json.dumps({"type": "ping"}))  # answered once the ten frames have been read
        assert json.loads(ws.receive_text())["type"] == "pong"
        render.gate.set()
        first, _ = _result(ws)
        newest, _ = _result(ws)
        ws.send_text(json.dumps({"type": "ping"}))
        assert json.loads(ws.receive_text())["type"] == "pong"  # nothing else was rendered in between
    assert (first["id"], first["dropped"]) == (0, 0)
    assert (newest["id"], newest["dropped"]) == (10, 9)
    assert len(render.calls) == 2
    assert live_client.get("/live/status").json()["dropped"] >= 9


def test_malformed_messages_get_errors_and_the_socket_stays_usable(live_client, live_session, render) -> None:
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        _ready(ws)
        png = io.BytesIO()
        Image.fromarray(_camera(1)).save(png, format="PNG")
        cases = [
            (pack_frame({"id": 1}, png.getvalue()), "not a JPEG", 1),
            (pack_frame({"id": 2}, b"\xff\xd8\xff" + b"\x00" * 100), "broken JPEG", 2),
            (pack_frame({"id": 3}, b"\xff" * (MAX_MESSAGE_BYTES + 1)), "more than", None),
            (pack_frame({"id": "x"}, _jpeg(_camera(1))), "frame id", None),
            (b"\x01\x02", "too short", None),
        ]
        for data, message, frame_id in cases:
            ws.send_bytes(data)
            err = json.loads(ws.receive_text())
            assert err["type"] == "error" and message in err["error"], err
            assert err["id"] == frame_id
        for text, message in [("hello", "JSON control"), ('{"type": "dance"}', "unknown control"),
                              ('{"type": "settings", "region": "ears"}', "unknown region"),
                              ('{"type": "settings", "smooth": "lots"}', "must be a number"),
                              ('{"type": "settings", "speed": 2}', "unknown live setting")]:  # fmt: skip
            ws.send_text(text)
            err = json.loads(ws.receive_text())
            assert err["type"] == "error" and message in err["error"], (text, err)
        huge = np.random.default_rng(0).integers(0, 256, (1100, 2000, 3), dtype=np.uint8)
        ws.send_bytes(pack_frame({"id": 4}, encode_jpeg(huge, 10)))
        err = json.loads(ws.receive_text())
        assert err["id"] == 4 and "more than" in err["error"] and "pixels" in err["error"]
        ws.send_bytes(_frame(7, _camera(7)))  # still usable
        header, jpeg = _result(ws)
        assert header["id"] == 7 and header["face"] and jpeg
    assert len(render.calls) == 1


def test_socket_without_a_valid_session_closes_with_a_reason(live_client) -> None:
    from starlette.websockets import WebSocketDisconnect

    for url, message in [("/live", "needs ?session"), ("/live?session=gone", "no longer on the server")]:
        with live_client.websocket_connect(url) as ws:
            err = json.loads(ws.receive_text())
            assert err["type"] == "error" and message in err["error"]
            with pytest.raises(WebSocketDisconnect) as info:
                ws.receive_text()
        assert info.value.code == 1008 and message in info.value.reason


def test_bad_query_settings_close_and_good_ones_apply(live_client, live_session, render) -> None:
    from starlette.websockets import WebSocketDisconnect

    with live_client.websocket_connect(f"/live?session={live_session}&region=ears") as ws:
        assert "unknown region" in json.loads(ws.receive_text())["error"]
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 1008
    with live_client.websocket_connect(f"/live?session={live_session}&region=lip&smooth=0.001") as ws:
        ready = _ready(ws)
        assert ready["region"] == "lip" and ready["smooth"] == 0.001


def test_a_failing_renderer_closes_the_socket_with_a_reason(live_client, live_session, render) -> None:
    from starlette.websockets import WebSocketDisconnect

    render.fail = True
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        _ready(ws)
        ws.send_bytes(_frame(0, _camera(0)))
        err = json.loads(ws.receive_text())
        assert err["type"] == "error" and err["kind"] == "InternalError" and err["error_id"] in err["error"]
        assert "fell over" not in json.dumps(err) and "RuntimeError" not in json.dumps(err), "no exception text"
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 1011 and err["error_id"] in info.value.reason and "RuntimeError" not in info.value.reason
    assert live_client.get("/live/status").json()["active"] == 0


def test_live_sockets_are_capped(live_client, live_session) -> None:
    from starlette.websockets import WebSocketDisconnect

    config = live_client.app.state.live_config
    cap = config.max_sockets
    config.max_sockets_per_client = cap  # every test socket comes from one client address
    opened = [live_client.websocket_connect(f"/live?session={live_session}") for _ in range(cap)]
    try:
        for ws in opened:
            _ready(ws.__enter__())
        assert live_client.get("/live/status").json()["active"] == cap
        with live_client.websocket_connect(f"/live?session={live_session}") as extra:
            err = json.loads(extra.receive_text())
            assert "too many live cameras" in err["error"]
            with pytest.raises(WebSocketDisconnect) as info:
                extra.receive_text()
        assert info.value.code == 1013
    finally:
        config.max_sockets_per_client = LiveConfig.max_sockets_per_client
        for ws in opened:
            ws.__exit__(None, None, None)


def test_reset_and_region_settings_change_the_motion(live_client, live_session, render) -> None:
    """The first frame is the neutral; after "reset" the current frame is; a region change keeps the neutral."""
    a, b = _camera(1), _camera(2)
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        _ready(ws)
        for frame_id, rgb in enumerate((a, b, b)):
            ws.send_bytes(_frame(frame_id, rgb))
            _result(ws)
        ws.send_text(json.dumps({"type": "reset"}))
        assert json.loads(ws.receive_text())["reset"] is True
        ws.send_bytes(_frame(3, b))
        header, _ = _result(ws)
        ws.send_text(json.dumps({"type": "settings", "region": "pose"}))
        assert json.loads(ws.receive_text())["region"] == "pose"
        ws.send_bytes(_frame(4, a))
        _result(ws)
    neutral, moved, again, after_reset, pose_only = render.calls
    assert header["neutral"] is True
    assert torch.equal(after_reset, neutral), "after reset the current frame renders the neutral"
    assert torch.equal(moved, again) and not torch.equal(moved, neutral)
    assert not torch.equal(pose_only, neutral) and not torch.equal(pose_only, moved)


# ---------------------------------------------------------------------- the guard: origin, key, caps, idle, draining
def _server_closes(ws) -> WebSocketDisconnect:  # noqa: ANN001
    """Read until the server closes the socket; fail (never hang) when it has not within CLOSE_WAIT_S."""
    outcome: dict[str, object] = {}

    def read() -> None:
        try:
            while True:
                message = ws.receive()
                if message["type"] == "websocket.close":
                    outcome["closed"] = WebSocketDisconnect(message.get("code", 1000), message.get("reason", ""))
                    return
        except Exception as exc:  # noqa: BLE001  (reported below)
            outcome["error"] = exc

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(CLOSE_WAIT_S)
    if "closed" not in outcome:
        pytest.fail(f"the server did not close the socket within {CLOSE_WAIT_S:g} s ({outcome or 'still open'})")
    return outcome["closed"]  # type: ignore[return-value]


def _refused(client: TestClient, url: str, **kwargs) -> WebSocketDisconnect | None:
    """The close of a handshake the server refused (before accepting), or None when the socket was accepted."""
    try:
        with client.websocket_connect(url, **kwargs):
            return None
    except WebSocketDisconnect as exc:
        return exc


@pytest.fixture(scope="module")
def keyed_client(standin_engine):
    app = create_app(standin_engine, ServerSettings(crop=False, fps=2.0, idle_default=False, api_key=KEY))
    with TestClient(app) as c:
        yield c


def test_a_foreign_origin_socket_is_refused_even_without_a_key(live_client, live_session) -> None:
    evil = _refused(live_client, f"/live?session={live_session}", headers={"Origin": "http://evil.example:8765"})
    assert evil is not None and evil.code == 1008 and "not allowed" in evil.reason
    rebound = _refused(live_client, f"/live?session={live_session}", headers={"Host": "evil.example:8765"})
    assert rebound is not None and "host name" in rebound.reason
    assert _refused(live_client, f"/live?session={live_session}", headers={"Origin": "http://localhost"}) is None


def test_a_keyed_server_refuses_sockets_without_the_key_or_a_ticket(keyed_client) -> None:
    assert _refused(keyed_client, "/live?session=x") is not None
    assert _refused(keyed_client, "/live?session=x&ticket=made-up") is not None
    assert _refused(keyed_client, "/live?session=x", headers={"X-API-Key": "wrong"}) is not None
    assert _refused(keyed_client, "/live?session=x", headers={"X-API-Key": KEY}) is None  # scripts send the header
    assert keyed_client.post("/live/ticket").status_code == 401  # a ticket needs the key


def test_a_ticket_opens_one_socket_once(keyed_client) -> None:
    issued = keyed_client.post("/live/ticket", headers={"X-API-Key": KEY})
    assert issued.status_code == 200 and 0 < issued.json()["expires_s"] <= 60
    ticket = issued.json()["ticket"]
    assert _refused(keyed_client, f"/live?session=x&ticket={ticket}") is None
    again = _refused(keyed_client, f"/live?session=x&ticket={ticket}")
    assert again is not None and again.code == 1008, "a ticket is single-use"
    other = keyed_client.post("/live/ticket", headers={"X-API-Key": KEY}).json()["ticket"]
    foreign = _refused(keyed_client, f"/live?session=x&ticket={other}", headers={"Origin": "http://evil.example"})
    assert foreign is not None, "a ticket does not lift the origin check"


def test_a_ticket_expires(keyed_client) -> None:
    tickets = keyed_client.app.state.live_tickets
    ttl = tickets.ttl_s
    tickets.ttl_s = 0.0  # issued already expired: no waiting in the test
    try:
        ticket = keyed_client.post("/live/ticket", headers={"X-API-Key": KEY}).json()["ticket"]
    finally:
        tickets.ttl_s = ttl
    assert _refused(keyed_client, f"/live?session=x&ticket={ticket}") is not None


def test_ticket_book_expiry_single_use_and_bound() -> None:
    from lpstudio.server.http import TicketBook

    now = [100.0]
    book = TicketBook(ttl_s=5.0, max_open=3, clock=lambda: now[0])
    first = book.issue()
    now[0] += 4.9
    assert book.redeem(first) and not book.redeem(first)
    late = book.issue()
    now[0] += 5.0
    assert not book.redeem(late)
    kept = [book.issue() for _ in range(5)]
    assert len(book) == 3 and not book.redeem(kept[0]) and book.redeem(kept[-1])


def test_a_silent_socket_is_closed_after_the_idle_timeout(live_client, live_session) -> None:
    config = live_client.app.state.live_config
    config.idle_timeout_s = 1.0
    try:
        with live_client.websocket_connect(f"/live?session={live_session}") as ws:
            _ready(ws)
            closed = _server_closes(ws)  # the page sends nothing: the server closes
    finally:
        config.idle_timeout_s = LiveConfig.idle_timeout_s
    assert closed.code == 4408 and "idle" in closed.reason
    assert live_client.get("/live/status").json()["active"] == 0


def test_one_client_cannot_hold_every_live_socket(live_client, live_session) -> None:
    config = live_client.app.state.live_config
    assert config.max_sockets_per_client < config.max_sockets
    with live_client.websocket_connect(f"/live?session={live_session}") as first:
        _ready(first)
        with live_client.websocket_connect(f"/live?session={live_session}") as second:
            err = json.loads(second.receive_text())
            closed = _server_closes(second)
    assert "from this client" in err["error"] and closed.code == 1013
    with live_client.websocket_connect(f"/live?session={live_session}") as again:  # the place is free again
        _ready(again)


def test_live_is_refused_while_draining_and_an_open_socket_is_closed(live_client, live_session, render) -> None:
    admission = live_client.app.state.lp.admission
    try:
        with live_client.websocket_connect(f"/live?session={live_session}") as open_ws:
            _ready(open_ws)
            admission.begin_drain()
            with live_client.websocket_connect(f"/live?session={live_session}") as late:
                err = json.loads(late.receive_text())
                refused = _server_closes(late)
            open_ws.send_bytes(_frame(0, _camera(0)))
            last = open_ws.receive()
            closed = _server_closes(open_ws)
    finally:
        admission.draining = False
    assert err["type"] == "error" and "shutting down" in err["error"] and refused.code == 1013
    last = json.loads(last.get("text") or "{}")
    assert last.get("type") == "error" and last.get("kind") == "ShuttingDownError" and closed.code == 1001
    assert render.calls == [], "nothing was rendered after the drain began"


def test_each_live_frame_takes_an_admission_ticket(live_client, live_session, render) -> None:
    admission = live_client.app.state.lp.admission
    hog = admission.admit_job(admission.limits.max_pending_frames)  # the backlog is full: clips would get 429
    try:
        with live_client.websocket_connect(f"/live?session={live_session}") as ws:
            _ready(ws)
            ws.send_bytes(_frame(0, _camera(0)))
            busy = json.loads(ws.receive_text())
            assert busy["type"] == "error" and busy["kind"] == "OverloadedError" and busy["id"] == 0
            hog.release()
            render.gate.clear()
            ws.send_bytes(_frame(1, _camera(1)))
            assert render.entered.wait(GATE_TIMEOUT_S)
            assert admission.snapshot()["jobs"] == 1, "the frame being rendered holds a ticket"
            render.gate.set()
            header, _ = _result(ws)
            assert header["id"] == 1
    finally:
        hog.release()
        render.gate.set()
    assert admission.snapshot()["jobs"] == 0 and admission.snapshot()["pending_frames"] == 0


def test_each_socket_has_access_log_lines(live_client, live_session, render, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lpstudio.access")
    with live_client.websocket_connect(f"/live?session={live_session}") as ws:
        _ready(ws)
        ws.send_bytes(_frame(0, _camera(0)))
        _result(ws)
    _refused(live_client, "/live", headers={"Origin": "http://evil.example"})
    lines = [r.getMessage() for r in caplog.records if r.name == "lpstudio.access" and "WS /live" in r.getMessage()]
    assert any('"WS /live" 101 open' in x for x in lines)
    closed = [x for x in lines if '"WS /live" 101 closed by ' in x]  # who closes first races in the TestClient
    assert len(closed) == 1 and "in=1" in closed[0] and "out=2" in closed[0], lines
    assert live_session not in " ".join(lines), "no query strings in the log"
    assert any('"WS /live" 403 closed by server 1008' in x and "not allowed" in x for x in lines)


# ---------------------------------------------------------------------- face models: tracking, faceless frames
class SwitchableFace:
    """A face pipeline whose detector can be switched between two stand-in pipelines mid-stream."""

    def __init__(self, with_face: FacePipeline, without: FacePipeline) -> None:
        self.with_face, self.without = with_face, without
        self.present = True
        self.analysis_max_side = with_face.analysis_max_side
        self.landmark106, self.landmark203 = with_face.landmark106, with_face.landmark203

    @property
    def detector(self):
        return (self.with_face if self.present else self.without).detector

    def analyze(self, *args, **kwargs):
        return self.with_face.analyze(*args, **kwargs)


@pytest.fixture(scope="module")
def face_app(engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("live-face")
    cpu = ["CPUExecutionProvider"]
    face = SwitchableFace(
        FacePipeline(write_face_models(root / "face"), providers=cpu),
        FacePipeline(write_face_models(root / "noface", det_outputs=empty_det_outputs()), providers=cpu),
    )
    e = LivePortrait(engine.networks, "cpu", "float32", face=face)
    e.render_mixed = StandinRender()  # type: ignore[method-assign]
    app = create_app(e, ServerSettings(crop=True, fps=2.0, idle_default=False))
    with TestClient(app) as c:
        yield c, face, e.render_mixed


def test_faceless_frames_hold_the_last_motion_and_say_no_face(face_app) -> None:
    client, face, render = face_app
    render.calls.clear()
    client.app.state.live_config.verify_every = 1  # detect on every frame, so a vanished face is seen at once
    photo = _camera(3, (480, 640))
    info = client.post("/source-image", files={"file": ("me.png", cv2.imencode(".png", photo)[1].tobytes())}).json()
    with client.websocket_connect(f"/live?session={info['session']}") as ws:
        ready = _ready(ws)
        assert ready["crop"] is True and ready["landmarks"] is True
        face.present = False
        ws.send_bytes(_frame(0, _camera(0)))
        header, jpeg = _result(ws)
        assert (header["face"], header["held"], header["image"], jpeg) == (False, False, False, b"")
        face.present = True
        ws.send_bytes(_frame(1, _camera(1)))
        with_face, shown = _result(ws)
        assert with_face["face"] and with_face["neutral"] and shown
        face.present = False
        ws.send_bytes(_frame(2, _camera(2)))
        held, again = _result(ws)
        assert (held["face"], held["held"], held["image"]) == (False, True, True)
        assert again == shown, "a faceless frame shows the last rendered frame"
    assert len(render.calls) == 1  # nothing was rendered for the faceless frames


def test_tracking_does_not_detect_on_every_frame(face_app) -> None:
    client, face, render = face_app
    client.app.state.live_config.verify_every = 4
    face.present = True
    photo = _camera(3, (480, 640))
    info = client.post("/source-image", files={"file": ("me.png", cv2.imencode(".png", photo)[1].tobytes())}).json()
    calls = {"n": 0}
    detect = face.with_face.detector.detect

    def counting(image):
        calls["n"] += 1
        return detect(image)

    face.with_face.detector.detect = counting
    try:
        with client.websocket_connect(f"/live?session={info['session']}") as ws:
            _ready(ws)
            for frame_id in range(8):
                ws.send_bytes(_frame(frame_id, _camera(frame_id)))
                assert _result(ws)[0]["face"]
    finally:
        del face.with_face.detector.detect
    assert calls["n"] == 2, f"the detector ran {calls['n']} times for 8 frames (expected frames 0 and 4)"


# ---------------------------------------------------------------------- the real engine
def test_first_camera_frame_renders_the_neutral_portrait_exactly(engine) -> None:
    """Real W+G on synthetic weights: the user's first frame is the neutral, so it shows the rest pose exactly."""
    app = create_app(engine, ServerSettings(crop=False, fps=2.0, idle_default=False))
    with TestClient(app) as c:
        session_id = c.post("/session", json={}).json()["session"]
        _, source = app.state.lp.resolve(session_id)
        with c.websocket_connect(f"/live?session={session_id}") as ws:
            _ready(ws)
            ws.send_bytes(_frame(0, _camera(9)))
            header, jpeg = _result(ws)
    state = source.state
    rest = next(engine.render_keypoints(state, engine.stitch(state.x_s, state.x_s), batch_size=1))
    assert header["neutral"] and header["face"]
    assert jpeg == encode_jpeg(source.compose(rest), app.state.live_config.jpeg_quality)


def test_a_message_past_the_websocket_limit_closes_with_1009(standin_engine) -> None:
    """Through uvicorn (as `lpstudio serve` runs it): the WebSocket layer refuses a giant message with a reason."""
    import socket
    import time

    import uvicorn
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from lpstudio.server.live_messages import WS_MAX_SIZE

    app = create_app(standin_engine, ServerSettings(crop=False, fps=2.0, idle_default=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", ws_max_size=WS_MAX_SIZE)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/session", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as res:
            session_id = json.loads(res.read())["session"]
        with connect(f"ws://127.0.0.1:{port}/live?session={session_id}", max_size=None, open_timeout=30) as ws:
            assert json.loads(ws.recv(timeout=30))["type"] == "ready"
            ws.send(pack_frame({"id": 1}, b"\xff\xd8\xff" + b"\x00" * (WS_MAX_SIZE + 1)))
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=30)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    finally:
        server.should_exit = True
        thread.join(10)
