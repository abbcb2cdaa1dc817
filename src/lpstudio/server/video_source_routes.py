"""A video as the portrait over HTTP (issue 21): ``POST /video-source`` and its status, result and cancel.

* ``POST /video-source`` (multipart: ``session``, ``source`` = the source video, ``driving`` = a driving
  video or ``.npz`` motion template, or instead ``command`` = an expression command such as "웃어줘"
  layered over the video's own motion, or instead a dub: ``text`` = words to say (eSpeak NG, on the
  server's speech desk, voice by script) or ``speech`` = an uploaded speech audio file (checked like
  ``/generate-audio``'s), whose mouth alone is rendered over the video and whose audio replaces the
  video's (:mod:`.video_dub`); exactly one of driving/command/text/speech; options ``reference_frame``
  (a number or ``auto``), ``smooth``, ``normalize_lip``, ``audio`` = ``source`` | ``driving`` | ``none``)
  -> 202 ``{"id", "status_url", "fps", "total"}`` once every check that needs no model has passed (a
  speech longer than the video is a 400 here); the job then runs in small steps behind the viewers
  (:mod:`.video_jobs`);
* ``GET /video-source/<id>?session=...`` -> ``{"state", "phase", "progress", "total", ...}``; once done
  ``{"done": true, "url": "/video-source/<id>.mp4", "frames", "fps"}``; a failed job answers its error
  (4xx, one line); the page polls it (a page that stops polling for ``page_gone_s`` has its job cancelled);
* ``GET /video-source/<id>.mp4?session=...`` -> the MP4 (only to the client and session that made it);
* ``POST /video-source/cancel`` ``{"session", "id"}`` -> the job stops after its step in flight, its files go.

Registered on the app by :func:`register_video_source_routes`, behind the same guard and body limits as
every route; ``body_limit`` gives this module's body limit to the app's middleware.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from ..drive.v2v_motion import parse_reference
from ..errors import ParamError
from .drive_intake import check_drive_upload, load_template_bytes, sniff_video
from .drive_routes import _clean, _client, _state
from .state import AppState
from .video_dub import DubRequest, dub_audio_check, dub_job, prepare_dub
from .video_jobs import (
    DONE,
    FAILED,
    UploadProbe,
    VideoJob,
    VideoJobNotFound,
    VideoJobStore,
    allowed_source_frames,
    check_source_upload,
    private_copy,
    probe_upload,
    run_job,
)

VIDEO_SOURCE_PATH = "/video-source"
CANCEL_PATH = "/video-source/cancel"
AUDIO_CHOICES = ("source", "driving", "none")
ID_CHARS = 64
"""Longest job id a request may name (ids are 22 characters)."""


class CancelRequest(BaseModel):
    session: str = Field(..., max_length=256)
    id: str = Field(..., max_length=ID_CHARS)


def body_limit(path: str, limits: Any) -> int | None:
    """The body limit of this module's routes (None: not one of them; the cancel route is JSON)."""
    return limits.max_video_source_body_bytes if path == VIDEO_SOURCE_PATH else None


def store_of(app: FastAPI) -> VideoJobStore:
    """The app's job store (made by :func:`register_video_source_routes`)."""
    store: VideoJobStore = app.state.video_jobs
    return store


async def close_video_jobs(app: FastAPI) -> None:
    """At shutdown (before the worker closes): cancel the jobs and delete their files."""
    await store_of(app).close()


def _options(state: AppState, job: VideoJob, reference: int | str, smooth: bool, normalize_lip: bool,
             audio: str) -> Any:  # fmt: skip
    from ..drive.v2v import V2VOptions
    from ..drive.v2v_motion import SMOOTH_OBSERVATION_VARIANCE, V2VMotion

    crop = state.settings.crop
    motion = V2VMotion(
        smooth=SMOOTH_OBSERVATION_VARIANCE if smooth else 0.0, reference=reference, normalize_lip=normalize_lip
    )
    return V2VOptions(
        motion=motion,
        audio=audio,
        no_crop=not crop,
        driving_precropped=not crop,
        batch_size=max(1, int(getattr(state.worker, "background_batch_size", 1))),  # what a clip may wait for
        max_frames=job.allowed_frames + 1,  # one frame past the limit: a lying header is caught while tracking
        progress=False,
    )


