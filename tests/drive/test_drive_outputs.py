"""`lpstudio drive` never loses an earlier result: Ctrl+C mid-render keeps the old video and template."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from drive_helpers import write_video

from lpstudio.drive.pipeline import drive
from lpstudio.drive.template import load_motion
from lpstudio.video import VideoReader

N_FRAMES = 3
SIZE = 256  # a square face crop, as --driving-precropped expects


def _frames(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8) for _ in range(n)]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture()
def fast_engine(engine, monkeypatch: pytest.MonkeyPatch):
    """The synthetic engine with warp+decode replaced by a flat frame (motion extraction stays real)."""

    def render_keypoints(state, x_d: torch.Tensor, *, batch_size: int = 4):
        for row in x_d:
            yield np.full((SIZE, SIZE, 3), int(row.abs().sum() * 997) % 256, np.uint8)

    monkeypatch.setattr(engine, "render_keypoints", render_keypoints)
    return engine


def test_interrupted_drive_keeps_the_earlier_video_and_template(fast_engine, tmp_path: Path) -> None:
    driving = write_video(tmp_path / "driving.mp4", _frames(N_FRAMES, seed=1), audio=False)
    out, template = tmp_path / "out.mp4", tmp_path / "motion.npz"
    state = fast_engine.prepare_source(_frames(1, seed=2)[0], crop=False)
    drive(fast_engine, state, driving, out, precropped=True, progress=False, save_motion_to=template)
    before = _snapshot(tmp_path)

    def ctrl_c_on_the_second_frame(frame: np.ndarray, seen: list[int] = []) -> None:  # noqa: B006 - a counter
        seen.append(1)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        drive(
            fast_engine, state, driving, out, precropped=True, progress=False, save_motion_to=template,
            frame_hook=ctrl_c_on_the_second_frame,
        )  # fmt: skip
    assert _snapshot(tmp_path) == before  # byte for byte, and no partial beside them
    assert len(VideoReader(out).read_all()) == N_FRAMES and len(load_motion(template)) == N_FRAMES
