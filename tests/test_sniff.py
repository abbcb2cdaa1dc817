"""The allow-list of upload signatures: real files are recognised, scripts and playlists are not."""

from __future__ import annotations

import io

import av
import numpy as np
import pytest
from PIL import Image

from lpstudio import sniff


def _encode_audio(fmt: str, codec: str, rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        samples = (np.sin(np.linspace(0, 200, rate // 4)) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("fmt", "codec", "expected"),
    [
        ("wav", "pcm_s16le", sniff.WAV),
        ("mp3", "libmp3lame", sniff.MP3),
        ("ipod", "aac", sniff.MP4),
        ("ogg", "libopus", sniff.OGG),
        ("flac", "flac", sniff.FLAC),
        ("webm", "libopus", sniff.MATROSKA),
    ],
)
def test_real_audio_is_recognised_and_opens_with_the_named_format(fmt: str, codec: str, expected: sniff.Format) -> None:
    rate = 48000 if codec == "libopus" else 16000
    try:
        data = _encode_audio(fmt, codec, rate)
    except (av.FFmpegError, ValueError) as exc:  # an encoder missing from this FFmpeg build
        pytest.skip(f"cannot encode {codec} here: {type(exc).__name__}")
    found = sniff.sniff_audio(data[: sniff.SNIFF_BYTES])
    assert found == expected
    with av.open(io.BytesIO(data), format=found.decoder) as c:
        assert c.streams.audio


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", sniff.JPEG),
        ("PNG", sniff.PNG),
        ("WEBP", sniff.WEBP),
        ("BMP", sniff.BMP),
        ("GIF", sniff.GIF),
        ("TIFF", sniff.TIFF),
    ],
)
def test_real_images_are_recognised(fmt: str, expected: sniff.Format) -> None:
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(buf, format=fmt)
    data = buf.getvalue()
    found = sniff.sniff_image(data[: sniff.SNIFF_BYTES])
    assert found == expected
    with Image.open(io.BytesIO(data), formats=[found.decoder]) as im:
        assert im.size == (32, 24)


@pytest.mark.parametrize(
    ("body", "what"),
    [
        (b"ffconcat version 1.0\nfile secret.wav\n", "concat script"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\nsecret.ts\n", "playlist"),
        (b"v=0\no=- 0 0 IN IP4 127.0.0.1\nm=audio 5004 RTP/AVP 0\n", "SDP"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "PostScript"),
        (b"%PDF-1.7\n", "PDF"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"", "empty"),
    ],
)
def test_scripts_and_documents_are_refused_and_named(body: bytes, what: str) -> None:
    assert sniff.sniff_audio(body[: sniff.SNIFF_BYTES]) is None
    assert sniff.sniff_image(body[: sniff.SNIFF_BYTES]) is None
    assert what.lower() in sniff.describe(body[: sniff.SNIFF_BYTES]).lower()


def test_a_wav_header_in_front_of_a_webp_is_not_audio() -> None:
    head = b"RIFF\x10\x00\x00\x00WEBPVP8 "
    assert sniff.sniff_audio(head) is None
    assert sniff.sniff_image(head) == sniff.WEBP
