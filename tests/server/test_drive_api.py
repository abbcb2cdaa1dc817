"""``POST /drive`` and ``POST /edit`` (issue 23 §1: the CLI's other jobs in the page) on the synthetic engine.

A driving video or a motion template streams its frames as NDJSON like a ``/generate`` clip; the
expression of another photo comes back as the still; every bad upload is a 4xx JSON with one plain line.
"""

from __future__ import annotations

import base64
import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lpstudio.drive.template import MotionTrack, save_motion
from lpstudio.server import ServerSettings, ServiceLimits, create_app

SIDE = 64
"""Driving frames are tiny: the server resizes them to the motion net's 256 anyway (pre-cropped mode)."""
MAX_FRAMES = 6
DECODER_WORDS = ("ffmpeg", "invaliddata", "errno", "traceback", "libav", "zipfile", "numpy")


def video_bytes(frames: list[np.ndarray], fps: int = 4, codec: str = "libx264", fmt: str = "mp4") -> bytes:
    """RGB frames encoded in memory with PyAV (lossless x264 or VP8 in WebM)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=Fraction(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def noise_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(n)]


def template_bytes(tmp_path: Path, n: int, *, exp_shape: tuple[int, ...] | None = None) -> bytes:
    rng = np.random.default_rng(1)
    arrays = {
        "rotation": np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
        "exp": rng.normal(0, 0.01, (n, 21, 3)).astype(np.float32),
        "scale": np.ones((n, 1), np.float32),
        "t": np.zeros((n, 3), np.float32),
        "kp": rng.normal(0, 0.1, (n, 21, 3)).astype(np.float32),
    }
    if exp_shape is not None:
        arrays["exp"] = np.zeros(exp_shape, np.float32)
    path = tmp_path / "motion.npz"
    if exp_shape is None:
        save_motion(path, MotionTrack(arrays, Fraction(4), np.ones(n, bool), "test"))
    else:  # save_motion would refuse nothing here; write the bad arrays with lpstudio's metadata
        meta = json.dumps({"format": "lpstudio-motion", "version": 1, "fps": "4/1"})
        np.savez(path, **arrays, meta=np.array(meta))
    return path.read_bytes()


def png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def drive_client(engine):
    limits = ServiceLimits(max_drive_frames=MAX_FRAMES, max_drive_seconds=3.0, max_drive_upload_bytes=256 * 1024)
    settings = ServerSettings(crop=False, fps=4.0, idle_default=False, prerender=False, limits=limits)
    with TestClient(create_app(engine, settings)) as c:
        yield c, c.post("/session", json={}).json()["session"]


def _drive(client: TestClient, session: str, name: str, data: bytes):
    return client.post("/drive", data={"session": session}, files={"file": (name, data, "application/octet-stream")})


def _lines(response) -> list[dict]:
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _frames(lines: list[dict]) -> list[np.ndarray]:
    out = []
    for line in lines:
        if line["type"] == "frame":
            out.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(line["jpeg"]))).convert("RGB"), np.int16))
    return out


def _plain_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    message = body["error"]
    assert "\n" not in message and len(message) < 300
    assert not any(word in message.lower() for word in DECODER_WORDS), message
    return message


def test_a_driving_video_streams_one_frame_per_driving_frame(drive_client) -> None:
    client, session = drive_client
    lines = _lines(_drive(client, session, "drive.mp4", video_bytes(noise_frames(3))))
    start, end = lines[0], lines[-1]
    assert start["type"] == "start" and start["frames"] == 3 and start["drive"] == "video"
    assert start["fps"] == pytest.approx(4.0)
    assert end["type"] == "end", end
    frames = _frames(lines)
    assert [x["index"] for x in lines if x["type"] == "frame"] == [0, 1, 2]
    # different driving frames move the face differently; relative motion starts from the rest pose
    assert np.abs(frames[1] - frames[2]).mean() > 0.5


@pytest.mark.slow
def test_a_still_driving_video_keeps_the_portrait_still(drive_client) -> None:
    client, session = drive_client
    frames = _frames(
        _lines(_drive(client, session, "still.webm", video_bytes(noise_frames(1) * 3, codec="libvpx", fmt="webm")))
    )
    assert len(frames) == 3
    assert np.abs(frames[0] - frames[2]).max() <= 2  # relative to itself: no motion (JPEG rounding only)


def test_a_motion_template_streams_its_frames(drive_client, tmp_path: Path) -> None:
    client, session = drive_client
    lines = _lines(_drive(client, session, "motion.npz", template_bytes(tmp_path, 2)))
    assert lines[0]["frames"] == 2 and lines[0]["drive"] == "template" and lines[-1]["type"] == "end"
    assert len(_frames(lines)) == 2


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("notes.mp4", b"just some text, not a video at all", 400, "not a video"),
        ("empty.mp4", b"", 400, "empty"),
        ("motion.pkl", b"\x80\x04\x95" + b"\x00" * 40, 400, "not a video"),
        ("cut.mp4", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200, 400, "cannot read cut.mp4"),
        ("broken.npz", b"PK\x03\x04" + b"\x00" * 60, 400, "not a valid .npz"),
        ("huge.mp4", b"\x00\x00\x00\x18ftypisom" + b"\x00" * (300 * 1024), 413, "larger than"),
    ],
    ids=["text", "empty", "pickle", "corrupt-mp4", "corrupt-npz", "too-large"],
)
def test_bad_driving_uploads_are_plain_4xx(drive_client, name: str, data: bytes, status: int, words: str) -> None:
    client, session = drive_client
    assert words in _plain_error(_drive(client, session, name, data), status)


def test_a_driving_video_over_the_frame_limit_is_refused(drive_client) -> None:
    client, session = drive_client
    message = _plain_error(_drive(client, session, "long.mp4", video_bytes(noise_frames(MAX_FRAMES + 2))), 400)
    assert "long.mp4" in message and "limit" in message


def test_a_template_with_wrong_arrays_is_refused(drive_client, tmp_path: Path) -> None:
    client, session = drive_client
    message = _plain_error(_drive(client, session, "bad.npz", template_bytes(tmp_path, 3, exp_shape=(3, 5))), 400)
    assert "exp" in message and "bad.npz" in message


def test_expression_from_a_photo_comes_back_as_the_still(drive_client) -> None:
    client, session = drive_client
    own = client.get("/source-image", params={"session": session}).content
    rest = client.post("/render", json={"session": session, "params": {}})
    same = client.post("/edit", data={"session": session}, files={"expression_from": ("me.jpg", own, "image/jpeg")})
    assert same.status_code == 200 and same.headers["content-type"] == "image/jpeg"
    other = png_bytes(noise_frames(1, seed=5)[0])
    moved = client.post(
        "/edit", data={"session": session, "pose": "true"}, files={"expression_from": ("o.png", other, "image/png")}
    )
    assert moved.status_code == 200, moved.text

    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int16)

    # the photo's own expression (as shown, so JPEG-rounded) is near its rest pose; another face's is not
    near = np.abs(pixels(same.content) - pixels(rest.content)).mean()
    far = np.abs(pixels(moved.content) - pixels(rest.content)).mean()
    assert far > near


def test_bad_expression_photos_are_plain_4xx(drive_client) -> None:
    client, session = drive_client
    bad = client.post(
        "/edit", data={"session": session}, files={"expression_from": ("x.png", b"not an image", "image/png")}
    )
    _plain_error(bad, 400)
    missing = client.post("/edit", data={"session": session})
    assert missing.status_code == 422 and "expression_from" in missing.json()["error"]


def test_both_routes_are_in_openapi_with_summaries(drive_client) -> None:
    client, _ = drive_client
    paths = client.get("/openapi.json").json()["paths"]
    assert "driving video" in paths["/drive"]["post"]["summary"]
    assert "expression" in paths["/edit"]["post"]["summary"]
