"""Image intake: turn whatever the user gives into an upright 8-bit RGB photo.

:func:`load_image` accepts a path or the file's bytes and never surprises:

* EXIF orientation is applied (the photo comes out the way viewers show it);
* transparency is composited on white (RGBA, LA, palette with transparency);
* grayscale, 1-bit, palette, CMYK and other modes become RGB;
* 16-bit PNG/TIFF (gray or colour) is rounded to 8 bits, not truncated;
* multi-frame files (GIF, animated WebP, multi-page TIFF) give their first frame;
* the full resolution is kept (see :func:`limit_side` for the analysis copy).

Anything that cannot be used raises :class:`~lpstudio.errors.ImageError` whose
message names the file, says what is wrong and what to do.

:func:`as_rgb_uint8` does the same normalisation for in-memory arrays.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from ..errors import ImageError
from ..sniff import JPEG, SNIFF_BYTES, TIFF, describe, sniff_image
from .pixels import _decode_16bit_colour, _gray_to_rgb, _is_16bit_colour, _over_white_u8, _pillow_to_rgb, _to_uint8

log = logging.getLogger(__name__)

#: The official pipeline limits a source photo's longer side to this before
#: detection and cropping (``InferenceConfig.source_max_dim``). We keep the full
#: photo for the output and analyse a copy of this size.
ANALYSIS_MAX_SIDE: int = 1280
#: Refuse photos above this many pixels (about 360 MB as RGB): bigger files are
#: almost always scans or panoramas that would exhaust memory.
MAX_PIXELS: int = 120_000_000
#: A face cannot be found in anything smaller than this on its shorter side.
MIN_SIDE: int = 32

#: Memory the decoded pixels of one image may take in the decoder by default (pixels times
#: bytes per pixel: 4 for 8-bit colour in Pillow, 6/8 for 16-bit colour in OpenCV); a local
#: file of MAX_PIXELS at 8 bytes fits. Callers serving others pass a smaller budget.
MAX_DECODE_BYTES: int = 1024 * 1024 * 1024
#: A progressive JPEG from libjpeg's standard script has 10 scans (6 for gray) and optimising
#: encoders use a few dozen; each scan is a pass over the image, so thousands are a CPU bomb.
MAX_JPEG_SCANS: int = 100
#: Decoding work of a progressive JPEG grows with scans x pixels: a 40 MP photo from the
#: standard 10-scan script is 400 M scan-pixels (about 1.6 s on one slow core; 100 scans took
#: 11 s). 15 scans' worth of the 40 MP upload limit keeps any accepted JPEG within a few seconds.
MAX_JPEG_SCAN_PIXELS: int = 15 * 40_000_000
#: A photo is one page; a document scan may have a few dozen. Each page is an IFD to walk.
MAX_TIFF_PAGES: int = 64
MIB: int = 1024 * 1024

#: EXIF tag number of the orientation field.
_EXIF_ORIENTATION: int = 0x0112
_SUPPORTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"
#: Bytes of one TIFF IFD entry (tag, type, count, value/offset: 2 + 2 + 4 + 4).
_TIFF_ENTRY_BYTES: int = 12
#: The next marker after a scan's entropy-coded data: 0xFF (after any fill 0xFF) followed by
#: neither a stuffed 0x00 nor a restart marker RST0-RST7.
_JPEG_NEXT_MARKER = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]  # noqa: UP007 (runtime alias, py3.10)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo, upright, as 8-bit RGB at full resolution.

    Attributes:
        rgb: (H, W, 3) uint8, C-contiguous, orientation already applied.
        source: the path as given, or ``"<bytes>"``/the name passed for bytes.
        format: Pillow's format name (``"JPEG"``, ``"PNG"`` ...), or None.
        mode: the file's pixel mode before conversion (``"RGBA"``, ``"I;16"`` ...).
        exif_orientation: the EXIF orientation value applied (1 = none).
        had_alpha: transparency was composited on white.
        bit_depth: bits per channel in the file (8 or 16; 1 for bilevel, 32 for float).
        n_frames: number of frames in the file; only the first is used.
    """

    rgb: NDArray[np.uint8]
    source: str
    format: str | None
    mode: str
    exif_orientation: int = 1
    had_alpha: bool = False
    bit_depth: int = 8
    n_frames: int = 1

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the upright photo."""
        return self.width, self.height


# --------------------------------------------------------------------------- reading


def _describe(source: ImageSource, name: str | None) -> str:
    if name is not None:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<uploaded bytes>"
    return os.fspath(source) if not isinstance(source, str) else source


def _read_bytes(source: ImageSource, label: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = Path(os.fspath(source))
        if not path.exists():
            raise ImageError(
                f"Image file '{label}' does not exist.",
                hint="Check the path and the spelling; relative paths are relative to the current folder.",
            )
        if path.is_dir():
            raise ImageError(f"'{label}' is a folder, not an image file.", hint="Give the path of one photo inside it.")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ImageError(
                f"Image file '{label}' cannot be read: {exc.strerror or exc}.",
                hint="Check that you may read the file (permissions) and that no other program locks it.",
            ) from exc
    if not data:
        raise ImageError(
            f"Image file '{label}' is empty (0 bytes).",
            hint="The upload or copy was probably interrupted; save or download the photo again.",
        )
    return data


def _sniff_unsupported(head: bytes) -> tuple[str, str] | None:
    """(what is wrong, what to do) for well-known files Pillow cannot decode."""
    export = "Export it as JPEG or PNG first."
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
            return "is a HEIC/HEIF photo, which this build cannot decode", export
        if brand in (b"avif", b"avis"):
            return "is an AVIF image, which this build cannot decode", export
        return (
            "looks like a video (MP4/MOV), not a still image",
            "Give a photo here; to use a frame of the video, save that frame as JPEG or PNG first.",
        )
    if head[:4] == b"\x1aE\xdf\xa3":
        return (
            "looks like a video (WebM/MKV), not a still image",
            "Give a photo here; to use a frame of the video, save that frame as JPEG or PNG first.",
        )
    if head[:4] == b"%PDF":
        return "is a PDF document, not an image", export
    if head[:5] == b"<?xml" or b"<svg" in head[:256]:
        return "is an SVG drawing; only pixel images are supported", export
    return None


def _refuse_unknown(label: str, data: bytes) -> ImageError:
    """The error for a file whose first bytes are none of the accepted image signatures."""
    why, hint = _sniff_unsupported(data[:512]) or (
        f"is not an image file in a supported format (it looks like {describe(data[:SNIFF_BYTES])})",
        f"Use a {_SUPPORTED} photo.",
    )
    return ImageError(f"'{label}' {why}.", hint=hint)


def jpeg_scan_count(data: bytes, limit: int = MAX_JPEG_SCANS) -> int:
    """Scans (SOS segments) of a JPEG, counted by walking its segments; stops counting past ``limit``.

    Entropy-coded data is skipped to the next real marker (0xFF followed by anything but a
    stuffed 0x00, a restart marker or fill 0xFF). A file that ends early just ends the count.
    """
    scans = 0
    pos = 2  # after SOI
    size = len(data)
    while pos + 4 <= size and scans <= limit:
        if data[pos] != 0xFF:
            return scans  # not a marker where one must be: the decoder will say the file is damaged
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # restart markers and TEM stand alone
            pos += 2
            continue
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDA:
            scans += 1
            found = _JPEG_NEXT_MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return scans


def check_jpeg_scans(data: bytes, label: str, limit: int = MAX_JPEG_SCANS) -> None:
    """Refuse a JPEG with more than ``limit`` scans before it is decoded (each scan is a pass over the image)."""
    if jpeg_scan_count(data, limit) > limit:
        raise ImageError(
            f"Image '{label}' is a JPEG made of more than {limit} scans; a photo has at most a few dozen, "
            "and decoding this one would take minutes.",
            hint="Re-save the photo as an ordinary (baseline) JPEG or as PNG and try again.",
        )


def _check_scan_work(data: bytes, label: str, width: int, height: int) -> None:
    """Refuse a JPEG whose scans x pixels exceed :data:`MAX_JPEG_SCAN_PIXELS` (its decoding time)."""
    allowed = max(1, MAX_JPEG_SCAN_PIXELS // max(1, width * height))
    if allowed < MAX_JPEG_SCANS and jpeg_scan_count(data, allowed) > allowed:
        raise ImageError(
            f"Image '{label}' is a {width}x{height} JPEG made of more than {allowed} scans, "
            "too slow to decode at that size.",
            hint="Re-save the photo as an ordinary (baseline) JPEG, or smaller, and try again.",
        )


def tiff_page_count(data: bytes, limit: int = MAX_TIFF_PAGES) -> int:
    """Pages (IFDs) of a classic TIFF, walked without decoding; stops counting past ``limit``.

    A chain that points back at an IFD already seen, or outside the file, ends the count.
    """
    order = "<" if data[:2] == b"II" else ">"
    seen: set[int] = set()
    at = struct.unpack_from(order + "I", data, 4)[0] if len(data) >= 8 else 0
    while at and at not in seen and len(seen) <= limit and at + 2 <= len(data):
        seen.add(at)
        entries = struct.unpack_from(order + "H", data, at)[0]
        nxt = at + 2 + entries * _TIFF_ENTRY_BYTES
        if nxt + 4 > len(data):
            break
        at = struct.unpack_from(order + "I", data, nxt)[0]
    return len(seen)


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
    max_side: int | None = None,
    max_decode_bytes: int = MAX_DECODE_BYTES,
) -> LoadedImage:
    """Decode a photo from a path or bytes into upright 8-bit RGB.

    The format is taken from the file's first bytes (:func:`lpstudio.sniff.sniff_image`) and
    only that decoder is used; what each decode may cost is checked before decoding.

    Args:
        source: a file path, or the file's contents as bytes.
        name: how to call the image in error messages (e.g. the upload's
            filename); defaults to the path.
        max_pixels: refuse images with more pixels than this.
        max_side: when given, the photo comes out with its longer side at most this
            (JPEGs are decoded at a reduced scale, other formats reduced right after decoding);
            None keeps the full resolution.
        max_decode_bytes: refuse images whose decoded pixels would take more memory than this
            in the decoder (pixels times bytes per pixel of the file's mode).

    Returns:
        A :class:`LoadedImage` with ``rgb`` of shape (H, W, 3) uint8.

    Raises:
        ImageError: missing/unreadable/empty file, not an image, damaged file,
            too large or too small.
    """
    label = _describe(source, name)
    data = _read_bytes(source, label)
    kind = sniff_image(data[:SNIFF_BYTES])
    if kind is None:
        raise _refuse_unknown(label, data)
    pages = 1
    if kind is JPEG:
        check_jpeg_scans(data, label)
    elif kind is TIFF:
        pages = tiff_page_count(data)
        if pages > MAX_TIFF_PAGES:
            raise ImageError(
                f"Image '{label}' is a TIFF of more than {MAX_TIFF_PAGES} pages; a photo has one.",
                hint="Export the page you want as a JPEG or PNG and upload that.",
            )
    damaged = ImageError(
        f"Image '{label}' is damaged or truncated and cannot be decoded as {kind.name}.",
        hint="Download or export the photo again; re-saving it in an image editor also helps.",
    )
    with warnings.catch_warnings():
        # Pillow warns for big images; we apply our own limit below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=[kind.decoder])
        except Image.DecompressionBombError as exc:
            log.info("refused %s: %s", label, exc)
            raise ImageError(
                f"Image '{label}' is too large to process safely.",
                hint=f"Resize it to at most {max_pixels // 1_000_000} megapixels and try again.",
            ) from None
        except Exception as exc:  # Pillow raises many types for broken headers; its text stays in the log
            log.info("cannot open %s as %s: %r", label, kind.name, exc)
            raise damaged from None
        with im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageError(
                    f"Image '{label}' has no pixels ({width}x{height}).", hint=f"Use a {_SUPPORTED} photo."
                )
            if width * height > max_pixels:
                raise ImageError(
                    f"Image '{label}' is too large: {width}x{height} = {width * height / 1e6:.0f} megapixels "
                    f"(the limit is {max_pixels / 1e6:.0f}).",
                    hint="Resize it (a 2000-4000 px long side is plenty for a portrait) and try again.",
                )
            if kind is JPEG:
                _check_scan_work(data, label, width, height)
            if kind is JPEG and max_side is not None and max(width, height) > max_side:
                scale = max_side / max(width, height)
                im.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))  # libjpeg decodes at 1/2..1/8
            deep = _is_16bit_colour(im, data, kind)
            mode = im.mode
            decoded_w, decoded_h = im.size
            cost = decoded_w * decoded_h * _bytes_per_pixel(mode)
            if cost > max_decode_bytes:
                depth = "16 bits" if mode.startswith("I;16") else "this pixel format"
                raise ImageError(
                    f"Image '{label}' is too large to decode: {width}x{height} at {depth} needs "
                    f"{cost / MIB:.0f} MB, more than the {max_decode_bytes / MIB:.0f} MB allowed.",
                    hint="Resize it, or save it as an 8-bit JPEG or PNG, and try again.",
                )
            orientation = _orientation(im)
            n_frames = pages if kind is TIFF else int(getattr(im, "n_frames", 1) or 1)
            rgb: NDArray[np.uint8] | None = None
            if deep is not None and decoded_w * decoded_h * deep * 2 <= max_decode_bytes:
                rgb = _decode_16bit_colour(data, deep)  # rounded, not truncated
                had_alpha, bit_depth = deep == 4, 16
            if rgb is None:
                try:
                    im.load()
                except Exception as exc:  # truncated data, broken tables...: decoder text stays in the log
                    log.info("cannot decode %s as %s: %r", label, kind.name, exc)
                    raise damaged from None
                rgb, had_alpha, bit_depth = _pillow_to_rgb(im, max_side)
                if deep is not None:
                    bit_depth = 16
    if max_side is not None:
        rgb = _shrink(rgb, max_side)
    rgb = _apply_orientation(rgb, orientation)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise ImageError(
            f"Image '{label}' is too small ({w}x{h} pixels) to find a face in.",
            hint=f"Use a photo at least {MIN_SIDE} pixels on each side; 512 or more works best.",
        )
    return LoadedImage(
        rgb=np.ascontiguousarray(rgb),
        source=label,
        format=kind.decoder,
        mode=mode,
        exif_orientation=orientation,
        had_alpha=had_alpha,
        bit_depth=bit_depth,
        n_frames=n_frames,
    )


def _bytes_per_pixel(mode: str) -> int:
    """Bytes Pillow stores per pixel of ``mode`` (1 for 1/L/P, 2 for the 16-bit gray modes, else 4)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4  # Pillow keeps RGB, RGBA, LA, CMYK, YCbCr, I and F in 32 bits per pixel


def _orientation(im: Image.Image) -> int:
    """EXIF orientation 1..8 of a Pillow image; 1 when absent or malformed."""
    try:
        value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # malformed EXIF must not stop a photo from loading
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(img: NDArray[np.uint8], orientation: int) -> NDArray[np.uint8]:
    """Make an (H, W, C) image upright given its EXIF orientation (1..8).

    Values follow the EXIF/TIFF specification: 2 mirror, 3 rotate 180, 4 flip,
    5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise.
    """
    ops = {
        1: lambda a: a,
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops.get(orientation, ops[1])(img))


def _shrink(rgb: NDArray[np.uint8], max_side: int) -> NDArray[np.uint8]:
    """``rgb`` with its longer side brought down to ``max_side`` (area interpolation); itself if small enough."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------- arrays


def as_rgb_uint8(image: NDArray, name: str = "image") -> NDArray[np.uint8]:
    """Normalise an in-memory image to (H, W, 3) uint8 RGB.

    Accepts (H, W) or (H, W, 1) gray, (H, W, 3) RGB, (H, W, 4) RGBA (composited
    on white), uint8, uint16 (rounded to 8 bits) or float in 0..1.

    Raises:
        ImageError: wrong shape, empty, or an unsupported dtype.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        raise ImageError(
            f"{name} has shape {arr.shape}; expected an (H, W, 3) RGB image.",
            hint="Pass a decoded RGB photo (lpstudio.face.load_image gives one).",
        )
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.uint16:
        arr = _to_uint8(arr, "I;16")
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.rint(np.nan_to_num(arr.astype(np.float64)) * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    else:
        raise ImageError(
            f"{name} has pixel type {arr.dtype}; expected uint8 (or uint16, or float in 0..1).",
            hint="Convert the array with .astype(numpy.uint8) after scaling it to 0..255.",
        )
    if arr.ndim == 2:
        arr = _gray_to_rgb(arr)
    elif arr.shape[2] == 4:
        arr = _over_white_u8(arr[..., :3], arr[..., 3:])
    return np.ascontiguousarray(arr)


def limit_side(
    image: NDArray[np.uint8], max_side: int = ANALYSIS_MAX_SIDE
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """A copy of the photo whose longer side is at most ``max_side``.

    Returns:
        ``(small, M_full2small)``: the (h, w, 3) copy (``image`` itself when no
        resize is needed) and the (3, 3) float64 matrix taking photo pixel
        coordinates to ``small`` pixel coordinates (pixel centres at integers).

    Area interpolation is used (the official code uses bilinear; area avoids
    aliasing on big photos).
    """
    h, w = image.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return image, np.eye(3)
    factor = max_side / longest
    nw, nh = max(1, round(w * factor)), max(1, round(h * factor))
    small = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / w, nh / h
    m = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5], [0.0, 0.0, 1.0]])
    return small, m
