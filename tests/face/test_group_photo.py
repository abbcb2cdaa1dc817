"""Face detection on real, shippable group photos with hand-labelled faces (issue 21).

Two public-domain photos (provenance in ``tests/data/faces/README.md``): ``situation_room.jpg``,
13 people, faces 46-148 px, frontal to near profile, a hand over a mouth, one face half hidden;
``sts131_crew.jpg``, 13 astronauts aboard the ISS, faces 58-88 px, seven of them on their side
or upside down. The MediaPipe search must find every required face (visible, within 45 degrees
of upright) with IoU >= 0.5 and draw no box on anything else; a known false positive is a
strict xfail. InsightFace, where its real files are downloaded, must do the same.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from real_group_photos import DATA, LABELS_FILE, MIN_IOU, GroupPhoto, box_iou, load_group_photos, match_photo

from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.sniff import JPEG, sniff_image

needs_models = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")

#: Shipped photos stay small (the brief's limit for a recompressed test photo).
MAX_PHOTO_BYTES = 300_000
#: Smallest and largest labelled face side we ship, in pixels (issue 21: "faces down to 40 px").
FACE_SIDE_RANGE = (40.0, 160.0)
#: (photo, scale) the detection tests run at: each photo as stored, and the Situation Room photo
#: scaled so that its smallest face is about 40 px.
CASES: tuple[tuple[str, float], ...] = (("situation_room", 1.0), ("situation_room", 0.9), ("sts131_crew", 1.0))
#: Known false positives of today's MediaPipe search (docs/FACE_RECALL_REAL_PHOTO.md): strict xfail, so
#: the test says so when one goes away. None left: the forearm the search took for a face on the ISS photo
#: (score 0.77) is dropped since its key points must be laid out like a face (face/search_merge.py).
KNOWN_FALSE_POSITIVES: dict[tuple[str, float], str] = {}


#: (photo, scale) where the search is compared with the short-range search alone, and the turned faces (on
#: their side, upside down) it must find there: on the ISS photo 5 and 6 of 7, as the short-range search
#: (before the merge kept what the short-range tiles saw at 0.5: 3 and 2); the Situation Room photo at x0.5
#: (faces 23-74 px) has none.
MIN_TURNED_FOUND: dict[tuple[str, float], int] = {
    ("sts131_crew", 1.0): 5,
    ("sts131_crew", 0.6): 6,
    ("situation_room", 0.5): 0,
}


def _cases(known: dict[tuple[str, float], str]) -> list:
    return [
        pytest.param(
            name,
            scale,
            id=f"{name}-x{scale}",
            marks=[pytest.mark.xfail(strict=True, reason=known[name, scale])] if (name, scale) in known else [],
        )
        for name, scale in CASES
    ]


@pytest.fixture(scope="module")
def photos() -> list[GroupPhoto]:
    return load_group_photos()


@pytest.fixture(scope="module")
def mp():
    from lpstudio.face.models import MediaPipeFacePipeline

    return MediaPipeFacePipeline()


@pytest.fixture(scope="module")
def detected(mp, photos: list[GroupPhoto]) -> Callable[[str, float], tuple[GroupPhoto, NDArray[np.float64]]]:
    """(photo name, scale) -> the scaled photo and MediaPipe's boxes on it, each detected once per module."""
    cache: dict[tuple[str, float], tuple[GroupPhoto, NDArray[np.float64]]] = {}

    def get(name: str, scale: float) -> tuple[GroupPhoto, NDArray[np.float64]]:
        if (name, scale) not in cache:
            photo = next(p for p in photos if p.name == name).scaled(scale)
            cache[name, scale] = photo, np.asarray(mp.detect(photo.image).boxes, dtype=np.float64)
        return cache[name, scale]

    return get


def test_labels_fit_their_photos(photos: list[GroupPhoto]) -> None:
    assert photos, f"no photo in {LABELS_FILE}"
    for photo in photos:
        h, w = photo.image.shape[:2]
        assert (photo.boxes[:, :2] >= 0).all() and (photo.boxes[:, 2] <= w).all() and (photo.boxes[:, 3] <= h).all()
        assert (photo.boxes[:, 2:] > photo.boxes[:, :2]).all()
        sides = photo.face_sizes()
        assert FACE_SIDE_RANGE[0] <= sides.min() and sides.max() <= FACE_SIDE_RANGE[1], sides
        assert len(photo.boxes) >= 3 and photo.required.sum() >= 3
        # no face labelled twice: labels of different faces overlap little
        overlap = box_iou(photo.boxes, photo.boxes) - np.eye(len(photo.boxes))
        assert overlap.max() < MIN_IOU / 2, overlap.max()


