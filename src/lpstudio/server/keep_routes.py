"""Routes that let a page keep what it makes (registered by :func:`register_keep` from ``create_app``).

* ``POST /download/photo {session, params}``: the still as PNG (rendered through the render
  worker, pasted back into the photo as the page shows it).
* ``GET /download/clip?session=&clip=``: a clip the page played, as MP4 with its voice when it
  spoke, encoded from the frames the stream already made (no re-render); the clip id comes in the
  clip's ``start`` line. Encodes run on a thread, a bounded number per client and in all
  (:mod:`.keep`), into a partial file moved into place (:class:`~lpstudio.video_writer.VideoWriter`).
* ``POST /base {session, params}``: the page's slider setting becomes the base that commands, idle
  liveliness and slider previews start from (``params: null`` returns to the photo's own expression).
  The base is part of every clip's cache key (:func:`~lpstudio.server.plans.clip_cache_key`).
* ``GET /library``, ``POST /library`` (save), ``POST /library/delete``, ``GET /library/export``,
  ``POST /library/import``: the page's saved expressions (:mod:`lpstudio.expressions.library`),
  usable by name in its commands.
* ``GET /face-regions?session=``: where the eyes, brows, mouth and head are in the picture the page
  shows, for drag-to-edit.

Every route sits behind the app's guards (they are registered on the same app), answers bad input
with a 4xx JSON error and does its CPU work off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote

import cv2
import numpy as np
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from ..errors import ImageError, LPStudioError, ParamError
from ..expressions.cache import source_digest
from ..expressions.library import MAX_EXPRESSIONS, MAX_LIBRARY_JSON_BYTES, LibraryError
from ..params import EditParams
from .intake import default_image, read_photo
from .keep import KeepStore, decode_frame_line
from .sessions import Source
from .state import AppState
from .worker import PRIORITY_INTERACTIVE, render_frames

PNG_COMPRESSION: int = 3
"""zlib level of the PNG download (cv2's default: fast, near the smallest)."""
MAX_DOWNLOAD_STEM: int = 60
"""Characters of the photo's name kept in a download's file name."""
DOWNLOAD_DIR_PREFIX: str = "lpstudio-download-"
DOWNLOAD_PHOTO_PATH: str = "/download/photo"
"""Where the page downloads the still (a form: the photo may come with it, so uploads' body limit applies)."""
MAX_PARAMS_CHARS: int = 4096

# Where the parts of the face are among the 203 landmarks (the layout of lpstudio.face.mesh_layout):
LMK203_EYES = slice(0, 48)  # both eyes' rings, 24 points each
LMK203_LIPS = slice(48, 108)
LMK203_BROWS = slice(162, 188)  # both brows, 13 points each
REGION_PAD = {"eyes": 0.6, "brows": 0.8, "mouth": 0.35}
"""Each region's box grows by this fraction of its height on every side (a target a finger can hit)."""
# A pre-cropped face (no landmarks): the parts where the official crop puts them, as fractions of
# the picture (x0, y0, x1, y1); approximate, for drag targets only.
CROP_LAYOUT: dict[str, tuple[float, float, float, float]] = {
    "brows": (0.28, 0.30, 0.72, 0.39),
    "eyes": (0.28, 0.39, 0.72, 0.50),
    "mouth": (0.35, 0.60, 0.65, 0.76),
    "head": (0.14, 0.12, 0.86, 0.94),
}


FACE_BOX_LAYOUT: dict[str, tuple[float, float, float, float]] = {
    "brows": (0.15, 0.20, 0.85, 0.34),
    "eyes": (0.15, 0.34, 0.85, 0.50),
    "mouth": (0.27, 0.66, 0.73, 0.88),
}
"""The same, as fractions of a detected face box (brow to chin), where landmarks do not fit it."""
MAX_REGION_SHARE: float = 0.5
"""A landmark region covering more than this share of the face box is not believed."""


class SessionParams(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    params: dict[str, float | None] | None = Field(
        None, description="absolute parameter values (as the sliders show them); null: the photo's own expression"
    )


class SaveExpression(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    name: str = Field(..., max_length=200)
    params: dict[str, float | None] = Field(..., description="absolute parameter values (as the sliders show them)")


class NamedExpression(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    name: str = Field(..., max_length=200)


class ImportLibrary(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session: str = Field(..., max_length=256)
    library: dict[str, Any] = Field(..., description="an exported library (GET /library/export)")


def keep_of(state: AppState) -> KeepStore:
    """The app's :class:`KeepStore` (made on first use, on the event loop)."""
    store = state.keep_store
    if store is None:
        store = state.keep_store = KeepStore(
            lambda sid: sid in state.sessions, max_sessions=state.limits.max_session_ids, on_reject=state.metrics.reject
        )
    return store


def session_base(state: AppState, session_id: str | None, source: Source) -> EditParams:
    """What the page's clips and previews start from: its base, else the photo's own expression."""
    return keep_of(state).base(session_id) or source.state.neutral_params()


def session_presets(state: AppState, session_id: str | None) -> dict[str, Any]:
    """The page's saved expressions as presets (for :func:`~lpstudio.expressions.custom.using_custom`)."""
    library = keep_of(state).library(session_id)
    return {} if library is None else library.presets()


def attachment(filename: str) -> dict[str, str]:
    """A ``Content-Disposition`` header that downloads as ``filename`` (ASCII fallback plus UTF-8 name)."""
    ascii_name = re.sub(r"[^A-Za-z0-9._-]+", "_", filename).strip("_") or "download"
    return {"Content-Disposition": f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}",
            "Cache-Control": "no-store"}  # fmt: skip


def download_name(photo_name: str, suffix: str) -> str:
    """``PHOTO-lpstudio.SUFFIX`` from the photo's name (only printable characters, no folders)."""
    stem = Path(photo_name.replace("\\", "/").rsplit("/", 1)[-1]).stem
    stem = "".join(c for c in stem if c.isprintable() and c not in '"<>:|?*')[:MAX_DOWNLOAD_STEM] or "portrait"
    return f"{stem}-lpstudio.{suffix}"


def encode_png(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> PNG bytes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 image
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_mp4(lines: list[bytes], fps: float, audio: Any | None) -> tuple[Path, Path]:
    """Frame lines (and the clip's audio) -> an MP4 in a new temporary folder; returns ``(file, folder)``.

    The writer fills a partial beside the file and moves it into place when complete (:mod:`lpstudio.atomic`).
    """
    from ..video_writer import VideoWriter

    folder = Path(tempfile.mkdtemp(prefix=DOWNLOAD_DIR_PREFIX))
    path = folder / "clip.mp4"
    try:
        channels = None if audio is None else audio.channels
        with VideoWriter(path, fps, audio_channels=channels) as writer:
            if audio is not None:
                writer.add_audio(audio)
            for line in lines:
                writer.write(decode_frame_line(line))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return path, folder


def _in_box(layout: dict[str, tuple[float, float, float, float]], box: list[float]) -> dict[str, list[float]]:
    """``layout`` (fractions) placed in ``box`` ``[x0, y0, x1, y1]``."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return {name: [x0 + a * w, y0 + b * h, x0 + c * w, y0 + d * h] for name, (a, b, c, d) in layout.items()}


def _plausible(region: list[float], head: list[float]) -> bool:
    """A landmark box that fits the face: its centre inside the face box, at most half its area."""
    cx, cy = (region[0] + region[2]) / 2, (region[1] + region[3]) / 2
    area = (region[2] - region[0]) * (region[3] - region[1])
    head_area = (head[2] - head[0]) * (head[3] - head[1])
    return head[0] <= cx <= head[2] and head[1] <= cy <= head[3] and area <= MAX_REGION_SHARE * head_area


def face_regions(source: Source) -> dict[str, list[float]]:
    """Boxes ``[x0, y0, x1, y1]`` of ``eyes``, ``brows``, ``mouth`` and ``head`` in display pixels.

    From the face's 203 landmarks when they look like a face; else (a pre-cropped face, or
    landmarks that do not fit the face box) where the parts usually are in the crop or the face box.
    """
    h, w = source.display.shape[:2]
    face = source.state.face
    lmk = getattr(face, "lmk203_photo", None)
    if face is None or lmk is None:
        return _in_box(CROP_LAYOUT, [0.0, 0.0, float(w), float(h)])
    pw, ph = face.photo_size
    sx, sy = w / pw, h / ph
    bx0, by0, bx1, by1 = (float(v) for v in face.box[:4])
    head = [max(0.0, bx0 * sx), max(0.0, by0 * sy), min(float(w), bx1 * sx), min(float(h), by1 * sy)]
    out = _in_box(FACE_BOX_LAYOUT, head)
    pts = np.asarray(lmk, dtype=np.float64) * np.array([sx, sy])
    for name, part in (("eyes", LMK203_EYES), ("brows", LMK203_BROWS), ("mouth", LMK203_LIPS)):
        (x0, y0), (x1, y1) = pts[part].min(axis=0), pts[part].max(axis=0)
        pad = REGION_PAD[name] * max(y1 - y0, 1.0)
        box = [max(0.0, x0 - pad), max(0.0, y0 - pad), min(float(w), x1 + pad), min(float(h), y1 + pad)]
        if _plausible(box, head):
            out[name] = box
    out["head"] = head
    return out


class NeedsPhoto(LPStudioError):
    """The photo is larger than the server keeps and was not sent with the download: 409."""

    http_status = 409


def _params_json(text: str) -> dict[str, float | None]:
    """The ``params`` form field: a JSON object of parameter values (checked by EditParams)."""
    try:
        values = json.loads(text)
    except (ValueError, RecursionError):
        raise ParamError("params must be a JSON object of parameter values", hint='e.g. {"smile": 0.8}') from None
    if not isinstance(values, dict) or not all(v is None or isinstance(v, (int, float)) for v in values.values()):
        raise ParamError("params must be a JSON object of parameter values", hint='e.g. {"smile": 0.8}')
    return values


async def _full_photo(state: AppState, source: Source, upload: UploadFile | None) -> np.ndarray | None:
    """The photo at its full (decoded) resolution when the page shows it smaller, else None (the display is it).

    The server keeps a prepared photo at display size only; the default portrait is at hand, an uploaded
    one comes again with the download (decoded with the same bounds as an upload, and checked to be the
    session's photo by its digest).
    """
    face = source.state.face
    if face is None or source.display.shape[:2] == (face.photo_size[1], face.photo_size[0]):
        return None
    rgb, digest = await default_image(state)
    if digest == source.digest:
        return rgb
    if upload is None:
        raise NeedsPhoto(
            "the photo is larger than the server keeps; its full-size download needs the photo again",
            hint="the page sends it with the download: try again from the page",
        )
    name = (upload.filename or "photo")[:MAX_DOWNLOAD_STEM]
    rgb, digest = await read_photo(state, upload, name, None)
    if digest != source.digest:
        again = await state.off_loop(lambda: source_digest(rgb, crop=True, face_index=face.face_index))
        if again != source.digest:
            raise ImageError(f"{name} is not the photo this page shows", hint="download from the page that shows it")
    return rgb


def _paste(source: Source, frame: np.ndarray, photo: np.ndarray | None) -> np.ndarray:
    """The rendered crop as the page shows it, or pasted back into the full ``photo``: (H, W, 3) uint8."""
    if photo is None:
        return source.compose(frame)
    from ..face import PasteBack

    face = source.state.face
    return PasteBack(np.asarray(face.M_c2o, dtype=np.float64), photo.shape[:2])(frame, photo)


def _lp(request: Request) -> AppState:
    return request.app.state.lp


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


async def _render_still(state: AppState, source: Source, params: EditParams, client: str) -> np.ndarray:
    """One frame through the render worker (admitted as a one-frame interactive job)."""
    ticket = state.admission.admit_job(1)
    source.active += 1
    try:
        frames = await render_frames(
            state.worker, source.state, [params], priority=PRIORITY_INTERACTIVE, what="download",
            ticket=ticket, digest=source.digest, client=client,
        )  # fmt: skip
    finally:
        source.active -= 1
    return frames[0]


def _library_body(state: AppState, session_id: str) -> dict[str, Any]:
    library = keep_of(state).record(session_id).library
    return {**library.to_json(), "max": MAX_EXPRESSIONS}


def _neutral(source: Source) -> dict[str, float | None]:
    return source.state.neutral_params().as_dict()


def register_keep(app: FastAPI) -> None:
    """Add the download, base, library and face-region routes to ``app``."""
    _download_routes(app)
    _base_and_library_routes(app)


def _download_routes(app: FastAPI) -> None:
    @app.post(
        DOWNLOAD_PHOTO_PATH,
        summary="The portrait with these parameters as a PNG download, pasted back into the photo at its resolution",
        response_class=Response,
        responses={200: {"content": {"image/png": {}}}},
    )
    async def download_photo(
        request: Request,
        session: str = Form(..., max_length=256),
        params: str = Form("{}", max_length=MAX_PARAMS_CHARS, description="JSON object: absolute parameter values"),
        file: UploadFile | None = File(None, description="the page's photo, when it is larger than the page shows"),
    ) -> Response:
        state = _lp(request)
        state.admission.check_open()
        sess, source = state.resolve(session)
        values = _params_json(params)
        photo = await _full_photo(state, source, file)
        edit = session_base(state, session, source).replace(**values)
        frame = await _render_still(state, source, edit, _client(request))
        png = await state.off_loop(lambda: encode_png(_paste(source, frame, photo)))
        return Response(png, media_type="image/png", headers=attachment(download_name(sess.name, "png")))

    @app.get(
        "/download/clip",
        summary="A clip this page played, as MP4 (with its voice when it spoke), from the frames already made",
        response_class=FileResponse,
        responses={200: {"content": {"video/mp4": {}}}},
    )
    async def download_clip(
        request: Request,
        session: str = Query(..., max_length=256),
        clip: str = Query(..., max_length=64, description="the clip id of the clip's start line"),
    ) -> FileResponse:
        state = _lp(request)
        state.admission.check_open()
        sess, _ = state.resolve(session)
        keep = keep_of(state)
        kept = keep.clip(session, clip)
        lines = kept.frames_ready()
        client = _client(request)
        keep.start_encode(client)
        loop = asyncio.get_running_loop()
        lock = threading.Lock()
        flags = {"started": False, "abandoned": False}

        def work() -> tuple[Path, Path]:
            with lock:
                if flags["abandoned"]:
                    raise asyncio.CancelledError
                flags["started"] = True
            try:
                return encode_mp4(lines, kept.fps, kept.audio)
            finally:
                loop.call_soon_threadsafe(keep.end_encode, client)

        try:
            path, folder = await state.off_loop(work)
        finally:
            with lock:
                flags["abandoned"] = not flags["started"]
            if flags["abandoned"]:  # cancelled before a thread took it: its slot is free now
                keep.end_encode(client)
        return FileResponse(
            path,
            media_type="video/mp4",
            headers=attachment(download_name(sess.name, "mp4")),
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    @app.get("/face-regions", summary="Where the eyes, brows, mouth and head are in the picture shown (drag to edit)")
    async def regions(request: Request, session: str = Query(..., max_length=256)) -> dict[str, Any]:
        state = _lp(request)
        _, source = state.resolve(session)
        h, w = source.display.shape[:2]
        boxes = await state.off_loop(lambda: face_regions(source))
        face = source.state.face
        photo_w, photo_h = face.photo_size if face is not None else (w, h)
        return {"width": w, "height": h, "regions": boxes, "landmarks": face is not None,
                "photo_width": int(photo_w), "photo_height": int(photo_h)}  # fmt: skip


def _base_and_library_routes(app: FastAPI) -> None:
    @app.post("/base", summary="Make these parameters the base that commands, idle and previews start from")
    async def set_base(request: Request, body: SessionParams) -> dict[str, Any]:
        state = _lp(request)
        _, source = state.resolve(body.session)
        record = keep_of(state).record(body.session)
        neutral = source.state.neutral_params()
        base = None if body.params is None else neutral.replace(**body.params)
        record.base = None if base == neutral else base
        current = record.base or neutral
        return {"base": current.as_dict(), "photo": record.base is None}

    @app.get("/library", summary="This page's saved expressions")
    async def get_library(request: Request, session: str = Query(..., max_length=256)) -> dict[str, Any]:
        state = _lp(request)
        state.resolve(session)
        return _library_body(state, session)

    @app.post("/library", summary="Save parameters under a name, usable in this page's commands")
    async def save_expression(request: Request, body: SaveExpression) -> dict[str, Any]:
        state = _lp(request)
        _, source = state.resolve(body.session)
        name = keep_of(state).record(body.session).library.save(body.name, body.params, _neutral(source))
        return {**_library_body(state, body.session), "saved": name}

    @app.post("/library/delete", summary="Forget a saved expression")
    async def delete_expression(request: Request, body: NamedExpression) -> dict[str, Any]:
        state = _lp(request)
        state.resolve(body.session)
        keep_of(state).record(body.session).library.delete(body.name)
        return _library_body(state, body.session)

    @app.get("/library/export", summary="This page's saved expressions as a JSON file")
    async def export_library(request: Request, session: str = Query(..., max_length=256)) -> JSONResponse:
        state = _lp(request)
        state.resolve(session)
        body = keep_of(state).record(session).library.to_json()
        return JSONResponse(body, headers=attachment("lpstudio-expressions.json"))

    @app.post("/library/import", summary="Add the expressions of an exported JSON library (all or none)")
    async def import_library(request: Request, body: ImportLibrary) -> dict[str, Any]:
        state = _lp(request)
        _, source = state.resolve(body.session)
        text = await state.off_loop(lambda: json.dumps(body.library))
        if len(text.encode("utf-8")) > MAX_LIBRARY_JSON_BYTES:
            raise LibraryError(f"the library is larger than {MAX_LIBRARY_JSON_BYTES} bytes",
                               hint=f"a library holds at most {MAX_EXPRESSIONS} expressions")  # fmt: skip
        library = keep_of(state).record(body.session).library
        names = library.import_json(body.library, _neutral(source))
        return {**_library_body(state, body.session), "imported": names}
