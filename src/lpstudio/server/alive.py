"""Routes of the living portrait's idle pieces, gaze atlas, cancel and page close (docs/ALIVE.md).

* ``GET /idle?session=S``: the photo's idle segments (ready or not), their render progress and a
  seeded schedule of the next five minutes (:func:`~lpstudio.expressions.idle_segments.idle_schedule`);
* ``GET /idle/segment?session=S&id=blink``: one rendered segment's frames (404 before);
* ``GET /gaze?session=S``: the gaze atlas (frames once every cell is rendered);
* ``POST /generate/cancel {"session", "clip"}``: stop one stream of a clip;
* ``POST /session/close {"session"}``: the page went away (``navigator.sendBeacon``, so a
  ``text/plain`` body is read as JSON too): its background work and streams stop at once.

Every route is cheap on the event loop: lookups only; base64 of frames is built on a thread.
They sit behind the app's guards like every other route (registered on the same app).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import secrets
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import Response

from ..errors import LPStudioError
from ..expressions.idle_segments import SCHEDULE_S, idle_schedule, schedule_seed
from .background import BackgroundScheduler, clip_work, foreground_pending
from .pacing import START_MARGIN, frames_at, paced_fps, plan_duration_s, repaced, start_wait_s
from .pieces import GAZE_ID, PhotoPieces
from .plans import ClipPlan, clip_cache_key
from .sessions import Source
from .state import AppState

CLIP_ID_BYTES = 9
"""Random bytes of a clip id (72 bits: one viewer's stream, unguessable)."""
MAX_ID_CHARS = 64
MAX_SEED = 2**32 - 1


class NotReadyError(LPStudioError):
    """An idle piece asked for before it was rendered."""

    http_status = 404


class BadBodyError(LPStudioError):
    """A body that is not the JSON object a route needs."""


def _state(request: Request) -> AppState:
    return request.app.state.lp


def register_alive(app: FastAPI) -> None:
    """Add the routes on ``app`` (behind the same guards as every route)."""

    @app.get("/idle", summary="The photo's idle segments, their progress and a seeded 5-minute schedule")
    async def idle(
        request: Request, session: str = Query(..., max_length=256), seed: int | None = Query(None, ge=0, le=MAX_SEED)
    ) -> dict[str, Any]:
        state = _state(request)
        _, source = state.resolve(session)
        pieces = _pieces(state, source)
        segments = pieces.segment_pieces()
        durations = {p.id: p.duration_s for p in segments}
        chosen = schedule_seed(session) if seed is None else seed
        items = await state.off_loop(lambda: idle_schedule(chosen, durations, SCHEDULE_S))
        done = sum(p.done for p in segments)
        total = sum(len(p.frames) for p in segments)
        return {
            "photo": source.digest,
            "fps": pieces.fps,
            "ready": done == total,
            "progress": [done, total],
            "segments": [
                {
                    "id": p.id,
                    "kind": p.kind,
                    "frames": len(p.frames),
                    "duration_s": round(p.duration_s, 3),
                    "ready": p.ready,
                }
                for p in segments
            ],
            "schedule": {"seed": chosen, "length_s": SCHEDULE_S, "items": [i.to_json() for i in items]},
        }

    @app.get("/idle/segment", summary="One rendered idle segment: base64 JPEGs of the portrait as shown")
    async def idle_segment(
        request: Request, session: str = Query(..., max_length=256), id: str = Query(..., max_length=MAX_ID_CHARS)
    ) -> Response:
        state = _state(request)
        _, source = state.resolve(session)
        pieces = _pieces(state, source)
        piece = pieces.by_id.get(id)
        if piece is None or id == GAZE_ID:
            names = ", ".join(p.id for p in pieces.segment_pieces())
            raise NotReadyError(f"there is no idle segment {id[:MAX_ID_CHARS]!r}", hint=f"one of: {names}")
        if not piece.ready:
            raise NotReadyError(
                f"the idle segment {id!r} is not rendered yet ({piece.done}/{len(piece.frames)} frames)",
                hint="poll GET /idle until its segment says ready",
            )
        frames = list(piece.frames)
        body = await state.off_loop(lambda: _json({"id": id, "fps": pieces.fps, "frames": _b64(frames)}))
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.get("/gaze", summary="The gaze atlas: a grid of eyeball positions with a small matching head turn")
    async def gaze(request: Request, session: str = Query(..., max_length=256)) -> Response:
        state = _state(request)
        _, source = state.resolve(session)
        pieces = _pieces(state, source)
        atlas = pieces.atlas
        cols, rows = len(pieces.xs), len(pieces.ys)
        info: dict[str, Any] = {
            "ready": atlas.ready,
            "progress": [atlas.done, len(atlas.frames)],
            "cols": cols,
            "rows": rows,
            "x": pieces.xs,
            "y": pieces.ys,
        }
        if atlas.ready:
            frames = list(atlas.frames)

            def build() -> bytes:
                flat = _b64(frames)
                return _json({**info, "frames": [flat[r * cols : (r + 1) * cols] for r in range(rows)]})

            body = await state.off_loop(build)
        else:
            body = _json(info)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})

    @app.post("/generate/cancel", summary="Stop one clip stream (the render stops when nobody else shares it)")
    async def cancel(request: Request) -> dict[str, bool]:
        state = _state(request)
        body = await _body(request, ("session", "clip"))
        state.sessions.get(body["session"])  # 409 for an unknown session; counts as the page being there
        entry = state.viewers.get(body["clip"])
        if entry is None or entry[0] != body["session"]:
            return {"cancelled": False}
        entry[1].cancel()
        return {"cancelled": True}

    @app.post("/session/close", summary="The page went away (sendBeacon on pagehide): stop its work now")
    async def close_session(request: Request) -> dict[str, bool]:
        state = _state(request)
        body = await _body(request, ("session",))
        return {"closed": close_page(state, body["session"])}


