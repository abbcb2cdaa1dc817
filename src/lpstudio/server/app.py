"""The living-portrait web app: FastAPI routes over one engine and one render worker.

Frames of ``POST /generate`` stream to the page as NDJSON lines (one JSON object
per line: ``start``, then ``frame`` objects with a base64 JPEG of the portrait as
shown, then ``end``, or ``error``), so playback starts with the first frames.

Routes are grouped by what they serve (page, info, sources, rendering, operations);
the work behind them lives in modules: :mod:`.limits` and :mod:`.admission` (bounds),
:mod:`.intake` (photos), :mod:`.plans` (what a request renders), :mod:`.streams`
(shared renders and bounded streams), :mod:`.http` (guards), :mod:`.metrics`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.middleware.cors import CORSMiddleware

from ..errors import LPStudioError
from ..expressions.custom import using_custom
from ..expressions.presets import PRESETS
from ..params import PARAM_SPECS, EditParams
from ..speech.espeak import speech_available
from .alive import (
    close_page,
    forget_viewer,
    health_info,
    new_clip_id,
    paced_plan,
    register_alive,
    register_viewer,
    start_background,
)
from .crop_routes import CROP_UPLOAD_PATH, register_crop_routes
from .drive_routes import body_limit as drive_body_limit
from .drive_routes import register_drive_routes
from .faces import form_faces, generate_audio_faces, generate_faces, register_faces, render_faces
from .favicon import register_favicon
from .http import BodyLimitMiddleware, GuardMiddleware, TicketBook
from .intake import default_image, default_source_path, default_view, open_source, read_photo
from .keep_routes import DOWNLOAD_PHOTO_PATH, keep_of, register_keep, session_base, session_presets
from .limits import ServiceLimits
from .live import LIVE_PATH, register_live
from .metrics import CONTENT_TYPE, AccessLogMiddleware
from .plans import (
    MAX_SEED,
    ClipPlan,
    GenerateRequest,
    PlanningSlots,
    RenderRequest,
    clip_cache_key,
    plan_clip,
    sample_clip,
    speech_key,
    speech_plan,
)
from .responses import install_error_handlers
from .sessions import Source, encode_jpeg
from .settings import ServerSettings
from .speech import SpeechDesk, SpeechMemo, check_audio_upload, request_speaks, uploaded_speech
from .state import AppState, WorkerFactory, build_state
from .streams import NDJSONResponse, Viewer
from .video_source_routes import body_limit as video_source_body_limit
from .video_source_routes import close_video_jobs, register_video_source_routes
from .worker import ANONYMOUS_CLIENT, PRIORITY_BACKGROUND, PRIORITY_INTERACTIVE, render_frames

__all__ = ["BUTTONS", "AppState", "ServerSettings", "ServiceLimits", "create_app"]

log = logging.getLogger(__name__)

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
GENERATE_AUDIO_PATH = "/generate-audio"
"""Where the page uploads speech audio for the portrait to say."""
MAX_FILENAME_CHARS = 200
MAX_FACE_INDEX = 63


def lp(request: Request) -> AppState:
    """The app's state from a request (for route modules)."""
    return request.app.state.lp


def client_of(request: Request) -> str:
    """Who sent a request, for fair shares and per-client quotas: the peer's address.

    Behind a reverse proxy every client has the proxy's address (run uvicorn with ``--proxy-headers``
    and ``--forwarded-allow-ips`` so the address is the client's own).
    """
    return request.client.host if request.client is not None else "unknown"


