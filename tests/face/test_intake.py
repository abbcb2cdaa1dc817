"""Image intake: orientation, modes, bit depths, sizes, and every bad input's message."""

from __future__ import annotations

import io
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from lpstudio.errors import ImageError
from lpstudio.face.intake import ANALYSIS_MAX_SIDE, as_rgb_uint8, limit_side, load_image


def _pattern(w: int = 60, h: int = 40) -> np.ndarray:
    """An asymmetric RGB test pattern so any flip/rotation is visible."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 4 % 256, y * 6 % 256, (x * 3 + y * 5) % 256], axis=-1).astype(np.uint8)


def _save(img: Image.Image, path: Path, **kw: object) -> Path:
    img.save(path, **kw)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path: Path, orientation: int) -> None:
    im = Image.fromarray(_pattern())
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(im, tmp_path / "o.jpg", exif=exif.tobytes(), quality=95)
    loaded = load_image(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert loaded.exif_orientation == orientation
    assert loaded.rgb.shape == expected.shape
    np.testing.assert_array_equal(loaded.rgb, expected)


def test_exif_rotate_90_exact_png(tmp_path: Path) -> None:
    pat = _pattern()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored image must be turned 90 degrees clockwise to view
    path = _save(Image.fromarray(pat), tmp_path / "r.png", exif=exif.tobytes())
    loaded = load_image(path)
    assert loaded.size == (40, 60)
    np.testing.assert_array_equal(loaded.rgb, np.rot90(pat, -1))
    assert loaded.rgb[0, -1].tolist() == pat[0, 0].tolist()


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :10, 3] = 0  # transparent
    rgba[:, 10:20, 3] = 255  # opaque
    rgba[:, 20:, 3] = 128  # half
    loaded = load_image(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png"))
    assert loaded.had_alpha and loaded.rgb.shape == (40, 40, 3)
    assert (loaded.rgb[:, :10] == 255).all()
    assert loaded.rgb[0, 15].tolist() == [200, 0, 0]
    a = 128 / 255
    white_part = round(255 * (1 - a))
    assert loaded.rgb[0, 30].tolist() == [round(200 * a + 255 * (1 - a)), white_part, white_part]


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    g = _pattern()[..., 0]
    loaded = load_image(_save(Image.fromarray(g, "L"), tmp_path / "g.png"))
    assert loaded.rgb.shape == (40, 60, 3)
    for c in range(3):
        np.testing.assert_array_equal(loaded.rgb[..., c], g)
    bw = load_image(_save(Image.fromarray(g > 100), tmp_path / "b.png"))
    assert set(np.unique(bw.rgb).tolist()) <= {0, 255} and bw.bit_depth == 1


def test_16bit_gray_and_colour_are_rounded(tmp_path: Path) -> None:
    vals = np.full((40, 40), 257 * 100 + 200, np.uint16)  # 100.78 -> 101 (truncation would give 100)
    p = tmp_path / "g16.png"
    cv2.imwrite(str(p), vals)
    g = load_image(p)
    assert g.bit_depth == 16 and (g.rgb == 101).all()
    bgr = np.zeros((40, 40, 3), np.uint16)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 65535, 257 * 7 + 200, 0  # B, G, R
    for ext in ("png", "tif"):
        p = tmp_path / f"c16.{ext}"
        cv2.imwrite(str(p), bgr)
        c = load_image(p)
        assert c.bit_depth == 16 and c.rgb[0, 0].tolist() == [0, 8, 255], ext


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    pal = Image.fromarray(_pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    loaded = load_image(_save(pal, tmp_path / "p.png"))
    np.testing.assert_array_equal(loaded.rgb, np.asarray(pal.convert("RGB")))
    idx = np.asarray(pal)[0, 0]
    tr = load_image(_save(pal, tmp_path / "pt.png", transparency=int(idx)))
    assert tr.had_alpha and (tr.rgb[np.asarray(pal) == idx] == 255).all()


def test_gif_first_frame_and_bytes_input(tmp_path: Path) -> None:
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (10, 250)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    loaded = load_image(buf.getvalue(), name="upload.gif")
    assert loaded.n_frames == 2 and loaded.source == "upload.gif"
    assert abs(int(loaded.rgb.mean()) - 10) <= 2


def test_large_image_keeps_full_resolution(tmp_path: Path) -> None:
    big = cv2.resize(_pattern(), (3000, 2000), interpolation=cv2.INTER_NEAREST)
    loaded = load_image(_save(Image.fromarray(big), tmp_path / "big.png"))
    assert loaded.size == (3000, 2000)
    small, m = limit_side(loaded.rgb)
    assert max(small.shape[:2]) == ANALYSIS_MAX_SIDE and small.shape[:2] == (853, 1280)
    # pixel centres: x maps to (x + 0.5) * f - 0.5, so the image edges map onto each other
    left_edge, right_edge = m @ [-0.5, -0.5, 1.0], m @ [2999.5, 1999.5, 1.0]
    np.testing.assert_allclose(left_edge[:2], [-0.5, -0.5], atol=1e-9)
    np.testing.assert_allclose(right_edge[:2], [1279.5, 852.5], atol=1e-9)
    same, eye = limit_side(small)
    assert same is small and np.array_equal(eye, np.eye(3))


# ----------------------------------------------------------------------------- errors


def _err(src: object, **kw: object) -> str:
    with pytest.raises(ImageError) as info:
        load_image(src, **kw)  # type: ignore[arg-type]
    return str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    msg = _err(tmp_path / "nope.jpg")
    assert "nope.jpg" in msg and "does not exist" in msg and "Check the path" in msg


def test_directory(tmp_path: Path) -> None:
    msg = _err(tmp_path)
    assert str(tmp_path) in msg and "folder" in msg


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    msg = _err(p)
    assert "empty.png" in msg and "empty (0 bytes)" in msg and "again" in msg


def test_text_file(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("hello, this is not a photo")
    msg = _err(p)
    assert "notes.jpg" in msg and "not an image" in msg and "JPEG, PNG" in msg


def test_truncated_jpeg(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(_pattern(200, 200)).save(buf, format="JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 3])
    msg = _err(p)
    assert "cut.jpg" in msg and "damaged or truncated" in msg and "again" in msg


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 40, "HEIC"),
        (b"\x00\x00\x00\x18ftypisom" + b"\x00" * 40, "video"),
        (b"%PDF-1.4\n" + b"\x00" * 40, "PDF"),
    ],
)
def test_known_non_images(tmp_path: Path, head: bytes, words: str) -> None:
    p = tmp_path / "thing.bin"
    p.write_bytes(head)
    msg = _err(p)
    assert "thing.bin" in msg and words in msg and "JPEG or PNG" in msg
    assert "->" in msg  # a hint saying what to do


def test_too_many_pixels(tmp_path: Path) -> None:
    p = _save(Image.fromarray(_pattern(100, 100)), tmp_path / "huge.png")
    msg = _err(p, max_pixels=5000)
    assert "huge.png" in msg and "too large" in msg and "100x100" in msg and "Resize" in msg


def test_too_small(tmp_path: Path) -> None:
    msg = _err(_save(Image.fromarray(_pattern(20, 10)), tmp_path / "tiny.png"))
    assert "tiny.png" in msg and "too small" in msg and "20x10" in msg


def test_bytes_error_names_upload() -> None:
    msg = _err(b"garbage bytes", name="me.png")
    assert "me.png" in msg and "not an image" in msg


def test_as_rgb_uint8_variants_and_errors() -> None:
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert as_rgb_uint8(g).shape == (3, 4, 3)
    assert as_rgb_uint8(np.ones((2, 2, 3), np.float32))[0, 0].tolist() == [255, 255, 255]
    assert as_rgb_uint8(np.full((2, 2, 3), 65535, np.uint16))[0, 0, 0] == 255
    rgba = np.zeros((2, 2, 4), np.uint8)
    assert (as_rgb_uint8(rgba) == 255).all()
    with pytest.raises(ImageError, match=r"photo has shape \(2, 2, 5\)"):
        as_rgb_uint8(np.zeros((2, 2, 5), np.uint8), name="photo")
    with pytest.raises(ImageError, match="pixel type int64"):
        as_rgb_uint8(np.zeros((2, 2, 3), np.int64))


def test_float_tiff_and_32bit_int(tmp_path: Path) -> None:
    f = np.linspace(0.0, 1.0, 40 * 40, dtype=np.float32).reshape(40, 40)
    loaded = load_image(_save(Image.fromarray(f, "F"), tmp_path / "f.tif"))
    assert loaded.bit_depth == 32
    np.testing.assert_array_equal(loaded.rgb[..., 1], np.rint(f * 255).astype(np.uint8))
    i16 = np.full((40, 40), 65535, np.int32)
    loaded = load_image(_save(Image.fromarray(i16, "I"), tmp_path / "i.tif"))
    assert (loaded.rgb == 255).all()


# ----------------------------------------------------------------------------- hostile files


def test_eps_named_jpg_is_refused_without_ghostscript(monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import EpsImagePlugin

    import image_bombs as bombs

    calls: list[object] = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: calls.append(a))
    msg = _err(bombs.EPS, name="photo.jpg")
    assert "photo.jpg" in msg and "PostScript/EPS" in msg and "JPEG, PNG" in msg
    assert calls == []


def test_tiff_with_50000_pages_is_refused_fast() -> None:
    import image_bombs as bombs

    data = bombs.tiff_many_ifds(50_000)
    started = time.perf_counter()
    msg = _err(data, name="pages.tif")
    assert time.perf_counter() - started < 1.0
    assert "pages.tif" in msg and "more than 64 pages" in msg
    loaded = load_image(bombs.tiff_many_ifds(3), name="three.tif")  # a few pages: the first one is used
    assert loaded.n_frames == 3 and loaded.size == (64, 64)


def test_jpeg_scan_bomb_is_refused_before_decoding() -> None:
    import image_bombs as bombs

    started = time.perf_counter()
    msg = _err(bombs.scan_bomb_jpeg(58_000), name="scans.jpg")
    assert time.perf_counter() - started < 1.0
    assert "scans.jpg" in msg and "more than 100 scans" in msg
    normal = bombs.photo_jpeg(256, progressive=True)
    assert load_image(normal).size == (256, 256)  # an ordinary progressive JPEG still loads


def test_max_side_decodes_jpeg_at_reduced_scale_and_reduces_png() -> None:
    import image_bombs as bombs

    jpg = load_image(bombs.photo_jpeg(1600), max_side=300)
    assert jpg.size == (300, 300)
    full = load_image(bombs.photo_jpeg(1600))
    ref = cv2.resize(full.rgb, (300, 300), interpolation=cv2.INTER_AREA)
    assert np.abs(jpg.rgb.astype(int) - ref).mean() < 3  # same picture, decoded at 1/4 scale by libjpeg
    png_big = load_image(_png_bytes(cv2.resize(_pattern(), (900, 600))), max_side=450)
    assert png_big.size == (450, 300) and png_big.rgb.dtype == np.uint8


def test_decode_budget_counts_bytes_per_pixel() -> None:
    gray16 = np.full((200, 300), 40000, np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray16).save(buf, format="PNG")
    # 60,000 pixels at 2 bytes = 120,000 bytes of decoded 16-bit gray
    msg = _err(buf.getvalue(), name="deep.png", max_decode_bytes=100_000)
    assert "deep.png" in msg and "16 bits" in msg and "too large to decode" in msg
    assert load_image(buf.getvalue(), max_decode_bytes=130_000).rgb[0, 0, 0] == round(40000 / 257)


def test_16bit_rgba_over_budget_falls_back_to_8bit_without_float_copies(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    rgba16 = rng.integers(0, 65536, (64, 80, 4), dtype=np.uint16)
    ok, enc = cv2.imencode(".png", rgba16)
    assert ok
    data = enc.tobytes()
    precise = load_image(data).rgb
    a = rgba16[..., 3:].astype(np.float64) / 65535
    expect = np.rint(rgba16[..., 2::-1] / 257.0 * a + 255 * (1 - a))  # the float definition, on a small image
    np.testing.assert_array_equal(precise, expect.astype(np.uint8))
    # within 4 bytes/pixel but not 8: Pillow's 8-bit decode (truncated colour and alpha): two levels at most
    coarse = load_image(data, max_decode_bytes=64 * 80 * 6)
    assert np.abs(coarse.rgb.astype(int) - precise).max() <= 2 and coarse.bit_depth == 16 and coarse.had_alpha


def _png_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_big_jpeg_with_many_scans_is_refused_by_work_bound() -> None:
    import image_bombs as bombs

    data = bombs.scan_bomb_jpeg(60, 6000)  # 70 scans of 36 MP: over 15 scans' worth of 40 MP
    started = time.perf_counter()
    msg = _err(data, name="slow.jpg", max_side=1024)
    assert time.perf_counter() - started < 1.0
    assert "slow.jpg" in msg and "6000x6000" in msg and "scans" in msg
