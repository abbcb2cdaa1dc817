"""Edits layered over a source video's own motion, and dubbing (official "Retargeting Video").

Every frame of a source video is its own source: its appearance ``f_s``, its keypoints ``x_s``
and its own expression and head pose (``lpstudio.drive.source_video`` tracks, crops and
prepares them). An edit is a set of the 17 editing parameters *relative to that frame's
neutral* (:meth:`~lpstudio.engine.SourceState.neutral_params`), applied with the engine's
editing path (:meth:`~lpstudio.engine.LivePortrait.edited_keypoints`): head deltas on the
frame's own rotation, expression offsets on its own ``exp``, eye/lip ratio targets against its
own measured ratios. So a frame with no edit is exactly the "source-only re-render" of that
frame (``lpstudio edit FRAME`` with no change), and the person's own motion is kept.

* :func:`command_params` — an expression command's timeline sampled at a frame's time, on the
  frame's own neutral (and ``--lip-ratio``: the official retargeting-video lip target, e.g.
  ``0`` for silent lips, held on every frame).
* :func:`dub_params` — the mouth of new speech: only the lip parameters (``lip_ratio`` and
  ``lip_variation_*``) of a speech timeline sampled on a *closed* mouth (lip ratio 0, so the
  frame's own lip opening is retargeted away first), everything else the frame's neutral.
* :func:`render_source_edits` — frames and parameters in, rendered frames out, in mixed-source
  batches of W+G (each row has its own source). With ``mouth_only`` (dubbing) each frame is
  rendered twice in the same batch, unedited and edited, and only a feathered mouth region of
  the crop (:func:`mouth_mask`) is taken from the edited render: the rest of the face is
  exactly the source-only re-render, whatever the networks do with the moved lip keypoints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, Protocol

import numpy as np
import torch

from ..expressions.timeline import Timeline
from ..keypoints import NOMINAL_EYE_RATIO, NOMINAL_LIP_RATIO
from ..params import PARAM_NAMES, EditParams

LIP_PARAMS: tuple[str, ...] = (
    "lip_ratio",
    "lip_variation_zero",
    "lip_variation_one",
    "lip_variation_two",
    "lip_variation_three",
)
"""The parameters a dub takes from the speech (the mouth); all others stay each frame's own."""

DUB_CLOSED_LIP_RATIO: float = 0.0
"""Base lip-open ratio of a dub's mouth: the source's own opening is retargeted to closed (official
"silent lips", ``lip_ratio`` 0), then the speech opens it."""

MOUTH_CENTER: tuple[float, float] = (0.5, 0.7)
"""Centre (x, y) of the mouth region, as fractions of the face crop. Measured with MediaPipe in the
official crop (scale 2.3, vy -0.125) of the bundled astronaut photo and of tests/data/faces: the
lips lie at y = 0.66..0.71 of the crop, the corners 0.21 of its width apart; the centre sits lower
to hold the lower lip and chin of an open mouth."""

MOUTH_RADII: tuple[float, float] = (0.17, 0.12)
"""Half-axes (x, y) of the ellipse where the dubbed render is taken fully (fractions of the crop)."""

MOUTH_FEATHER: float = 0.35
"""Width of the soft edge beyond the ellipse, as a fraction of its radius (a smoothstep to 0)."""

RATIO_NAMES: tuple[str, ...] = ("eye_ratio", "lip_ratio")
_NOMINAL: dict[str, float] = {"eye_ratio": NOMINAL_EYE_RATIO, "lip_ratio": NOMINAL_LIP_RATIO}


class FrameLike(Protocol):
    """What :func:`render_source_edits` needs of a source frame (``source_video.SourceFrame``)."""

    index: int
    state: Any  # lpstudio.engine.SourceState of this frame


def frame_time_ms(index: int, fps: float) -> float:
    """Time of frame ``index`` at ``fps`` (ms): the clock the timeline is sampled on."""
    return index * 1000.0 / float(fps)


def _row_params(row: np.ndarray, base: EditParams) -> EditParams:
    """A sampled ``(17,)`` row -> :class:`EditParams`; a ratio the base left unset stays unset unless moved.

    :meth:`Timeline.sample_at` fills an unset base ratio with the nominal one; kept as is it would
    retarget a frame whose own ratio is outside the slider range to the nominal ratio.
    """
    values = dict(zip(PARAM_NAMES, map(float, row), strict=True))
    out: dict[str, float | None] = dict(values)
    for name in RATIO_NAMES:
        if getattr(base, name) is None and values[name] == _NOMINAL[name]:
            out[name] = None
    return EditParams(**out)  # type: ignore[arg-type]


def command_params(state: Any, timeline: Timeline | None, t_ms: float, *, lip_ratio: float | None = None) -> EditParams:
    """The edit of one frame: ``timeline`` at ``t_ms`` on the frame's own neutral (offsets added).

    ``lip_ratio``: the official retargeting-video lip target, held on every frame (the
    timeline's lip moves are added to it). Past the timeline's end the edit is the neutral
    (``lip_ratio`` still applied): the rest of the video is its own motion.
    """
    base: EditParams = state.neutral_params()
    if lip_ratio is not None:
        base = replace(base, lip_ratio=float(lip_ratio))
    if timeline is None or t_ms > timeline.duration_ms:
        return base
    return _row_params(timeline.sample_at(np.array([t_ms]), base)[0], base)


