"""Group photos on the server: every face of an upload prepared, ``faces`` on ``/render`` and ``/generate``.

* Intake (:func:`prepare_faces`): after the photo's main face, every other face found (up to
  :attr:`~lpstudio.server.limits.ServiceLimits.max_faces`, largest first) is prepared on the
  render worker; their states and display-resolution paste-backs are kept on the
  :class:`~lpstudio.server.sessions.Source`, and counted in its memory.
* ``GET /faces?session=``: the face boxes (display pixels, largest first) and how many can be animated.
* ``/render`` and ``/generate`` with ``faces`` (a list of face numbers, or ``"all"``): the worker renders
  each frame's faces in one batch (a group :class:`~lpstudio.server.worker.RenderJob`), and the frame
  is pasted back in depth order. A ``/generate`` command may give each face its own part
  (:mod:`lpstudio.group.commands`). A face number out of range is a 400 naming the range.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ..errors import CommandError, LPStudioError
from ..expressions.idle import idle_timeline
from ..group.commands import FaceCommand, check_face_commands, resolve_face_commands, split_face_commands
from ..group.selection import FaceSelectionError, parse_faces_option, resolve_faces
from ..group.speech import speech_tracks
from ..params import EditParams
from ..speech.command import command_speaks
from .plans import ClipPlan, GenerateRequest, RenderRequest, plan_clip, sample_clip, speech_key
from .sessions import Source, encode_jpeg, nbytes_of
from .speech import audio_start, request_speaks
from .state import AppState
from .streams import NDJSONResponse, Viewer
from .worker import PRIORITY_CLIP, PRIORITY_INTERACTIVE, render_frames

FACES_PATH = "/faces"


async def prepare_faces(state: AppState, source: Source, rgb: np.ndarray) -> None:
    """Prepare the other faces of a photo (up to ``max_faces``) and their display paste-backs on ``source``.

    Runs before the source is stored, so its memory (``nbytes``) counts every face.
    """
    face = source.state.face
    if face is None or source.paster is None or not getattr(state.worker, "renders_faces", False):
        return  # a pre-cropped face, or a renderer of one face at a time (Ray Serve replicas key states by photo)
    boxes = np.asarray(face.all_boxes)
    count = min(len(boxes), state.limits.max_faces)
    states: dict[int, Any] = {}
    if face.face_index < count:
        states[face.face_index] = source.state
    for i in range(count):
        if i not in states:
            future = state.worker.prepare_source(rgb, digest=source.digest, crop=True, face_index=i)
            states[i] = await asyncio.wrap_future(future)

    def finish() -> None:
        from ..face import PasteBack

        ph, pw = rgb.shape[:2]
        h, w = source.display.shape[:2]
        scale = np.diag([w / pw, h / ph, 1.0])
        slim = [dataclasses.replace(states[i], photo=None, paster=None) for i in range(count)]
        pasters = [PasteBack(scale @ np.asarray(s.face.M_c2o, dtype=np.float64), (h, w)) for s in slim]
        source.face_states = slim
        source.face_pasters = pasters
        extra = [s for i, s in enumerate(slim) if i != face.face_index]
        source.nbytes += sum(nbytes_of(s) for s in extra) + sum(nbytes_of(p) for p in pasters)

    await state.off_loop(finish)


def faces_info(source: Source) -> dict[str, Any]:
    """The face boxes of a source (display pixels, largest first) and how many of them can be animated."""
    return {"faces": source.faces, "animatable": len(source.face_states), "face_index": source.state.face.face_index
            if source.state.face is not None else None}  # fmt: skip


def chosen_faces(source: Source, faces: str | Sequence[int] | None) -> list[int]:
    """Face numbers of a request's ``faces``, checked against the photo (400 naming the range)."""
    if not source.face_states:
        raise FaceSelectionError(
            "this portrait has no faces to choose from (a pre-cropped face or a photo of one face)",
            hint="leave out 'faces'",
        )
    try:
        choice = parse_faces_option(faces if isinstance(faces, str) else list(faces or []))
    except LPStudioError as exc:
        raise FaceSelectionError(exc.message.replace("--faces", "faces"), hint=exc.hint) from None
    return resolve_faces(choice, len(source.faces), max_faces=len(source.face_states), what="the photo")


def _check_worker(state: AppState) -> None:
    if not getattr(state.worker, "renders_faces", False):
        raise LPStudioError(
            "this server's renderer animates one face at a time", hint="leave out 'faces' (or serve without --ray)"
        )


