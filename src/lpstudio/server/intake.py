"""Photo intake: decode an upload off the event loop, recognise it by digest, prepare it once.

The digest (of the decoded pixels and how they are prepared) keys the prepared
:class:`~lpstudio.server.sessions.Source`: a photo sent again, by the same page after
its session expired or by another page, is found in the store, or joins the
preparation already in flight, instead of being prepared twice.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageError, PayloadTooLargeError
from ..expressions.cache import source_digest
from ..face.intake import load_image
from .limits import UPLOAD_MAX_SIDE, ServiceLimits
from .sessions import Source, display_image, encode_jpeg, make_source
from .state import AppState

ALLOWED_UPLOAD_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "image/gif", "image/tiff")


def default_source_path(state: AppState) -> Path:
    if state.settings.default_source is not None:
        return state.settings.default_source
    return Path(str(resources.files("lpstudio").joinpath("assets/astronaut.png")))


def check_upload(state: AppState, name: str, content_type: str | None, data: bytes) -> None:
    """Refuse a wrong type, an empty file or one over the size limit (before decoding)."""
    limits = state.limits
    if content_type and content_type.split(";")[0].strip().lower() not in ALLOWED_UPLOAD_TYPES:
        raise ImageError(
            f"{name}: files of type {content_type[:80]} are not accepted", hint="upload a JPEG, PNG or WebP photo"
        )
    if len(data) > limits.max_upload_bytes:
        raise PayloadTooLargeError(
            f"{name} is larger than {limits.max_upload_bytes // (1024 * 1024)} MB", hint="upload a smaller photo"
        )
    if not data:
        raise ImageError(f"{name} is empty", hint="choose a photo file")


def decode_options(limits: ServiceLimits) -> dict[str, int]:
    """What :func:`~lpstudio.face.intake.load_image` may spend on one upload (its keyword arguments).

    The photo comes out at most :data:`UPLOAD_MAX_SIDE` a side (JPEGs decoded at a reduced scale),
    and its decoded pixels may take at most ``max_decode_bytes``.
    """
    return {
        "max_pixels": limits.max_upload_pixels,
        "max_side": UPLOAD_MAX_SIDE,
        "max_decode_bytes": limits.max_decode_bytes,
    }


async def decode(state: AppState, data: bytes, name: str, face_index: int | None) -> tuple[np.ndarray, str]:
    """``(rgb, digest)`` of an uploaded file, decoded and hashed on a thread (at most ``max_decodes`` at once).

    The format comes from the file's first bytes, never from its name or declared type, and its
    decoding cost (pixels, memory, JPEG scans, TIFF pages) is bounded before decoding starts.
    """
    crop = state.settings.crop
    options = decode_options(state.limits)

    def work() -> tuple[np.ndarray, str]:
        rgb = load_image(data, name=name, **options).rgb
        return rgb, source_digest(rgb, crop=crop, face_index=face_index)

    async with state.decode_slots:
        return await state.off_loop(work)


async def default_image(state: AppState) -> tuple[np.ndarray, str]:
    """The default portrait, decoded once."""
    if state.default_image is None:
        path = default_source_path(state)
        data = await state.off_loop(path.read_bytes)
        state.default_image = await decode(state, data, path.name, None)
    return state.default_image


async def default_view(state: AppState) -> bytes:
    """The default portrait as the page shows it (JPEG), before any session exists."""
    if state.default_view is None:
        rgb, _ = await default_image(state)
        crop = state.settings.crop
        state.default_view = await state.off_loop(lambda: encode_jpeg(display_image(rgb, crop)))
    return state.default_view


async def open_source(
    state: AppState, rgb: np.ndarray, digest: str, face_index: int | None, crop_options: Any = None
) -> Source:
    """The prepared photo for ``digest``: from the store, from a preparation in flight, or prepared now.

    A new preparation takes an admission slot (429 when ``max_pending_sources`` are in flight).
    ``crop_options``: the photo's own crop controls (a ``CropOptions``; ``digest`` must include them).
    """
    source = state.sources.get(digest)
    if source is not None:
        return source
    task = state.preparing.get(digest)
    if task is None:
        ticket = state.admission.admit_source()
        task = state.loop.create_task(_prepare(state, rgb, digest, face_index, crop_options))
        state.preparing[digest] = task

        def done(fut: asyncio.Future, digest: str = digest) -> None:
            ticket.release()
            state.preparing.pop(digest, None)
            if not fut.cancelled():
                fut.exception()  # retrieved: a failure reaches the requests that wait for it

        task.add_done_callback(done)
    return await asyncio.shield(task)


async def _prepare(
    state: AppState, rgb: np.ndarray, digest: str, face_index: int | None, crop_options: Any = None
) -> Source:
    crop = state.settings.crop
    extra = {} if crop_options is None else {"crop_options": crop_options}  # a Ray worker takes none
    prepared = await asyncio.wrap_future(
        state.worker.prepare_source(rgb, digest=digest, crop=crop, face_index=face_index, **extra)
    )
    source = await state.off_loop(lambda: make_source(prepared, rgb, digest))
    if crop:
        from .faces import prepare_faces

        await prepare_faces(state, source, rgb)  # every face of a group photo, counted in its memory
    state.sources.add(source)
    if state.on_new_source is not None:
        state.on_new_source(source)
    return source


async def read_photo(state: AppState, upload: Any, name: str, face_index: int | None) -> tuple[np.ndarray, str]:
    """An uploaded photo (``upload``: a multipart file) read within the upload bound, checked and decoded.

    Admitted like every photo (a source slot while it is read and decoded). Returns the (H, W, 3)
    uint8 picture and its digest; raises the upload's 4xx errors.
    """
    ticket = state.admission.admit_source()
    try:
        data = await upload.read(state.limits.max_upload_bytes + 1)
        check_upload(state, name, upload.content_type, data)
        rgb, digest = await decode(state, data, name, face_index)
        del data
    finally:
        ticket.release()
    return rgb, digest
