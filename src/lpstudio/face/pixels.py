"""Pixel conversion for image intake: any decoded mode or bit depth to 8-bit RGB.

Pillow images of every mode (gray, palette, CMYK, 16/32-bit integer, float, with or without
alpha) and 16-bit colour PNG/TIFF decoded by OpenCV become (H, W, 3) uint8 RGB: 16-bit values
are rounded to 8 bits, not truncated, and transparency is composited on white, in integers.
Conversions run band by band (:data:`BAND_PIXELS` at once), so they never copy the whole photo.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..sniff import PNG, TIFF, Format

#: Background that transparent pixels are composited on.
WHITE: int = 255
#: Pixels converted at once (a band of rows): 1 MP is 4 MB of RGBA, so conversions never
#: copy the whole photo.
BAND_PIXELS: int = 1 << 20
#: Largest 16-bit sample, and 16-bit values per 8-bit step (65535 / 255) with its half, for rounding.
_U16_MAX: int = 65535
_U16_PER_U8: int = 257
_U16_HALF_STEP: int = 128
#: Pillow modes :meth:`PIL.Image.Image.reduce` accepts.
_REDUCIBLE_MODES = frozenset({"L", "LA", "RGB", "RGBA", "I", "F", "CMYK", "La", "RGBa"})


def _bands(height: int, width: int) -> list[tuple[int, int]]:
    """Row ranges of at most :data:`BAND_PIXELS` pixels covering an image (at least one row each)."""
    rows = max(1, BAND_PIXELS // max(1, width))
    return [(y, min(height, y + rows)) for y in range(0, height, rows)]


def _pillow_to_rgb(im: Image.Image, max_side: int | None) -> tuple[NDArray[np.uint8], bool, int]:
    """Convert a loaded Pillow image (any mode) to (H, W, 3) uint8 RGB, band by band.

    With ``max_side``, modes Pillow can reduce are first box-reduced by the largest whole factor
    that keeps the longer side at least ``max_side``. Only bands of :data:`BAND_PIXELS` are ever
    converted at once, so the peak is the decoded image plus the 8-bit result.

    Returns the array, whether an alpha channel was composited, and the bit depth.
    """
    mode = im.mode
    if max_side is not None and mode in _REDUCIBLE_MODES:
        factor = max(im.size) // max_side
        if factor >= 2:
            im = im.reduce(factor)
    width, height = im.size
    out = np.empty((height, width, 3), np.uint8)
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    depth = 1 if mode == "1" else 8
    peak = 0.0
    if mode.startswith("I") or mode == "F":
        low, high = im.getextrema()  # type: ignore[misc]
        peak = float(high)
        wide = mode == "F" or (mode == "I" and peak > _U16_MAX)
        depth = 32 if wide else 16
    for top, bottom in _bands(height, width):
        band = im if bottom - top == height else im.crop((0, top, width, bottom))  # one band: no copy
        if mode.startswith("I") or mode == "F":
            out[top:bottom] = _to_uint8(np.asarray(band), mode, peak)[..., None]
        elif has_alpha:
            rgba = np.asarray(band.convert("RGBA"))
            out[top:bottom] = _over_white_u8(rgba[..., :3], rgba[..., 3:])
        else:
            out[top:bottom] = np.asarray(band.convert("RGB"))
    return out, has_alpha, depth


def _is_16bit_colour(im: Image.Image, data: bytes, kind: Format) -> int | None:
    """Channels (3 or 4) of a PNG/TIFF that stores 16-bit colour (read from its header), else None."""
    if im.mode not in ("RGB", "RGBA"):
        return None
    channels = 4 if im.mode == "RGBA" else 3
    if kind is PNG:
        return channels if len(data) > 24 and data[24] == 16 else None  # IHDR bit depth byte
    if kind is TIFF:
        bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample
        return channels if 16 in (bits if isinstance(bits, tuple) else (bits,)) else None
    return None


def _decode_16bit_colour(data: bytes, channels: int) -> NDArray[np.uint8] | None:
    """Decode 16-bit colour PNG/TIFF with OpenCV and round it to 8 bits (alpha on white), band by band.

    None if OpenCV does not see 16-bit colour with ``channels`` channels (Pillow's 8-bit path is then used).
    """
    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] != channels:
        return None
    height, width = arr.shape[:2]
    out = np.empty((height, width, 3), np.uint8)
    for top, bottom in _bands(height, width):
        bgr = arr[top:bottom, :, 2::-1]
        if channels == 4:
            out[top:bottom] = _over_white_u16(bgr, arr[top:bottom, :, 3:])
        else:
            out[top:bottom] = _u16_to_u8(bgr)
    return out


def _u16_to_u8(values: NDArray) -> NDArray[np.uint8]:
    """``round(v / 257)`` in integers (65535 -> 255 exactly; no ties exist since 257 is odd)."""
    return ((values.astype(np.uint32) + _U16_HALF_STEP) // _U16_PER_U8).astype(np.uint8)


def _over_white_u8(rgb: NDArray[np.uint8], alpha: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """``round(c * a / 255 + 255 * (1 - a / 255))`` in integers, for 8-bit colour and alpha."""
    a = alpha.astype(np.uint32)
    num = rgb.astype(np.uint32) * a + WHITE * (255 - a)
    return ((num + 127) // 255).astype(np.uint8)  # 255 is odd: no ties, rounding half up is exact


def _over_white_u16(rgb: NDArray, alpha: NDArray) -> NDArray[np.uint8]:
    """``round(c / 257 * a / 65535 + 255 * (1 - a / 65535))`` in integers, for 16-bit colour and alpha."""
    a = alpha.astype(np.uint64)
    den = _U16_MAX * _U16_MAX
    num = rgb.astype(np.uint64) * WHITE * a + WHITE * _U16_MAX * (_U16_MAX - a)
    return ((num + (den - 1) // 2) // den).astype(np.uint8)  # den is odd: no ties


def _to_uint8(arr: NDArray, mode: str, peak: float | None = None) -> NDArray[np.uint8]:
    """Scale 16/32-bit integer or float pixel values to 0..255 with rounding.

    ``peak`` is the largest value of the whole image when ``arr`` is a band of it (None: ``arr``'s own).
    Floats are computed in float32 on the band only.
    """
    if arr.size == 0:
        return arr.astype(np.uint8)
    if peak is None:
        peak = float(np.nanmax(arr)) if np.issubdtype(arr.dtype, np.floating) else float(arr.max())
    if mode == "F":
        a = np.nan_to_num(arr.astype(np.float32)) * np.float32(255.0 if peak <= 1.0 else 1.0)
    elif mode == "I" and peak > _U16_MAX:
        a = arr.astype(np.float32) / np.float32(peak) * np.float32(255.0)
    else:
        return _u16_to_u8(np.clip(arr, 0, _U16_MAX))
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.repeat(gray[..., None], 3, axis=2)