def close_page(state: AppState, session: str) -> bool:
    """Forget a page's session, cancel its streams, and let background work for its photo stop."""
    closed = state.sessions.close(session) is not None
    for clip_id, (owner, viewer) in list(state.viewers.items()):
        if owner == session:
            viewer.cancel()
            state.viewers.pop(clip_id, None)
    if state.background is not None:
        state.background.wake()
    return closed


def new_clip_id() -> str:
    """An unguessable id of one viewer's stream of a clip."""
    return secrets.token_urlsafe(CLIP_ID_BYTES)


def register_viewer(state: AppState, session: str | None, clip_id: str, viewer: Any) -> None:
    """Let ``POST /generate/cancel`` find ``viewer`` by ``clip_id`` (streams without a session cannot be)."""
    if session is not None:
        state.viewers[clip_id] = (session, viewer)


def forget_viewer(state: AppState, clip_id: str) -> None:
    state.viewers.pop(clip_id, None)


async def paced_plan(state: AppState, source: Source, plan: ClipPlan) -> ClipPlan:
    """``plan`` at the rate that lets it start within the bound (``pacing.py``); a cached clip keeps its rate."""
    render_fps = state.worker.measured_fps
    if render_fps is None:
        return plan
    base = source.state.neutral_params()
    key = await state.off_loop(lambda: clip_cache_key(source.digest, plan, base, state.settings_key()))
    if key in state.hub.cache or key in state.hub.clips:
        return plan
    ahead = foreground_pending(state.worker)
    duration = plan_duration_s(plan)
    fps = paced_fps(plan.fps, duration, render_fps, ahead, state.limits)
    wait = round(START_MARGIN * start_wait_s(frames_at(duration, fps), fps, render_fps, ahead), 1)
    paced = plan if fps == plan.fps else await state.off_loop(lambda: repaced(plan, fps))
    return dataclasses.replace(paced, expected_start_s=wait)


def start_background(state: AppState, pieces: bool) -> BackgroundScheduler:
    """Start the scheduler (idle pieces only when ``pieces``); it also cancels background renders of gone pages."""
    scheduler = BackgroundScheduler(state, render_pieces=pieces)
    state.background = scheduler
    scheduler.start()
    return scheduler


def health_info(state: AppState) -> dict[str, Any]:
    """``/health``'s background and clip figures, apart."""
    background = state.background.snapshot() if state.background is not None else {"jobs": 0, "pending_frames": 0}
    return {"background": background, "clips": clip_work(state)}


# ---------------------------------------------------------------------- helpers
def _pieces(state: AppState, source: Source) -> PhotoPieces:
    """The photo's pieces; a page asking for them wakes the scheduler when some are still to render."""
    if state.background is not None:
        pieces = state.background.pieces_of(source)
        if source.digest not in state.background.jobs and pieces.next_missing() is not None:
            state.background.wake()
        return pieces
    if source.pieces is None:
        source.pieces = PhotoPieces(source.digest, source.state.neutral_params(), state.limits.idle_fps)
    return source.pieces


def _b64(frames: list[bytes | None]) -> list[str]:
    return [base64.b64encode(f).decode("ascii") for f in frames if f is not None]


def _json(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


async def _body(request: Request, fields: tuple[str, ...]) -> dict[str, str]:
    """A small JSON object body (``application/json`` or ``text/plain``, as sendBeacon sends) with string fields."""
    raw = await request.body()  # bounded by the app's JSON body limit
    try:
        data = json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise BadBodyError(
            f"{request.url.path}: the body is not a JSON object",
            hint='send e.g. {"' + '": "...", "'.join(fields) + '": "..."}',
        )
    out = {}
    for name in fields:
        value = data.get(name)
        if not isinstance(value, str) or not value or len(value) > 256:
            raise BadBodyError(
                f"{request.url.path}: {name!r} must be a non-empty string of at most 256 characters",
                hint=f"send the {name} id the server gave",
            )
        out[name] = value
    return out
