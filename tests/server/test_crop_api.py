"""Crop controls in the web app: the server's own values (``serve --crop-scale``) and a photo with its own crop.

The engine is the session's synthetic networks with MediaPipe's face models (real photo,
real detection and crop), its renderer never called: uploads only prepare the photo.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from lpstudio.engine import LivePortrait
from lpstudio.face.crop_options import CropOptions
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import create_app
from lpstudio.server.settings import ServerSettings

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")

SERVER_SCALE = 2.6


@pytest.fixture(scope="module")
def crop_app(engine):
    from lpstudio.face.models import MediaPipeFacePipeline

    face = MediaPipeFacePipeline(crop_options=CropOptions(scale=SERVER_SCALE))
    e = LivePortrait(engine.networks, "cpu", "float32", face=face)
    app = create_app(e, ServerSettings(crop=True, fps=2.0, idle_default=False))
    with TestClient(app) as c:
        yield c


def _photo() -> bytes:
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "faces" / "grace_hopper.jpg"
    return path.read_bytes()


def _crop_side(client: TestClient, session: str) -> float:
    """Side of the crop square in photo pixels (from the prepared face's crop -> photo matrix)."""
    _, source = client.app.state.lp.resolve(session)
    m = np.asarray(source.state.face.M_c2o, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(m[:2, :2])))) * source.state.face.image_512.shape[0]


def test_server_options_and_ranges(crop_app: TestClient) -> None:
    body = crop_app.get("/crop-options").json()
    assert body["options"]["scale"] == SERVER_SCALE and body["defaults"]["scale"] == 2.3
    assert body["ranges"]["crop_scale"] == [1.0, 4.0] and body["per_request"] is True


def test_upload_with_its_own_crop(crop_app: TestClient) -> None:
    files = {"file": ("gh.jpg", _photo(), "image/jpeg")}
    plain = crop_app.post("/source-image", files=files).json()
    wide = crop_app.post("/source-image/crop", files=files, data={"crop_scale": "3.9", "crop_vy": "0"}).json()
    assert wide["crop_options"]["scale"] == 3.9 and wide["crop_options"]["vy"] == 0.0
    assert wide["crop_options"]["rotate"] is True  # fields not sent keep the server's values
    ratio = _crop_side(crop_app, wide["session"]) / _crop_side(crop_app, plain["session"])
    assert ratio == pytest.approx(3.9 / SERVER_SCALE, rel=2e-3)  # plain uploads keep the server's scale
    again = crop_app.post("/source-image/crop", files=files, data={"crop_scale": "3.9", "crop_vy": "0"}).json()
    assert _crop_side(crop_app, again["session"]) == pytest.approx(_crop_side(crop_app, wide["session"]))


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"crop_scale": "9"}, "crop_scale 9 is out of range"),
        ({"crop_vx": "left"}, "crop_vx must be a number"),
        ({"det_thresh": "1.5"}, "det_thresh 1.5 is out of range"),
    ],
)
def test_bad_crop_values_are_a_400_naming_the_field(crop_app: TestClient, data: dict, words: str) -> None:
    image = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    res = crop_app.post("/source-image/crop", files={"file": ("x.png", image, "image/png")}, data=data)
    assert res.status_code == 400
    body = res.json()
    assert words in body["error"] and "Traceback" not in res.text and "--" not in body["error"]