def _timeline(command: str, limits: Any) -> Any:
    """The command's timeline (the video has its own liveliness: no idle motion), within the clip limits."""
    from ..expressions.compose import build_timeline

    _, timeline = build_timeline(command, idle=False)
    limits.check_timeline(timeline)
    return timeline


def register_video_source_routes(app: FastAPI) -> None:
    """Add the video-source routes to ``app`` (its guard, limits and error answers apply to them)."""
    app.state.video_jobs = VideoJobStore()

    @app.post(
        VIDEO_SOURCE_PATH,
        status_code=202,
        summary="Animate an uploaded source video with a driving video or motion template -> a job to poll",
    )
    async def start(
        request: Request,
        session: str = Form(..., max_length=256),
        source: UploadFile = File(..., description="the source video (mp4/mov/webm) with one face"),
        driving: UploadFile | None = File(
            None, description="a driving video (one face) or an lpstudio .npz motion template (or give a command)"
        ),
        command: str | None = Form(None, max_length=2000, description='an expression command instead, e.g. "웃어줘"'),
        reference_frame: str = Form("0", max_length=16, description="driving frame of the relative motion, or auto"),
        smooth: bool = Form(True, description="smooth the motion over the whole clip"),
        normalize_lip: bool = Form(False, description="close the source's lips first"),
        audio: str = Form("source", max_length=16, description="the sound of the result: source, driving or none"),
        text: str | None = Form(None, max_length=2000, description="a dub instead: the words the video says"),
        speech: UploadFile | None = File(None, description="a dub instead: speech audio (wav/mp3/m4a/ogg/flac)"),
    ) -> JSONResponse:
        state = _state(request)  # 501 on Ray Serve replicas
        state.admission.check_open()
        state.sessions.get(session)  # 409 for a session the server no longer has
        if audio not in AUDIO_CHOICES:
            raise ParamError(f"unknown audio {audio[:20]!r}", hint=f"use one of {', '.join(AUDIO_CHOICES)}")
        command = command.strip() if command else None
        limits = state.limits
        dub = DubRequest.of(text, speech, limits)
        chosen = [n for n, v in (("driving", driving), ("command", command), ("dub", dub)) if v is not None]
        if len(chosen) != 1 or (dub is not None and dub.both):
            raise ParamError(
                "give exactly one of a driving file, a command, a text to say or a speech audio file",
                hint='upload a driving video / .npz template, or send command="웃어줘", text="안녕하세요" or speech',
            )
        if command is not None and audio == "driving":
            raise ParamError("a command has no driving audio", hint="use audio=source or audio=none")
        if dub is not None:
            dub_audio_check(audio)
        reference = parse_reference(reference_frame, "reference_frame")
        timeline = None
        if command is not None:
            limits.check_command(command)
            timeline = await state.off_loop(lambda: _timeline(command, limits))
        store = store_of(request.app)
        client = _client(request)
        store.start_sweeper(state.loop, limits, lambda sid: sid in state.sessions)
        job = store.admit(client, session, limits, limits.retry_after_s)
        ticket = None
        try:
            ticket = state.admission.admit_source()  # one bounded intake slot, like a photo's
            job.source_name = _clean(source.filename)
            job.driving_name = _clean(driving.filename) if driving is not None else "the command"
            src_bytes = await source.read(limits.max_source_video_upload_bytes + 1)
            src_fmt = check_source_upload(job.source_name, src_bytes, limits)
            drv_bytes, kind = b"", "command"
            if driving is not None:
                drv_bytes = await driving.read(limits.max_drive_upload_bytes + 1)
                kind = check_drive_upload(job.driving_name, drv_bytes, limits)
            if dub is not None:
                await dub.read(limits)  # size and first bytes, before any decoding
            async with state.decode_slots:
                probe = await state.off_loop(lambda s=src_bytes, d=drv_bytes: _intake(job, s, src_fmt, d, kind, limits))
            del src_bytes, drv_bytes
            if dub is not None:  # the speech (decoded or synthesised off the loop), refused if longer than the video
                await prepare_dub(dub, job, probe, state, request.app.state.speech_desk)
        except BaseException:
            store.remove(job)
            raise
        finally:
            if ticket is not None:
                ticket.release()
        options = _options(state, job, reference, smooth, normalize_lip, audio)
        paths = list(job.paths)
        engine = state.engine

        def make() -> Any:
            if dub is not None:
                return dub_job(engine, paths[0], dub, job.result, options, job.source_name)
            if timeline is not None:
                from ..drive.edits_job import CommandVideoJob

                return CommandVideoJob(engine, paths[0], timeline, job.result, no_crop=options.no_crop,
                                       batch_size=options.batch_size, max_frames=options.max_frames,
                                       audio=audio == "source")  # fmt: skip
            from ..drive.v2v import V2VJob

            return V2VJob(engine, paths[0], paths[1], job.result, options)

        def ended(finished: VideoJob) -> None:
            if store.jobs.get(finished.id) is not finished:  # deleted while it ran: its files go now
                store.remove(finished)
            else:
                store.completed += finished.state == DONE

        job.task = state.loop.create_task(run_job(job, make, state.worker.call_when_idle, limits, ended))
        body = {"id": job.id, "status_url": f"{VIDEO_SOURCE_PATH}/{job.id}", "fps": job.fps, "total": job.units_total}
        return JSONResponse(body, status_code=202, headers={"Cache-Control": "no-store"})

    @app.get(VIDEO_SOURCE_PATH + "/{job_id}.mp4", summary="The result of a finished video-source job (MP4)")
    async def result(request: Request, job_id: str, session: str) -> FileResponse:
        job = store_of(request.app).get(job_id[:ID_CHARS], _client(request), session[:256])
        if job.state != DONE or not job.result.exists():
            raise VideoJobNotFound("this video-source job has no result (yet)", hint="wait until its state is done")
        return FileResponse(job.result, media_type="video/mp4", filename="lpstudio-video.mp4",
                            headers={"Cache-Control": "no-store"})  # fmt: skip

    @app.get(VIDEO_SOURCE_PATH + "/{job_id}", summary="Progress of a video-source job (poll it; errors as 4xx)")
    async def status(request: Request, job_id: str, session: str) -> JSONResponse:
        job = store_of(request.app).get(job_id[:ID_CHARS], _client(request), session[:256])
        if job.state == FAILED and job.error is not None:
            return JSONResponse(
                job.describe(), status_code=job.error.http_status, headers={"Cache-Control": "no-store"}
            )
        return JSONResponse(job.describe(), headers={"Cache-Control": "no-store"})

    @app.post(CANCEL_PATH, summary="Cancel a video-source job (its files are deleted)")
    async def cancel(request: Request, body: CancelRequest) -> JSONResponse:
        store = store_of(request.app)
        job = store.get(body.id, _client(request), body.session)
        store.remove(job)
        return JSONResponse({"cancelled": True, "id": job.id})


