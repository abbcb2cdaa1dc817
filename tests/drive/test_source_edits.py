"""Edits over a source VIDEO (animate, --lip-ratio) and dubbing (speak/drive VIDEO speech).

The real motion extractor runs on every source frame of the semantic tests (each frame's own
pose and expression are what is kept); appearance ``F`` and warp+decode are stand-ins
(:class:`StandIn`), so a frame costs a motion extraction, not seconds of W+G. The stand-in draws
a blob per driving keypoint over the source picture and tints the whole picture by the sum of
the keypoints, so any keypoint an edit moves changes pixels everywhere (as the synthetic
networks do: only the mouth composite keeps a dub to the mouth). The CLI tests (fps, length,
audio, errors) also replace M by the first frame's real motion: they test the plumbing, and
cost no network at all.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as tnf
from drive_helpers import read_back, write_video

from lpstudio.cli import main
from lpstudio.drive.source_edits import (
    command_items,
    dub_items,
    dub_params,
    frame_time_ms,
    mouth_mask,
    mouth_rows,
    render_source_edits,
)
from lpstudio.drive.source_video import iter_source_frames
from lpstudio.expressions.compose import build_timeline
from lpstudio.speech.espeak import speech_available

FPS = 2
N_FRAMES = 4
OUT = 512
GRID = 64
BLOB_WIDTH = 0.02
EXACT_TOLERANCE = 2  # levels: "within 2 levels of the source-only re-render"

requires_speech = pytest.mark.skipif(not speech_available(), reason="eSpeak NG is not installed")


class StandIn:
    """Stand-ins for F and for W+G (row-independent, deterministic)."""

    @staticmethod
    def appearance(x: torch.Tensor) -> torch.Tensor:
        """(B,3,256,256) -> (B,32,16,64,64) holding the picture at 64 px in channels 0-2 of depth 0."""
        small = tnf.avg_pool2d(x.float(), 256 // GRID)
        feature = torch.zeros(x.shape[0], 32, 16, GRID, GRID)
        feature[:, :3, 0] = small
        return feature

    @staticmethod
    def warp_decode(feature: torch.Tensor, x_s: torch.Tensor, x_d: torch.Tensor) -> torch.Tensor:
        """-> (B,3,512,512): the picture with a soft blob at each driving keypoint's (x, y) and a tint."""
        picture = feature[:, :3, 0].float()
        axis = torch.linspace(-1.0, 1.0, GRID)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        kp = torch.tanh(x_d[:, :, :2].float())  # inside the picture
        d2 = (xx - kp[..., 0, None, None]) ** 2 + (yy - kp[..., 1, None, None]) ** 2
        blobs = torch.tanh(torch.exp(-d2 / BLOB_WIDTH).sum(dim=1, keepdim=True))
        moved = 0.5 + 0.5 * torch.sin(x_d.float().sum(dim=(1, 2)))[:, None, None, None]
        image = (0.5 * picture + 0.3 * blobs + 0.2 * moved).clamp(0.0, 1.0)
        return tnf.interpolate(image, size=OUT, mode="nearest")


@pytest.fixture(scope="module")
def standin_engine(engine):
    """The session's synthetic engine with stand-in F and W+G (restored after this module)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engine, "appearance", StandIn.appearance)
        mp.setattr(engine.backend, "warp_decode", StandIn.warp_decode)
        yield engine


@pytest.fixture()
def cli_engine(standin_engine, frames, monkeypatch: pytest.MonkeyPatch):
    """What the CLI loads: the stand-in engine, its M giving the first frame's real motion to every frame."""
    first = frames[0].state.motion

    def motion(x: torch.Tensor):
        return type(first)(*(v.expand(x.shape[0], *v.shape[1:]) for v in first))

    monkeypatch.setattr(standin_engine, "motion", motion)
    monkeypatch.setattr("lpstudio.cli.common.load_engine", lambda args, face: standin_engine)
    return standin_engine


