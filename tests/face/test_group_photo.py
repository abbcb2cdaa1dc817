"""Face detection on a real, shippable group photo with hand-labelled faces (issue 21).

``tests/data/faces/situation_room.jpg`` (public domain, provenance in the folder's README):
13 people, faces 43-148 px wide, frontal to near profile, one hand over a mouth, one face
half hidden. The MediaPipe search must find every visible face with IoU >= 0.5 and draw
no box that is no face; InsightFace, where its real files are downloaded, the same faces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from real_group_photos import DATA, LABELS_FILE, MIN_IOU, GroupPhoto, box_iou, load_group_photos, match_photo

from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.sniff import JPEG, sniff_image

needs_models = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")

#: Shipped photos stay small (the brief's limit for a recompressed test photo).
MAX_PHOTO_BYTES = 300_000
#: Smallest and largest labelled face side we ship, in pixels (issue 21: "faces down to 40 px").
FACE_SIDE_RANGE = (40.0, 160.0)
#: Scales the detection test runs at: the stored photo, and one where the smallest face is under 40 px.
TEST_SCALES = (1.0, 0.9)


@pytest.fixture(scope="module")
def photos() -> list[GroupPhoto]:
    return load_group_photos()


@pytest.fixture(scope="module")
def mp():
    from lpstudio.face.models import MediaPipeFacePipeline

    return MediaPipeFacePipeline()


def test_labels_fit_their_photos(photos: list[GroupPhoto]) -> None:
    assert photos, f"no photo in {LABELS_FILE}"
    for photo in photos:
        h, w = photo.image.shape[:2]
        assert (photo.boxes[:, :2] >= 0).all() and (photo.boxes[:, 2] <= w).all() and (photo.boxes[:, 3] <= h).all()
        assert (photo.boxes[:, 2:] > photo.boxes[:, :2]).all()
        sides = photo.face_sizes()
        assert FACE_SIDE_RANGE[0] <= sides.min() and sides.max() <= FACE_SIDE_RANGE[1], sides
        assert len(photo.boxes) >= 3 and (~photo.occluded).sum() >= 3
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
    # a box on a half-hidden face is neither required nor a false positive
    hidden = np.flatnonzero(photo.occluded)
    if hidden.size:
        visible = photo.boxes[~photo.occluded]
        assert match_photo(photo, visible)[1] == 0 and match_photo(photo, photo.boxes)[1] == 0


@needs_models
@pytest.mark.parametrize("scale", TEST_SCALES)
def test_mediapipe_finds_every_visible_face(mp, photos: list[GroupPhoto], scale: float) -> None:
    for photo in (p.scaled(scale) for p in photos):
        best, fp = match_photo(photo, mp.detect(photo.image).boxes)
        missed = [n for n, b, o in zip(photo.names, best, photo.occluded) if b < MIN_IOU and not o]
        assert not missed and fp == 0, f"{photo.name} at x{scale}: missed {missed}, {fp} false positive(s)"


def _insightface_dir() -> Path | None:
    from lpstudio.face.models import INSIGHTFACE_FILES
    from lpstudio.weights import default_weights_dir, official_files

    root = default_weights_dir()
    sizes = {f.path: f.size for f in official_files()}
    ok = all((root / f).is_file() and (root / f).stat().st_size == sizes[f] for f in INSIGHTFACE_FILES)
    return root if ok else None


@pytest.mark.skipif(_insightface_dir() is None, reason="the real InsightFace face models are not downloaded")
def test_insightface_finds_the_same_faces(photos: list[GroupPhoto]) -> None:
    from lpstudio.face import FacePipeline

    pipe = FacePipeline(_insightface_dir())
    for photo in photos:
        best, fp = match_photo(photo, pipe.detect(photo.image).boxes)
        missed = [n for n, b, o in zip(photo.names, best, photo.occluded) if b < MIN_IOU and not o]
        assert not missed and fp == 0, f"{photo.name}: missed {missed}, {fp} false positive(s)"