def _intake(job: VideoJob, src: bytes, src_fmt: Any, drv: bytes, kind: str, limits: Any) -> UploadProbe:
    """On a thread: private copies of both uploads, their headers checked (lengths, pixels, fps) -> the source's."""
    src_path = private_copy(job.folder, "source", src, src_fmt)
    job.paths[str(src_path)] = job.source_name
    probe = probe_upload(
        src_path, src_fmt, job.source_name, limits, max_seconds=limits.max_source_video_seconds,
        max_frames=limits.max_source_video_frames, what="source video",
    )  # fmt: skip
    job.fps = probe.fps
    job.allowed_frames = allowed_source_frames(probe, limits)
    expected = min(probe.frames or job.allowed_frames, job.allowed_frames)
    job.units_total = expected if kind == "command" else 3 * expected
    if kind == "command":
        return probe
    if kind == "video":
        drv_fmt = sniff_video(drv[:16])
        drv_path = private_copy(job.folder, "driving", drv, drv_fmt)
        job.paths[str(drv_path)] = job.driving_name
        probe_upload(
            drv_path, drv_fmt, job.driving_name, limits, max_seconds=limits.max_drive_seconds,  # type: ignore[arg-type]
            max_frames=limits.max_drive_frames, what="driving video",
        )  # fmt: skip
    else:
        load_template_bytes(drv, job.driving_name, limits)  # no pickle; bounded before it is inflated
        drv_path = private_copy(job.folder, "driving", drv, None)
        job.paths[str(drv_path)] = job.driving_name
    return probe


__all__ = ["body_limit", "close_video_jobs", "register_video_source_routes"]
