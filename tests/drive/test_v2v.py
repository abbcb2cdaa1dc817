"""A video as the source: the official v2v rules, the job's outputs, and the CLI's errors.

The motion rules are checked on keypoint arrays (no rendering); the job's
frame count, fps and audio with a stand-in renderer; the exact invariant
(a still driving video without smoothing re-renders each source frame as
``lpstudio edit`` does) end to end through the CLI on synthetic weights.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from drive_helpers import empty_video, read_back, write_video

from lpstudio.cli import main
from lpstudio.drive.driving_motion import DriveSettings, DrivingMotion
from lpstudio.drive.v2v import V2VOptions, concat_path, drive_video_source
from lpstudio.drive.v2v_motion import (
    LIP_NORMALIZE_THRESHOLD,
    SOURCE_EYE_OPEN_TARGET,
    SOURCE_EYE_RETARGETING_THRESHOLD,
    V2VMotion,
    auto_reference,
    clip_deltas,
    eye_target,
    finish_keypoints,
    rts_smooth,
)
from lpstudio.engine import LivePortrait
from lpstudio.video import iter_frames


def _frames(n: int, seed: int, size: tuple[int, int] = (96, 128)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(n)]


def _motion(n: int, seed: int, jitter: float = 0.02) -> DrivingMotion:
    """N frames of plausible random motion (small rotations about a common pose)."""
    from lpstudio import keypoints as K

    g = torch.Generator().manual_seed(seed)
    angles = [torch.randn(n, 1, generator=g) * 5 for _ in range(3)]
    return DrivingMotion(
        rotation=K.rotation_matrix(*angles),
        exp=torch.randn(n, 21, 3, generator=g) * jitter,
        scale=1 + torch.rand(n, 1, generator=g) * 0.1,
        t=torch.randn(n, 3, generator=g) * 0.05,
        kp=(torch.randn(1, 21, 3, generator=g) * 0.3).expand(n, 21, 3).clone(),
    )


# ----------------------------------------------------------------------------- the rules, on arrays
def test_rts_smoother_is_the_exact_map_solution_of_the_official_model() -> None:
    """RTS == the minimiser of the model's quadratic energy (solved directly), per coordinate."""
    rng = np.random.default_rng(0)
    z = np.cumsum(rng.normal(size=(12, 3)), axis=0)
    r, q, p0 = 0.3, 0.1, 1.0
    n = len(z)
    a = np.zeros((n, n))
    b = np.zeros((n, 3))
    a[0, 0] += 1 / p0
    b[0] += z[0] / p0  # prior: the first observation, variance p0
    for i in range(n):
        a[i, i] += 1 / r
        b[i] += z[i] / r
    for i in range(n - 1):
        a[i, i] += 1 / q
        a[i + 1, i + 1] += 1 / q
        a[i, i + 1] -= 1 / q
        a[i + 1, i] -= 1 / q
    np.testing.assert_allclose(rts_smooth(z, r, q), np.linalg.solve(a, b), rtol=1e-9, atol=1e-9)
    constant = np.tile(z[:1], (5, 1))
    np.testing.assert_array_equal(rts_smooth(constant, 3e-7), constant)


def test_still_driving_without_smoothing_moves_nothing_and_smoothing_changes_the_clip() -> None:
    source = _motion(6, seed=1)
    still = _motion(1, seed=2).expand(6)
    off, ref = clip_deltas(source, still, V2VMotion(smooth=0.0))
    assert ref == 0 and torch.equal(off, torch.zeros_like(off)), "each source frame stays exactly itself"
    on, _ = clip_deltas(source, still, V2VMotion())  # smoothing on by default: the source's own jitter is smoothed
    assert on.abs().max() > 1e-4
    moving = _motion(6, seed=3)
    plain, _ = clip_deltas(source, moving, V2VMotion(smooth=0.0))
    smooth, _ = clip_deltas(source, moving, V2VMotion())
    assert (plain - smooth).abs().max() > 1e-4
    # smoothing removes frame-to-frame jitter: the smoothed clip's second differences are smaller
    assert smooth.diff(n=2, dim=0).abs().mean() < plain.diff(n=2, dim=0).abs().mean()


