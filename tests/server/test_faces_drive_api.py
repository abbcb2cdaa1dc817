"""``POST /drive`` with ``faces``: a motion template drives several faces of the session's photo, each with its
own relative driver (the motion read once), each frame's faces in one batch; a bad face is a 400 before decoding.

The renderer is the stand-in (``benchmarks/standin_server.py``: row 0 of the keypoints brightens and moves the
crop), with the stitching pass-through the keypoint driver asks of an engine.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from standin_server import StandInEngine

from group_photos import png_bytes, two_face_photo
from lpstudio.drive.template import MotionTrack, save_motion
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, ServiceLimits, create_app

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")
FRAMES = 3
SMILE = 0.6
"""Row 0's first coordinate of the template's expression from frame 1 on: the stand-in brightens by it."""
MOVED = 5.0
"""Mean change over a driven face's box (a brightening of ~60% of its crop)."""


class DrivableStandIn(StandInEngine):
    """The stand-in renderer with what :class:`~lpstudio.drive.driving_motion.KeypointDriver` uses of an engine."""

    networks = SimpleNamespace(stitching=None)

    def stitch(self, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        return x_d


@pytest.fixture(scope="module")
def app_and_upload() -> Iterator[tuple[TestClient, DrivableStandIn, dict]]:
    from lpstudio.face.models import MediaPipeFacePipeline

    engine = DrivableStandIn(frame_ms=1.0, prepare_ms=1.0, face=MediaPipeFacePipeline())
    settings = ServerSettings(
        crop=True, fps=4.0, idle_default=False, prerender=False, limits=ServiceLimits(max_faces=2)
    )
    with TestClient(create_app(engine, settings)) as client:
        res = client.post("/source-image", files={"file": ("two.png", png_bytes(two_face_photo()), "image/png")})
        assert res.status_code == 200, res.text
        yield client, engine, res.json()


def _template(tmp_path: Path) -> bytes:
    """A still head whose expression's row 0 jumps to ``SMILE`` after the first frame."""
    exp = np.zeros((FRAMES, 21, 3), np.float32)
    exp[1:, 0, 0] = SMILE
    arrays = {
        "rotation": np.tile(np.eye(3, dtype=np.float32), (FRAMES, 1, 1)),
        "exp": exp,
        "scale": np.ones((FRAMES, 1), np.float32),
        "t": np.zeros((FRAMES, 3), np.float32),
        "kp": np.zeros((FRAMES, 21, 3), np.float32),
    }
    path = save_motion(tmp_path / "smile.npz", MotionTrack(arrays, Fraction(4), np.ones(FRAMES, bool), "test"))
    return Path(path).read_bytes()


def _image(line: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(line["jpeg"]))).convert("RGB")).astype(np.int16)


def test_a_template_drives_both_faces_in_one_batch(app_and_upload, tmp_path: Path) -> None:
    client, engine, upload = app_and_upload
    engine.batches.clear()
    data = {"session": upload["session"], "faces": "all"}
    res = client.post("/drive", data=data, files={"file": ("smile.npz", _template(tmp_path), "application/zip")})
    assert res.status_code == 200, res.text
    lines = [json.loads(x) for x in res.text.splitlines() if x.strip()]
    assert lines[0]["type"] == "start" and lines[0]["faces"] == [0, 1] and lines[0]["drive"] == "template"
    frames = [_image(x) for x in lines if x["type"] == "frame"]
    assert len(frames) == FRAMES and lines[-1]["type"] == "end"
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # both faces of each frame together
    for x0, y0, x1, y1 in ([int(round(v)) for v in f["box"]] for f in upload["faces"]):
        first, last = frames[0][y0:y1, x0:x1], frames[-1][y0:y1, x0:x1]
        assert float((last - first).mean()) > MOVED  # each face took the template's expression change


@pytest.mark.parametrize(
    ("faces", "message"),
    [("2", "face 2 was asked for, but the photo has 2 faces"), ("every", "not 'all' nor a list of face numbers")],
)
def test_a_bad_face_is_400_before_decoding(app_and_upload, tmp_path: Path, faces: str, message: str) -> None:
    client, _, upload = app_and_upload
    data = {"session": upload["session"], "faces": faces}
    res = client.post("/drive", data=data, files={"file": ("smile.npz", b"PK not a zip", "application/zip")})
    assert res.status_code == 400, res.text
    assert message in res.json()["error"] and "Traceback" not in res.text
