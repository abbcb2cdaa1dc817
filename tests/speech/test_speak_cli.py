"""`lpstudio speak` and `lpstudio drive PHOTO speech.wav`: dry runs, errors, rendering with muxed audio."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from speech_helpers import StandInEngine, encode_audio, requires_speech

from lpstudio.cli import main
from lpstudio.params import PARAM_NAMES
from lpstudio.speech.mux import stream_durations

pytestmark = requires_speech

LONG_EN = " ".join(
    [
        "Good morning, and welcome to the living portrait.",
        "Today I would like to tell you a little story about a map, a boat and a bumpy mountain path.",
        "My mother baked a big blueberry pie, and we ate it by the open window.",
        "Maybe tomorrow we will build a paper boat and paint it bright blue.",
        "Thank you for listening, and please come back soon.",
    ]
)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _speech_wav(tmp_path: Path, text: str = "Hello, nice to meet you.", rate: int = 44100, stereo: bool = True) -> Path:
    from lpstudio.speech.audio import resample
    from lpstudio.speech.espeak import synthesize

    utt = synthesize(text, "en-us")
    audio = resample(utt.audio, utt.sample_rate, rate)
    samples = np.stack([audio, 0.7 * audio]) if stereo else audio[None]
    return encode_audio(tmp_path / "speech.wav", samples, rate)


@pytest.mark.parametrize(("text", "language"), [("안녕하세요, 반갑습니다", "ko"), ("Nice to meet you.", "en-us")])
@pytest.mark.parametrize("fps", [25, 30])
def test_dry_run_json(capsys, text: str, language: str, fps: int) -> None:
    code, out, _ = run_cli(["speak", text, "--dry-run", "--json", "--fps", str(fps)], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["fps"] == fps and data["language"] == language
    assert len(data["frames"]) == math.ceil(data["audio_ms"] * fps / 1000)
    assert all(set(f) == set(PARAM_NAMES) for f in data["frames"])
    ph = data["phonemes"]
    assert len(ph) > 8 and all({"ipa", "start_ms", "end_ms"} <= set(p) for p in ph)
    assert all(b["start_ms"] >= a["start_ms"] for a, b in zip(ph, ph[1:]))
    assert ph[-1]["end_ms"] == pytest.approx(data["audio_ms"], abs=1e-3)


def test_dry_run_voice_rate_and_command(capsys) -> None:
    _, out, _ = run_cli(["speak", "안녕", "--voice", "en-us", "--dry-run", "--json"], capsys)
    assert json.loads(out)["language"] == "en-us"
    _, slow, _ = run_cli(["speak", "Nice to meet you", "--rate", "100", "--dry-run", "--json"], capsys)
    _, fast, _ = run_cli(["speak", "Nice to meet you", "--rate", "300", "--dry-run", "--json"], capsys)
    assert json.loads(slow)["audio_ms"] > 1.5 * json.loads(fast)["audio_ms"]
    code, out, _ = run_cli(["speak", "--command", "웃으면서 말해줘 안녕하세요", "--dry-run", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["text"] == "안녕하세요" and "smile" in {s["preset"] for s in data["steps"]}


def test_dry_run_audio(tmp_path: Path, capsys) -> None:
    wav = _speech_wav(tmp_path)
    code, out, _ = run_cli(["speak", "--audio", str(wav), "--dry-run", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["phonemes"] == [] and data["language"] is None
    assert len(data["frames"]) == math.ceil(data["audio_ms"] * data["fps"] / 1000)
    assert max(f["lip_variation_three"] for f in data["frames"]) > 8.0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["speak", "--dry-run"], "what should the portrait say"),
        (["speak", "a.png", "b", "c", "--dry-run"], "expected [PHOTO] TEXT"),
        (["speak", "hi", "--voice", "fr", "--dry-run"], "unknown voice"),
        (["speak", "hi", "--rate", "5", "--dry-run"], "speech rate"),
        (["speak", "--audio", "missing.wav", "--dry-run"], "no such file"),
        (["speak", "hi", "-o", "out.gif"], "unsupported extension"),
        (["speak", "hi"], "no output file"),
        (["speak", "hi", "--fps", "0", "--dry-run"], "fps"),
        (["speak", "--command", "웃어줘", "--dry-run"], "does not speak"),
    ],
)
def test_errors_are_one_message_without_traceback(capsys, args: list[str], message: str) -> None:
    code, _, err = run_cli(args, capsys)
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("lpstudio speak: error:")


@pytest.fixture()
def stand_in(monkeypatch: pytest.MonkeyPatch) -> StandInEngine:
    """The stand-in renderer instead of the model (the CLI's streaming, muxing and sync are under test)."""
    engine = StandInEngine()
    monkeypatch.setattr("lpstudio.cli.speak.load_engine", lambda args, face: engine)
    return engine


def _mouth_from_video(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.array([f.to_ndarray(format="rgb24").mean() - 128.0 for f in c.decode(video=0)])


def test_long_text_streams_and_stays_in_sync(tmp_path: Path, capsys, stand_in, monkeypatch) -> None:
    """About 30 s of speech in 5 sentences: frames are rendered before the last sentence is spoken,
    and the file's audio and video durations agree within one frame."""
    from lpstudio.speech import clip as clip_module

    events: list[str] = []
    real_synth = clip_module.synthesize
    real_render = stand_in.render

    def synth(text, voice, **kw):
        events.append("synth")
        return real_synth(text, voice, **kw)

    def render(state, params, batch_size=4):
        events.append("render")
        return real_render(state, params, batch_size)

    monkeypatch.setattr(clip_module, "synthesize", synth)
    monkeypatch.setattr(stand_in, "render", render)
    out = tmp_path / "long.mp4"
    code, text, _ = run_cli(["speak", LONG_EN, "-o", str(out), "--rate", "110", "--no-progress"], capsys)
    assert code == 0 and "wrote" in text
    assert events.count("synth") == 5 and events.index("render") < len(events) - events[::-1].index("synth") - 1
    d = stream_durations(out)
    assert d["audio_s"] > 28.0
    assert abs(d["video_s"] - d["audio_s"]) < 1 / 25
    assert abs(d["video_decoded_s"] - d["audio_decoded_s"]) < 1 / 25
    # the frames the renderer got are the parameters of the clip: mouth open and closed, in order
    lv3 = np.array([p.lip_variation_three for p in stand_in.rendered])
    assert len(lv3) == d["video_frames"] and lv3.max() > 15 and lv3.min() < -5


def test_user_audio_is_muxed_and_drives_the_mouth(tmp_path: Path, capsys, stand_in) -> None:
    wav = _speech_wav(tmp_path)
    out = tmp_path / "lipsync.mp4"
    code, _, _ = run_cli(["speak", "--audio", str(wav), "-o", str(out), "--no-progress"], capsys)
    assert code == 0
    from lpstudio.speech.audio import read_audio

    src = read_audio(wav)
    d = stream_durations(out)
    assert abs(d["audio_s"] - src.duration_ms / 1000) < 1 / 25
    assert abs(d["video_s"] - d["audio_s"]) < 1 / 25
    mouth = _mouth_from_video(out)
    assert mouth.max() > 8 and abs(mouth[0]) < 1.5  # it opens; the first frame is the portrait at rest
    import av

    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.channels == 2  # the user's stereo is kept


def test_drive_with_speech_audio(tmp_path: Path, capsys, stand_in) -> None:
    wav = _speech_wav(tmp_path, stereo=False, rate=16000)
    photo = tmp_path / "face.png"
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photo)
    out = tmp_path / "driven.mp4"
    code, _, err = run_cli(["drive", str(photo), str(wav), "-o", str(out), "--no-crop", "--quiet"], capsys)
    assert code == 0 and "lip-synced" in err
    d = stream_durations(out)
    assert abs(d["video_s"] - d["audio_s"]) < 1 / 25 and _mouth_from_video(out).max() > 8


def test_speak_on_the_real_engine(tmp_path: Path, capsys, synthetic_weights_dir: Path) -> None:
    """The real command on the real engine (synthetic weights): a few 512x512 frames with the voice."""
    from PIL import Image

    fps = 2  # few frames: each costs seconds on a CPU
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "talk.mp4"
    args = ["speak", str(photo), "아", "-o", str(out), "--fps", str(fps), "--no-crop", "--no-idle"]
    args += ["--weights-dir", str(synthetic_weights_dir), "--device", "cpu", "--no-progress"]
    code, text, _ = run_cli(args, capsys)
    assert code == 0 and "wrote" in text
    _, dry, _ = run_cli(["speak", "아", "--fps", str(fps), "--no-idle", "--dry-run", "--json"], capsys)
    d = stream_durations(out)
    assert d["video_frames"] == math.ceil(json.loads(dry)["audio_ms"] * fps / 1000) == len(json.loads(dry)["frames"])
    assert abs(d["video_s"] - d["audio_s"]) < 1 / fps
    import av

    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (512, 512)