def test_source_scale_and_translation_stay_each_frames_own() -> None:
    """The driving clip's scale and translation never reach the output (official source-video rule)."""
    source = _motion(4, seed=4)
    driving = _motion(4, seed=5)
    zoomed = DrivingMotion(driving.rotation, driving.exp, driving.scale * 3, driving.t + 1, driving.kp)
    a, _ = clip_deltas(source, driving, V2VMotion(smooth=0.0))
    b, _ = clip_deltas(source, zoomed, V2VMotion(smooth=0.0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_reference_frame_fixed_and_auto() -> None:
    source = _motion(5, seed=6)
    driving = _motion(5, seed=7)
    neutral = DrivingMotion(driving.rotation, driving.exp.clone(), driving.scale, driving.t, driving.kp)
    neutral.exp[3] = source.exp[0]  # frame 3 has exactly the source's rest expression
    assert auto_reference(neutral.exp, source.exp[:1]) == 3
    deltas, ref = clip_deltas(source, neutral, V2VMotion(smooth=0.0, reference="auto"))
    assert ref == 3 and torch.equal(deltas[3], torch.zeros_like(deltas[3]))
    fixed, ref = clip_deltas(source, neutral, V2VMotion(smooth=0.0, reference=2))
    assert ref == 2 and torch.equal(fixed[2], torch.zeros_like(fixed[2]))
    from lpstudio.errors import ParamError

    with pytest.raises(ParamError, match="outside the driving clip"):
        clip_deltas(source, neutral, V2VMotion(reference=9))


def test_eye_retargeting_target_follows_the_official_threshold() -> None:
    closed = np.full((1, 2), SOURCE_EYE_RETARGETING_THRESHOLD - 0.01)
    assert eye_target(closed) == SOURCE_EYE_OPEN_TARGET
    open_ = np.array([[0.30, 0.20]])
    assert eye_target(open_) == pytest.approx(0.25)
    at = np.full((1, 2), SOURCE_EYE_RETARGETING_THRESHOLD)
    assert eye_target(at) == pytest.approx(SOURCE_EYE_RETARGETING_THRESHOLD), "the threshold itself counts as open"


def test_normalize_lip_closes_only_open_lips_and_eye_retargeting_moves_the_eyes(engine) -> None:
    x_s = (torch.randn(2, 21, 3, generator=torch.Generator().manual_seed(8)) * 0.3).float()
    x_d = x_s.clone()
    eyes = torch.tensor([[0.3, 0.3], [0.3, 0.3]])
    lips = torch.tensor([[LIP_NORMALIZE_THRESHOLD + 0.05], [LIP_NORMALIZE_THRESHOLD - 0.01]])
    kwargs = {"source_eye": eyes, "source_lip": lips, "driving_eye": None, "driving_lip": None, "eye_goal": None}
    plain = finish_keypoints(engine, x_s, x_d, V2VMotion(), **kwargs)
    normal = finish_keypoints(engine, x_s, x_d, V2VMotion(normalize_lip=True), **kwargs)
    assert (normal[0] - plain[0]).abs().max() > 0, "open lips (ratio over the threshold) are closed first"
    assert torch.equal(normal[1], plain[1]), "lips under the threshold are left alone"
    absolute = V2VMotion(settings=DriveSettings(relative=False), normalize_lip=True)
    assert torch.equal(finish_keypoints(engine, x_s, x_d, absolute, **kwargs), plain), "official: relative only"
    kwargs["eye_goal"] = eye_target(np.array([[0.1, 0.1]]))
    held = finish_keypoints(engine, x_s, x_d, V2VMotion(source_eye_retargeting=True), **kwargs)
    assert (held - plain).abs().max() > 0


# ----------------------------------------------------------------------------- the job (stand-in renderer)
@pytest.fixture(scope="module")
def face_engine(engine, face_pipeline) -> LivePortrait:
    return LivePortrait(engine.networks, "cpu", "float32", face=face_pipeline)


@pytest.fixture()
def fast_mixed(monkeypatch: pytest.MonkeyPatch, face_engine: LivePortrait) -> None:
    """Stand-ins for F (zeros), M (one real output repeated) and W+G (grey level of x_d); tracking, paste-back real."""

    def render_mixed(items):
        return [np.full((512, 512, 3), int(k.abs().sum() * 997) % 256, np.uint8) for _, k in items]

    monkeypatch.setattr(face_engine, "render_mixed", render_mixed)
    monkeypatch.setattr(face_engine, "appearance", lambda x: torch.zeros(x.shape[0], 32, 16, 64, 64))
    one = face_engine.motion(torch.zeros(1, 3, 256, 256))  # M's heads for one input, repeated: no M cost
    monkeypatch.setattr(face_engine, "motion", lambda x: type(one)(*(v.expand(len(x), *v.shape[1:]) for v in one)))


def test_frames_are_the_shorter_clip_at_the_sources_fps_with_the_chosen_audio(
    face_engine, fast_mixed, tmp_path: Path
) -> None:
    src = write_video(tmp_path / "src.mp4", _frames(3, 1), fps=20)  # with audio
    drv = write_video(tmp_path / "drv.mp4", _frames(4, 2), fps=24, audio=False)
    out = tmp_path / "o.mp4"
    summary = drive_video_source(face_engine, src, drv, out, V2VOptions(progress=False, concat=True))
    assert read_back(out) == (3, Fraction(20), True, (128, 96)), "3 = min(3, 4) frames, pasted into the source frames"
    assert summary.frames == 3 and summary.audio
    assert read_back(concat_path(out)) == (3, Fraction(20), True, (3 * 512, 512))  # driving | source | result
    silent = drive_video_source(face_engine, src, drv, tmp_path / "d.mp4", V2VOptions(progress=False, audio="driving"))
    assert not silent.audio and read_back(tmp_path / "d.mp4")[2] is False
    assert any("has no audio" in n for n in silent.notes)
    none = drive_video_source(face_engine, src, drv, tmp_path / "n.mp4", V2VOptions(progress=False, audio="none"))
    assert not none.audio and read_back(tmp_path / "n.mp4")[2] is False

    long_src = write_video(tmp_path / "long.mp4", _frames(4, 3), fps=30, audio=False)
    short_drv = write_video(tmp_path / "short.mp4", _frames(2, 4), fps=24)  # with audio
    face = tmp_path / "face.mp4"
    summary = drive_video_source(
        face_engine, long_src, short_drv, face, V2VOptions(progress=False, audio="driving", face_only=True)
    )
    assert read_back(face) == (2, Fraction(30), True, (512, 512)), "2 = min(4, 2), the 512 crop, the driving's audio"


# ----------------------------------------------------------------------------- end to end, CLI
def test_still_driving_renders_each_source_frame_as_edit_does(synthetic_weights_dir, tmp_path: Path) -> None:
    """``--no-smooth`` + a still driving video: output frame k == ``lpstudio edit`` of source frame k (2 levels)."""
    from PIL import Image

    from lpstudio.imageio import save_image

    engine_opts = ["--weights-dir", str(synthetic_weights_dir), "--device", "cpu"]
    src = write_video(tmp_path / "src.mp4", _frames(2, 10, (64, 64)), audio=False)
    still = write_video(tmp_path / "still.mp4", _frames(1, 11, (64, 64)) * 2, audio=False)
    out = tmp_path / "out"
    rc = main(["drive", str(src), str(still), "-o", str(out), "--no-crop", "--driving-precropped", "--no-smooth",
               "--batch-size", "2", "--quiet", *engine_opts])  # fmt: skip
    assert rc == 0
    written = sorted(out.glob("*.png"))
    assert len(written) == 2
    k = 1
    frame_k = list(iter_frames(src))[k]
    save_image(tmp_path / "frame.png", frame_k)
    assert main(["edit", str(tmp_path / "frame.png"), "--no-crop", "-o", str(tmp_path / "edit.png"), *engine_opts]) == 0
    ours = np.asarray(Image.open(written[k])).astype(int)
    edit = np.asarray(Image.open(tmp_path / "edit.png")).astype(int)
    assert ours.shape == edit.shape == (512, 512, 3)
    assert np.abs(ours - edit).max() <= 2
    assert np.abs(np.asarray(Image.open(written[0])).astype(int) - edit).max() > 2, "frame 0 is another frame"


@pytest.fixture()
def faceless_weights(synthetic_weights_dir: Path, tmp_path: Path) -> Path:
    """The synthetic weights beside stand-in face models that never find a face."""
    from standin_models import empty_det_outputs, write_face_models

    root = tmp_path / "w"
    for item in synthetic_weights_dir.rglob("*"):
        if item.is_file():  # file by file: the shared folder itself is never written into
            link = root / item.relative_to(synthetic_weights_dir)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(item)
    return write_face_models(root, det_outputs=empty_det_outputs())


def test_cli_bad_source_videos_give_one_line_and_exit_2(
    faceless_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    drv = write_video(tmp_path / "drv.mp4", _frames(2, 12, (64, 64)), audio=False)
    empty = empty_video(tmp_path / "empty.mp4")
    assert main(["drive", str(empty), str(drv), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert "empty.mp4: it has no video track" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "frames").mkdir()
    assert main(["drive", str(tmp_path / "frames"), str(drv), "-o", str(tmp_path / "o.mp4")]) == 2
    err = capsys.readouterr().err
    assert "shorter than one frame" in err and len(err.strip().splitlines()) == 1

    noface = write_video(tmp_path / "noface.mp4", _frames(2, 13, (64, 64)), audio=False)
    rc = main(["drive", str(noface), str(drv), "-o", str(tmp_path / "o.mp4"), "--driving-precropped", "--quiet",
               "--weights-dir", str(faceless_weights), "--device", "cpu", "--face-models", "insightface"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "noface.mp4" in err and "No face was found in any of the 2 frames" in err
    assert "Traceback" not in err and not (tmp_path / "o.mp4").exists()

    photo = tmp_path / "p.png"
    from lpstudio.imageio import save_image

    save_image(photo, _frames(1, 14)[0])
    assert main(["drive", str(photo), str(drv), "-o", str(tmp_path / "o.mp4"), "--concat"]) == 2
    assert "--concat needs a video as the source" in capsys.readouterr().err
