"""Identify untrusted files by their first bytes, against an allow-list.

Decoders never choose the format of an upload: FFmpeg left to probe will follow an
``ffconcat`` script or an HLS playlist to other files and open RTP listeners for an SDP
text, and Pillow left to guess will hand an EPS file to Ghostscript. So an upload is
matched here against the short list of container signatures we accept, and the decoder
is then opened with that one format named (``av.open(..., format=...)``,
``Image.open(..., formats=[...])``). Anything else is refused before a decoder sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

SNIFF_BYTES = 64
"""How many leading bytes :func:`sniff_audio` / :func:`sniff_image` look at (at most)."""


@dataclass(frozen=True)
class Format:
    """One accepted container: a short name for messages and the decoder's own format name."""

    name: str
    """What a person calls it (``"WAV"``, ``"PNG"``...)."""
    decoder: str
    """FFmpeg demuxer name (audio) or Pillow format id (images)."""


WAV = Format("WAV", "wav")
MP3 = Format("MP3", "mp3")
MP4 = Format("MP4/M4A", "mp4")  # FFmpeg's "mov,mp4,m4a,3gp,3g2,mj2" demuxer, found by any of its names
OGG = Format("Ogg", "ogg")
FLAC = Format("FLAC", "flac")
MATROSKA = Format("WebM/Matroska", "matroska")

JPEG = Format("JPEG", "JPEG")
PNG = Format("PNG", "PNG")
WEBP = Format("WebP", "WEBP")
BMP = Format("BMP", "BMP")
GIF = Format("GIF", "GIF")
TIFF = Format("TIFF", "TIFF")

AUDIO_FORMATS = (WAV, MP3, MP4, OGG, FLAC, MATROSKA)
IMAGE_FORMATS = (JPEG, PNG, WEBP, BMP, GIF, TIFF)
AUDIO_NAMES = ", ".join(f.name for f in AUDIO_FORMATS)
IMAGE_NAMES = ", ".join(f.name for f in IMAGE_FORMATS)

_MP4_BRANDS_OFFSET = 4
"""An ISO-BMFF file starts with a box: 4-byte size, then the type ``ftyp``."""


def _is_mp3(head: bytes) -> bool:
    if head.startswith(b"ID3") and len(head) >= 10:
        return head[3] in (2, 3, 4)  # ID3v2.2-2.4 tag in front of the frames
    if len(head) < 4 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return False
    version = (head[1] >> 3) & 0x3  # 1 is reserved
    layer = (head[1] >> 1) & 0x3  # 0 is reserved
    bitrate = head[2] >> 4  # 15 is invalid
    rate = (head[2] >> 2) & 0x3  # 3 is reserved
    return version != 1 and layer != 0 and bitrate != 15 and rate != 3


def sniff_audio(head: bytes) -> Format | None:
    """The accepted audio container whose signature ``head`` (the file's first bytes) carries, else None."""
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[_MP4_BRANDS_OFFSET : _MP4_BRANDS_OFFSET + 4] == b"ftyp":
        return MP4
    if head.startswith(b"OggS"):
        return OGG
    if head.startswith(b"fLaC"):
        return FLAC
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return MATROSKA
    if _is_mp3(head):
        return MP3
    return None


def sniff_image(head: bytes) -> Format | None:
    """The accepted image format whose signature ``head`` (the file's first bytes) carries, else None."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head.startswith(b"BM") and len(head) >= 26:
        return BMP
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    return None


def describe(head: bytes) -> str:
    """A plain name for what a refused file looks like (for the error message; never decoder text)."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    checks = (
        (b"ffconcat", "an FFmpeg concat script"),
        (b"#EXTM3U", "a playlist (HLS/M3U)"),
        (b"v=0", "an SDP session description"),
        (b"%!PS", "a PostScript/EPS file"),
        (b"\xc5\xd0\xd3\xc6", "an EPS file"),
        (b"%PDF", "a PDF document"),
        (b"<?xml", "an XML/SVG document"),
        (b"<svg", "an SVG drawing"),
        (b"<", "an HTML/XML document"),
    )
    for prefix, what in checks:
        if text[: len(prefix)].lower() == prefix.lower():
            return what
    if not head:
        return "an empty file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a file of an unknown kind"
    return "a text file"
