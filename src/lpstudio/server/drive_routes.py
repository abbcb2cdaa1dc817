"""The CLI's other jobs over HTTP: ``POST /drive`` (a driving video or motion template) and ``POST /edit``
(the expression of another photo), registered on the app by :func:`register_drive_routes`.

Each request is bounded before work starts: the body by the body-limit middleware
(``max_drive_body_bytes`` / ``max_upload_body_bytes``), the upload by its size and first bytes
(:mod:`.drive_intake`), its decode by an admission slot and the decode semaphore on a thread, its length
by the header and again while decoding; the face crop and motion extraction run on the render worker's
thread; the frames stream as NDJSON through the same hub as a ``/generate`` clip (cached, shared by
identical requests, per-client stream caps, admitted as a job of N frames).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Any

import numpy as np
import torch
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from ..errors import BackendUnavailableError
from ..face.intake import load_image
from .drive_intake import (
    check_drive_upload,
    decode_driving_video,
    expression_frame,
    load_template_bytes,
    template_keypoints,
    video_keypoints,
)
from .faces import FaceView, form_faces
from .intake import check_upload, decode_options
from .sessions import Source, encode_jpeg
from .state import AppState
from .streams import NDJSONResponse, Viewer
from .worker import ANONYMOUS_CLIENT, PRIORITY_CLIP, RenderWorker

DRIVE_PATH = "/drive"
EDIT_PATH = "/edit"
MAX_NAME_CHARS = 200
TEMPLATE_FPS_CAP = 60.0
"""A template's own frame rate is kept, at most this (the page plays at the clip's ``fps``)."""


class LocalRendererOnlyError(BackendUnavailableError):
    """Driving keypoints are rendered by the local worker only (a Ray replica edits parameters itself)."""

    http_status = 501


def _state(request: Request) -> AppState:
    state: AppState = request.app.state.lp
    if not isinstance(state.worker, RenderWorker):
        raise LocalRendererOnlyError(
            "this server renders on Ray Serve replicas, which do not take uploaded driving motion or expressions",
            hint="run `lpstudio serve` without --ray for the upload tabs",
        )
    return state


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def _clean(name: str | None) -> str:
    text = "".join(c for c in (name or "upload") if c.isprintable())
    return (text or "upload")[:MAX_NAME_CHARS]


def body_limit(path: str, limits: Any) -> int | None:
    """The body limit of this module's routes (None: not one of them)."""
    if path == DRIVE_PATH:
        return limits.max_drive_body_bytes
    if path == EDIT_PATH:
        return limits.max_upload_body_bytes
    return None