def mouth_rows(timeline: Timeline, times_ms: Sequence[float]) -> np.ndarray:
    """The mouth of a speech timeline: ``(len(times_ms), len(LIP_PARAMS))`` on a closed mouth.

    Times past the timeline's end give the closed mouth.
    """
    base = EditParams(lip_ratio=DUB_CLOSED_LIP_RATIO)
    rows = timeline.sample_at(np.asarray(times_ms, dtype=np.float64), base)
    cols = [PARAM_NAMES.index(n) for n in LIP_PARAMS]
    return rows[:, cols]


def dub_params(state: Any, mouth: np.ndarray) -> EditParams:
    """The edit of one dubbed frame: the frame's neutral with the mouth ``(len(LIP_PARAMS),)`` of the speech."""
    values = {name: float(v) for name, v in zip(LIP_PARAMS, mouth, strict=True)}
    return replace(state.neutral_params(), **values)


def command_items(
    frames: Iterable[FrameLike], timeline: Timeline | None, fps: float, *, lip_ratio: float | None = None
) -> Iterator[tuple[FrameLike, EditParams]]:
    """``(frame, edit)`` for :func:`render_source_edits`: the command at each frame's time (streamed)."""
    for f in frames:
        yield f, command_params(f.state, timeline, frame_time_ms(f.index, fps), lip_ratio=lip_ratio)


def dub_items(frames: Iterable[FrameLike], timeline: Timeline, fps: float) -> Iterator[tuple[FrameLike, EditParams]]:
    """``(frame, edit)`` for :func:`render_source_edits` (``mouth_only``): the speech's mouth at each frame's time."""
    for f in frames:
        yield f, dub_params(f.state, mouth_rows(timeline, [frame_time_ms(f.index, fps)])[0])


@lru_cache(maxsize=4)
def mouth_mask(size: int) -> np.ndarray:
    """Weights of the dubbed render in a ``size`` x ``size`` crop: ``(size, size, 1)`` float32 in 0..1.

    1 inside the ellipse (:data:`MOUTH_CENTER`, :data:`MOUTH_RADII`), a smoothstep down to exactly 0
    over :data:`MOUTH_FEATHER` of the radius beyond it, 0 elsewhere.
    """
    coords = (np.arange(size, dtype=np.float64) + 0.5) / size
    y, x = np.meshgrid(coords, coords, indexing="ij")
    r = np.sqrt(((x - MOUTH_CENTER[0]) / MOUTH_RADII[0]) ** 2 + ((y - MOUTH_CENTER[1]) / MOUTH_RADII[1]) ** 2)
    u = np.clip((1.0 + MOUTH_FEATHER - r) / MOUTH_FEATHER, 0.0, 1.0)
    mask = (u * u * (3.0 - 2.0 * u)).astype(np.float32)[..., None]
    mask.setflags(write=False)
    return mask


def blend_mouth(neutral: np.ndarray, edited: np.ndarray) -> np.ndarray:
    """``edited`` inside the mouth region, ``neutral`` outside (both (S,S,3) uint8) -> (S,S,3) uint8.

    Where the mask is 0 the result is ``neutral``, bit for bit.
    """
    m = mouth_mask(neutral.shape[0])
    mixed = neutral.astype(np.float32) * (1.0 - m) + edited.astype(np.float32) * m
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@torch.inference_mode()
def render_source_edits(
    engine: Any,
    items: Iterable[tuple[FrameLike, EditParams]],
    *,
    batch_size: int = 4,
    paste_back: bool = True,
    mouth_only: bool = False,
) -> Iterator[np.ndarray]:
    """Rendered frames, one per ``(source frame, edit)``, in order: (H,W,3) uint8.

    Each frame is warped from its own source state; ``batch_size`` rows go through W+G together
    (:meth:`~lpstudio.engine.LivePortrait.render_mixed`). ``paste_back``: into the frame's full
    picture (when its state has one; else the 512x512 crop). ``mouth_only``: see the module doc
    (two rows per frame, so ``batch_size // 2`` frames per batch).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    per_batch = max(1, batch_size // 2) if mouth_only else batch_size
    batch: list[tuple[FrameLike, EditParams]] = []
    for item in items:
        batch.append(item)
        if len(batch) == per_batch:
            yield from _render_batch(engine, batch, paste_back, mouth_only)
            batch = []
    if batch:
        yield from _render_batch(engine, batch, paste_back, mouth_only)


def _render_batch(
    engine: Any, batch: list[tuple[FrameLike, EditParams]], paste_back: bool, mouth_only: bool
) -> list[np.ndarray]:
    rows: list[tuple[Any, torch.Tensor]] = []
    for frame, params in batch:
        state = frame.state
        if mouth_only:
            x_d = engine.edited_keypoints(state, [state.neutral_params(), params])
            rows += [(state, x_d[0]), (state, x_d[1])]
        else:
            rows.append((state, engine.edited_keypoints(state, [params])[0]))
    images = engine.render_mixed(rows)
    if mouth_only:
        images = [blend_mouth(images[2 * i], images[2 * i + 1]) for i in range(len(batch))]
    if not paste_back:
        return list(images)
    return [engine.paste_back(frame.state, image) for (frame, _), image in zip(batch, images, strict=True)]


def frames_needed(duration_ms: float, fps: float) -> int:
    """Frames of a clip of ``duration_ms`` at ``fps``: ``ceil(duration_ms * fps / 1000)`` (at least 1)."""
    return max(1, int(math.ceil(duration_ms * float(fps) / 1000.0 - 1e-9)))