def _source_frames(n: int = N_FRAMES, size: int = 96) -> list[np.ndarray]:
    """A person 'moving': a bright disc drifting over a gradient, different in every frame."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for i in range(n):
        cx, cy = size * (0.4 + 0.04 * i), size * (0.5 - 0.03 * i)
        disc = ((x - cx) ** 2 + (y - cy) ** 2 < (size * 0.25) ** 2).astype(np.float32)
        rgb = np.stack([x / size * 200, y / size * 200, 60 + 150 * disc], axis=-1)
        frames.append(rgb.clip(0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def source_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_video(tmp_path_factory.mktemp("src") / "talk.mp4", _source_frames(), fps=FPS)


@pytest.fixture(scope="module")
def frames(standin_engine, source_video: Path) -> list:
    return list(iter_source_frames(standin_engine, source_video, no_crop=True))


@pytest.fixture(scope="module")
def rerender(standin_engine, frames) -> list[np.ndarray]:
    """The source-only re-render: every frame with no change."""
    items = [(f, f.state.neutral_params()) for f in frames]
    return list(render_source_edits(standin_engine, items, paste_back=False))


def _speech_wav(path: Path, text: str = "Hi there.") -> Path:
    from lpstudio.speech.audio import AudioClip, write_wav
    from lpstudio.speech.espeak import synthesize

    utt = synthesize(text, "en-us")
    return write_wav(path, AudioClip.from_mono(utt.audio, utt.sample_rate))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


def test_a_command_is_layered_on_each_frames_own_motion(standin_engine, frames, rerender) -> None:
    """The wink (1.05 s: frames 1, 2 at 2 fps) changes the frames it spans; the first frame and the
    frames after it are the video's own re-render exactly; the video's own motion stays."""
    _, timeline = build_timeline("윙크해줘", idle=False)
    out = list(render_source_edits(standin_engine, command_items(frames, timeline, FPS), paste_back=False))
    assert len(out) == N_FRAMES and out[0].shape == (OUT, OUT, 3)
    inside = [k for k in range(N_FRAMES) if 0 < frame_time_ms(k, FPS) < timeline.duration_ms]
    after = [k for k in range(N_FRAMES) if frame_time_ms(k, FPS) >= timeline.duration_ms]
    assert inside and after
    assert np.array_equal(out[0], rerender[0])
    assert max(int(_diff(out[k], rerender[k]).max()) for k in inside) > 10
    assert all(np.array_equal(out[k], rerender[k]) for k in after)
    assert not np.array_equal(rerender[0], rerender[-1])  # each frame renders from its own source


def test_lip_ratio_holds_on_every_frame(standin_engine, frames, rerender) -> None:
    """--lip-ratio retargets every frame, after the command too (official retargeting over a video)."""
    items = command_items(frames, None, FPS, lip_ratio=0.4)
    out = list(render_source_edits(standin_engine, items, paste_back=False))
    assert all(int(_diff(a, b).max()) > 0 for a, b in zip(out, rerender, strict=True))


@requires_speech
def test_dub_changes_only_the_mouth(standin_engine, frames, rerender, tmp_path: Path) -> None:
    """Outside the mouth region every dubbed frame is the source-only re-render (within 2 levels);
    inside it the speech opens the mouth."""
    from lpstudio.speech.audio import read_audio
    from lpstudio.speech.clip import speak_audio

    clip = speak_audio(read_audio(_speech_wav(tmp_path / "s.wav")), idle=False)
    dubbed = list(render_source_edits(standin_engine, dub_items(frames, clip.timeline, FPS), mouth_only=True))
    outside = mouth_mask(OUT)[..., 0] == 0
    inside = mouth_mask(OUT)[..., 0] == 1
    assert len(dubbed) == N_FRAMES
    for a, b in zip(dubbed, rerender, strict=True):
        assert int(_diff(a, b)[outside].max()) <= EXACT_TOLERANCE
    assert max(int(_diff(a, b)[inside].max()) for a, b in zip(dubbed, rerender, strict=True)) > EXACT_TOLERANCE
    # the composite is what keeps the rest: the dubbed rows alone change pixels outside the mouth too
    whole = render_source_edits(standin_engine, dub_items(frames, clip.timeline, FPS), paste_back=False)
    assert max(int(_diff(a, b)[outside].max()) for a, b in zip(whole, rerender, strict=True)) > EXACT_TOLERANCE


def _audio(path: Path) -> tuple[float, float]:
    """(audio seconds, dominant frequency in Hz) of a file's first audio track, decoded with PyAV."""
    import av

    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        rate = stream.rate
        samples = np.concatenate([f.to_ndarray().mean(axis=0) for f in c.decode(stream)])
    spectrum = np.abs(np.fft.rfft(samples))
    return len(samples) / rate, float(np.argmax(spectrum) * rate / len(samples))


