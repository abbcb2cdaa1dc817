"""``lpstudio drive PHOTO DRIVING --faces`` with a driving IMAGE or speech AUDIO on a two-face photo.

Speech audio: the stand-in whose crops change only at the mouth (``tests/mouth_standin.py``) replaces the
networks, and the composites are taken as they go to the encoder (before any lossy compression). A driving
image: the engine on synthetic weights, one frame of one face (``--drive-face 1=IMAGE``), written as PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from group_photos import HOPPER, two_face_photo
from lpstudio.cli import main
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.speech import AudioClip, speak_text, speech_available, wav_bytes
from mouth_standin import MouthStandIn

pytestmark = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")
requires_speech = pytest.mark.skipif(not speech_available(), reason="eSpeak NG is not installed")
LEVELS = 2
"""Pixels of a face that is not driven (and everything outside the driven faces) may differ by at most this."""
MOVED = 1.0
"""Mean change over a driven face's box (its mouth opens: ~75 levels over a block of ~1/8 of the box)."""


@pytest.fixture(scope="module")
def photo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("group_drive") / "two.png"
    Image.fromarray(two_face_photo()).save(path)
    return path


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not speech_available():
        pytest.skip("eSpeak NG is not installed")
    path = tmp_path_factory.mktemp("group_drive_audio") / "hello.wav"
    path.write_bytes(wav_bytes(speak_text("hello there", voice="en").audio))
    return path


@pytest.fixture(scope="module")
def faces() -> list:
    """The two faces, largest first (MediaPipe analyses: ``box`` and the crop's placement)."""
    from lpstudio.face.models import MediaPipeFacePipeline

    mp = MediaPipeFacePipeline()
    return [mp.analyze(two_face_photo(), face_index=i) for i in range(2)]


def _box(face) -> np.ndarray:  # noqa: ANN001
    return face.box[:4].astype(int)


def _drive_with_standin(monkeypatch: pytest.MonkeyPatch, args: list[str]) -> tuple[int, MouthStandIn, list]:
    """Run ``lpstudio drive`` on the mouth stand-in; returns (exit code, engine, the composites written)."""
    from lpstudio.face.models import MediaPipeFacePipeline
    from lpstudio.video_writer import VideoWriter

    engine = MouthStandIn(frame_ms=0.0, prepare_ms=0.0, face=MediaPipeFacePipeline())
    monkeypatch.setattr("lpstudio.cli.drive.load_engine", lambda args, face: engine)
    frames: list[np.ndarray] = []
    write = VideoWriter.write
    monkeypatch.setattr(VideoWriter, "write", lambda self, f: frames.append(f.astype(np.int16)) or write(self, f))
    return main(["drive", *args, "--quiet"]), engine, frames


def _change(frames: list[np.ndarray], box: np.ndarray) -> float:
    """The largest mean change of a box over the frames, against the photo."""
    x0, y0, x1, y1 = box
    still = two_face_photo().astype(np.int16)[y0:y1, x0:x1]
    return max(float(np.abs(f[y0:y1, x0:x1] - still).mean()) for f in frames)


def _changed_outside(frames: list[np.ndarray], driven: list) -> int:
    """The largest change of any pixel outside the regions the ``driven`` faces' crops are blended into."""
    from lpstudio.face import PasteBack

    hw = frames[0].shape[:2]
    outside = np.ones(hw, bool)
    for face in driven:
        r = PasteBack.for_face(face, hw).region
        outside[r.y0 : r.y1, r.x0 : r.x1] = False
    still = two_face_photo().astype(np.int16)
    return max(int(np.abs(f[outside] - still[outside]).max()) for f in frames)


@requires_speech
def test_speech_audio_drives_every_face(photo_path: Path, speech_wav: Path, faces, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    out = tmp_path / "talk.mp4"
    code, engine, frames = _drive_with_standin(monkeypatch, [str(photo_path), str(speech_wav), "--faces", "all",
                                                             "--batch-size", "4", "-o", str(out)])  # fmt: skip
    assert code == 0 and out.is_file()
    assert len(frames) > 5 and engine.prepared == 2
    assert engine.batches and all(b % 2 == 0 for b in engine.batches)  # whole frames of both faces per batch
    assert _change(frames, _box(faces[0])) > MOVED and _change(frames, _box(faces[1])) > MOVED  # both mouths open
    assert _changed_outside(frames, faces) <= LEVELS
    from lpstudio.video import probe_video

    assert probe_video(out).has_audio  # the speech is the sound track


@requires_speech
def test_drive_face_audio_moves_only_that_face(photo_path: Path, speech_wav: Path, faces, tmp_path: Path,
                                               monkeypatch) -> None:  # noqa: ANN001  # fmt: skip
    out = tmp_path / "one.mp4"
    args = [str(photo_path), str(speech_wav), "--drive-face", f"1={speech_wav}", "-o", str(out)]
    code, engine, frames = _drive_with_standin(monkeypatch, args)
    assert code == 0 and engine.batches and set(engine.batches) <= {1, 2, 3, 4}
    assert _change(frames, _box(faces[1])) > MOVED
    assert _changed_outside(frames, [faces[1]]) <= LEVELS  # face 0 (not chosen) and the rest untouched


@pytest.mark.parametrize(
    ("driving", "extra", "message"),
    [
        ("noise.wav", [], "noise.wav"),  # not audio at all
        ("missing.wav", [], "no such file"),
        ("tone.wav", ["--drive-face", "1=noise.png"], "noise.png"),  # a driving image that is no image
    ],
)
def test_bad_driving_media_exit_2_with_one_line(
    photo_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch, driving: str, extra: list,
    message: str,
) -> None:  # noqa: ANN001  # fmt: skip
    """A driving that cannot be used: one line, exit 2, before any model loads, no output."""
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wave file")
    (tmp_path / "noise.png").write_bytes(b"\x89PNG not really an image")
    tone = np.sin(np.arange(8000, dtype=np.float32) * 0.2) * 0.3
    (tmp_path / "tone.wav").write_bytes(wav_bytes(AudioClip.from_mono(tone, 16_000)))
    monkeypatch.setattr("lpstudio.cli.drive.load_engine", lambda args, face: pytest.fail("models loaded"))
    out = tmp_path / "x.mp4"
    extra = [e.replace("noise.png", str(tmp_path / "noise.png")) for e in extra]
    args = ["drive", str(photo_path), str(tmp_path / driving), "--faces", "all", *extra, "-o", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow  # one face prepared and rendered by the CPU engine (~55 s on 2 shared cores); run with --runslow
def test_driving_image_holds_its_expression_on_the_chosen_face(photo_path: Path, faces, synthetic_weights_dir: Path,
                                                               tmp_path: Path) -> None:  # fmt: skip
    """``--drive-face 1=IMAGE``: face 1 takes the image's expression and pose; face 0 and the rest stay."""
    out = tmp_path / "held.png"
    args = ["drive", str(photo_path), str(HOPPER), "--drive-face", f"1={HOPPER}", "--face-models", "mediapipe"]
    assert main([*args, "--weights-dir", str(synthetic_weights_dir), "--quiet", "-o", str(out)]) == 0
    result = np.asarray(Image.open(out).convert("RGB")).astype(np.int16)
    assert _change([result], _box(faces[1])) > MOVED
    x0, y0, x1, y1 = _box(faces[0])
    assert int(np.abs(result[y0:y1, x0:x1] - two_face_photo().astype(np.int16)[y0:y1, x0:x1]).max()) <= LEVELS