def register_drive_routes(app: FastAPI) -> None:
    """Add ``POST /drive`` and ``POST /edit`` to ``app`` (behind its guard and limits like every route)."""

    @app.post(
        DRIVE_PATH,
        summary="Drive the session's photo with an uploaded driving video (mp4/mov/webm) or motion template "
        "(.npz) -> frames streamed as NDJSON",
    )
    async def drive(
        request: Request,
        session: str = Form(..., max_length=256),
        file: UploadFile = File(..., description="a driving video (one face) or an lpstudio .npz motion template"),
        faces: str | None = Form(None, max_length=64, description="'all' or face numbers '0,1': every one is driven"),
    ) -> NDJSONResponse:
        received = time.perf_counter()
        state = _state(request)
        state.admission.check_open()
        _, source = state.resolve(session)
        indices = form_faces(state, source, faces)  # a bad choice is a 400 before any decoding (server/faces.py)
        group = None if indices is None else [source.face_states[i] for i in indices]
        limits = state.limits
        name = _clean(file.filename)
        client = _client(request)
        ticket = state.admission.admit_source()  # one bounded decode slot, like a photo's
        try:
            data = await file.read(limits.max_drive_upload_bytes + 1)
            kind = check_drive_upload(name, data, limits)
            async with state.decode_slots:
                if kind == "video":
                    video = await state.off_loop(lambda payload=data: decode_driving_video(payload, name, limits))
                    fps = video.fps
                    crop = state.settings.crop
                    work = lambda: video_keypoints(state.engine, source.state, video, crop=crop, name=name,  # noqa: E731
                                                   faces=group)  # fmt: skip
                else:
                    track = await state.off_loop(lambda payload=data: load_template_bytes(payload, name, limits))
                    fps = min(float(track.fps), TEMPLATE_FPS_CAP)
                    work = lambda: template_keypoints(state.engine, source.state, track, faces=group)  # noqa: E731
            del data
            source.active += 1
            try:
                x_d = await asyncio.wrap_future(state.worker.call(work))  # crop + motion on the model's thread
            finally:
                source.active -= 1
        finally:
            ticket.release()
        return await _stream_keypoints(state, source, x_d, fps, received, client, session, kind, indices)

    @app.post(
        EDIT_PATH,
        summary="Copy the expression (and optionally the head pose) of an uploaded photo onto the session's photo "
        "-> the still as shown (JPEG)",
    )
    async def edit(
        request: Request,
        session: str = Form(..., max_length=256),
        expression_from: UploadFile = File(..., description="a JPEG, PNG or WebP photo with one face"),
        pose: bool = Form(False, description="copy its head pose too"),
    ) -> Response:
        state = _state(request)
        state.admission.check_open()
        _, source = state.resolve(session)
        name = _clean(expression_from.filename)
        options = decode_options(state.limits)
        ticket = state.admission.admit_source()
        try:
            data = await expression_from.read(state.limits.max_upload_bytes + 1)
            check_upload(state, name, expression_from.content_type, data)
            async with state.decode_slots:
                rgb = await state.off_loop(lambda payload=data: load_image(payload, name=name, **options).rgb)
            del data
        finally:
            ticket.release()
        crop = state.settings.crop
        job = state.admission.admit_job(1)
        source.active += 1
        try:
            frame = await asyncio.wrap_future(
                state.worker.call(lambda: expression_frame(state.engine, source.state, rgb, pose=pose, crop=crop))
            )
        finally:
            source.active -= 1
            job.release()
        jpeg = await state.off_loop(lambda: encode_jpeg(source.compose(frame)))
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def _key(source: Source, x_d: torch.Tensor, fps: float, settings_key: str, indices: list[int] | None = None) -> str:
    digest = hashlib.sha256()
    for part in (b"drive", source.digest.encode(), settings_key.encode(), repr(fps).encode(), repr(indices).encode()):
        digest.update(part)
    digest.update(np.ascontiguousarray(x_d.detach().float().cpu().numpy()).tobytes())
    return digest.hexdigest()


async def _stream_keypoints(
    state: AppState,
    source: Source,
    x_d: torch.Tensor,
    fps: float,
    received: float,
    client: str = ANONYMOUS_CLIENT,
    session: str | None = None,
    kind: str = "video",
    indices: list[int] | None = None,
) -> NDJSONResponse:
    """Stream the frames of driving keypoints ``x_d`` (N,21,3) on ``source`` like a ``/generate`` clip.

    ``indices``: faces of the photo driven together, ``x_d`` (N, F, 21, 3): a frame's faces in one batch.
    """
    key = await state.off_loop(lambda: _key(source, x_d, fps, state.settings_key(), indices))
    stream_ticket = state.admission.admit_stream(client, session)
    try:
        clip = state.hub.find(key)
        how = "cached" if clip is not None and clip.cached else "shared"
        if clip is None:
            n = int(x_d.shape[0])
            job_ticket = state.admission.admit_job(n * (1 if indices is None else len(indices)))  # renderer rows
            base = source.state.neutral_params()
            group: dict[str, Any] = {}
            if indices is not None:
                group = {"faces": [source.face_states[i] for i in indices],
                         "face_params": [[source.face_states[i].neutral_params()] * n for i in indices]}  # fmt: skip
            view = source if indices is None else FaceView(source, indices)
            clip = state.hub.start(key, view, [base] * n, PRIORITY_CLIP, job_ticket, client=client, x_d=x_d, **group)
            how = "rendered"
        else:
            state.hub.joined += how == "shared"
        h, w = source.display.shape[:2]
        start = {"fps": fps, "steps": [], "plan": None, "speaks": False, "drive": kind, "width": w, "height": h}
        if indices is not None:
            start["faces"] = indices
        viewer = Viewer(
            clip, start, received, shared=how == "shared", on_first_frame=state.metrics.first_frame_ms.observe
        )
    except BaseException:
        stream_ticket.release()
        raise
    state.metrics.streams.labels(how=how).inc()

    def closed() -> None:
        stream_ticket.release()
        if viewer.stalled:
            state.metrics.stalled.inc()

    return NDJSONResponse(viewer, state.limits.stall_timeout_s, closed)