def _check_animatable(source: Source, indices: Sequence[int]) -> None:
    n = len(source.face_states)
    beyond = [i for i in indices if i >= n]
    if beyond:
        raise FaceSelectionError(
            f"face {beyond[0]} is found in the photo, but only its {n} largest faces (0 to {n - 1}) can be animated",
            hint=f"choose faces from 0 to {n - 1}",
        )


def form_faces(state: AppState, source: Source, faces: str | None) -> list[int] | None:
    """The faces a form's ``faces`` (``"all"``, ``"0,1"``, ``"[0,1]"``: ``POST /drive``, ``/generate-audio``) names,
    checked (400s before any upload is decoded), or None without it (the session's own face)."""
    if faces is None:
        return None
    _check_worker(state)
    indices = chosen_faces(source, faces.strip().strip("[]"))
    _check_animatable(source, indices)
    return indices


async def render_faces(state: AppState, source: Source, body: RenderRequest, client: str) -> Response:
    """``/render`` with ``faces``: the same parameters on each chosen face, one batch, one composite JPEG."""
    _check_worker(state)
    indices = chosen_faces(source, body.faces)
    _check_animatable(source, indices)
    states = [source.face_states[i] for i in indices]
    params = [[s.neutral_params().replace(**dict(body.params))] for s in states]
    ticket = state.admission.admit_job(len(states))  # one renderer row per face
    source.active += 1
    try:
        frames = await render_frames(
            state.worker,
            states[0],
            params[0],
            priority=PRIORITY_INTERACTIVE,
            what="preview",
            ticket=ticket,
            digest=source.digest,
            client=client,
            faces=states,
            face_params=params,
        )
    finally:
        source.active -= 1
    jpeg = await state.off_loop(lambda: encode_jpeg(source.compose_faces(indices, frames[0])))
    return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def plan_faces(
    body: GenerateRequest,
    source: Source,
    *,
    fps: float,
    idle: bool,
    limits: Any,
    speech: ClipPlan | None = None,
) -> tuple[list[int], list[list[EditParams]], dict[str, Any], ClipPlan | None]:
    """``(face numbers, per-face parameter tracks of one length, start info, speech plan)`` of a ``/generate``
    with ``faces``.

    A command naming faces gives each its part; the chosen faces it does not name idle (or stay still);
    a preset or an ordinary command is done by every chosen face (each with its own idle seed).
    ``speech`` (a spoken request's plan, :func:`speech_of`): every chosen face lip-syncs its one audio,
    each on its own base pose, frame ``k`` of every face at the same time of the audio; or, for a command
    naming faces, the one face whose part speaks does, and the audio is padded with silence to the
    longest face's part (the speech plan returned is then that padded one).
    """
    indices = chosen_faces(source, body.faces)
    parts = None
    if body.command and not body.idle_loop and not body.preset:
        limits.check_command(body.command)
        parts = split_face_commands(body.command)
    spoken = speech if speech is not None and speech.speech is not None else None
    if spoken is not None and spoken.speech is not None and parts is None:
        _check_animatable(source, indices)
        clip = spoken.speech.clip
        bases = [source.face_states[i].neutral_params() for i in indices]
        tracks = speech_tracks(clip.timeline, clip.frame_times(fps), bases)
        return indices, tracks, {**spoken.start_info(), "faces": indices}, spoken
    if spoken is None and speaks_for_all(body, limits):  # generate_faces plans the speech first (speech_of)
        raise CommandError("this request speaks, but its speech was not planned", hint="plan it with speech_of")
    texts: dict[int, str] | None = None
    talker: int | None = None
    if parts is not None:
        check_face_commands(parts)
        part = speaking_part(parts)
        if part is not None and spoken is None:
            raise CommandError(f"face {part.ref} speaks, but its speech was not planned", hint="plan it with speech_of")
        texts = resolve_face_commands(parts, [f["box"] for f in source.faces])
        indices += [i for i in texts if i not in indices]
        talker = None if part is None else next(i for i, t in texts.items() if t == part.text)
    if not indices:
        raise FaceSelectionError("no face chosen", hint="give 'faces' (a list of face numbers, or 'all')")
    _check_animatable(source, indices)
    plans: dict[int, Any] = {}
    for i in indices:
        if (texts is not None and i not in texts) or i == talker:
            continue
        update: dict[str, Any] = {"seed": body.seed + i}
        if texts is not None:
            update["command"] = texts[i]
        plans[i] = plan_clip(body.model_copy(update=update), fps=fps, idle=idle, limits=limits)
    if talker is not None and spoken is not None:
        plans[talker] = spoken
    tracks = []
    longest = max((p.timeline.duration_ms for p in plans.values()), default=0.0)
    for i in indices:
        base = source.face_states[i].neutral_params()
        if i in plans:
            tracks.append(sample_clip(plans[i], base))
        elif idle and longest > 0:
            tracks.append(idle_timeline(longest, body.seed + i).sample(fps, base))
        else:
            tracks.append([base])
    n = max(len(t) for t in tracks)
    tracks = [t + [t[-1]] * (n - len(t)) for t in tracks]
    if talker is not None and spoken is not None:
        spoken = _padded_speech(spoken, n)
        return indices, tracks, {**spoken.start_info(), "faces": indices}, spoken
    first = plans[indices[0]] if indices[0] in plans else next(iter(plans.values()), None)
    start = {"fps": fps, "faces": indices, "steps": first.steps if first else [], "plan": first.plan if first else None,
             "speaks": False}  # fmt: skip
    return indices, tracks, start, None


