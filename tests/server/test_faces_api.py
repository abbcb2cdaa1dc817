"""The API on group photos: ``/source-image`` keeps every face, ``GET /faces``, ``faces`` on ``/render`` and
``/generate`` (validated; the worker renders a frame's faces in one batch). Stand-in renderer, MediaPipe models."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from standin_server import StandInEngine

from group_photos import overlapping_faces_photo, png_bytes, two_face_photo
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, ServiceLimits, create_app

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")


@pytest.fixture(scope="module")
def engine_and_client():
    from lpstudio.face.models import MediaPipeFacePipeline

    engine = StandInEngine(frame_ms=1.0, prepare_ms=1.0, face=MediaPipeFacePipeline())
    settings = ServerSettings(crop=True, fps=5.0, idle_default=False, limits=ServiceLimits(max_faces=2))
    with TestClient(create_app(engine, settings)) as client:
        yield engine, client


@pytest.fixture(scope="module")
def upload(engine_and_client) -> dict:
    _, client = engine_and_client
    files = {"file": ("two.png", png_bytes(two_face_photo()), "image/png")}
    res = client.post("/source-image", files=files)
    assert res.status_code == 200, res.text
    return res.json()


def _jpeg(res) -> np.ndarray:  # noqa: ANN001
    assert res.status_code == 200, res.text
    return np.asarray(Image.open(io.BytesIO(res.content)).convert("RGB")).astype(np.int16)


def test_upload_keeps_every_face(engine_and_client, upload: dict) -> None:
    _, client = engine_and_client
    assert len(upload["faces"]) == 2 and upload["animatable_faces"] == 2
    res = client.get("/faces", params={"session": upload["session"]})
    assert res.status_code == 200
    info = res.json()
    assert info["animatable"] == 2 and [f["box"] for f in info["faces"]] == [f["box"] for f in upload["faces"]]
    (a, b) = (f["box"] for f in info["faces"])
    assert (a[2] - a[0]) * (a[3] - a[1]) > (b[2] - b[0]) * (b[3] - b[1])  # largest first


def test_render_faces_in_one_batch_and_only_the_chosen_ones(engine_and_client, upload: dict) -> None:
    engine, client = engine_and_client
    session = upload["session"]
    still = _jpeg(client.get("/source-image", params={"session": session}))
    engine.batches.clear()
    both = _jpeg(client.post("/render", json={"session": session, "params": {"smile": 1.0}, "faces": "all"}))
    assert engine.batches == [2]  # the two faces of the frame: one batch
    engine.batches.clear()
    second = _jpeg(client.post("/render", json={"session": session, "params": {"smile": 1.0}, "faces": [1]}))
    assert engine.batches == [1]
    assert client.app.state.lp.admission.pending_frames == 0  # a group job's rows were all counted as rendered

    def mean_change(img: np.ndarray, box: list[float]) -> float:
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        return float(np.abs(img[y0:y1, x0:x1] - still[y0:y1, x0:x1]).mean())

    box0, box1 = (f["box"] for f in upload["faces"])
    assert mean_change(both, box0) > 10 and mean_change(both, box1) > 10  # a smile brightens each face
    assert mean_change(second, box1) > 10 and mean_change(second, box0) < 2  # face 0 untouched (JPEG noise)


@pytest.mark.parametrize(
    ("faces", "message"),
    [
        ([2], "face 2 was asked for, but the photo has 2 faces (numbered 0 to 1, largest first)"),
        ("everyone", "faces 'everyone' is not 'all' nor a list of face numbers"),
        ([0, 0], "names a face twice"),
        ([], "faces must be 'all' or a non-empty list"),
    ],
)
def test_bad_faces_are_400_with_a_clear_message(engine_and_client, upload: dict, faces, message: str) -> None:
    _, client = engine_and_client
    for path, body in (("/render", {"params": {}}), ("/generate", {"command": "smile"})):
        res = client.post(path, json={"session": upload["session"], "faces": faces, **body})
        assert res.status_code == 400, (path, res.text)
        text = res.json()["error"]
        assert message in text and "Traceback" not in res.text


def test_generate_per_face_command_streams_batches_of_both_faces(engine_and_client, upload: dict) -> None:
    engine, client = engine_and_client
    engine.batches.clear()
    body = {"session": upload["session"], "command": "face 0 smile, face 1 wink", "faces": "all", "fps": 5.0}
    with client.stream("POST", "/generate", json=body) as res:
        assert res.status_code == 200
        lines = [json.loads(line) for line in res.iter_lines() if line]
    assert lines[0]["type"] == "start" and lines[0]["faces"] == [0, 1]
    frames = [x for x in lines if x["type"] == "frame"]
    assert len(frames) == lines[0]["frames"] > 3 and lines[-1]["type"] == "end"
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # every batch holds whole frames of 2 faces
    res = client.post("/generate", json={**body, "command": "face 5 smile"})
    assert res.status_code == 400 and "names face 5, but the photo has 2 faces" in res.json()["error"]


GRID = 8
DARK_RATIO = 0.6
DARK_MARGIN = 12.0
"""A block darker than ``DARK_RATIO`` x the same block of the still portrait, minus this, is a dark patch
(the block-by-block check of ``test_browser_service.py``, here over every face box)."""


def _blocks(img: np.ndarray, box: list[float]) -> np.ndarray:
    """Mean luminance of a GRID x GRID grid of blocks over ``box`` of ``img`` (H, W, 3)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    lum = img[y0:y1, x0:x1].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    rows = np.array_split(np.arange(lum.shape[0]), GRID)
    cols = np.array_split(np.arange(lum.shape[1]), GRID)
    return np.array([[lum[np.ix_(r, c)].mean() for c in cols] for r in rows])


