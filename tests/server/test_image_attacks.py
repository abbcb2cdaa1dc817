"""Hostile photo uploads over HTTP (and camera frames of ``/live``): each is refused quickly with a plain 4xx,
or decoded cheaply, and a normal photo sent right after is served in normal time.

Files are built in ``tests/image_bombs.py``. Memory is measured as the growth of ``VmHWM`` (peak resident
memory) of a fresh subprocess that runs the server's decode of one upload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from standin_server import StandInEngine

import bad_inputs as bad
import image_bombs as bombs
import lpstudio
from lpstudio.errors import ImageError
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.live_messages import decode_camera_jpeg

DECODER_WORDS = (
    "cannot identify",
    "image file is truncated",
    "broken data stream",
    "Ghostscript",
    "PIL",
    "OSError",
    "SyntaxError",
    "Errno",
    "Traceback",
    "libjpeg",
    "Corrupt JPEG",
)
"""Text that only a decoder or an exception would write: never in a client's error body."""

NORMAL_UPLOAD_S = 5.0
"""A 75 kB photo decodes and prepares in well under a second; generous for a loaded CI machine."""
PNG16_PEAK_BYTES = 500 * 1024**2
"""Peak memory growth allowed for decoding the 6300x6300 16-bit RGBA PNG (main took 4.5 GB)."""
HUGE_JPEG_PEAK_BYTES = 150 * 1024**2
"""Peak memory growth allowed for the 1 kB JPEG that declares 6000x6000 (main took ~320 MB)."""


@pytest.fixture(scope="module")
def attack_client():
    engine = StandInEngine(frame_ms=0.5, prepare_ms=0)
    app = create_app(engine, ServerSettings(crop=False, fps=10.0, idle_default=False, limits=ServiceLimits()))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post(client: TestClient, name: str, data: bytes, ctype: str = "image/jpeg"):
    return client.post("/source-image", files={"file": (name, data, ctype)})


def _assert_plain_4xx(res, *words: str) -> dict:
    assert 400 <= res.status_code < 500, f"{res.status_code} {res.text[:300]}"
    body = res.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    text = json.dumps(body)
    leaked = [w for w in DECODER_WORDS if w.lower() in text.lower()]
    assert not leaked, f"decoder text {leaked} in {text}"
    for word in words:
        assert word in body["error"], body
    return body


def test_eps_named_jpg_is_refused_without_ghostscript(attack_client, monkeypatch):
    from PIL import EpsImagePlugin

    calls: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    res = _post(attack_client, "photo.jpg", bombs.EPS, "image/jpeg")
    assert res.status_code in (400, 415)
    _assert_plain_4xx(res, "photo.jpg", "PostScript/EPS")
    assert calls == []


@pytest.mark.parametrize(
    ("name", "data", "words"),
    [("d.svg", bombs.SVG, "SVG"), ("d.pdf", bombs.PDF, "PDF"), ("notes.png", bombs.TEXT, "text file")],
    ids=["svg", "pdf", "text"],
)
def test_documents_are_refused_with_a_plain_message(attack_client, name, data, words):
    _assert_plain_4xx(_post(attack_client, name, data, "image/png"), name, words)


def test_damaged_photo_error_has_no_decoder_text(attack_client):
    for name, data in (("t.png", bad.truncated_png()), ("t.jpg", bad.truncated_jpeg())):
        res = _post(attack_client, name, data, "image/png")
        assert res.status_code == 400
        _assert_plain_4xx(res, name, "damaged or truncated")


def test_tiff_with_50000_pages_is_a_fast_400(attack_client):
    data = bombs.tiff_many_ifds(50_000)
    started = time.perf_counter()
    res = _post(attack_client, "pages.tif", data, "image/tiff")
    elapsed = time.perf_counter() - started
    assert res.status_code == 400
    _assert_plain_4xx(res, "pages.tif", "pages")
    assert elapsed < 2.0, f"{elapsed:.1f} s"


def test_scan_bomb_is_a_quick_400_and_a_normal_photo_follows_in_normal_time(attack_client):
    bomb = bombs.scan_bomb_jpeg(58_000)
    started = time.perf_counter()
    res = _post(attack_client, "scans.jpg", bomb)
    assert time.perf_counter() - started < 10.0
    assert res.status_code == 400
    _assert_plain_4xx(res, "scans.jpg", "scans")
    photo = bombs.photo_jpeg(640, seed=1)
    started = time.perf_counter()
    ok = _post(attack_client, "face.jpg", photo)
    assert ok.status_code == 200, ok.text[:300]
    assert time.perf_counter() - started < NORMAL_UPLOAD_S


def test_camera_frame_scan_bomb_and_broken_frame_are_refused_quickly():
    started = time.perf_counter()
    with pytest.raises(ImageError) as info:
        decode_camera_jpeg(bombs.scan_bomb_jpeg(58_000, 256))
    assert time.perf_counter() - started < 1.0
    assert "scans" in info.value.message
    with pytest.raises(ImageError) as info:
        decode_camera_jpeg(bombs.photo_jpeg(64)[:200])
    text = f"{info.value.message} {info.value.hint}"
    assert not [w for w in DECODER_WORDS if w.lower() in text.lower()], text
    assert decode_camera_jpeg(bombs.photo_jpeg(64, progressive=True)).shape == (64, 64, 3)


_PEAK_SCRIPT = """
import asyncio, json, sys, types
from lpstudio.server import ServiceLimits
from lpstudio.server import intake

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

data = open(sys.argv[1], "rb").read()
state = types.SimpleNamespace(
    settings=types.SimpleNamespace(crop=True), limits=ServiceLimits(), decode_slots=asyncio.Semaphore(1),
    off_loop=lambda fn: asyncio.to_thread(fn),
)
before = hwm()
try:
    rgb, _ = asyncio.run(intake.decode(state, data, "upload", None))
    shape, error = list(rgb.shape), None
except Exception as exc:
    shape, error = None, f"{type(exc).__name__}: {exc}"
print(json.dumps({"growth": hwm() - before, "shape": shape, "error": error}))
"""


def _peak_growth(tmp_path: Path, data: bytes) -> dict:
    """Decode ``data`` the way the server does, in a fresh process; its peak memory growth and result."""
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    src = Path(lpstudio.__file__).resolve().parents[1]  # the code under test, wherever it is imported from
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(src), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_16bit_rgba_6300_png_decodes_within_500_mb(tmp_path):
    data = bombs.flat_png(6300, 6300)  # ~320 kB; 317 MB of 16-bit RGBA once decoded
    assert len(data) < 1024 * 1024
    result = _peak_growth(tmp_path, data)
    assert result["growth"] < PNG16_PEAK_BYTES, f"{result['growth'] / 2**20:.0f} MB"
    assert result["error"] is None, result
    assert max(result["shape"][:2]) <= 2048


def test_1kb_jpeg_declaring_6000x6000_is_cheap(tmp_path, attack_client):
    data = bombs.jpeg_declaring(6000, 6000)
    assert len(data) < 2048
    result = _peak_growth(tmp_path, data)
    assert result["growth"] < HUGE_JPEG_PEAK_BYTES, f"{result['growth'] / 2**20:.0f} MB"
    assert result["error"] is not None or max(result["shape"][:2]) <= 2048, result
    res = _post(attack_client, "claims.jpg", data)
    assert res.status_code in (200, 400), res.text[:300]
    if res.status_code == 400:
        _assert_plain_4xx(res, "claims.jpg")