def test_shipped_photos_are_small_jpegs() -> None:
    for entry in json.loads(LABELS_FILE.read_text())["photos"].values():
        path = DATA / entry["file"]
        assert sniff_image(path.read_bytes()[:16]) == JPEG, path
        assert path.stat().st_size <= MAX_PHOTO_BYTES, path


def test_match_counts_found_faces_and_false_positives(photos: list[GroupPhoto]) -> None:
    photo = photos[0]
    best, fp = match_photo(photo, photo.boxes)
    assert np.all(best == pytest.approx(1.0)) and fp == 0
    # a face's box moved by half its width no longer finds it, and becomes a false positive
    moved = photo.boxes.copy()
    moved[0, [0, 2]] += 0.5 * (moved[0, 2] - moved[0, 0])
    best, fp = match_photo(photo, moved)
    assert best[0] == 0.0 and np.all(best[1:] > MIN_IOU) and fp == 1
    # a box on no face is a false positive; a face without a box is missed
    empty = np.array([[0.0, 0.0, 30.0, 30.0]])
    best, fp = match_photo(photo, np.concatenate([photo.boxes[1:], empty]))
    assert best[0] == 0.0 and fp == 1
    # a box on a half-hidden or upside-down face is neither required nor a false positive
    for photo in photos:
        assert (~photo.required).any()
        assert match_photo(photo, photo.boxes[photo.required])[1] == 0 and match_photo(photo, photo.boxes)[1] == 0


@needs_models
@pytest.mark.parametrize(("name", "scale"), _cases({}))
def test_mediapipe_finds_every_required_face(detected, name: str, scale: float) -> None:
    photo, boxes = detected(name, scale)
    best, _ = match_photo(photo, boxes)
    missed = [n for n, b, r in zip(photo.names, best, photo.required) if b < MIN_IOU and r]
    assert not missed, f"{name} at x{scale}: missed {missed}"


@needs_models
@pytest.mark.parametrize(("name", "scale"), _cases(KNOWN_FALSE_POSITIVES))
def test_mediapipe_draws_no_false_positive(detected, name: str, scale: float) -> None:
    photo, boxes = detected(name, scale)
    _, fp = match_photo(photo, boxes)
    assert fp == 0, f"{name} at x{scale}: {fp} box(es) on no labelled face"


@needs_models
@pytest.mark.parametrize(("name", "scale"), list(MIN_TURNED_FOUND), ids=lambda v: str(v))
def test_search_finds_every_face_the_short_range_search_finds(mp, detected, name: str, scale: float) -> None:
    """Every labelled face the short-range search alone finds, the every-face search finds too (on the ISS
    photo, seven faces are on their side or upside down); and at least as many turned faces as listed."""
    photo, boxes = detected(name, scale)
    short = np.asarray(mp.models.detector.detect(photo.image, thorough=True).boxes, dtype=np.float64)
    by_search, _ = match_photo(photo, boxes)
    by_short, _ = match_photo(photo, short)
    lost = [n for n, a, b in zip(photo.names, by_search, by_short) if b >= MIN_IOU > a]
    assert not lost, f"{name} at x{scale}: found by the short-range search only: {lost}"
    turned = ~photo.required & ~photo.occluded
    assert (by_search[turned] >= MIN_IOU).sum() >= MIN_TURNED_FOUND[name, scale], by_search[turned]


def _insightface_dir() -> Path | None:
    from lpstudio.face.models import INSIGHTFACE_FILES
    from lpstudio.weights import default_weights_dir, official_files

    root = default_weights_dir()
    sizes = {f.path: f.size for f in official_files()}
    ok = all((root / f).is_file() and (root / f).stat().st_size == sizes[f] for f in INSIGHTFACE_FILES)
    return root if ok else None


@pytest.mark.skipif(_insightface_dir() is None, reason="the real InsightFace face models are not downloaded")
def test_insightface_finds_the_same_faces(photos: list[GroupPhoto]) -> None:
    """InsightFace finds every required face of each stored photo, with no false positive."""
    from lpstudio.face import FacePipeline

    pipe = FacePipeline(_insightface_dir())
    for photo in photos:
        best, fp = match_photo(photo, pipe.detect(photo.image).boxes)
        missed = [n for n, b, r in zip(photo.names, best, photo.required) if b < MIN_IOU and r]
        assert not missed and fp == 0, f"{photo.name}: missed {missed}, {fp} false positive(s)"
