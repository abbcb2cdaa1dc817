"""Hostile image files, built byte by byte for the intake tests (face intake and HTTP uploads).

Each builder returns the whole file; none needs anything but Pillow, zlib and struct.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke showpage\n%%EOF\n"
"""An EPS drawing: Pillow would hand it to Ghostscript if it were allowed to guess the format."""
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"></svg>'
TEXT = b"hello, this is a letter and not a photo\n" * 4


def photo_jpeg(size: int = 256, seed: int = 0, *, progressive: bool = False) -> bytes:
    """A smooth, photo-like JPEG (about 10-20 kB at 256 px)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 6.0, (size, size, 3))
    rgb = np.stack([200 * x + 30, 180 * y + 40, 120 * (x + y) / 2 + 60], axis=-1) + noise
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90, progressive=progressive)
    return buf.getvalue()


def _segments(jpeg: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of every segment after SOI; a scan's entropy-coded data is part of its SOS segment."""
    out = []
    pos = 2
    while pos < len(jpeg):
        marker = jpeg[pos + 1]
        if marker == 0xD9:  # EOI
            out.append((marker, pos, pos + 2))
            break
        length = struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or RSTn
            while True:
                end = jpeg.index(b"\xff", end)
                nxt = jpeg[end + 1]
                if nxt == 0 or 0xD0 <= nxt <= 0xD7:
                    end += 2
                    continue
                break
        out.append((marker, pos, end))
        pos = end
    return out


def scan_bomb_jpeg(repeats: int = 58_000, size: int = 1024) -> bytes:
    """A progressive JPEG whose last scan is repeated ``repeats`` times (under 1 MB by default).

    The picture is flat, so a refinement scan is a dozen bytes, yet the decoder makes a pass
    over the whole image for each copy.
    """
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), 120, np.uint8)).save(buf, format="JPEG", quality=90, progressive=True)
    data = buf.getvalue()
    _, start, end = [s for s in _segments(data) if s[0] == 0xDA][-1]
    return data[:end] + data[start:end] * repeats + data[end:]


def jpeg_declaring(width: int, height: int) -> bytes:
    """A baseline JPEG of 16x16 whose frame header is patched to say ``width x height`` (about 1 KB of data)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    for marker, start, _ in _segments(bytes(data)):
        if marker in (0xC0, 0xC1, 0xC2):  # SOF: length, precision, height, width
            struct.pack_into(">HH", data, start + 5, height, width)
            break
    return bytes(data)


def tiff_many_ifds(count: int = 50_000, side: int = 64) -> bytes:
    """A little-endian gray TIFF with ``count`` pages chained by their IFDs, all sharing one strip of pixels."""
    pixels = bytes(range(256)) * (side * side // 256 + 1)
    pixels = pixels[: side * side]
    header = 8
    data_at = header
    first_ifd = data_at + len(pixels)
    tags = 8
    ifd_size = 2 + tags * 12 + 4
    out = bytearray(b"II*\x00" + struct.pack("<I", first_ifd) + pixels)
    for i in range(count):
        at = first_ifd + i * ifd_size
        nxt = at + ifd_size if i + 1 < count else 0
        entries = [
            (256, 3, 1, side),  # ImageWidth
            (257, 3, 1, side),  # ImageLength
            (258, 3, 1, 8),  # BitsPerSample
            (259, 3, 1, 1),  # Compression: none
            (262, 3, 1, 1),  # Photometric: black is zero
            (273, 4, 1, data_at),  # StripOffsets
            (278, 3, 1, side),  # RowsPerStrip
            (279, 4, 1, side * side),  # StripByteCounts
        ]
        out += struct.pack("<H", tags)
        for tag, kind, n, value in entries:
            packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
            out += struct.pack("<HHI", tag, kind, n) + packed
        out += struct.pack("<I", nxt)
    return bytes(out)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def flat_png(width: int, height: int, *, bit_depth: int = 16, colour_type: int = 6) -> bytes:
    """A mostly flat (so tiny, a few hundred kB) PNG of ``width x height``: 16-bit RGBA by default.

    One grey square in the top-left corner keeps it from being blank.
    """
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    sample = bit_depth // 8
    row_bytes = width * channels * sample
    flat = b"\x00" + b"\x7f" * row_bytes
    marked = (
        b"\x00"
        + b"\x20" * min(row_bytes, 64 * channels * sample)
        + b"\x7f" * max(0, row_bytes - 64 * channels * sample)
    )
    comp = zlib.compressobj(9)
    parts = [comp.compress(marked if r < 64 else flat) for r in range(height)]
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
