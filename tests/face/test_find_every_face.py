"""Every face of a group photo (MediaPipe's full-range detector + tiles), and the crop controls.

Group photos are composed at run time from the real portraits (``group_scenes.py``); the real
group photo is tested in ``test_group_photo.py``. Needs the ``mediapipe==0.10.21`` wheel's
model files for the detection tests; the crop-option checks on bad values need none.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from group_scenes import Scene, background, edge_scene, match, overlap_scene, paste_face, portrait, row_scene

from lpstudio.errors import FaceNotFoundError, ParamError
from lpstudio.face.crop_options import CropOptions
from lpstudio.face.mediapipe import INSTALL_HINT, available
from lpstudio.face.report import crop_square

needs_models = pytest.mark.skipif(not available(), reason=f"MediaPipe face models not installed ({INSTALL_HINT})")


@pytest.fixture(scope="module")
def mp():
    from lpstudio.face.models import MediaPipeFacePipeline

    return MediaPipeFacePipeline()


def two_faces(size: float = 100.0) -> Scene:
    """The issue's photo: 1180x520, two faces of about ``size`` px side by side on a real background."""
    scene = Scene(background("real", 1180, 520))
    paste_face(scene, "astronaut", size, (330.0, 250.0))
    paste_face(scene, "grace_hopper", size, (850.0, 270.0))
    return scene


# ---------------------------------------------------------------- detection


@needs_models
def test_two_faces_side_by_side_both_found(mp) -> None:
    scene = two_faces()
    dets = mp.detect(scene.image)
    found, extra = match(scene, dets.boxes)
    assert found == [True, True] and extra == 0
    # and each can be analysed: its crop is centred between its own eyes
    for i in range(2):
        face = mp.analyze(scene.image, face_index=i)
        centre = np.asarray(crop_square(face)["center"])
        eyes = [e.mean(axis=0) for e in scene.eyes]
        nearest = int(np.argmin([np.linalg.norm(centre - e) for e in eyes]))
        assert np.linalg.norm(centre - eyes[nearest]) < 0.5 * scene.size[nearest]


@needs_models
def test_full_range_model_alone_finds_a_distant_face(mp) -> None:
    """The converted full-range model (sparse weights, resize, depth-to-space) works on its own: a face a
    tenth of the photo's width, where the short-range model on the whole photo finds nothing."""
    scene = Scene(background("noise", 1000, 600))
    paste_face(scene, "grace_hopper", 100.0, (700.0, 300.0))
    boxes, scores, _ = mp.search.full._run(scene.image)
    assert match(scene, boxes)[0] == [True] and scores.max() > 0.6
    assert mp.search.short._run(scene.image)[1].size == 0


@needs_models
@pytest.mark.parametrize(
    ("layout", "size", "bg"),
    [("row", 40.0, "noise"), ("edges", 48.0, "real"), ("overlap", 112.0, "real")],
    ids=["small-40px", "edges", "overlapping"],
)
def test_group_photos(mp, layout: str, size: float, bg: str) -> None:
    """Six 40 px faces in a row, four faces 4 px from the edges, two overlapping pairs: all found, nothing else."""
    scene = {"row": row_scene, "edges": edge_scene, "overlap": overlap_scene}[layout](size, bg)
    found, extra = match(scene, mp.detect(scene.image).boxes)
    assert all(found) and extra == 0, (found, extra)


@needs_models
def test_no_face_in_a_large_background(mp) -> None:
    """No false positives from the many tiles (the other no-face photos: test_mediapipe_faces.py and
    benchmarks/face_recall.py)."""
    assert len(mp.detect(background("real", 960, 540))) == 0