# ---------------------------------------------------------------------- app
def create_app(
    engine: Any, settings: ServerSettings | None = None, *, make_worker: WorkerFactory | None = None
) -> FastAPI:
    """The app around a loaded engine (the CLI loads it before serving, so bad weights never start a server).

    ``make_worker`` makes the render part pluggable: by default one local worker thread owns
    ``engine``; :mod:`lpstudio.server.ray_app` passes one that sends frames to Ray Serve replicas
    (``engine`` then only describes them), so routes, limits and the NDJSON protocol stay the same.
    """
    settings = settings or ServerSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = build_state(engine, settings, make_worker)
        app.state.speech_available = await asyncio.to_thread(speech_available)  # loads eSpeak NG once
        app.state.speech_memo = SpeechMemo(settings.limits.speech_memo_bytes)
        app.state.speech_desk = SpeechDesk(
            settings.limits.max_pending_speech, settings.limits.retry_after_s, on_reject=state.metrics.reject
        )
        app.state.plan_slots = PlanningSlots(
            settings.limits.max_plans,
            queue=settings.limits.max_plan_queue,
            retry_after_s=settings.limits.retry_after_s,
            on_reject=state.metrics.reject,
        )
        if settings.prerender:
            tasks: set[asyncio.Task] = set()

            def on_new_source(source: Source) -> None:
                task = state.loop.create_task(_prerender(state, source, app.state.speech_memo, app.state.speech_desk))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

            state.on_new_source = on_new_source
        app.state.lp = state
        background = start_background(state, settings.idle_pieces)  # idle segments, gaze atlas (alive.py)
        try:
            yield
        finally:
            await background.close()
            await close_video_jobs(app)  # before the worker: jobs stop, their files go (server/video_jobs.py)
            app.state.speech_desk.close()
            state.worker.close()
            state.encoder.close()

    app = FastAPI(title="lpstudio", version=_version(), lifespan=lifespan)
    # lifecycle.serve listens with this send buffer per connection, so unread streams stall (streams.py).
    app.state.socket_send_buffer_bytes = settings.limits.stream_socket_buffer_bytes
    app.state.live_tickets = TicketBook()  # the key's stand-in on the live WebSocket (POST /live/ticket)
    install_error_handlers(app)
    _middleware(app, settings)
    _page_routes(app)
    _info_routes(app)
    _source_routes(app)
    _render_routes(app)
    register_live(app)  # the live mirror's WebSocket (server/live.py)
    register_keep(app)  # downloads, base, saved expressions, face regions (server/keep_routes.py)
    register_alive(app)  # idle segments, gaze atlas, cancel, page close (server/alive.py)
    register_favicon(app)  # /favicon.ico (server/favicon.py)
    register_crop_routes(app)  # GET /crop-options, POST /source-image/crop (server/crop_routes.py)
    register_faces(app)  # GET /faces (server/faces.py)
    register_drive_routes(app)  # POST /drive and POST /edit (server/drive_routes.py)
    register_video_source_routes(app)  # a video as the portrait: /video-source (server/video_source_routes.py)
    return app


def _version() -> str:
    from .. import __version__

    return __version__


def _middleware(app: FastAPI, settings: ServerSettings) -> None:
    """Outermost first: access log, guards (headers, key, origin), CORS when allowed, body limits."""
    limits = settings.limits

    def body_limit(path: str) -> int:
        if path in ("/source-image", CROP_UPLOAD_PATH, DOWNLOAD_PHOTO_PATH):  # a photo download may resend the photo
            return limits.max_upload_body_bytes
        if path == GENERATE_AUDIO_PATH:
            return limits.max_audio_upload_body_bytes
        return drive_body_limit(path, limits) or video_source_body_limit(path, limits) or limits.max_json_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.allowed_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "x-api-key", "authorization"],
        )
    app.add_middleware(
        GuardMiddleware,
        api_key=settings.api_key,
        allowed_origins=settings.allowed_origins,
        allowed_hosts=settings.allowed_hosts,
        tickets=app.state.live_tickets,
        ticket_paths=(LIVE_PATH,),
    )
    app.add_middleware(AccessLogMiddleware, metrics=lambda: getattr(app.state, "lp", None) and app.state.lp.metrics)


# ---------------------------------------------------------------------- page
def _web_file(name: str) -> bytes:
    return resources.files("lpstudio").joinpath("web", name).read_bytes()


