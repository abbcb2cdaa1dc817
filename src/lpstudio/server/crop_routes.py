"""Crop controls over HTTP: the server's own values, and a photo upload with its own crop.

* ``GET /crop-options``: the crop controls the server runs with (``lpstudio serve
  --crop-scale ...``, else the official defaults), the ranges a request may use, and
  whether a request may override them (not on Ray Serve, whose replicas prepare
  photos with their own options).
* ``POST /source-image/crop``: as ``POST /source-image`` (same admission, size and
  type checks, decoding off the event loop, preparation on the render worker), with
  form fields ``crop_scale``, ``crop_vx``, ``crop_vy``, ``det_thresh`` and
  ``no_rotate`` replacing the server's values for this photo. Each is checked
  against :class:`~lpstudio.face.crop_options.CropOptions`' ranges before anything
  is decoded: a bad value is a 400 JSON error naming it. The digest that keys the
  prepared photo includes the options, so the same photo with another crop is
  prepared anew and never mixed up with the plain upload.

Routes are registered on the app by :func:`register_crop_routes` (from
``create_app``), so they sit behind the same Host/Origin/key guard and body limits
(:data:`CROP_UPLOAD_PATH` has the upload's body limit).
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from fastapi import FastAPI, File, Form, Request, UploadFile

from ..errors import LPStudioError
from ..face.crop_options import DET_THRESH_RANGE, SCALE_RANGE, SHIFT_RANGE, CropOptions, parse_number
from .intake import open_source, read_photo

#: The upload path with per-photo crop controls.
CROP_UPLOAD_PATH: str = "/source-image/crop"
#: Form field -> CropOptions field (errors name the form field).
_FIELDS: dict[str, str] = {"crop_scale": "scale", "crop_vx": "vx", "crop_vy": "vy", "det_thresh": "det_thresh"}
#: Longest form value read (a number never needs more).
_MAX_FIELD_CHARS: int = 32


def server_crop_options(engine: Any) -> CropOptions:
    """The crop controls the engine's face pipeline runs with (official defaults when it has none)."""
    options = getattr(getattr(engine, "face", None), "crop_options", None)
    return options if isinstance(options, CropOptions) else CropOptions()


def _per_request_allowed(worker: Any) -> bool:
    """Whether the render worker can prepare a photo with its own crop options (a local worker can)."""
    try:
        return "crop_options" in inspect.signature(worker.prepare_source).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def request_options(base: CropOptions, form: dict[str, str | None], no_rotate: bool) -> CropOptions:
    """``base`` with the form's values (empty fields keep ``base``'s).

    Raises:
        ParamError: a value that is not a number or out of range (one line, names the field).
    """
    values: dict[str, Any] = {}
    for key, field in _FIELDS.items():
        raw = form.get(key)
        if raw is None or not str(raw).strip():
            continue
        values[field] = parse_number(key, str(raw)[:_MAX_FIELD_CHARS])
    if no_rotate:
        values["rotate"] = False
    try:
        return base.merged(values)
    except LPStudioError as exc:  # the CLI's names (--crop-scale) -> the form's (crop_scale)
        for key in _FIELDS:
            exc.message = exc.message.replace(f"--{key.replace('_', '-')}", key)
        exc.args = (exc.message if exc.hint is None else f"{exc.message}\n  -> {exc.hint}",)
        raise


def _digest(digest: str, options: CropOptions) -> str:
    return hashlib.sha256(f"{digest}|crop={sorted(options.as_dict().items())!r}".encode()).hexdigest()


def register_crop_routes(app: FastAPI) -> None:
    """Add ``GET /crop-options`` and ``POST /source-image/crop`` to the app."""
    from .app import MAX_FACE_INDEX, _clean_name, client_of, lp

    @app.get("/crop-options", summary="The crop controls in use, their ranges, and whether a request may set them")
    async def crop_options(request: Request) -> dict[str, Any]:
        state = lp(request)
        return {
            "options": server_crop_options(state.engine).as_dict(),
            "defaults": CropOptions().as_dict(),
            "ranges": {
                "crop_scale": list(SCALE_RANGE),
                "crop_vx": list(SHIFT_RANGE),
                "crop_vy": list(SHIFT_RANGE),
                "det_thresh": list(DET_THRESH_RANGE),
            },
            "per_request": _per_request_allowed(state.worker),
        }

    @app.post(CROP_UPLOAD_PATH, summary="Upload a portrait photo with its own crop controls")
    async def upload_with_crop(
        request: Request,
        file: UploadFile = File(..., description="a JPEG, PNG or WebP photo"),
        face_index: int | None = Form(None, ge=0, le=MAX_FACE_INDEX),
        crop_scale: str | None = Form(None, description=f"crop side over landmark extent, {SCALE_RANGE}"),
        crop_vx: str | None = Form(None, description=f"shift right (+) / left (-) in crop sides, {SHIFT_RANGE}"),
        crop_vy: str | None = Form(None, description=f"shift down (+) / up (-) in crop sides, {SHIFT_RANGE}"),
        det_thresh: str | None = Form(None, description=f"minimum face score, {DET_THRESH_RANGE}"),
        no_rotate: bool = Form(False, description="keep the crop upright (official flag_do_rot=False)"),
    ) -> dict[str, Any]:
        state = lp(request)
        form = {"crop_scale": crop_scale, "crop_vx": crop_vx, "crop_vy": crop_vy, "det_thresh": det_thresh}
        options = request_options(server_crop_options(state.engine), form, no_rotate)  # before any work
        if not _per_request_allowed(state.worker):
            raise LPStudioError(
                "this server prepares photos on Ray Serve replicas, which take no per-photo crop controls",
                hint="start the server with --crop-scale/--crop-vx/--crop-vy/--det-thresh/--no-rotate instead",
            )
        name = _clean_name(file.filename)
        rgb, digest = await read_photo(state, file, name, face_index)
        digest = _digest(digest, options)
        source = await open_source(state, rgb, digest, face_index, options)
        client = client_of(request)
        state.sources.claim(source, client)
        info = state.sessions.new(digest, name, client).describe(source)
        info["crop_options"] = options.as_dict()
        return info


__all__ = ["CROP_UPLOAD_PATH", "register_crop_routes", "request_options", "server_crop_options"]