@needs_models
def test_face_command_json_lists_every_face(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lpstudio.cli import main

    scene = two_faces()
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), scene.image[:, :, ::-1])
    assert main(["face", str(photo), "--json", "--face-models", "mediapipe"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["faces"]) == 2 and report["crop_options"] == CropOptions().as_dict()
    found, extra = match(scene, np.array([f["box"] for f in report["faces"]]))
    assert found == [True, True] and extra == 0


def _insightface_dir() -> Path | None:
    from lpstudio.face.models import INSIGHTFACE_FILES
    from lpstudio.weights import default_weights_dir, official_files

    root = default_weights_dir()
    sizes = {f.path: f.size for f in official_files()}
    ok = all((root / f).is_file() and (root / f).stat().st_size == sizes[f] for f in INSIGHTFACE_FILES)
    return root if ok else None


@needs_models
@pytest.mark.skipif(_insightface_dir() is None, reason="the real InsightFace face models are not downloaded")
@pytest.mark.parametrize("make", [two_faces, lambda: row_scene(56.0, "real")], ids=["two", "row56"])
def test_insightface_finds_the_same_faces(mp, make) -> None:
    from lpstudio.face import FacePipeline

    scene = make()
    ours = match(scene, mp.detect(scene.image).boxes)
    theirs = match(scene, FacePipeline(_insightface_dir()).detect(scene.image).boxes)
    assert ours == theirs and all(ours[0])


# ---------------------------------------------------------------- crop controls


@needs_models
def test_crop_scale_and_shift_move_the_square_as_documented(mp) -> None:
    photo, _ = portrait("grace_hopper")
    base = crop_square(mp.analyze(photo))
    big = crop_square(mp.analyze(photo, crop=CropOptions(scale=2.3 * 1.5)))
    assert big["size"] == pytest.approx(1.5 * base["size"], rel=2e-3)  # the square grows by the factor
    down = crop_square(mp.analyze(photo, crop=CropOptions(vy=0.1)))
    right = crop_square(mp.analyze(photo, crop=CropOptions(vx=0.2)))
    side = base["size"]
    angle = np.radians(base["angle_deg"])
    ux, uy = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    c0 = np.asarray(base["center"])
    np.testing.assert_allclose(np.asarray(down["center"]) - c0, (0.1 + 0.125) * side * uy, atol=0.5)  # vy: down
    np.testing.assert_allclose(np.asarray(right["center"]) - c0, 0.2 * side * ux, atol=0.5)  # vx: right
    assert down["size"] == pytest.approx(side, rel=1e-4)


@needs_models
def test_no_rotate_keeps_the_square_upright(mp) -> None:
    photo = np.ascontiguousarray(np.rot90(portrait("grace_hopper")[0], -1))  # a face lying on its side
    turned = crop_square(mp.analyze(photo))
    upright = crop_square(mp.analyze(photo, crop=CropOptions(rotate=False)))
    assert abs(abs(turned["angle_deg"]) - 90) < 10 and upright["angle_deg"] == 0.0
    assert upright["size"] == pytest.approx(turned["size"], rel=1e-4)


@needs_models
def test_det_thresh_and_the_pipelines_own_options(mp) -> None:
    from lpstudio.drive.crop import DrivingCropper
    from lpstudio.face.models import MediaPipeFacePipeline

    photo, _ = portrait("grace_hopper")
    score = float(mp.detect(photo).scores.max())
    with pytest.raises(FaceNotFoundError):
        mp.analyze(photo, crop=CropOptions(det_thresh=min(0.99, score + 0.02)))
    # options given to the pipeline reach the driving-frame crop too
    wide = MediaPipeFacePipeline(crop_options=CropOptions(driving_scale=3.3))
    default_crop, wide_crop = DrivingCropper(mp), DrivingCropper(wide)
    assert default_crop(photo) is not None and wide_crop(photo) is not None
    ratio = np.linalg.det(default_crop.m_o2c[:2, :2]) / np.linalg.det(wide_crop.m_o2c[:2, :2])
    assert np.sqrt(ratio) == pytest.approx(3.3 / 2.2, rel=2e-3)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"scale": 9.0}, "--crop-scale 9 is out of range"),
        ({"vy": -0.7}, "--crop-vy -0.7 is out of range"),
        ({"driving_vx": float("nan")}, "--driving-crop-vx must be a number"),
        ({"det_thresh": 1.0}, "--det-thresh 1 is out of range"),
    ],
)
def test_bad_crop_values_are_refused(values: dict, words: str) -> None:
    with pytest.raises(ParamError) as info:
        CropOptions(**values)
    assert words in str(info.value) and "\n" not in info.value.message


def test_defaults_are_the_official_values() -> None:
    opts = CropOptions()
    assert (opts.scale, opts.vx, opts.vy, opts.rotate) == (2.3, 0.0, -0.125, True)
    assert (opts.driving_scale, opts.driving_vx, opts.driving_vy, opts.det_thresh) == (2.2, 0.0, -0.1, None)
    assert opts.merged({"scale": 3}).scale == 3.0
    with pytest.raises(ParamError, match="unknown crop option 'zoom'"):
        opts.merged({"zoom": 2})


@pytest.mark.parametrize(
    "argv",
    [
        ["face", "{photo}", "--crop-scale", "9"],
        ["face", "{photo}", "--crop-vx", "abc"],
        ["edit", "{photo}", "--crop-vy", "0.9", "-o", "{out}.png"],
        ["animate", "{photo}", "smile", "--det-thresh", "0", "-o", "{out}.mp4"],
        ["speak", "{photo}", "hello", "--crop-scale", "x", "-o", "{out}.mp4"],
        ["drive", "{photo}", "{photo}", "--driving-crop-scale", "0.5", "-o", "{out}.mp4"],
    ],
    ids=["face-range", "face-not-a-number", "edit", "animate", "speak", "drive"],
)
def test_cli_bad_crop_values_exit_2_before_loading(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One error line, exit status 2, and no model is loaded (the weights folder does not even exist)."""
    from lpstudio.cli import main

    photo, _ = portrait("astronaut")
    path = tmp_path / "p.png"
    cv2.imwrite(str(path), photo[:, :, ::-1])
    monkeypatch.setenv("LPSTUDIO_WEIGHTS_DIR", str(tmp_path / "no-weights-here"))
    args = [a.format(photo=path, out=tmp_path / "out") for a in argv]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"lpstudio {argv[0]}: error: --")
    assert "Traceback" not in err and "weights" not in err
