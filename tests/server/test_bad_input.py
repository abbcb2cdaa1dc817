"""Bad input over HTTP: every kind gets a 4xx with a JSON message (never a 500, never a traceback in the
body), and the server still serves afterwards. Renderer: the stand-in; photo intake and face pipeline: real
(stand-in face models in full-photo mode)."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from standin_server import StandInEngine

import bad_inputs as bad
from lpstudio.face import FacePipeline
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from standin_models import empty_det_outputs

LIMITS = ServiceLimits(max_sessions=2, max_upload_bytes=2 * 1024 * 1024, max_json_bytes=32 * 1024)


@pytest.fixture(scope="module")
def bad_client():
    engine = StandInEngine(frame_ms=0.5, prepare_ms=0)
    app = create_app(engine, ServerSettings(crop=False, fps=10.0, idle_default=False, limits=LIMITS))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.sid = c.post("/session").json()["session"]  # type: ignore[attr-defined]
        yield c


def _upload(name, data, ctype="image/png", **form):
    return {"files": {"file": (name, data, ctype)}, "data": form}


J = {"Content-Type": "application/json"}

# (case id, method, path, request kwargs with "{sid}" in JSON replaced by the session, expected status)
CASES = [
    # --- photos
    ("corrupt-image", "POST", "/source-image", _upload("x.png", b"this is not an image"), 400),
    ("truncated-png", "POST", "/source-image", _upload("t.png", bad.truncated_png()), 400),
    ("truncated-jpeg", "POST", "/source-image", _upload("t.jpg", bad.truncated_jpeg(), "image/jpeg"), 400),
    ("decompression-bomb", "POST", "/source-image", _upload("bomb.png", bad.bomb_png()), 400),
    ("over-pixel-limit", "POST", "/source-image", _upload("big.png", bad.over_limit_png()), 400),
    ("tiny-image", "POST", "/source-image", _upload("tiny.png", bad.png(bad.photo(0, 8))), 400),
    ("empty-file", "POST", "/source-image", _upload("e.png", b""), 400),
    ("wrong-content-type", "POST", "/source-image", _upload("n.txt", b"hello", "text/plain"), 400),
    ("pdf-as-png", "POST", "/source-image", _upload("doc.png", bad.PDF), 400),
    ("svg", "POST", "/source-image", _upload("d.svg", bad.SVG, "image/png"), 400),
    ("heic", "POST", "/source-image", _upload("p.heic", bad.HEIC, "image/jpeg"), 400),
    ("video-as-image", "POST", "/source-image", _upload("v.mp4", bad.MP4, "image/jpeg"), 400),
    ("oversized-upload", "POST", "/source-image", _upload("huge.png", b"\0" * (3 * 1024 * 1024)), 413),
    ("no-file-field", "POST", "/source-image", {"data": {"face_index": "0"}, "files": {"other": ("a", b"x")}}, 422),
    ("json-to-upload", "POST", "/source-image", {"json": {"file": "x"}}, 422),
    ("negative-face-index", "POST", "/source-image", _upload("a.png", bad.png(bad.photo()), face_index="-1"), 422),
    ("huge-face-index", "POST", "/source-image", _upload("a.png", bad.png(bad.photo()), face_index="99999"), 422),
    ("text-face-index", "POST", "/source-image", _upload("a.png", bad.png(bad.photo()), face_index="one"), 422),
    # --- bodies
    ("empty-body", "POST", "/generate", {"content": b"", "headers": J}, 422),
    ("text-plain-body", "POST", "/generate", {"content": b"smile", "headers": {"Content-Type": "text/plain"}}, 422),
    ("invalid-json", "POST", "/generate", {"content": b'{"session": ', "headers": J}, 422),
    ("non-utf8-json", "POST", "/generate", {"content": b'{"session": "\xff\xfe"}', "headers": J}, 400),
    ("deep-json", "POST", "/generate", {"content": b"[" * 20000 + b"]" * 20000, "headers": J}, 413),
    ("deep-json-in-limit", "POST", "/generate", {"content": b"[" * 10000 + b"]" * 10000, "headers": J}, 400),
    ("json-array", "POST", "/generate", {"json": ["smile"]}, 422),
    ("json-null", "POST", "/generate", {"content": b"null", "headers": J}, 422),
    ("oversized-json", "POST", "/render", {"content": b'{"x": "' + b"a" * 40000 + b'"}', "headers": J}, 413),
    # --- parameters of a clip
    (
        "nan-intensity",
        "POST",
        "/generate",
        {"content": b'{"session": "{sid}", "preset": "smile", "intensity": NaN}'},
        422,
    ),
    ("inf-speed", "POST", "/generate", {"content": b'{"session": "{sid}", "preset": "smile", "speed": Infinity}'}, 422),
    (
        "intensity-out-of-range",
        "POST",
        "/generate",
        {"json": {"session": "{sid}", "preset": "smile", "intensity": 5}},
        422,
    ),
    ("zero-fps", "POST", "/generate", {"json": {"session": "{sid}", "preset": "smile", "fps": 0}}, 422),
    ("huge-fps", "POST", "/generate", {"json": {"session": "{sid}", "preset": "smile", "fps": 1e9}}, 422),
    ("fps-over-service-limit", "POST", "/generate", {"json": {"session": "{sid}", "preset": "smile", "fps": 100}}, 400),
    ("negative-seed", "POST", "/generate", {"json": {"session": "{sid}", "preset": "smile", "seed": -1}}, 422),
    ("huge-seed", "POST", "/generate", {"json": {"session": "{sid}", "preset": "smile", "seed": 2**80}}, 422),
    ("unknown-preset", "POST", "/generate", {"json": {"session": "{sid}", "preset": "moonwalk"}}, 400),
    ("unknown-command", "POST", "/generate", {"json": {"session": "{sid}", "command": "qwzx"}}, 400),
    ("nothing-to-do", "POST", "/generate", {"json": {"session": "{sid}", "command": "   "}}, 400),
    ("command-not-a-string", "POST", "/generate", {"json": {"session": "{sid}", "command": ["smile"]}}, 422),
    ("command-too-long", "POST", "/generate", {"json": {"session": "{sid}", "command": "smile " * 200}}, 400),
    ("clip-too-long", "POST", "/generate", {"json": {"session": "{sid}", "command": "smile=300:99999999"}}, 400),
    (
        "wait-too-long",
        "POST",
        "/generate",
        {"json": {"session": "{sid}", "command": "smile=300:0; wait 99999999"}},
        400,
    ),
    (
        "too-many-steps",
        "POST",
        "/generate",
        {"json": {"session": "{sid}", "command": "; ".join(["blink x10 @4"] * 7)}},
        400,
    ),
    ("infinite-hold", "POST", "/generate", {"json": {"session": "{sid}", "command": "smile=300:" + "9" * 400}}, 400),
    (
        "intensity-over-in-command",
        "POST",
        "/generate",
        {"json": {"session": "{sid}", "command": "smile*99=300:100"}},
        400,
    ),
    # --- parameters of a preview
    ("nan-param", "POST", "/render", {"content": b'{"session": "{sid}", "params": {"smile": NaN}}'}, 400),
    ("inf-param", "POST", "/render", {"content": b'{"session": "{sid}", "params": {"smile": Infinity}}'}, 400),
    ("param-out-of-range", "POST", "/render", {"json": {"session": "{sid}", "params": {"wink": 99}}}, 400),
    ("unknown-param", "POST", "/render", {"json": {"session": "{sid}", "params": {"smiel": 1}}}, 400),
    ("param-not-a-number", "POST", "/render", {"json": {"session": "{sid}", "params": {"smile": "abc"}}}, 422),
    ("params-not-an-object", "POST", "/render", {"json": {"session": "{sid}", "params": [1, 2]}}, 422),
    # --- sessions
    ("unknown-session", "POST", "/render", {"json": {"session": "nobody", "params": {}}}, 409),
    ("unknown-session-image", "GET", "/source-image?session=nobody", {}, 409),
    ("missing-session", "POST", "/generate", {"json": {"preset": "smile"}}, 422),
    ("session-not-a-string", "POST", "/generate", {"json": {"session": 12, "preset": "smile"}}, 422),
    ("overlong-session", "POST", "/generate", {"json": {"session": "x" * 5000, "preset": "smile"}}, 422),
    # --- routes
    ("wrong-method", "GET", "/generate", {}, 405),
    ("unknown-route", "GET", "/nope", {}, 404),
    ("static-traversal", "GET", "/static/..%2Fserver%2Fapp.py", {}, 404),
    ("static-unknown-type", "GET", "/static/app.py", {}, 404),
]


def _with_session(kwargs: dict, sid: str) -> dict:
    out = dict(kwargs)
    if "json" in out:
        out["json"] = json.loads(json.dumps(out["json"]).replace("{sid}", sid))
    if "content" in out and "headers" not in out:
        out["content"] = out["content"].replace(b"{sid}", sid.encode())
        out["headers"] = J
    return out


@pytest.mark.parametrize("case,method,path,kwargs,status", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_a_4xx_with_a_message(bad_client, case, method, path, kwargs, status):
    res = bad_client.request(method, path, **_with_session(kwargs, bad_client.sid))
    assert res.status_code == status, f"{case}: {res.status_code} {res.text[:300]}"
    assert 400 <= res.status_code < 500
    assert "Traceback" not in res.text and 'File "' not in res.text
    body = res.json()
    assert isinstance(body.get("error") or body.get("detail"), str) and (body.get("error") or body.get("detail"))
    assert len(res.text) < 4000, "an error must not echo the input back"


def test_expired_session_is_409(bad_client):
    first = bad_client.post("/source-image", **_upload("a.png", bad.png(bad.photo(10)))).json()["session"]
    for seed in (11, 12):  # capacity 2
        assert bad_client.post("/source-image", **_upload("b.png", bad.png(bad.photo(seed)))).status_code == 200
    res = bad_client.post("/generate", json={"session": first, "preset": "blink"})
    assert res.status_code == 409 and res.json()["kind"] == "SessionExpired"


def test_no_face_and_missing_face_are_4xx(standin_weights):
    engine = StandInEngine(frame_ms=0.5, prepare_ms=0, face=FacePipeline(standin_weights(), ["CPUExecutionProvider"]))
    app = create_app(engine, ServerSettings(crop=True, fps=10.0, idle_default=False))
    faceless = StandInEngine(
        frame_ms=0.5, prepare_ms=0,
        face=FacePipeline(standin_weights(det_outputs=empty_det_outputs()), ["CPUExecutionProvider"]),
    )  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as c:
        res = c.post("/source-image", **_upload("a.png", bad.png(bad.photo(3, 256)), face_index="5"))
        assert res.status_code == 422 and "face_index" in res.json()["hint"]
    with TestClient(create_app(faceless, ServerSettings(crop=True)), raise_server_exceptions=False) as c:
        res = c.post("/source-image", **_upload("a.png", bad.png(bad.photo(3, 256))))
        assert res.status_code == 422 and res.json()["kind"] == "FaceNotFoundError"


def test_server_still_serves_after_every_bad_input(bad_client):
    for _, method, path, kwargs, _ in CASES:
        bad_client.request(method, path, **_with_session(kwargs, bad_client.sid))
    assert bad_client.get("/health").status_code == 200
    sid = bad_client.post("/session").json()["session"]
    lines = [
        json.loads(x) for x in bad_client.post("/generate", json={"session": sid, "preset": "blink"}).text.splitlines()
    ]
    assert lines[-1]["type"] == "end" and lines[-1]["frames"] == lines[0]["frames"]
    metrics = bad_client.get("/metrics").text
    assert 'status="500"' not in metrics, "a bad input caused a 500"
