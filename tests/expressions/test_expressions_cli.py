"""CLI commands (say, params, animate) and rendering with the engine (skipped without it)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from lpstudio.cli import COMMAND_MODULES, animate, params, say
from lpstudio.expressions.guide import guide_json, guide_markdown
from lpstudio.params import PARAM_NAMES, PARAM_SPECS

REPO = Path(__file__).resolve().parents[2]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    for mod in (params, say, animate):
        mod.register(sub)
    args = parser.parse_args(argv)
    code = args.handler(args)
    return code, capsys.readouterr().out


def test_modules_are_registered() -> None:
    assert {"params", "say", "animate"} <= set(COMMAND_MODULES)


def test_say_dry_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["say", "웃으면서 윙크해줘", "--dry-run", "--json", "--no-idle", "--fps", "30"], capsys)
    assert code == 0
    data = json.loads(out)
    assert data["fps"] == 30
    assert [s["preset"] for s in data["steps"]] == ["smile", "wink_right"]
    assert data["steps"][1]["start_ms"] > data["steps"][0]["start_ms"]
    assert len(data["frames"]) == data["n_frames"] > 30
    assert all(list(f) == list(PARAM_NAMES) for f in data["frames"])
    assert data["frames"][0] == data["frames"][-1] == data["base"]
    assert max(f["wink"] for f in data["frames"]) > 30
    assert max(f["smile"] for f in data["frames"]) > 0.7


def test_say_with_idle_is_seeded(capsys: pytest.CaptureFixture[str]) -> None:
    _, a = run_cli(["say", "smile then nod", "--dry-run", "--json", "--seed", "4"], capsys)
    _, b = run_cli(["say", "smile then nod", "--dry-run", "--json", "--seed", "4"], capsys)
    _, c = run_cli(["say", "smile then nod", "--dry-run", "--json", "--seed", "5"], capsys)
    da, db, dc = json.loads(a), json.loads(b), json.loads(c)
    assert da["frames"] == db["frames"] and da["frames"] != dc["frames"]
    assert [s["preset"] for s in da["steps"]] == ["idle", "smile", "nod"]


def test_say_text_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["say", "blink twice", "--no-idle"], capsys)
    assert code == 0 and out.count("blink") >= 3


def test_say_unknown_command_raises() -> None:
    from lpstudio.errors import CommandError

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    say.register(sub)
    args = parser.parse_args(["say", "fly away", "--dry-run", "--json"])
    with pytest.raises(CommandError):
        args.handler(args)


def test_params_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run_cli(["params", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and [d["name"] for d in data] == list(PARAM_NAMES)
    for d, spec in zip(data, PARAM_SPECS, strict=True):
        assert (d["min"], d["max"], d["neutral"]) == (spec.minimum, spec.maximum, spec.neutral)
        assert d["keypoints"] and d["at_min"] and d["at_max"] and d["interactions"]
    code, out = run_cli(["params"], capsys)
    assert all(name in out for name in PARAM_NAMES)


def test_docs_are_generated_from_the_guide() -> None:
    doc = (REPO / "docs" / "PARAMETERS.md").read_text(encoding="utf-8")
    assert doc == guide_markdown(), "regenerate: lpstudio params --markdown > docs/PARAMETERS.md"
    assert len(guide_json()) == 17


def test_animate_rejects_bad_output_before_loading(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from lpstudio.errors import VideoError

    with pytest.raises(VideoError):
        run_cli(["animate", str(tmp_path / "p.png"), "smile", "-o", str(tmp_path / "out.avi")], capsys)


# --- with the engine ----------------------------------------------------------------


def test_render_preset_frame_count(engine, tmp_path) -> None:
    from lpstudio.expressions import ClipCache, parse_command, render_timeline

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)
    state = engine.prepare_source(image, crop=False)
    timeline = parse_command("blink").timeline()
    fps = 6  # few frames: each costs seconds on a CPU
    cache = ClipCache(tmp_path)
    calls = []
    frames = render_timeline(
        engine,
        state,
        timeline,
        fps=fps,
        cache=cache,
        source_id="synthetic",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert frames.shape == (timeline.frame_count(fps), 512, 512, 3)
    assert frames.dtype == np.uint8
    assert calls[-1] == (len(frames), len(frames))
    again = render_timeline(engine, state, timeline, fps=fps, cache=cache, source_id="synthetic")
    assert again is frames or np.array_equal(again, frames)
    assert cache.hits == 1


# --- with a stand-in engine (duck-typed API), so rendering glue and animate run everywhere ------


class FakeState:
    def neutral_params(self):
        from lpstudio.params import EditParams

        return EditParams(eye_ratio=0.3, lip_ratio=0.02)


class FakeEngine:
    """Frames whose pixels encode the smile and eye_ratio values (so order and content can be checked)."""

    size = 32
    device = "cpu"
    dtype = "float32"

    def __init__(self) -> None:
        self.rendered = 0

    def prepare_source(self, image: np.ndarray, crop: bool = True, face_index: int | None = None) -> FakeState:
        return FakeState()

    def render(self, state: FakeState, params_list, batch_size: int = 4) -> list[np.ndarray]:
        self.rendered += len(params_list)
        out = []
        for p in params_list:
            f = np.zeros((self.size, self.size, 3), np.uint8)
            f[..., 0] = int(round((p.smile + 0.3) * 100))
            f[..., 1] = int(round(p.eye_ratio * 255))
            out.append(f)
        return out

    def paste_back(self, state: FakeState, frame: np.ndarray) -> np.ndarray:
        return np.pad(frame, ((4, 4), (4, 4), (0, 0)))


def test_render_timeline_with_stand_in_engine(tmp_path) -> None:
    from lpstudio.expressions import ClipCache, parse_command, render_timeline

    engine, state = FakeEngine(), FakeState()
    tl = parse_command("웃어줘").timeline()
    cache = ClipCache(tmp_path)
    frames = render_timeline(engine, state, tl, fps=20, batch_size=2, cache=cache, source_id="x")
    n = tl.frame_count(20)
    assert frames.shape == (n, 32, 32, 3) and engine.rendered == n
    expected = tl.sample(20, state.neutral_params())
    assert [int(f[0, 0, 0]) for f in frames] == [int(round((p.smile + 0.3) * 100)) for p in expected]
    assert int(frames[0, 0, 0, 1]) == int(round(0.3 * 255))  # base = the source's own ratio
    again = render_timeline(engine, state, tl, fps=20, cache=cache, source_id="x")
    assert engine.rendered == n and np.array_equal(again, frames)  # replay costs nothing
    render_timeline(engine, state, tl, fps=20, cache=cache, source_id="x", paste_back=True)
    assert engine.rendered == 2 * n  # different engine settings: a new clip


def test_animate_end_to_end_on_synthetic_weights(tmp_path, capsys, synthetic_weights_dir) -> None:
    """The real command on the real engine: a video and a PNG folder with one frame per timeline frame."""
    from PIL import Image

    from lpstudio.expressions import parse_command
    from lpstudio.video import VideoReader

    fps = 2  # few frames: each costs seconds on a CPU
    photo = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    engine_args = ["--no-crop", "--weights-dir", str(synthetic_weights_dir), "--device", "cpu", "--no-progress"]
    out = tmp_path / "smile.mp4"
    engine_args += ["--fps", str(fps), "--no-idle"]
    code, text = run_cli(["animate", str(photo), "웃어줘", "-o", str(out), *engine_args], capsys)
    assert code == 0 and "wrote" in text
    frames = VideoReader(out).read_all()
    assert len(frames) == parse_command("웃어줘").timeline().frame_count(fps)
    assert frames[0].shape[:2] == (512, 512)
    frames_dir = tmp_path / "pngs"
    code, _ = run_cli(["animate", str(photo), "깜빡여", "-o", str(frames_dir), *engine_args], capsys)
    assert code == 0
    assert len(list(frames_dir.glob("*.png"))) == parse_command("깜빡여").timeline().frame_count(fps)
