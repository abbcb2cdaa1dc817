"""Several faces that speak in the web app: a spoken ``/generate`` and an uploaded ``/generate-audio`` with
``faces`` stream frames and the audio, every chosen face's mouth moving, each frame's faces in one batch.

The renderer is a stand-in whose crops change only in the mouth, by how open the lip-sync says it is
(``tests/mouth_standin.py``), so a test can see each face's lips and nothing else move.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from group_photos import png_bytes, two_face_photo
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.speech import AudioClip, speak_text, speech_available, wav_bytes
from mouth_standin import MouthStandIn

pytestmark = [
    pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})"),
    pytest.mark.skipif(not speech_available(), reason="eSpeak NG is not installed"),
]
FPS = 8.0
OUTSIDE_LEVELS = 2.0
"""Change allowed outside every face box (99.9th percentile of the pixels: JPEG noise)."""
MOUTH_CHANGE = 5.0
"""Mean change over a face box when its mouth opens (a wide '아' brightens the mouth block by ~75 levels)."""


@pytest.fixture(scope="module")
def app_and_session() -> Iterator[tuple[TestClient, MouthStandIn, dict]]:
    from lpstudio.face.models import MediaPipeFacePipeline

    engine = MouthStandIn(frame_ms=1.0, prepare_ms=1.0, face=MediaPipeFacePipeline())
    settings = ServerSettings(crop=True, fps=FPS, idle_default=False, prerender=False,
                              limits=ServiceLimits(max_faces=2, max_clip_ms=6_000.0))  # fmt: skip
    with TestClient(create_app(engine, settings)) as client:
        res = client.post("/source-image", files={"file": ("two.png", png_bytes(two_face_photo()), "image/png")})
        assert res.status_code == 200, res.text
        yield client, engine, res.json()


def _lines(res) -> list[dict]:  # noqa: ANN001
    assert res.status_code == 200, res.text
    return [json.loads(line) for line in res.text.splitlines() if line.strip()]


def _image(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(np.int16)


def _check_speaking_faces(client: TestClient, upload: dict, lines: list[dict]) -> None:
    """Frames and audio came; each face box changed in some frame; outside both boxes nothing did."""
    start = lines[0]
    assert start["type"] == "start" and start["speaks"] is True and start["faces"] == [0, 1]
    wav = base64.b64decode(start["audio"]["wav_base64"])
    assert wav[:4] == b"RIFF" and len(wav) > 1000
    frames = [_image(base64.b64decode(x["jpeg"])) for x in lines if x["type"] == "frame"]
    assert len(frames) == start["frames"] > 3 and lines[-1]["type"] == "end"
    still = _image(client.post("/render", json={"session": upload["session"], "params": {}, "faces": "all"}).content)
    boxes = [[int(round(v)) for v in f["box"]] for f in upload["faces"]]
    outside = np.ones(still.shape[:2], dtype=bool)
    for x0, y0, x1, y1 in boxes:
        outside[y0:y1, x0:x1] = False
    for x0, y0, x1, y1 in boxes:
        change = max(float(np.abs(f[y0:y1, x0:x1] - still[y0:y1, x0:x1]).mean()) for f in frames)
        assert change > MOUTH_CHANGE, (x0, y0, x1, y1, change)  # this face's mouth opened in some frame
    worst = max(float(np.percentile(np.abs(f[outside] - still[outside]), 99.9)) for f in frames)
    assert worst <= OUTSIDE_LEVELS, worst


def test_spoken_generate_with_two_faces_streams_frames_and_audio(app_and_session) -> None:
    client, engine, upload = app_and_session
    engine.batches.clear()
    body = {"session": upload["session"], "command": "say: hello there", "faces": [0, 1], "fps": FPS}
    lines = _lines(client.post("/generate", json=body))
    _check_speaking_faces(client, upload, lines)
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # whole frames of both faces per batch
    again = _lines(client.post("/generate", json=body))  # remembered speech: the same audio, the cached frames
    assert again[0]["audio"]["key"] == lines[0]["audio"]["key"] and len(again) == len(lines)


def test_talk_preset_with_all_faces_speaks(app_and_session) -> None:
    client, _, upload = app_and_session
    lines = _lines(client.post("/generate", json={"session": upload["session"], "preset": "talk", "faces": "all"}))
    assert lines[0]["speaks"] is True and lines[0]["faces"] == [0, 1] and "audio" in lines[0]


def test_uploaded_speech_with_faces_moves_both_mouths(app_and_session) -> None:
    client, _, upload = app_and_session
    clip = speak_text("hello there", voice="en")
    data = wav_bytes(AudioClip.from_mono(clip.audio.mono(), clip.audio.sample_rate))
    form = {"session": upload["session"], "faces": "0,1", "fps": str(FPS)}
    lines = _lines(client.post("/generate-audio", data=form, files={"file": ("hi.wav", data, "audio/wav")}))
    _check_speaking_faces(client, upload, lines)


def test_one_face_speaks_while_the_other_smiles(app_and_session) -> None:
    """``face 0 say ..., face 1 smile``: face 0's lips move with the audio, face 1 smiles; the audio is as long as
    the frames (padded with silence when the smile lasts longer)."""
    client, engine, upload = app_and_session
    rows: list[tuple[int, float, float]] = []  # (face, smile, mouth) of each rendered row
    render = engine.render_mixed

    def recording(items):  # noqa: ANN001, ANN202
        rows.extend((state.face.face_index, float(x[0, 0]), float(x[2, 0])) for state, x in items)
        return render(items)

    engine.render_mixed = recording
    try:
        body = {"session": upload["session"], "command": "face 0 say hi, face 1 smile", "faces": "all", "fps": FPS}
        lines = _lines(client.post("/generate", json=body))
    finally:
        engine.render_mixed = render
    start = lines[0]
    assert start["speaks"] is True and start["faces"] == [0, 1]
    frames = [x for x in lines if x["type"] == "frame"]
    assert len(frames) == start["frames"] == start["audio"]["n_frames"]
    mouth = {i: max(m for f, _, m in rows if f == i) for i in (0, 1)}
    smile = {i: max(s for f, s, _ in rows if f == i) for i in (0, 1)}
    assert mouth[0] > 5 * max(mouth[1], 1.0) and smile[1] > 0.5  # face 0 talks, face 1 smiles


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"command": "say hello", "faces": [2]}, "face 2 was asked for, but the photo has 2 faces"),
        ({"command": "face 0 say hello, face 1 say bye", "faces": "all"}, "faces 0 and 1 both speak"),
    ],
)
def test_bad_spoken_faces_are_400(app_and_session, body: dict, message: str) -> None:
    client, _, upload = app_and_session
    res = client.post("/generate", json={"session": upload["session"], **body})
    assert res.status_code == 400, res.text
    assert message in res.json()["error"] and "Traceback" not in res.text


def test_uploaded_speech_with_a_bad_face_is_400_before_decoding(app_and_session) -> None:
    client, _, upload = app_and_session
    data = b"RIFF\x00\x00\x00\x00WAVE not decodable"  # the face is refused before the audio is looked at
    for faces, message in (("5", "face 5 was asked for"), ("everyone", "not 'all' nor a list of face numbers")):
        form = {"session": upload["session"], "faces": faces}
        res = client.post("/generate-audio", data=form, files={"file": ("hi.wav", data, "audio/wav")})
        assert res.status_code == 400, res.text
        assert message in res.json()["error"] and "Traceback" not in res.text