def _page_routes(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(_web_file("index.html").decode("utf-8"), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        suffix = Path(name).suffix
        if "/" in name or "\\" in name or suffix not in types:
            return JSONResponse({"error": "not found"}, status_code=404)
        try:
            return Response(_web_file(name), media_type=types[suffix])
        except (FileNotFoundError, IsADirectoryError, OSError):
            return JSONResponse({"error": "not found"}, status_code=404)


# ---------------------------------------------------------------------- info
def _info_routes(app: FastAPI) -> None:
    @app.get("/health", summary="Server and model status (503 while draining before a stop)")
    async def health(request: Request) -> JSONResponse:
        state = lp(request)
        engine = state.engine
        admitted = state.admission.snapshot()
        body = {
            "status": "draining" if admitted["draining"] else "ok",
            "model_loaded": True,
            "device": str(engine.device),
            "dtype": str(engine.dtype).replace("torch.", ""),
            "backend": engine.backend.name,
            "backend_dtype": str(engine.backend.dtype).replace("torch.", ""),
            "crop": state.settings.crop,
            "fps": state.settings.fps,
            "idle_default": state.settings.idle_default,
            "idle_pieces": state.settings.idle_pieces,  # the page plays idle from segments (else one idle clip)
            "sessions": len(state.sessions),
            "prepared_photos": len(state.sources),
            "pending_frames": admitted["pending_frames"],
            "queued_jobs": admitted["jobs"],
            "open_streams": admitted["streams"],
            "render_fps": state.worker.measured_fps,
            "max_clip_s": state.limits.max_clip_ms / 1000,
            "speech": bool(getattr(request.app.state, "speech_available", False)),
            "max_audio_upload_mb": state.limits.max_audio_upload_bytes / 2**20,
            **health_info(state),  # background work apart from clips
        }
        extra = getattr(state.worker, "health_info", None)  # a distributed renderer lists its replicas
        if extra is not None:
            body.update(await extra())
        return JSONResponse(body, status_code=503 if admitted["draining"] else 200)

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

    @app.get("/metrics", summary="Prometheus metrics (text format)")
    async def metrics(request: Request) -> Response:
        return Response(lp(request).metrics.render(), media_type=CONTENT_TYPE)


# ---------------------------------------------------------------------- sources
def _clean_name(name: str | None) -> str:
    text = "".join(c for c in (name or "upload") if c.isprintable())
    return (text or "upload")[:MAX_FILENAME_CHARS]


def _source_routes(app: FastAPI) -> None:
    @app.post("/session", summary="Start a session on the default portrait (a new server-issued id every time)")
    async def create_session(request: Request) -> dict[str, Any]:
        # Any body (for instance a client-chosen "session") is ignored: ids are issued here only.
        state = lp(request)
        state.admission.check_open()
        rgb, digest = await default_image(state)
        source = await open_source(state, rgb, digest, None)
        return state.sessions.new(digest, default_source_path(state).name, client_of(request)).describe(source)

    @app.get("/source-image", summary="The portrait as currently shown (JPEG)")
    async def get_source_image(request: Request, session: str | None = None) -> Response:
        state = lp(request)
        if session is None:
            return Response(await default_view(state), media_type="image/jpeg")
        _, source = state.resolve(session)
        return Response(source.display_jpeg, media_type="image/jpeg")

    @app.post("/source-image", summary="Upload a portrait photo; runs the face pipeline")
    async def upload_source_image(
        request: Request,
        file: UploadFile = File(..., description="a JPEG, PNG or WebP photo"),
        face_index: int | None = Form(None, ge=0, le=MAX_FACE_INDEX),
        replaces: str | None = Form(None, max_length=256, description="the session this photo replaces (closed)"),
    ) -> dict[str, Any]:
        state = lp(request)
        name = _clean_name(file.filename)
        rgb, digest = await read_photo(state, file, name, face_index)
        source = await open_source(state, rgb, digest, face_index)
        client = client_of(request)
        state.sources.claim(source, client)  # counts for this client's quota (its own oldest goes past it)
        described = state.sessions.new(digest, name, client).describe(source)
        if replaces:
            close_page(state, replaces)  # the old photo's background work stops now
        return described


# ---------------------------------------------------------------------- rendering
def _render_routes(app: FastAPI) -> None:
    @app.post("/render", summary="One parameter set -> one frame (JPEG), for live slider preview")
    async def render(request: Request, body: RenderRequest) -> Response:
        state = lp(request)
        state.admission.check_open()
        _, source = state.resolve(body.session)
        if body.faces is not None:  # several faces in one batch (server/faces.py)
            return await render_faces(state, source, body, client_of(request))
        params = session_base(state, body.session, source).replace(**dict(body.params))
        frame = await _render_one(state, source, params, client_of(request))
        jpeg = await state.off_loop(lambda: encode_jpeg(source.compose(frame)))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.post("/generate", summary="A preset, command or idle loop -> frames streamed as NDJSON")
    async def generate(request: Request, body: GenerateRequest) -> NDJSONResponse:
        received = time.perf_counter()
        state = lp(request)
        state.admission.check_open()
        _, source = state.resolve(body.session)
        if body.faces is not None:  # several faces, each frame's in one batch (server/faces.py)
            return await generate_faces(request, state, source, body, client_of(request), received)
        fps = body.fps or state.settings.fps
        idle = state.settings.idle_default if body.idle is None else body.idle
        limits = state.limits
        memo = request.app.state.speech_memo
        plan_slots = request.app.state.plan_slots
        saved = session_presets(state, body.session)  # the page's own expression names (server/keep_routes.py)
        if saved and body.command:
            memo = None  # its saved names mean this page's values: its speech is not shared with other pages

        def must_speak() -> bool:  # a parse, not a synthesis
            with using_custom(saved):
                speaks = request_speaks(body.preset, body.command, idle_loop=body.idle_loop, limits=limits)
            return speaks and (memo is None or speech_key(body, fps=fps, idle=idle, limits=limits) not in memo)

        def make() -> ClipPlan:
            with using_custom(saved):
                return plan_clip(body, fps=fps, idle=idle, limits=limits, memo=memo)

        if await plan_slots.run(state.off_loop, must_speak):  # admitted (or 429) before eSpeak NG runs
            plan = await request.app.state.speech_desk.run(make)  # on the speech thread, not the shared pool
        else:
            plan = await plan_slots.run(state.off_loop, make)
        if not body.idle_loop:
            plan = await paced_plan(state, source, plan)  # starts within start_within_s (pacing.py)
        return await _stream(state, source, plan, received, client_of(request), body.session)

    @app.post(
        GENERATE_AUDIO_PATH,
        summary="Upload speech audio (wav/mp3/m4a/ogg/flac) -> the portrait says it: frames streamed as NDJSON, "
        "the audio in the start line",
    )
    async def generate_audio(
        request: Request,
        session: str = Form(..., max_length=256),
        file: UploadFile = File(..., description="speech audio, at most the clip limit long"),
        idle: bool | None = Form(None),
        seed: int = Form(0, ge=0, le=MAX_SEED),
        fps: float | None = Form(None, gt=0.0, le=120.0, allow_inf_nan=False),
        faces: str | None = Form(None, max_length=64, description="'all' or face numbers '0,1': every one says it"),
    ) -> NDJSONResponse:
        received = time.perf_counter()
        state = lp(request)
        state.admission.check_open()
        _, source = state.resolve(session)
        indices = form_faces(state, source, faces)  # a bad choice is a 400 before decoding (server/faces.py)
        limits = state.limits
        rate = fps or state.settings.fps
        limits.check_fps(rate)
        with_idle = state.settings.idle_default if idle is None else idle
        name = _clean_name(file.filename)
        ticket = state.admission.admit_source()  # decoding is bounded like a photo's
        try:
            data = await file.read(limits.max_audio_upload_bytes + 1)
            check_audio_upload(name, file.content_type, data, limits)
            async with state.decode_slots:
                clip = await state.off_loop(
                    lambda payload=data: uploaded_speech(payload, name, idle=with_idle, seed=seed, limits=limits)
                )
            del data
            plan = await state.off_loop(lambda: speech_plan(clip, rate, limits))
        finally:
            ticket.release()
        if indices is not None:  # every chosen face lip-syncs it, a frame's faces in one batch (server/faces.py)
            return await generate_audio_faces(request, state, source, plan, indices, session=session,
                                              client=client_of(request), received=received)  # fmt: skip
        return await _stream(state, source, plan, received, client_of(request), session)


async def _stream(
    state: AppState,
    source: Source,
    plan: ClipPlan,
    received: float,
    client: str = ANONYMOUS_CLIENT,
    session: str | None = None,
) -> NDJSONResponse:
    """The NDJSON stream of a planned clip: cached, joined to an identical render, or rendered now.

    ``client`` (the address) and ``session``: whose stream it is, for the per-client stream caps and the
    worker's fair shares.
    """
    base = session_base(state, session, source)  # the page's base when it set one ("use as base")
    key = await state.off_loop(lambda: clip_cache_key(source.digest, plan, base, state.settings_key()))
    stream_ticket = state.admission.admit_stream(client, session)
    try:
        clip, how = await _clip_for(state, key, source, plan, base, client)
        h, w = source.display.shape[:2]
        clip_id = new_clip_id()  # POST /generate/cancel stops this stream by it; GET /download/clip finds it
        start = {**plan.start_info(), "width": w, "height": h, "clip": clip_id}
        if session is not None and plan.priority != PRIORITY_BACKGROUND:  # the MP4 download's (keep_routes.py)
            audio = None if plan.speech is None else plan.speech.clip.audio
            keep_of(state).remember(session, clip, plan.fps, audio, clip_id=clip_id)
        viewer = Viewer(
            clip,
            start,
            received,
            shared=how == "shared",
            on_first_frame=state.metrics.first_frame_ms.observe,
            audio_json=plan.audio_json,
        )
    except BaseException:
        stream_ticket.release()
        raise
    register_viewer(state, session, clip_id, viewer)
    state.metrics.streams.labels(how=how).inc()

    def closed() -> None:
        stream_ticket.release()
        forget_viewer(state, clip_id)
        if viewer.stalled:
            state.metrics.stalled.inc()

    return NDJSONResponse(viewer, state.limits.stall_timeout_s, closed)


async def _clip_for(  # noqa: ANN202
    state: AppState, key: str, source: Source, plan: ClipPlan, base: EditParams, client: str = ANONYMOUS_CLIENT
):
    """The clip to stream and how it is served: ``cached``, ``shared`` (joined a render) or ``rendered``."""
    clip = state.hub.find(key)
    if clip is not None:
        if clip.cached:
            return clip, "cached"
        state.hub.joined += 1
        state.hub.bump(clip, plan.priority)
        return clip, "shared"
    job_ticket = state.admission.admit_job(plan.frame_count)
    try:
        params = await state.off_loop(lambda: sample_clip(plan, base))
    except BaseException:
        job_ticket.release()
        raise
    clip = state.hub.find(key)  # an identical request may have started it meanwhile
    if clip is not None:
        job_ticket.release()
        if clip.cached:
            return clip, "cached"
        state.hub.joined += 1
        state.hub.bump(clip, plan.priority)
        return clip, "shared"
    return state.hub.start(key, source, params, plan.priority, job_ticket, client=client), "rendered"


async def _render_one(state: AppState, source: Source, params: EditParams, client: str):  # noqa: ANN202
    """One interactive frame through the worker (admitted as a one-frame job), in ``client``'s fair share."""
    ticket = state.admission.admit_job(1)
    source.active += 1
    try:
        frames = await render_frames(
            state.worker,
            source.state,
            [params],
            priority=PRIORITY_INTERACTIVE,
            what="preview",
            ticket=ticket,
            digest=source.digest,
            client=client,
        )
    finally:
        source.active -= 1
    return frames[0]


async def _prerender(
    state: AppState, source: Source, memo: SpeechMemo | None = None, desk: SpeechDesk | None = None
) -> None:
    """Render the button presets of a new photo at background priority, while the server has room.

    Their lines land in the clip cache under the keys ``/generate`` computes, so a click
    on a pre-rendered preset replays at once (or joins the render still in progress).
    The talk button's speech is synthesised first on the speech thread (``desk``), never on
    the shared threads; when the speech queue is full it is not pre-rendered.
    """
    settings = state.settings
    base = source.state.neutral_params()
    names = list(BUTTONS)
    if memo is not None and desk is not None:
        talk = GenerateRequest(session="-", preset="talk")
        fps, idle, limits = settings.fps, settings.idle_default, settings.limits
        if speech_key(talk, fps=fps, idle=idle, limits=limits) not in memo:
            try:
                await desk.run(lambda: plan_clip(talk, fps=fps, idle=idle, limits=limits, memo=memo))
            except LPStudioError as exc:  # busy, or no eSpeak NG here
                log.info("not pre-rendering the talk button: %s", exc.message)
                names = [n for n in names if n != "talk"]

    def plans() -> list:
        out = []
        for name in names:
            try:
                plan = plan_clip(
                    GenerateRequest(session="-", preset=name),
                    fps=settings.fps,
                    idle=settings.idle_default,
                    limits=settings.limits,
                    memo=memo,
                )
            except LPStudioError as exc:  # e.g. the talk button on a server without eSpeak NG
                log.info("not pre-rendering %s: %s", name, exc.message)
                continue
            out.append((clip_cache_key(source.digest, plan, base, state.settings_key()), plan))
        return out

    for key, plan in await state.off_loop(plans):
        if key in state.hub.cache or key in state.hub.clips:
            continue
        ticket = state.admission.try_admit_background(plan.frame_count)
        if ticket is None:
            return  # busy: users first
        params = await state.off_loop(lambda plan=plan: sample_clip(plan, base))
        if key in state.hub.clips:
            ticket.release()
            continue
        state.hub.start(key, source, params, PRIORITY_BACKGROUND, ticket, keep=True)
