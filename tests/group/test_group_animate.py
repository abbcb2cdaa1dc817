"""``lpstudio animate`` with a per-face command on a two-face photo: each face does its own thing.

The stand-in renderer (``benchmarks/standin_server.py``: a smile brightens the face, a head pitch
moves it) replaces the networks, so the test checks which face got which command in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from group_photos import two_face_photo
from lpstudio.cli import main
from lpstudio.face.mediapipe import INSTALL_HINT, available

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")


def test_left_person_smiles_right_person_nods(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")  # the stand-in renderer's home
    if benchmarks not in sys.path:
        monkeypatch.syspath_prepend(benchmarks)
    from standin_server import StandInEngine

    from lpstudio.face.models import MediaPipeFacePipeline

    mp = MediaPipeFacePipeline()
    engine = StandInEngine(frame_ms=0.0, prepare_ms=0.0, face=mp)
    monkeypatch.setattr("lpstudio.cli.animate.load_engine", lambda args, face: engine)
    seen: dict[int, list[tuple[float, float]]] = {}  # face index -> (smile, head pitch) of each rendered row
    render = engine.render_mixed

    def recording(items):  # noqa: ANN001, ANN202
        for state, x in items:  # the stand-in's x_d row 0 holds (smile, yaw, pitch)
            seen.setdefault(state.face.face_index, []).append((float(x[0, 0]), float(x[0, 2])))
        return render(items)

    monkeypatch.setattr(engine, "render_mixed", recording)
    photo = two_face_photo()
    src = tmp_path / "two.png"
    Image.fromarray(photo).save(src)
    out = tmp_path / "frames"
    args = ["animate", str(src), "왼쪽 사람은 웃고 오른쪽 사람은 고개 끄덕여", "-o", str(out)]
    assert main([*args, "--no-idle", "--fps", "10", "--no-progress"]) == 0
    frames = [np.asarray(Image.open(p).convert("RGB")).astype(np.int16) for p in sorted(out.glob("*.png"))]
    assert len(frames) > 5
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # both faces of each frame in one batch
    boxes = mp.detect(photo).boxes  # largest first: face 0 (left, Grace Hopper), face 1 (right, astronaut)
    assert boxes[0][0] < boxes[1][0]

    def region(img: np.ndarray, box: np.ndarray) -> np.ndarray:
        x0, y0, x1, y1 = box.astype(int)
        return img[y0:y1, x0:x1]

    smile = {i: max(s for s, _ in rows) for i, rows in seen.items()}
    pitch = {i: max(abs(p) for _, p in rows) for i, rows in seen.items()}
    assert smile[0] > 0.5 > smile[1]  # the left person (face 0) smiles, the right one (face 1) hardly
    assert pitch[1] > 5 > pitch[0]  # the right person nods
    base = photo.astype(np.int16)
    brighter = [max(float((region(f, b) - region(base, b)).mean()) for f in frames) for b in boxes]
    assert brighter[0] > 5 and brighter[0] > brighter[1]  # the smile shows in the composite (the stand-in brightens)


def test_speak_faces_all_moves_both_faces_lips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``speak --faces all``: every chosen face says the text, each frame's faces in one batch."""
    from lpstudio.speech import speech_available

    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    benchmarks = str(Path(__file__).resolve().parents[2] / "benchmarks")
    if benchmarks not in sys.path:
        monkeypatch.syspath_prepend(benchmarks)
    from standin_server import StandInEngine

    from lpstudio.face.models import MediaPipeFacePipeline

    engine = StandInEngine(frame_ms=0.0, prepare_ms=0.0, face=MediaPipeFacePipeline())
    monkeypatch.setattr("lpstudio.cli.speak.load_engine", lambda args, face: engine)
    src = tmp_path / "two.png"
    Image.fromarray(two_face_photo()).save(src)
    out = tmp_path / "talk.mp4"
    assert main(["speak", str(src), "hi", "--faces", "all", "--fps", "10", "--no-progress", "-o", str(out)]) == 0
    assert out.is_file() and engine.prepared == 2
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)