def test_animate_video_keeps_fps_length_and_audio(cli_engine, source_video: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "smile.mp4"
    code = main(["animate", str(source_video), "윙크해줘", "-o", str(out), "--no-crop", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    n, fps, has_audio, size = read_back(out)
    assert (n, fps, has_audio, size) == (N_FRAMES, Fraction(FPS), True, (OUT, OUT))
    seconds, tone = _audio(out)
    assert abs(seconds - N_FRAMES / FPS) < 0.1 and abs(tone - 440) < 10  # the video's own sine


@requires_speech
@pytest.mark.parametrize("command", ["drive", "speak"])
def test_dub_replaces_the_audio_and_lasts_as_the_speech(
    cli_engine, source_video: Path, tmp_path: Path, capsys, command: str
) -> None:
    from lpstudio.speech.audio import read_audio

    wav = _speech_wav(tmp_path / "speech.wav")
    speech_s = read_audio(wav).duration_ms / 1000
    out = tmp_path / "dubbed.mp4"
    if command == "drive":
        args = ["drive", str(source_video), str(wav), "-o", str(out), "--no-crop", "--quiet"]
    else:
        args = ["speak", str(source_video), "--audio", str(wav), "-o", str(out), "--no-crop", "--no-progress"]
    code = main(args)
    assert code == 0, capsys.readouterr().err
    n, fps, has_audio, _ = read_back(out)
    assert fps == FPS and has_audio and n == int(np.ceil(speech_s * FPS - 1e-9))
    seconds, tone = _audio(out)
    assert abs(seconds - n / FPS) < 0.1 and abs(tone - 440) > 20  # the speech, not the video's sine


def test_lip_ratio_on_a_photo_sets_the_base_of_the_clip(cli_engine, tmp_path: Path, capsys, monkeypatch) -> None:
    from PIL import Image

    monkeypatch.setattr("lpstudio.cli.animate.load_engine", lambda args, face: cli_engine)
    photo = tmp_path / "face.png"
    Image.fromarray(_source_frames(1)[0]).save(photo)
    outs = []
    for extra in ([], ["--lip-ratio", "0.4"]):
        out = tmp_path / f"frames{len(extra)}"
        args = ["animate", str(photo), "윙크해줘", "-o", str(out), "--no-crop", "--fps", "2", "--no-idle"]
        assert main([*args, "--no-progress", *extra]) == 0, capsys.readouterr().err
        outs.append([np.asarray(Image.open(f)) for f in sorted(out.glob("*.png"))])
    assert len(outs[0]) == len(outs[1]) > 1
    assert all(int(_diff(a, b).max()) > 0 for a, b in zip(*outs, strict=True))  # every frame, the last too


def _error(args: list[str], capsys) -> str:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@requires_speech
def test_speech_longer_than_the_video_is_refused(source_video: Path, tmp_path: Path, capsys) -> None:
    wav = _speech_wav(tmp_path / "long.wav", "This sentence is a good deal longer than the short video is.")
    out = tmp_path / "x.mp4"
    err = _error(["drive", str(source_video), str(wav), "-o", str(out), "--no-crop"], capsys)
    assert "but the source video" in err and not out.exists()
    err = _error(["drive", str(source_video), str(wav), "-o", str(out), "--audio", "source"], capsys)
    assert "do not apply to dubbing" in err
    err = _error(["speak", str(source_video), "Hello", "--command", "-o", str(out)], capsys)
    assert "--command" in err


def test_bad_video_sources_give_one_line(source_video: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    out = str(tmp_path / "o.mp4")
    assert "0 bytes" in _error(["animate", str(empty), "웃어줘", "-o", out], capsys)
    assert "no such file" in _error(["animate", str(tmp_path / "none.mp4"), "웃어줘", "-o", out], capsys)
    assert "--lip-ratio" in _error(["animate", str(source_video), "-o", out, "--lip-ratio", "2"], capsys)
    assert "what should the video do" in _error(["animate", str(source_video), "-o", out], capsys)
    assert "--cache-dir" in _error(["animate", str(source_video), "웃어줘", "-o", out, "--cache-dir", "c"], capsys)


def test_no_face_and_a_missing_face_index_give_one_line(
    cli_engine, faceless_pipeline, face_pipeline, source_video: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    out = tmp_path / "o.mp4"
    monkeypatch.setattr(cli_engine, "face", faceless_pipeline)
    args = ["animate", str(source_video), "웃어줘", "-o", str(out), "--no-progress"]
    assert "No face was found in any of the 4 frames" in _error(args, capsys)
    monkeypatch.setattr(cli_engine, "face", face_pipeline)  # finds one face in every frame
    args += ["--face-index", "3"]
    assert "Face number 3 was asked for" in _error(args, capsys)
    assert not out.exists()


@requires_speech
@pytest.mark.slow
def test_dub_on_the_synthetic_networks_keeps_the_rest_of_the_face(engine, source_video: Path, tmp_path: Path) -> None:
    """The same guarantee through the real F, W and G (three renders of one frame: --runslow)."""
    from lpstudio.speech.audio import read_audio
    from lpstudio.speech.clip import speak_audio

    clip = speak_audio(read_audio(_speech_wav(tmp_path / "s.wav")), idle=False)
    times = np.arange(0.0, clip.audio_ms, 10.0)
    open_at = float(times[int(np.argmax(mouth_rows(clip.timeline, times)[:, 0]))])  # the widest lip ratio
    (frame,) = iter_source_frames(engine, source_video, no_crop=True, max_frames=1)
    edit = dub_params(frame.state, mouth_rows(clip.timeline, [open_at])[0])
    (dubbed,) = render_source_edits(engine, [(frame, edit)], batch_size=2, mouth_only=True)
    (neutral,) = render_source_edits(engine, [(frame, frame.state.neutral_params())], batch_size=1)
    outside, inside = mouth_mask(OUT)[..., 0] == 0, mouth_mask(OUT)[..., 0] == 1
    assert int(_diff(dubbed, neutral)[outside].max()) <= EXACT_TOLERANCE
    assert int(_diff(dubbed, neutral)[inside].max()) > EXACT_TOLERANCE