def speaking_part(parts: Sequence[FaceCommand]) -> FaceCommand | None:
    """The one part of a command naming faces that speaks, or None (parts already understood).

    Raises:
        CommandError: more than one part speaks (one audio track: one face speaks at a time).
    """
    spoken = [p for p in parts if command_speaks(p.text)]
    if len(spoken) > 1:
        raise CommandError(
            f"faces {spoken[0].ref} and {spoken[1].ref} both speak: one face speaks at a time",
            hint="give speech to one face (e.g. '0: say hello; 1: smile'), or let every chosen face say it "
            "('say hello' with faces)",
        )
    return spoken[0] if spoken else None


def _padded_speech(plan: ClipPlan, frames: int) -> ClipPlan:
    """``plan`` with its audio padded with silence to ``frames`` frames (unchanged when already that long)."""
    if plan.speech is None or plan.speech.clip.frame_count(plan.fps) >= frames:
        return plan
    clip = plan.speech.clip
    samples = int(frames * clip.audio.sample_rate // plan.fps)  # floor: ceil(duration * fps) is ``frames``
    return dataclasses.replace(plan, speech=audio_start(dataclasses.replace(clip, audio=clip.audio.padded_to(samples)),
                                                        plan.fps))  # fmt: skip


def speaks_for_all(body: GenerateRequest, limits: Any) -> bool:
    """Whether a ``/generate`` with ``faces`` speaks one text for every chosen face (a parse, no synthesis).

    A command that names faces (``"face 0 smile, face 1 wink"``) is planned face by face instead.
    """
    if body.command and not body.idle_loop and not body.preset:
        try:
            limits.check_command(body.command)
            if split_face_commands(body.command) is not None:
                return False
        except CommandError:
            return False  # planning refuses it with its own message
    return request_speaks(body.preset, body.command, idle_loop=body.idle_loop, limits=limits)


def _spoken_part(body: GenerateRequest, limits: Any) -> FaceCommand | None:
    """The part of a ``/generate`` command naming faces that speaks (a parse, no synthesis), else None.

    A command that is not understood is None here: planning refuses it with its own message.
    """
    if not body.command or body.idle_loop or body.preset:
        return None
    try:
        limits.check_command(body.command)
        parts = split_face_commands(body.command)
        if parts is None:
            return None
        check_face_commands(parts)
    except CommandError:
        return None
    return speaking_part(parts)


async def speech_of(request: Request, state: AppState, body: GenerateRequest, *, fps: float,
                    idle: bool) -> ClipPlan | None:  # fmt: skip
    """The speech plan of a spoken ``/generate`` with ``faces`` (None when it is silent).

    Admitted as a single face's spoken request is: a parse in a planning slot, then eSpeak NG on the
    speech desk (429 when its queue is full) unless the same request was spoken before (the memo).
    """
    limits = state.limits
    memo = request.app.state.speech_memo
    plan_slots = request.app.state.plan_slots

    def speaks() -> tuple[GenerateRequest | None, bool]:  # (the request to speak, its audio is remembered)
        part = _spoken_part(body, limits)
        if part is not None:  # a command naming faces: the part of the one face that speaks
            spoken = body.model_copy(update={"command": part.text})
        elif speaks_for_all(body, limits):
            spoken = body
        else:
            return None, False
        return spoken, speech_key(spoken, fps=fps, idle=idle, limits=limits) in memo

    spoken, remembered = await plan_slots.run(state.off_loop, speaks)
    if spoken is None:
        return None

    def make() -> ClipPlan:
        return plan_clip(spoken, fps=fps, idle=idle, limits=limits, memo=memo)

    if remembered:
        plan = await plan_slots.run(state.off_loop, make)  # no synthesis
    else:
        plan = await request.app.state.speech_desk.run(make)  # on the speech thread, not the shared pool
    return plan if plan.speech is not None else None


async def generate_faces(
    request: Request,
    state: AppState,
    source: Source,
    body: GenerateRequest,
    client: str,
    received: float,
    *,
    speech: ClipPlan | None = None,
) -> NDJSONResponse:
    """``/generate`` with ``faces``: planned off the loop, rendered a frame's faces per batch, streamed as NDJSON.

    A spoken request (or ``speech``, an uploaded audio's plan) streams its audio in the start line, as
    for one face; every chosen face lip-syncs it.
    """
    _check_worker(state)
    fps = speech.fps if speech is not None else body.fps or state.settings.fps
    idle = state.settings.idle_default if body.idle is None else body.idle
    limits = state.limits
    if speech is None:
        speech = await speech_of(request, state, body, fps=fps, idle=idle)
    indices, tracks, start, speech = await request.app.state.plan_slots.run(
        state.off_loop, lambda: plan_faces(body, source, fps=fps, idle=idle, limits=limits, speech=speech)
    )
    audio_key = speech.speech.audio_key if speech is not None and speech.speech is not None else None
    key = (
        "faces:"
        + hashlib.sha256(
            json.dumps(
                [source.digest, indices, body.model_dump(), fps, idle, state.settings_key(), audio_key], default=str
            ).encode()
        ).hexdigest()
    )
    hub = state.hub
    view = FaceView(source, indices)
    stream_ticket = state.admission.admit_stream(client, body.session)
    try:
        clip = hub.find(key)
        how = "cached" if clip is not None and clip.cached else "shared"
        if clip is None:
            job_ticket = state.admission.admit_job(len(tracks[0]) * len(indices))  # renderer rows
            states = [source.face_states[i] for i in indices]
            clip = hub.start(key, view, tracks[0], PRIORITY_CLIP, job_ticket, client=client, faces=states,
                             face_params=tracks)  # fmt: skip
            how = "rendered"
        h, w = source.display.shape[:2]
        viewer = Viewer(clip, {**start, "width": w, "height": h}, received, shared=how == "shared",
                        audio_json=speech.audio_json if speech is not None else None)  # fmt: skip
    except BaseException:
        stream_ticket.release()
        raise
    state.metrics.streams.labels(how=how).inc()
    return NDJSONResponse(viewer, limits.stall_timeout_s, stream_ticket.release)


async def generate_audio_faces(
    request: Request, state: AppState, source: Source, plan: ClipPlan, faces: list[int], *, session: str, client: str,
    received: float,
) -> NDJSONResponse:  # fmt: skip
    """``/generate-audio`` with ``faces`` (checked by :func:`form_faces`): the uploaded speech's ``plan`` (its
    idle and seed already in its timeline) said by every chosen face."""
    body = GenerateRequest(session=session, faces=faces, fps=plan.fps)
    return await generate_faces(request, state, source, body, client, received, speech=plan)


@dataclasses.dataclass(eq=False)
class FaceView:
    """A source seen through a choice of faces: what the clip hub renders and composes for a group clip."""

    source: Source
    indices: list[int]

    @property
    def state(self) -> Any:
        return self.source.face_states[self.indices[0]]

    @property
    def digest(self) -> str:
        return self.source.digest

    @property
    def active(self) -> int:
        return self.source.active

    @active.setter
    def active(self, value: int) -> None:
        self.source.active = value

    def compose(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return self.source.compose_faces(self.indices, crops)


def register_faces(app: FastAPI) -> None:
    """``GET /faces?session=``: the session's face boxes (registered like every route: same guard)."""

    @app.get(FACES_PATH, summary="The faces of the session's portrait: boxes in display pixels, largest first")
    async def faces(request: Request, session: str) -> dict[str, Any]:
        lp: AppState = request.app.state.lp
        _, source = lp.resolve(session)
        return faces_info(source)


__all__ = [
    "FACES_PATH",
    "FaceView",
    "chosen_faces",
    "form_faces",
    "generate_audio_faces",
    "generate_faces",
    "plan_faces",
    "prepare_faces",
    "register_faces",
    "render_faces",
    "speaking_part",
    "speaks_for_all",
    "speech_of",
]
