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
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from ..errors import ImageError

#: The official pipeline limits a source photo's longer side to this before
#: detection and cropping (``InferenceConfig.source_max_dim``). We keep the full
#: photo for the output and analyse a copy of this size.
ANALYSIS_MAX_SIDE: int = 1280
#: Refuse photos above this many pixels (about 360 MB as RGB): bigger files are
#: almost always scans or panoramas that would exhaust memory.
MAX_PIXELS: int = 120_000_000
#: A face cannot be found in anything smaller than this on its shorter side.
MIN_SIDE: int = 32
#: Background that transparent pixels are composited on.
WHITE: int = 255

#: EXIF tag number of the orientation field.
_EXIF_ORIENTATION: int = 0x0112
_SUPPORTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"

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


def load_image(
    source: ImageSource,
    *,
    name: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Decode a photo from a path or bytes into upright 8-bit RGB.

    Args:
        source: a file path, or the file's contents as bytes.
        name: how to call the image in error messages (e.g. the upload's
            filename); defaults to the path.
        max_pixels: refuse images with more pixels than this.

    Returns:
        A :class:`LoadedImage` with ``rgb`` of shape (H, W, 3) uint8.

    Raises:
        ImageError: missing/unreadable/empty file, not an image, damaged file,
            too large or too small.
    """
    label = _describe(source, name)
    data = _read_bytes(source, label)
    fix = f"Use a {_SUPPORTED} photo."
    with warnings.catch_warnings():
        # Pillow warns for big images; we apply our own limit below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as exc:
            raise ImageError(
                f"Image '{label}' is too large to process safely ({exc}).",
                hint=f"Resize it to at most {max_pixels // 1_000_000} megapixels and try again.",
            ) from exc
        except UnidentifiedImageError as exc:
            why, hint = _sniff_unsupported(data[:512]) or (
                "is not an image file (or is in a format that is not supported)",
                fix,
            )
            raise ImageError(f"'{label}' {why}.", hint=hint) from exc
        width, height = im.size
        if width <= 0 or height <= 0:
            raise ImageError(f"Image '{label}' has no pixels ({width}x{height}).", hint=fix)
        if width * height > max_pixels:
            raise ImageError(
                f"Image '{label}' is too large: {width}x{height} = {width * height / 1e6:.0f} megapixels "
                f"(the limit is {max_pixels / 1e6:.0f}).",
                hint="Resize it (a 2000-4000 px long side is plenty for a portrait) and try again.",
            )
        try:
            im.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(
                f"Image '{label}' is damaged or truncated and cannot be decoded ({exc}).",
                hint="Download or export the photo again; re-saving it in an image editor also helps.",
            ) from exc
        orientation = _orientation(im)
        mode = im.mode
        fmt = im.format
        n_frames = int(getattr(im, "n_frames", 1) or 1)
        rgb, had_alpha, depth = _pillow_to_rgb(im, data, fmt)

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
        format=fmt,
        mode=mode,
        exif_orientation=orientation,
        had_alpha=had_alpha,
        bit_depth=depth,
        n_frames=n_frames,
    )


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


def _pillow_to_rgb(im: Image.Image, data: bytes, fmt: str | None) -> tuple[NDArray[np.uint8], bool, int]:
    """Convert a loaded Pillow image (any mode) to (H, W, 3) uint8 RGB.

    Returns the array, whether an alpha channel was composited, and the bit depth.
    """
    mode = im.mode
    if mode in ("RGB", "RGBA") and _is_16bit_file(im, data, fmt):
        # Pillow drops 16-bit colour to 8 bits by truncation; decode those ourselves.
        deep = _decode_16bit_colour(data)
        if deep is not None:
            return deep
    if mode == "1":
        return np.asarray(im.convert("RGB")), False, 1
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im)
        wide = mode == "F" or (mode == "I" and arr.size > 0 and int(arr.max()) > 65535)
        return _gray_to_rgb(_to_uint8(arr, mode)), False, 32 if wide else 16
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in im.info)
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"))
        return _composite_on_white(rgba[..., :3], rgba[..., 3:], 255), True, 8
    return np.asarray(im.convert("RGB")), False, 8


def _is_16bit_file(im: Image.Image, data: bytes, fmt: str | None) -> bool:
    """Whether a PNG/TIFF stores 16 bits per sample (read from its header)."""
    if fmt == "PNG":
        return len(data) > 24 and data[24] == 16  # IHDR bit depth byte
    if fmt == "TIFF":
        bits = getattr(im, "tag_v2", {}).get(258, 8)  # BitsPerSample
        return 16 in (bits if isinstance(bits, tuple) else (bits,))
    return False


def _decode_16bit_colour(data: bytes) -> tuple[NDArray[np.uint8], bool, int] | None:
    """Decode 16-bit colour PNG/TIFF with OpenCV; None if the file is not 16-bit colour."""
    buf = np.frombuffer(data, dtype=np.uint8)
    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        return None
    if arr.shape[2] == 4:
        rgb = arr[..., 2::-1].astype(np.float64)
        return _composite_on_white(rgb, arr[..., 3:].astype(np.float64), 65535, scale=255 / 65535), True, 16
    return _to_uint8(arr[..., ::-1], "I;16"), False, 16


def _to_uint8(arr: NDArray, mode: str) -> NDArray[np.uint8]:
    """Scale 16/32-bit integer or float pixel values to 0..255 with rounding."""
    a = arr.astype(np.float64)
    if mode == "F":
        peak = float(np.nanmax(a)) if a.size else 0.0
        a = np.nan_to_num(a) * (255.0 if peak <= 1.0 else 1.0)
    elif mode == "I" and a.size and a.max() > 65535:
        a = a / a.max() * 255.0
    else:
        a = a / 257.0  # 65535 -> 255 exactly
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: NDArray[np.uint8]) -> NDArray[np.uint8]:
    return np.repeat(gray[..., None], 3, axis=2)


def _composite_on_white(rgb: NDArray, alpha: NDArray, alpha_max: float, scale: float = 1.0) -> NDArray[np.uint8]:
    """Blend colour over white: ``rgb * a + white * (1 - a)``, rounded to uint8.

    Args:
        rgb: (H, W, 3) colour values in 0..alpha_max range (times ``1/scale``).
        alpha: (H, W, 1) alpha in 0..alpha_max.
        alpha_max: alpha value meaning opaque.
        scale: factor bringing ``rgb`` to 0..255.
    """
    a = alpha.astype(np.float64) / alpha_max
    out = rgb.astype(np.float64) * scale * a + WHITE * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


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
        arr = _composite_on_white(arr[..., :3], arr[..., 3:], 255)
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
