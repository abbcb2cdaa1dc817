"""The live mirror's WebSocket protocol with a stand-in renderer (the tracking, motion and keypoints are real).

The stand-in replaces only warp+decode (``render_mixed``): each frame's grey
level follows its driving keypoints, and it can be held on a gate so the
tests can send frames while one is "rendering". One test renders for real.
"""

from __future__ import annotations

import io
import json
import threading

import cv2
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from lpstudio.engine import LivePortrait
from lpstudio.face import FacePipeline
from lpstudio.server import ServerSettings, create_app
from lpstudio.server.limits import ServiceLimits
from lpstudio.server.live import MAX_MESSAGE_BYTES, pack_frame, unpack_frame
from lpstudio.server.sessions import encode_jpeg
from standin_models import empty_det_outputs, write_face_models

GATE_TIMEOUT_S = 60.0  # a blocked stand-in render gives up after this (a failing test, never a hang)


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
    from lpstudio.server.live import LiveProtocolError

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
        assert err["type"] == "error" and "the device fell over" in err["error"]
        with pytest.raises(WebSocketDisconnect) as info:
            ws.receive_text()
    assert info.value.code == 1011 and "RuntimeError" in info.value.reason
    assert live_client.get("/live/status").json()["active"] == 0


def test_live_sockets_are_capped(live_client, live_session) -> None:
    from starlette.websockets import WebSocketDisconnect

    cap = live_client.app.state.live_config.max_sockets
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

    from lpstudio.server.live import WS_MAX_SIZE

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
