"""The live socket's message format: binary frame framing, its size limits, camera JPEG decoding and settings parsing.

Pure functions of bytes and JSON values, shared by the socket (:mod:`lpstudio.server.live`), its load
benchmark (:mod:`lpstudio.server.live_bench`) and tests; the layout is described in :mod:`lpstudio.server.live`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ..drive.driving_motion import DriveSettings
from ..drive.live import LIVE_REGIONS
from ..errors import ImageError, LPStudioError, ParamError

HEADER_LENGTH = struct.Struct(">I")
"""The 4-byte big-endian length that starts every binary message."""

JPEG_MAGIC = b"\xff\xd8\xff"
"""First bytes of every JPEG file (SOI marker, then the next marker's 0xFF)."""

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
"""Largest camera frame message accepted (a 1280x720 JPEG is a few hundred kB)."""

MAX_HEADER_BYTES = 1024
"""Largest JSON header of a frame message."""

MAX_TEXT_BYTES = 4096
"""Largest control message."""

MAX_CAMERA_PIXELS = 1920 * 1080
"""Largest camera picture decoded (checked from the JPEG header, before decoding)."""

MAX_CAMERA_SCANS = 10
"""Most scans a camera frame may have: a browser's frame is baseline (one scan); libjpeg's standard
progressive script has 10. Each scan is a pass over the picture, so thousands are a CPU bomb."""

MAX_FRAME_ID = 2**53 - 1
"""Frame ids are integers JavaScript can hold exactly."""

WS_MAX_SIZE = MAX_MESSAGE_BYTES + 64 * 1024
"""What the WebSocket layer (uvicorn ``ws_max_size``) lets through; larger messages close the socket (1009)."""

BOOL_SETTINGS = ("retarget_eyes", "retarget_lip", "stitching")
FLOAT_SETTINGS: dict[str, tuple[float, float]] = {"smooth": (0.0, 1.0), "multiplier": (0.0, 3.0)}
SETTING_KEYS = ("region", *BOOL_SETTINGS, *FLOAT_SETTINGS)


class LiveProtocolError(LPStudioError):
    """A message on the live socket is malformed (the socket stays open)."""


# ---------------------------------------------------------------------- messages
def pack_frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """One binary message: 4-byte big-endian header length, JSON header, payload."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    return HEADER_LENGTH.pack(len(head)) + head + payload


def unpack_frame(data: bytes, max_header: int = MAX_HEADER_BYTES) -> tuple[dict[str, Any], bytes]:
    """Inverse of :func:`pack_frame`: ``(header, payload)``.

    Raises:
        LiveProtocolError: too short, a header length past the end or over ``max_header``, or not a JSON object.
    """
    if len(data) < HEADER_LENGTH.size:
        raise LiveProtocolError(
            f"a frame message of {len(data)} bytes is too short",
            hint="send 4-byte header length + JSON header + JPEG",
        )
    (n,) = HEADER_LENGTH.unpack_from(data)
    if n > max_header or HEADER_LENGTH.size + n > len(data):
        raise LiveProtocolError(
            f"the frame header length {n} is invalid (at most {max_header}, and within the {len(data)}-byte message)",
            hint="the first 4 bytes are the big-endian length of the JSON header",
        )
    try:
        header = json.loads(data[HEADER_LENGTH.size : HEADER_LENGTH.size + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LiveProtocolError("the frame header is not JSON text", hint='e.g. {"id": 1, "t": 1234.5}') from None
    if not isinstance(header, dict):
        raise LiveProtocolError("the frame header must be a JSON object", hint='e.g. {"id": 1, "t": 1234.5}')
    return header, data[HEADER_LENGTH.size + n :]


def _frame_id(header: Mapping[str, Any]) -> int:
    value = header.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_FRAME_ID:
        raise LiveProtocolError(f"frame id {value!r} is not an integer from 0 to 2^53-1", hint='e.g. {"id": 1}')
    return value


def _capture_time(header: Mapping[str, Any]) -> float | None:
    value = header.get("t")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise LiveProtocolError(f"capture time {value!r} is not a number", hint="t is the page's clock in ms")
    return float(value)


def decode_camera_jpeg(data: bytes, max_pixels: int = MAX_CAMERA_PIXELS) -> np.ndarray:
    """JPEG bytes -> (H,W,3) uint8 RGB; the format, size and number of scans checked before decoding.

    Raises:
        ImageError: not a JPEG, too many pixels or scans, or undecodable (no decoder text in the message).
    """
    from ..face.intake import jpeg_scan_count
    from ..sniff import JPEG, SNIFF_BYTES, sniff_image

    if sniff_image(data[:SNIFF_BYTES]) is not JPEG:
        raise ImageError(
            f"the camera frame ({len(data)} bytes) is not a JPEG", hint="send canvas.toBlob(..., 'image/jpeg') bytes"
        )
    if jpeg_scan_count(data, MAX_CAMERA_SCANS) > MAX_CAMERA_SCANS:
        raise ImageError(
            f"the camera frame is a JPEG of more than {MAX_CAMERA_SCANS} scans",
            hint="send canvas.toBlob(..., 'image/jpeg') bytes (a baseline JPEG of one scan)",
        )
    try:
        with Image.open(io.BytesIO(data), formats=[JPEG.decoder]) as im:
            width, height = im.size
    except Exception:  # PIL raises many types for broken headers; its text is not for the client
        raise ImageError("the camera frame is a broken JPEG", hint="send a complete JPEG") from None
    if width * height > max_pixels:
        raise ImageError(
            f"the camera frame is {width}x{height}, more than {max_pixels} pixels",
            hint="send at most 1920x1080 (640x480 is plenty)",
        )
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (height, width):
        raise ImageError("the camera frame could not be decoded as a JPEG", hint="send a complete JPEG")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_settings(values: Mapping[str, Any], base: DriveSettings) -> DriveSettings:
    """Live settings from query or control values (strings allowed) on top of ``base``.

    Raises:
        ParamError: unknown key, or a value of the wrong type or out of range.
    """
    changes: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in SETTING_KEYS:
            raise ParamError(f"unknown live setting {key!r}", hint=f"use {', '.join(SETTING_KEYS)}")
        if key == "region":
            if raw not in LIVE_REGIONS:
                raise ParamError(f"unknown region {raw!r}", hint=f"use one of {', '.join(LIVE_REGIONS)}")
            changes[key] = raw
        elif key in BOOL_SETTINGS:
            if isinstance(raw, str) and raw.lower() in ("1", "true", "on", "yes", "0", "false", "off", "no"):
                raw = raw.lower() in ("1", "true", "on", "yes")
            if not isinstance(raw, bool):
                raise ParamError(f"live setting {key} must be true or false, got {raw!r}")
            changes[key] = raw
        else:
            lo, hi = FLOAT_SETTINGS[key]
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ParamError(f"live setting {key} must be a number, got {raw!r}") from None
            if isinstance(raw, bool) or not (lo <= number <= hi):
                raise ParamError(f"live setting {key} must be a number from {lo:g} to {hi:g}, got {raw!r}")
            changes[key] = number
    return replace(base, **changes)


def describe_settings(settings: DriveSettings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in SETTING_KEYS}
