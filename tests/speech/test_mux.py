"""mp4 with the speech: audio and video durations agree within one frame, also over 30 s and when streamed."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lpstudio.errors import VideoError
from lpstudio.speech.audio import AudioClip
from lpstudio.speech.mux import stream_durations
from lpstudio.video_writer import VideoWriter


def _write(path: Path, clips: list[AudioClip], fps: float, n_frames: int, channels: int = 1) -> dict[str, float]:
    with VideoWriter(path, fps, audio_channels=channels) as w:
        per = math.ceil(n_frames / len(clips))
        k = 0
        for clip in clips:  # audio of a part, then its frames (the streaming order)
            w.add_audio(clip)
            for _ in range(min(per, n_frames - k)):
                w.write(np.full((48, 64, 3), k % 250, np.uint8))
                k += 1
    return stream_durations(path)


@pytest.mark.parametrize(("fps", "rate"), [(25.0, 22050), (30000 / 1001, 44100), (24.0, 16000)])
def test_thirty_seconds_stay_in_sync(tmp_path: Path, fps: float, rate: int) -> None:
    seconds = 30.013
    t = np.arange(int(seconds * rate)) / rate
    clip = AudioClip.from_mono((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    n = math.ceil(clip.duration_ms * fps / 1000)
    d = _write(tmp_path / "long.mp4", [clip], fps, n)
    frame = 1.0 / fps
    assert d["video_frames"] == n
    assert abs(d["video_s"] - d["audio_s"]) < frame
    assert abs(d["video_decoded_s"] - d["audio_decoded_s"]) < frame
    assert d["audio_s"] >= seconds - 1e-3  # nothing of the speech is cut


def test_streamed_parts_join_on_one_clock(tmp_path: Path) -> None:
    """Three sentences' audio arriving one by one: one track, as long as the video."""
    rate, fps = 22050, 25.0
    parts = [AudioClip.from_mono(np.full(int(rate * s), 0.1, np.float32), rate) for s in (1.3, 0.77, 2.01)]
    total_ms = sum(p.duration_ms for p in parts)
    n = math.ceil(total_ms * fps / 1000)
    d = _write(tmp_path / "parts.mp4", parts, fps, n)
    assert abs(d["video_s"] - d["audio_s"]) < 1 / fps and d["video_frames"] == n


def test_stereo_and_odd_frame_sizes(tmp_path: Path) -> None:
    rate = 48000
    clip = AudioClip(np.zeros((2, rate), np.float32), rate)
    with VideoWriter(tmp_path / "s.mkv", 10, audio_channels=2) as w:
        w.add_audio(clip)
        for _ in range(10):
            w.write(np.zeros((31, 33, 3), np.uint8))
    import av

    with av.open(str(tmp_path / "s.mkv")) as c:
        assert c.streams.audio[0].codec_context.channels == 2
        assert (c.streams.video[0].width, c.streams.video[0].height) == (34, 32)


def test_bad_outputs(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match="carries no sound"):
        VideoWriter(tmp_path / "x.gif", 25, audio_channels=1)
    with pytest.raises(VideoError, match="3-channel"):
        VideoWriter(tmp_path / "x.mp4", 25, audio_channels=3)
    out = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError), VideoWriter(out, 25, audio_channels=1) as w:
        w.write(np.zeros((32, 32, 3), np.uint8))
        raise RuntimeError("boom")
    assert not out.exists()  # a failed render leaves no half-written file
    assert list(tmp_path.iterdir()) == []  # and no partial either


def test_speak_keeps_the_old_clip_when_interrupted_and_replaces_it_when_done(tmp_path: Path, monkeypatch) -> None:
    """`lpstudio speak --audio` (the muxed-audio path): Ctrl+C mid-render leaves yesterday's clip as it was."""
    from speech_helpers import StandInEngine, encode_audio

    from lpstudio.cli import main

    rate = 16_000
    wav = encode_audio(tmp_path / "speech.wav", np.full((1, rate), 0.1, np.float32), rate)
    out = tmp_path / "talk.mp4"
    engine = StandInEngine()
    monkeypatch.setattr("lpstudio.cli.speak.load_engine", lambda args, face: engine)
    args = ["speak", "--audio", str(wav), "-o", str(out), "--no-progress", "--no-crop"]
    assert main(args) == 0
    before = out.read_bytes()
    frames_before = stream_durations(out)["video_frames"]

    real_render = engine.render

    def interrupted(state, params, batch_size=4):  # one batch out, then Ctrl+C
        yield from real_render(state, params[:1], batch_size)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine, "render", interrupted)
    assert main(args) == 130
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav", "talk.mp4"]  # no partial left

    monkeypatch.setattr(engine, "render", real_render)
    out.write_bytes(b"yesterday's clip, to be replaced")
    assert main(args) == 0
    assert stream_durations(out)["video_frames"] == frames_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["speech.wav", "talk.mp4"]
