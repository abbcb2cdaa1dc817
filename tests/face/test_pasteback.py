"""Paste-back: identity outside the mask, no black, size/orientation for awkward inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lpstudio.errors import ImageError
from lpstudio.face import FacePipeline, PasteBack, feather_mask, load_image, paste_back
from lpstudio.face.crop import crop_face, crop_matrix, invert
from lpstudio.face.pasteback import photo_edge_weight
from standin_models import canonical_face_106, empty_det_outputs, put_face

CPU = ["CPUExecutionProvider"]


def _m_c2o(center: tuple[float, float], face_px: float) -> np.ndarray:
    lmk = canonical_face_106() * (face_px / 1.2) + np.array(center, np.float32)
    return invert(crop_matrix(lmk))


def test_feather_mask_shape_and_values() -> None:
    m = feather_mask(512)
    assert m.shape == (512, 512) and m.dtype == np.float32
    assert m.min() == 0.0 and m.max() == 1.0
    assert m[256, 256] == 1.0 and m[150:360, 150:360].min() == 1.0
    border = np.concatenate([m[:12].ravel(), m[-12:].ravel(), m[:, :12].ravel(), m[:, -12:].ravel()])
    assert border.max() == 0.0  # reaches zero before the crop border
    np.testing.assert_array_equal(m, m[::-1])
    np.testing.assert_array_equal(m, m.T)
    row = m[256, :256]
    assert np.all(np.diff(row) >= 0)  # monotone fall-off, no rings
    with pytest.raises(ValueError):
        feather_mask(64, inner=0.9, outer=0.5)


@pytest.mark.parametrize(
    ("center", "face_px"), [((300.0, 260.0), 120.0), ((40.0, 30.0), 150.0), ((500.0, 390.0), 60.0)]
)
def test_identity_outside_mask_and_no_black(center: tuple[float, float], face_px: float) -> None:
    rng = np.random.default_rng(5)
    photo = rng.integers(150, 256, (401, 523, 3), dtype=np.uint8)  # odd size, bright: black would show
    paster = PasteBack(_m_c2o(center, face_px), photo.shape[:2])
    frame = rng.integers(100, 256, (512, 512, 3), dtype=np.uint8)
    out = paster(frame, photo)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert out is not photo
    # alpha over the whole photo: exact identity where it is zero
    alpha = np.zeros(photo.shape[:2], np.float32)
    r = paster.region
    alpha[r.y0 : r.y1, r.x0 : r.x1] = paster.alpha[..., 0]
    outside = alpha == 0
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(out[outside], photo[outside])
    # nothing darker than both sources: no black/empty region introduced
    assert out.min() >= 100
    changed = np.any(out != photo, axis=2)
    assert changed.any()


def test_fully_masked_pixels_are_the_frame() -> None:
    photo = np.full((300, 300, 3), 255, np.uint8)
    paster = PasteBack(np.eye(3), photo.shape[:2], crop_size=300)  # crop == photo
    frame = np.full((300, 300, 3), 40, np.uint8)
    out = paster(frame, photo)
    assert out[150, 150].tolist() == [40, 40, 40]
    assert out[0, 0].tolist() == [255, 255, 255]  # mask zero at the border
    assert out.min() == 40


@pytest.mark.parametrize("case", [0, 1, 2])
def test_round_trip_of_unchanged_crop(case: int) -> None:
    """Pasting the crop itself back only resamples; photo edges cut by the crop stay clean."""
    golden = Path(__file__).resolve().parents[1] / "data" / "crop_golden.npz"
    with np.load(golden) as g:
        img, lmk = g["image"], g[f"case{case}_lmk106"]
    crop = crop_face(img, lmk)
    out = PasteBack(crop.M_c2o, img.shape[:2])(crop.image, img)
    diff = np.abs(out.astype(np.int16) - img.astype(np.int16))
    assert diff.mean() < 3.0
    ring = np.concatenate([diff[0].ravel(), diff[-1].ravel(), diff[:, 0].ravel(), diff[:, -1].ravel()])
    assert ring.max() <= 1  # no dark fringe from the crop's black padding


def test_photo_edge_weight() -> None:
    inside = photo_edge_weight(_m_c2o((300.0, 300.0), 60.0), (600, 600))
    assert inside.min() == 1.0  # crop entirely inside the photo
    cut = photo_edge_weight(_m_c2o((20.0, 300.0), 100.0), (600, 600))
    assert cut.min() == 0.0 and cut.max() == 1.0


def test_frame_size_256_and_512_agree() -> None:
    photo = np.full((480, 640, 3), 200, np.uint8)
    paster = PasteBack(_m_c2o((320.0, 240.0), 150.0), photo.shape[:2])
    a = paster(np.full((512, 512, 3), 30, np.uint8), photo)
    b = paster(np.full((256, 256, 3), 30, np.uint8), photo)
    np.testing.assert_array_equal(a, b)


def test_paste_into_in_place_and_shape_errors() -> None:
    photo = np.full((200, 300, 3), 200, np.uint8)
    paster = PasteBack(_m_c2o((150.0, 100.0), 60.0), photo.shape[:2])
    target = photo.copy()
    paster.paste_into(np.zeros((512, 512, 3), np.uint8), target)
    assert not np.array_equal(target, photo)
    with pytest.raises(ImageError, match=r"photo has shape \(100, 300, 3\)"):
        paster(np.zeros((512, 512, 3), np.uint8), photo[:100])
    with pytest.raises(ImageError, match="frame has shape"):
        paster(np.zeros((512, 500, 3), np.uint8), photo)


def _weights_with_face(standin_weights: Callable[..., Path], box: tuple[float, float, float, float]) -> Path:
    outs = empty_det_outputs()
    put_face(outs, 2, 8, 8, 0, 0.9, box)
    return standin_weights(det_outputs=outs)


def _check_pasted(fp: FacePipeline, rgb: np.ndarray) -> None:
    face = fp.analyze(rgb)
    frame = np.full((512, 512, 3), 7, np.uint8)
    out = paste_back(frame, face, rgb)
    assert out.shape == rgb.shape and out.dtype == np.uint8
    changed = np.argwhere(np.all(out == 7, axis=2))
    assert changed.size
    # the fully replaced pixels surround the detected face, in the upright photo
    cy, cx = changed.mean(axis=0)
    bx, by = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    assert abs(cx - bx) < 0.25 * (face.box[2] - face.box[0]) + 5
    assert abs(cy - by) < 0.4 * (face.box[3] - face.box[1]) + 5
    # reusable precomputed mask gives the same pixels
    paster = PasteBack.for_face(face)
    np.testing.assert_array_equal(paste_back(frame, face, rgb, paster=paster), out)


def test_exif_rotated_rgba_odd_sized_photo(tmp_path: Path, standin_weights: Callable[..., Path]) -> None:
    rng = np.random.default_rng(9)
    stored = rng.integers(0, 256, (251, 333, 4), dtype=np.uint8)  # H 251, W 333, RGBA
    stored[..., 3] = 255
    stored[:20, :, 3] = 0  # transparent strip along the stored top
    exif = Image.Exif()
    exif[0x0112] = 6  # view = stored rotated 90 degrees clockwise
    path = tmp_path / "odd.png"
    Image.fromarray(stored, "RGBA").save(path, exif=exif.tobytes())
    photo = load_image(path)
    assert photo.size == (251, 333)  # upright: width 251, height 333
    assert (photo.rgb[:, -20:] == 255).all()  # the transparent top became the white right edge
    # a face in the upper half of the upright photo (letterbox scale 512/333)
    fp = FacePipeline(_weights_with_face(standin_weights, (80.0, 60.0, 240.0, 240.0)), providers=CPU)
    face = fp.analyze(photo.rgb)
    assert face.photo_size == (251, 333)
    np.testing.assert_allclose(face.box[:4], np.array([80, 60, 240, 240]) * 333 / 512, atol=1e-3)
    _check_pasted(fp, photo.rgb)


def test_photo_smaller_than_crop(standin_weights: Callable[..., Path]) -> None:
    rgb = np.random.default_rng(2).integers(60, 256, (97, 131, 3), dtype=np.uint8)
    fp = FacePipeline(_weights_with_face(standin_weights, (150.0, 90.0, 360.0, 330.0)), providers=CPU)
    face = fp.analyze(rgb)
    # the 512 crop covers more than the photo: crop borders are black, the paste is not
    assert (face.image_512[0, 0] == 0).all()
    out = paste_back(np.full((512, 512, 3), 80, np.uint8), face, rgb)
    assert out.shape == rgb.shape and out.min() >= 60
