"""The HTTP API on synthetic weights: info routes, sessions, previews, streamed clips, uploads."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lpstudio.engine import LivePortrait
from lpstudio.expressions import parse_command
from lpstudio.face import FacePipeline
from lpstudio.params import PARAM_NAMES
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from standin_models import empty_det_outputs, put_face

TEST_FPS = 2.0  # matches the client fixture (tests/server/conftest.py)


def _image(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _stream(response) -> list[dict]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def test_health_reports_model(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["model_loaded"] is True
    assert body["device"] == "cpu" and body["dtype"] == "float32" and body["backend"] == "eager"


def test_openapi_lists_every_endpoint(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/expressions", "/params", "/source-image", "/generate", "/render", "/session"):
        assert path in paths, path
    assert {"get", "post"} <= set(paths["/source-image"])


def test_expressions_have_korean_and_english_names(client):
    presets = client.get("/expressions").json()
    assert len(presets) >= 14
    labels = {p["label"] for p in presets if p["button"]}
    assert {"웃어봐", "깜빡여봐", "말해봐", "놀라봐", "윙크해봐"} <= labels
    assert all(p["ko"] and p["en"] for p in presets)


def test_params_are_the_seventeen(client):
    specs = client.get("/params").json()
    assert [s["name"] for s in specs] == list(PARAM_NAMES)


def test_page_is_utf8_html(client):
    res = client.get("/")
    assert res.headers["content-type"] == "text/html; charset=utf-8"
    assert "웃어봐" not in res.text  # buttons come from /expressions
    assert '<canvas id="portrait"' in res.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/../server/app.py").status_code == 404


def test_source_image_is_the_portrait(client, session):
    shown = _image(client.get(f"/source-image?session={session}").content)
    default = _image(client.get("/source-image").content)
    assert shown.shape == default.shape == (512, 512, 3)
    assert shown.mean() > 20, "portrait is black"
    assert np.abs(shown.astype(int) - default.astype(int)).mean() < 3  # same photo (JPEG noise aside)


@pytest.fixture(scope="module")
def previews(client, session):
    neutral = client.post("/render", json={"session": session, "params": {}})
    smiling = client.post("/render", json={"session": session, "params": {"smile": 1.2, "head_yaw": 15}})
    return neutral, smiling


def test_render_preview_changes_with_parameters(previews):
    neutral, smiling = previews
    assert neutral.status_code == smiling.status_code == 200
    assert neutral.headers["content-type"] == "image/jpeg"
    a, b = _image(neutral.content), _image(smiling.content)
    assert a.shape == b.shape == (512, 512, 3)
    assert a.std() > 5 and b.std() > 5
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1.0


@pytest.mark.parametrize(
    "params,message",
    [({"smile": 9}, "outside its range"), ({"smiel": 1}, "unknown parameter 'smiel'"), ({"wink": None}, "wink")],
)
def test_render_rejects_bad_parameters(client, session, params, message):
    res = client.post("/render", json={"session": session, "params": params})
    assert res.status_code == 400
    assert message in res.json()["error"]


def test_generate_streams_a_clip_then_replays_from_cache(client, session):
    res = client.post("/generate", json={"session": session, "command": "깜빡여줘", "idle": False})
    assert res.status_code == 200 and res.headers["content-type"].startswith("application/x-ndjson")
    lines = _stream(res)
    start, frames, end = lines[0], lines[1:-1], lines[-1]
    expected = parse_command("깜빡여줘").timeline().frame_count(TEST_FPS)
    assert start["type"] == "start" and start["frames"] == expected and start["fps"] == TEST_FPS
    assert [s["preset"] for s in start["steps"]] == ["blink"]
    assert [f["index"] for f in frames] == list(range(expected))
    first = _image(base64.b64decode(frames[0]["jpeg"]))
    assert first.shape == (512, 512, 3) and first.mean() > 20
    assert end == {**end, "type": "end", "frames": expected, "cached": False}
    again = _stream(client.post("/generate", json={"session": session, "command": "깜빡여줘", "idle": False}))
    assert again[-1]["cached"] is True and len(again) == len(lines)


def test_generate_unknown_command_lists_close_matches(client, session):
    res = client.post("/generate", json={"session": session, "command": "smiel"})
    assert res.status_code == 400
    body = res.json()
    assert body["kind"] == "CommandError" and "smile" in (body["hint"] or "")


def test_generate_needs_something_to_do(client, session):
    res = client.post("/generate", json={"session": session})
    assert res.status_code == 400 and "nothing to do" in res.json()["error"]


def test_unknown_session_is_409(client):
    res = client.post("/render", json={"session": "gone", "params": {}})
    assert res.status_code == 409 and res.json()["kind"] == "SessionExpired"


def _photo(seed: int) -> bytes:
    return _png(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8))


def test_pages_on_one_portrait_share_one_prepared_photo(client):
    ids = [client.post("/session", json={}).json()["session"] for _ in range(4)]
    assert len(set(ids)) == 4
    assert all(client.get(f"/source-image?session={i}").status_code == 200 for i in ids)
    assert client.app.state.lp.sources.get(client.app.state.lp.sessions.get(ids[0]).digest) is not None


def test_prepared_photos_are_bounded_lru(client):
    ids = [
        client.post("/source-image", files={"file": (f"p{i}.png", _photo(i), "image/png")}).json()["session"]
        for i in range(4)
    ]  # capacity 3
    assert client.get(f"/source-image?session={ids[0]}").status_code == 409
    assert client.get(f"/source-image?session={ids[-1]}").status_code == 200


def test_resent_photo_is_recognised_and_not_prepared_again(client, monkeypatch):
    state = client.app.state.lp
    first = client.post("/source-image", files={"file": ("a.png", _photo(99), "image/png")}).json()
    calls = []
    real = state.engine.prepare_source
    monkeypatch.setattr(state.engine, "prepare_source", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = client.post("/source-image", files={"file": ("a.png", _photo(99), "image/png")}).json()
    assert calls == [] and again["session"] != first["session"]


def test_client_chosen_session_id_is_ignored(client):
    victim = client.post("/session", json={}).json()["session"]
    photo = client.post(
        "/source-image", files={"file": ("mine.png", _photo(5), "image/png")}, data={"session": victim}
    ).json()
    chosen = client.post("/session", json={"session": "my-own-id"}).json()["session"]
    assert photo["session"] != victim and chosen != "my-own-id"
    assert len(victim) >= 32  # 192 random bits
    state = client.app.state.lp
    assert state.sessions.get(victim).digest != state.sessions.get(photo["session"]).digest


def test_upload_replaces_the_portrait(client):
    photo = np.zeros((300, 240, 3), np.uint8)
    photo[..., 0] = 200
    photo[100:200, 60:180] = (30, 160, 90)
    res = client.post("/source-image", files={"file": ("mine.png", _png(photo), "image/png")})
    assert res.status_code == 200, res.text
    info = res.json()
    assert info["name"] == "mine.png" and info["ratios_estimated"] is True
    shown = _image(client.get(f"/source-image?session={info['session']}").content)
    expected_red = (200 * (300 * 240 - 100 * 120) + 30 * 100 * 120) / (300 * 240)
    assert shown.shape == (512, 512, 3) and abs(shown[..., 0].mean() - expected_red) < 4


@pytest.mark.parametrize(
    "name,data,ctype,message",
    [
        ("notes.txt", b"hello", "text/plain", "not accepted"),
        ("empty.png", b"", "image/png", "is empty"),
        ("fake.png", b"this is not a png at all", "image/png", "fake.png"),
    ],
)
def test_upload_rejects_bad_files(client, name, data, ctype, message):
    res = client.post("/source-image", files={"file": (name, data, ctype)})
    assert res.status_code == 400
    assert message in res.json()["error"]


def test_upload_size_limit(engine):
    app = create_app(engine, ServerSettings(crop=False, limits=ServiceLimits(max_upload_bytes=1000)))
    with TestClient(app) as c:
        big = _png(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        res = c.post("/source-image", files={"file": ("big.png", big, "image/png")})
    assert res.status_code == 413 and "larger than" in res.json()["error"]


def test_full_photo_mode_with_face_models(engine, standin_weights):
    """Crop mode: the stand-in detector finds a face; frames are pasted into the whole photo.

    The stand-in reports a small box in the detector's 512 canvas, where a 2048x512
    photo is letterboxed into the top 128 rows: the face lands near x = 1000 and the
    two ends of the photo are outside the paste mask.
    """
    det = empty_det_outputs()
    put_face(det, 0, 32, 8, 0, 0.9, (232.0, 38.0, 282.0, 98.0))  # stride-8 anchor at (256, 64)
    face_engine = LivePortrait(engine.networks, device="cpu", face=FacePipeline(standin_weights(det_outputs=det)))
    app = create_app(face_engine, ServerSettings(crop=True, fps=TEST_FPS, idle_default=False))
    yy, xx = np.mgrid[0:512, 0:2048]
    photo = np.stack([xx % 256, yy % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
    with TestClient(app) as c:
        res = c.post("/source-image", files={"file": ("wide.png", _png(photo), "image/png")})
        assert res.status_code == 200, res.text
        info = res.json()
        assert (info["width"], info["height"]) == (1024, 256) and len(info["faces"]) == 1
        frame = _image(c.post("/render", json={"session": info["session"], "params": {"smile": 1}}).content)
        shown = _image(c.get(f"/source-image?session={info['session']}").content)
    assert frame.shape == shown.shape == (256, 1024, 3)
    diff = np.abs(frame.astype(int) - shown.astype(int)).mean(axis=(0, 2))
    assert diff[:200].mean() < 3 and diff[-300:].mean() < 3, "pixels outside the face changed"
    assert diff[450:550].mean() > 5, "the rendered face is not in the photo"


def test_prerendered_preset_replays_from_cache(engine, monkeypatch):
    """With pre-rendering on, a new photo's preset buttons are rendered in the background."""
    import time

    from lpstudio.server import app as app_module

    monkeypatch.setattr(app_module, "BUTTONS", {"blink": ("깜빡여봐", "😉")})
    app = create_app(engine, ServerSettings(crop=False, fps=TEST_FPS, idle_default=False, prerender=True))
    with TestClient(app) as c:
        session = c.post("/session", json={}).json()["session"]
        state = app.state.lp
        deadline = time.time() + 300
        while (state.hub.clips or len(state.hub.cache) == 0) and time.time() < deadline:
            c.get(f"/source-image?session={session}")  # the page is still there (background work for a gone page stops)
            time.sleep(0.5)
        assert len(state.hub.cache) == 1, "the preset was not pre-rendered"
        lines = _stream(c.post("/generate", json={"session": session, "preset": "blink"}))
    assert lines[-1]["type"] == "end" and lines[-1]["cached"] is True
