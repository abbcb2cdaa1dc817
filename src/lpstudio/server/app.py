"""The living-portrait web app: FastAPI routes over one engine and one render worker.

Frames of ``POST /generate`` stream to the page as NDJSON lines (one JSON object
per line: ``start``, then ``frame`` objects with a base64 JPEG of the portrait as
shown, then ``end``, or ``error``), so playback starts with the first frames.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from ..engine import LivePortrait
from ..errors import CommandError, ImageError, LPStudioError
from ..expressions.cache import ClipCache, clip_key, source_digest
from ..expressions.compose import build_timeline
from ..expressions.idle import idle_timeline
from ..expressions.language import Action
from ..expressions.presets import PRESETS, get_preset
from ..expressions.timeline import Timeline
from ..params import PARAM_SPECS, EditParams
from .live import register_live
from .sessions import Session, SessionStore, display_image, encode_jpeg, make_session
from .worker import PRIORITY_BACKGROUND, PRIORITY_CLIP, PRIORITY_INTERACTIVE, RenderJob, RenderWorker

# Page buttons: preset -> (Korean label, emoji). Presets not listed get a button with their Korean name.
BUTTONS: dict[str, tuple[str, str]] = {
    "smile": ("웃어봐", "😊"),
    "blink": ("깜빡여봐", "😉"),
    "talk": ("말해봐", "💬"),
    "surprise": ("놀라봐", "😲"),
    "wink_right": ("윙크해봐", "😜"),
    "big_laugh": ("크게 웃어봐", "😆"),
    "nod": ("끄덕여봐", "🙆"),
    "head_shake": ("도리도리", "🙅"),
    "look_left": ("왼쪽 봐", "👈"),
    "look_right": ("오른쪽 봐", "👉"),
    "look_up": ("위를 봐", "👆"),
    "sad": ("슬퍼해봐", "😢"),
    "angry": ("화내봐", "😠"),
    "kiss": ("뽀뽀해봐", "😘"),
    "sleepy": ("졸려봐", "😪"),
    "doubtful": ("갸우뚱", "🤨"),
}

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
ALLOWED_UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")
IDLE_LOOP_MS = 4000.0
MAX_FPS = 60.0


@dataclass
class ServerSettings:
    """How ``lpstudio serve`` runs."""

    crop: bool = True
    fps: float = 25.0
    batch_size: int = 4
    max_sessions: int = 8
    clip_cache_bytes: int = 256 * 1024**2
    idle_default: bool = True
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_upload_pixels: int = MAX_UPLOAD_PIXELS
    default_source: Path | None = None  # the bundled sample when None
    prerender: bool = False  # render the button presets of a new photo in the background


@dataclass
class AppState:
    engine: LivePortrait
    settings: ServerSettings
    worker: RenderWorker
    sessions: SessionStore
    cache: ClipCache
    loaded_at: float = field(default_factory=time.time)
    background: dict[str, RenderJob] = field(default_factory=dict)  # clip key -> pre-render job


def _default_source(settings: ServerSettings) -> Path:
    if settings.default_source is not None:
        return settings.default_source
    return Path(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))


def _error(exc: LPStudioError) -> JSONResponse:
    body = {"error": exc.message, "hint": exc.hint, "kind": type(exc).__name__}
    return JSONResponse(body, status_code=exc.http_status)


# ---------------------------------------------------------------------- requests
class GenerateRequest(BaseModel):
    session: str
    preset: str | None = Field(None, description="a preset name (see GET /expressions)")
    command: str | None = Field(None, description="free text in Korean or English, or the precise sequence syntax")
    idle_loop: bool = Field(False, description="render the idle-liveliness loop instead of a command")
    intensity: float = Field(1.0, ge=0.0, le=3.0)
    speed: float = Field(1.0, gt=0.0, le=4.0)
    idle: bool | None = Field(None, description="layer idle liveliness under the command (default: server setting)")
    fps: float | None = Field(None, gt=0.0, le=MAX_FPS)
    seed: int = 0


class RenderRequest(BaseModel):
    session: str
    params: dict[str, float | None] = Field(default_factory=dict, description="parameter values; the rest neutral")


class SessionRequest(BaseModel):
    session: str | None = None


# ---------------------------------------------------------------------- app
def create_app(engine: LivePortrait, settings: ServerSettings | None = None) -> FastAPI:
    """The app around a loaded engine (the CLI loads it before serving, so bad weights never start a server)."""
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = RenderWorker(engine, settings.batch_size)
        app.state.lp = AppState(
            engine=engine,
            settings=settings,
            worker=worker,
            sessions=SessionStore(settings.max_sessions),
            cache=ClipCache(max_memory_bytes=settings.clip_cache_bytes),
        )
        try:
            yield
        finally:
            worker.close()

    app = FastAPI(title="lpstudio", version=_version(), lifespan=lifespan)

    @app.exception_handler(LPStudioError)
    async def _lp_error(request: Request, exc: LPStudioError) -> JSONResponse:
        return _error(exc)

    def lp(request: Request) -> AppState:
        return request.app.state.lp

    async def on_worker(state: AppState, fn):  # run model work on the worker thread
        return await asyncio.wrap_future(state.worker.call(fn))

    async def new_session(state: AppState, data: bytes | np.ndarray, name: str, face_index: int | None,
                          session_id: str | None = None) -> Session:  # fmt: skip
        from ..face.intake import load_image

        image = load_image(data, name=name) if isinstance(data, bytes) else None
        rgb = image.rgb if image is not None else data
        crop = state.settings.crop
        prepared = await on_worker(state, lambda: state.engine.prepare_source(rgb, crop=crop, face_index=face_index))
        digest = source_digest(rgb, crop=crop, face_index=face_index)
        session = make_session(prepared, rgb, name, digest, session_id)
        state.sessions.add(session)
        if state.settings.prerender:
            _prerender(state, session)
        return session

    # ------------------------------------------------------------------ pages
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_web_file("index.html").decode("utf-8"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        suffix = Path(name).suffix
        if "/" in name or suffix not in types:
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            return Response(_web_file(name), media_type=types[suffix])
        except FileNotFoundError:
            return JSONResponse({"error": "not found"}, status_code=404)

    # ------------------------------------------------------------------ info
    @app.get("/health", summary="Server and model status")
    async def health(request: Request) -> dict[str, Any]:
        state = lp(request)
        return {
            "status": "ok",
            "model_loaded": True,
            "device": str(state.engine.device),
            "dtype": str(state.engine.dtype).replace("torch.", ""),
            "backend": state.engine.backend.name,
            "backend_dtype": str(state.engine.backend.dtype).replace("torch.", ""),
            "crop": state.settings.crop,
            "fps": state.settings.fps,
            "idle_default": state.settings.idle_default,
            "sessions": len(state.sessions),
            "pending_frames": state.worker.pending_frames(),
            "render_fps": state.worker.measured_fps,
        }

    @app.get("/expressions", summary="Presets with Korean and English names")
    async def expressions() -> list[dict[str, Any]]:
        out = []
        for name, preset in PRESETS.items():
            label, emoji = BUTTONS.get(name, (preset.names_ko[0], ""))
            info = preset.to_json()
            info.update({"label": label, "emoji": emoji, "button": name in BUTTONS})
            out.append(info)
        return out

    @app.get("/params", summary="The 17 editing parameters")
    async def params() -> list[dict[str, Any]]:
        return [
            {"name": s.name, "min": s.minimum, "max": s.maximum, "neutral": s.neutral, "unit": s.unit, "label": s.label}
            for s in PARAM_SPECS
        ]

    # ------------------------------------------------------------------ sources
    @app.post("/session", summary="Start a session on the default portrait (or refresh an expired one)")
    async def create_session(request: Request, body: SessionRequest) -> dict[str, Any]:
        state = lp(request)
        path = _default_source(state.settings)
        session = await new_session(state, path.read_bytes(), path.name, None, body.session)
        return session.describe()

    @app.get("/source-image", summary="The portrait as currently shown (JPEG)")
    async def get_source_image(request: Request, session: str | None = None) -> Response:
        state = lp(request)
        if session is None:
            from ..face.intake import load_image

            rgb = load_image(_default_source(state.settings)).rgb
            return Response(encode_jpeg(display_image(rgb, state.settings.crop)), media_type="image/jpeg")
        return Response(state.sessions.get(session).display_jpeg, media_type="image/jpeg")

    @app.post("/source-image", summary="Upload a portrait photo; runs the face pipeline")
    async def upload_source_image(
        request: Request,
        file: UploadFile = File(..., description="a JPEG, PNG or WebP photo"),
        session: str | None = Form(None),
        face_index: int | None = Form(None),
    ) -> dict[str, Any]:
        state = lp(request)
        name = file.filename or "upload"
        if file.content_type and file.content_type not in ALLOWED_UPLOAD_TYPES:
            raise ImageError(
                f"{name}: files of type {file.content_type} are not accepted",
                hint="upload a JPEG, PNG or WebP photo",
            )
        data = await file.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise ImageError(
                f"{name} is larger than {state.settings.max_upload_bytes // (1024 * 1024)} MB",
                hint="upload a smaller photo",
            )
        if not data:
            raise ImageError(f"{name} is empty", hint="choose a photo file")
        from ..face.intake import load_image

        image = load_image(data, name=name, max_pixels=state.settings.max_upload_pixels)
        session_obj = await new_session(state, image.rgb, name, face_index, session)
        return session_obj.describe()

    # ------------------------------------------------------------------ rendering
    @app.post("/render", summary="One parameter set -> one frame (JPEG), for live slider preview")
    async def render(request: Request, body: RenderRequest) -> Response:
        state = lp(request)
        session = state.sessions.get(body.session)
        params = session.state.neutral_params().replace(**{k: v for k, v in body.params.items()})
        frames = await _render_frames(state, session, [params], PRIORITY_INTERACTIVE)
        jpeg = await asyncio.to_thread(lambda: encode_jpeg(session.compose(frames[0])))
        return Response(jpeg, media_type="image/jpeg")

    @app.post("/generate", summary="A preset, command or idle loop -> frames streamed as NDJSON")
    async def generate(request: Request, body: GenerateRequest) -> StreamingResponse:
        state = lp(request)
        session = state.sessions.get(body.session)
        fps = body.fps or state.settings.fps
        idle = state.settings.idle_default if body.idle is None else body.idle
        timeline, steps, plan = _timeline_for(body, idle)
        base = session.state.neutral_params()
        params = timeline.sample(fps, base)
        key = clip_key(session.digest, timeline.key(fps, base), {"engine": _engine_key(state)})
        priority = PRIORITY_BACKGROUND if body.idle_loop else PRIORITY_CLIP
        pending = state.background.pop(key, None)
        if pending is not None:  # the user wants it now: render it in the foreground instead
            pending.cancel()
        received = time.perf_counter()
        stream = _stream_clip(state, session, params, key, priority, fps, steps, plan, received, request)
        return StreamingResponse(stream, media_type="application/x-ndjson; charset=utf-8")

    register_live(app)  # the live mirror's WebSocket (server/live.py)
    return app


def _version() -> str:
    from .. import __version__

    return __version__


def _web_file(name: str) -> bytes:
    return resources.files("lpstudio").joinpath("web", name).read_bytes()


def _engine_key(state: AppState) -> str:
    e = state.engine
    return f"{e.device}|{e.dtype}|{e.backend.name}|{e.backend.dtype}|crop={state.settings.crop}"


def _timeline_for(body: GenerateRequest, idle: bool) -> tuple[Timeline, list[dict], dict | None]:
    """What to render for a request, with its step list for the page."""
    if body.idle_loop:
        timeline = idle_timeline(IDLE_LOOP_MS, body.seed)
        plan = None
    elif body.preset:
        preset = get_preset(body.preset)
        timeline = Action(preset.name, body.intensity, body.speed, 1, body.preset).timeline()
        plan = {"text": body.preset, "groups": [[{"preset": preset.name, "intensity": body.intensity,
                                                  "speed": body.speed, "repeat": 1}]]}  # fmt: skip
        if idle:
            from ..expressions.idle import with_idle

            timeline = with_idle(timeline, body.seed, tail_ms=600.0)
    elif body.command and body.command.strip():
        command_plan, timeline = build_timeline(body.command, idle=idle, seed=body.seed)
        plan = command_plan.to_json()
    else:
        raise CommandError("nothing to do: give a preset, a command or idle_loop", hint='e.g. {"command": "웃어줘"}')
    return timeline, [s.to_json() for s in timeline.steps], plan


def _prerender(state: AppState, session: Session) -> None:
    """Queue the button presets of a new source at background priority, in button order.

    Their frames land in the clip cache under the same keys ``/generate`` computes,
    so a click on a pre-rendered preset replays at once.
    """
    fps = state.settings.fps
    base = session.state.neutral_params()
    for name in BUTTONS:
        request = GenerateRequest(session=session.id, preset=name)
        timeline, _, _ = _timeline_for(request, state.settings.idle_default)
        params = timeline.sample(fps, base)
        key = clip_key(session.digest, timeline.key(fps, base), {"engine": _engine_key(state)})
        if key in state.cache or key in state.background:
            continue
        frames: list[np.ndarray | None] = [None] * len(params)

        def on_frame(i: int, frame: np.ndarray, frames: list = frames) -> None:
            frames[i] = frame

        def on_done(exc: BaseException | None, key: str = key, frames: list = frames) -> None:
            job = state.background.pop(key, None)
            if exc is None and job is not None and not job.cancelled.is_set() and all(f is not None for f in frames):
                state.cache.put(key, np.stack(frames))

        job = RenderJob(session.state, params, on_frame, on_done, priority=PRIORITY_BACKGROUND)
        state.background[key] = job
        state.worker.submit(job)


async def _render_frames(
    state: AppState, session: Session, params: list[EditParams], priority: int
) -> list[np.ndarray]:
    """Render through the worker and wait for all frames (used for single previews)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()
    frames: dict[int, np.ndarray] = {}

    def on_frame(i: int, frame: np.ndarray) -> None:
        frames[i] = frame

    def on_done(exc: BaseException | None) -> None:
        loop.call_soon_threadsafe(lambda: done.done() or (done.set_exception(exc) if exc else done.set_result(None)))

    job = state.worker.submit(RenderJob(session.state, params, on_frame, on_done, priority=priority))
    try:
        await done
    finally:
        job.cancel()
    return [frames[i] for i in range(len(params))]