def test_overlapping_faces_paste_without_dark_patch_or_seam(engine_and_client) -> None:
    """Two faces whose paste-back regions overlap, rendered together: every block of every face box stays
    lit, and the composite has no step (seam) larger than the photo's own."""
    engine, client = engine_and_client
    files = {"file": ("overlap.png", png_bytes(overlapping_faces_photo()), "image/png")}
    info = client.post("/source-image", files=files).json()
    assert len(info["faces"]) == 2 and info["animatable_faces"] == 2
    session = info["session"]
    still = _jpeg(client.get("/source-image", params={"session": session}))
    both = _jpeg(client.post("/render", json={"session": session, "params": {"smile": 0.5}, "faces": "all"}))
    for face in info["faces"]:
        ref, out = _blocks(still, face["box"]), _blocks(both, face["box"])
        dark = np.argwhere(out < DARK_RATIO * ref - DARK_MARGIN)
        assert dark.size == 0, f"dark patch in face box {face['box']}: blocks {dark.tolist()}"
    step = lambda img: np.abs(np.diff(img.mean(axis=2), axis=1)).max()  # noqa: E731
    assert step(both) <= step(still) + 60


def test_dark_patch_check_can_fail() -> None:
    ref = np.full((GRID, GRID), 120.0)
    patched = ref.copy()
    patched[2:4, 3:5] = 3.0
    assert np.argwhere(patched < DARK_RATIO * ref - DARK_MARGIN).shape[0] == 4
    assert np.argwhere(ref * 0.8 < DARK_RATIO * ref - DARK_MARGIN).size == 0


def test_a_precropped_portrait_has_no_faces_to_choose() -> None:
    settings = ServerSettings(crop=False, fps=5.0, idle_default=False)
    with TestClient(create_app(StandInEngine(frame_ms=1.0, prepare_ms=1.0), settings)) as client:
        session = client.post("/session", json={}).json()["session"]
        res = client.post("/render", json={"session": session, "params": {}, "faces": [0]})
    assert res.status_code == 400 and "no faces to choose from" in res.json()["error"]
