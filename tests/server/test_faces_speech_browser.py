"""The page on a group photo with "all faces" ticked (Chromium via Playwright, mouth stand-in, MediaPipe): the talk
button and an uploaded recording make both faces speak (no error, frames and voice), each frame's faces in one
batch; the requests carry ``faces``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from browser_helpers import CHROMIUM, CHROMIUM_FLAGS, require_browser
from PIL import Image
from service_helpers import live_server

from group_photos import two_face_photo
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.server import ServerSettings, create_app
from lpstudio.speech import AudioClip, speech_available, wav_bytes
from mouth_standin import MouthStandIn

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})"),
    pytest.mark.skipif(not speech_available(), reason="eSpeak NG is not installed"),
]
TIMEOUT_MS = 120_000
DONE = "() => document.getElementById('progressText').textContent.includes('done')"


def test_all_faces_talk_and_say_an_uploaded_recording(tmp_path: Path) -> None:
    require_browser()
    import numpy as np
    from playwright.sync_api import sync_playwright

    from lpstudio.face.models import MediaPipeFacePipeline

    photo = tmp_path / "two.png"
    Image.fromarray(two_face_photo()).save(photo)
    recording = tmp_path / "hum.wav"
    t = np.arange(16_000, dtype=np.float32) / 16_000  # 1 s: a voiced hum that opens and closes 3 times
    hum = 0.4 * np.sin(2 * np.pi * 180 * t) * (0.5 - 0.5 * np.cos(2 * np.pi * 3 * t))
    recording.write_bytes(wav_bytes(AudioClip.from_mono(hum.astype(np.float32), 16_000)))
    engine = MouthStandIn(frame_ms=1.0, prepare_ms=1.0, face=MediaPipeFacePipeline())
    rendered: list[set[int]] = []  # the faces of each render batch
    render = engine.render_mixed

    def recording_render(items):  # noqa: ANN001, ANN202
        rendered.append({state.face.face_index for state, _ in items})
        return render(items)

    engine.render_mixed = recording_render
    settings = ServerSettings(crop=True, fps=5.0, idle_default=False, default_source=photo)
    shots = Path(os.environ.get("LPSTUDIO_ARTIFACTS", tmp_path))
    sent: list[tuple[str, bytes]] = []  # (path, body) of each /generate and /generate-audio request
    with live_server(create_app(engine, settings)) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        def record(r) -> None:  # noqa: ANN001
            if "/generate" in r.url:
                sent.append((r.url.rsplit("/", 1)[-1], r.post_data_buffer or b""))

        page.on("request", record)
        page.goto(url)
        page.wait_for_function("() => document.getElementById('portrait').dataset.state === 'neutral'",
                               timeout=TIMEOUT_MS)  # fmt: skip
        page.get_by_test_id("face-outline-1").wait_for(timeout=TIMEOUT_MS)
        page.get_by_test_id("faces-all").check()

        engine.batches.clear()
        page.get_by_role("button", name="말해봐 (talk)", exact=True).click()
        page.wait_for_function(DONE, timeout=TIMEOUT_MS)
        talk = [json.loads(body) for path, body in sent if path == "generate"][-1]
        assert talk["faces"] == "all" and talk["preset"] == "talk"
        assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # both faces of a frame in one batch
        assert page.locator("#error").is_hidden()
        page.screenshot(path=str(shots / "faces_all_talk.png"))

        engine.batches.clear()
        rendered.clear()
        page.evaluate("() => { document.getElementById('progressText').textContent = ''; }")
        page.set_input_files("#audioUpload", str(recording))
        page.wait_for_function(DONE, timeout=TIMEOUT_MS)
        assert any(path == "generate-audio" for path, _ in sent)
        assert rendered and all(faces == {0, 1} for faces in rendered)  # the recording's frames: both faces
        assert engine.batches and all(b % 2 == 0 for b in engine.batches)
        assert page.locator("#error").is_hidden() and errors == []
        page.screenshot(path=str(shots / "faces_all_recording.png"))
        browser.close()
