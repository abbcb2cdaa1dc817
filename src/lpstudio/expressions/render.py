"""Rendering a timeline with the engine (``lpstudio.engine``), with optional caching.

Only duck-typed calls are made on the engine: ``engine.render(state, params_list,
batch_size=...)`` and, for full-photo output, ``engine.paste_back(state, frame)``;
``state.neutral_params()`` gives the base pose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..params import EditParams
from .cache import ClipCache, clip_key
from .timeline import DEFAULT_FPS, Timeline

DEFAULT_BATCH_SIZE: int = 4
FRAMES_PER_CALL_BATCHES: int = 4
"""Frames sent to ``engine.render`` per call, in batches (progress is reported per call)."""

Progress = Callable[[int, int], None]


def render_timeline(
    engine: Any,
    state: Any,
    timeline: Timeline,
    *,
    fps: float = DEFAULT_FPS,
    base: EditParams | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    paste_back: bool = False,
    cache: ClipCache | None = None,
    source_id: str | None = None,
    engine_settings: Mapping[str, Any] | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Render ``timeline`` on a prepared source: ``(timeline.frame_count(fps), H, W, 3) uint8``.

    ``base`` defaults to ``state.neutral_params()`` (the source's own pose and
    ratios). With a ``cache`` and a ``source_id`` (e.g.
    :func:`~lpstudio.expressions.cache.source_digest` of the photo), a clip
    rendered before is returned without touching the engine. ``progress(done,
    total)`` is called after each engine call.
    """
    base_params = base if base is not None else state.neutral_params()
    params = timeline.sample(fps, base_params)

    def run() -> np.ndarray:
        frames: list[np.ndarray] = []
        chunk = max(1, batch_size * FRAMES_PER_CALL_BATCHES)
        for i in range(0, len(params), chunk):
            out = engine.render(state, params[i : i + chunk], batch_size=batch_size)
            if paste_back:
                out = [engine.paste_back(state, f) for f in out]
            frames.extend(np.asarray(f, dtype=np.uint8) for f in out)
            if progress is not None:
                progress(len(frames), len(params))
        return np.stack(frames)

    if cache is None or source_id is None:
        return run()
    settings = dict(engine_settings or {})
    settings["paste_back"] = paste_back
    key = clip_key(source_id, timeline.key(fps, base_params), settings)
    cached = cache.get(key)
    if cached is not None:
        if progress is not None:
            progress(len(cached), len(cached))
        return cached
    return cache.put(key, run())