def _line(obj: dict) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


async def _stream_clip(state: AppState, session: Session, params: list[EditParams], key: str, priority: int,
                       fps: float, steps: list[dict], plan: dict | None, received: float,
                       request: Request) -> AsyncIterator[bytes]:  # fmt: skip
    """NDJSON lines: start, frames as they are rendered (or from the cache), end. Disconnect cancels."""
    n = len(params)
    yield _line({"type": "start", "frames": n, "fps": fps, "steps": steps, "plan": plan,
                 "width": session.display.shape[1], "height": session.display.shape[0]})  # fmt: skip
    cached = state.cache.get(key)
    queue: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()
    job: RenderJob | None = None
    if cached is None:
        rendered: list[np.ndarray] = [None] * n  # type: ignore[list-item]

        def on_frame(i: int, frame: np.ndarray) -> None:
            rendered[i] = frame
            loop.call_soon_threadsafe(queue.put_nowait, ("frame", i, frame))

        def on_done(exc: BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("done", exc, None))

        job = state.worker.submit(RenderJob(session.state, params, on_frame, on_done, priority=priority))
    else:
        for i, frame in enumerate(cached):
            queue.put_nowait(("frame", i, frame))
        queue.put_nowait(("done", None, None))
    first_ms: float | None = None
    sent = 0
    started = time.perf_counter()
    try:
        while True:
            kind, a, b = await queue.get()
            if kind == "done":
                if a is not None:
                    err = a if isinstance(a, LPStudioError) else None
                    yield _line({"type": "error", "error": err.message if err else f"rendering failed: {a}",
                                 "hint": err.hint if err else None})  # fmt: skip
                    return
                break
            jpeg = await asyncio.to_thread(lambda f=b: encode_jpeg(session.compose(f)))
            if first_ms is None:
                first_ms = (time.perf_counter() - received) * 1000
            sent += 1
            yield _line({"type": "frame", "index": a, "jpeg": base64.b64encode(jpeg).decode("ascii")})
            if await request.is_disconnected():
                return
        elapsed = time.perf_counter() - started
        if cached is None and job is not None and not job.cancelled.is_set():
            state.cache.put(key, np.stack(rendered))
        yield _line({"type": "end", "frames": sent, "cached": cached is not None,
                     "first_frame_ms": round(first_ms or 0.0, 1),
                     "render_fps": round(sent / elapsed, 2) if elapsed > 0 else None})  # fmt: skip
    finally:
        if job is not None:
            job.cancel()
