"""The live per-frame driver: the first camera frame is the neutral (exactly), reset, regions, tracking, errors.

Keypoints only (no warp/decode): the rendered invariant is checked through the
WebSocket in tests/server/test_live_socket.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpstudio.drive.driving_motion import DriveSettings, KeypointDriver, extract_motion
from lpstudio.drive.live import TRACK_MIN_FACE_PX, LiveCropper, LiveDriver, centre_square
from lpstudio.errors import ImageError, ParamError
from lpstudio.face.crop import to_network_input
from lpstudio.face.detect import Detections


@pytest.fixture(scope="module")
def state(engine):
    return engine.prepare_source(np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8), crop=False)


def _camera(seed: int, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def rest(engine, state) -> torch.Tensor:
    """The official video path's rest pose: x_s stitched onto itself."""
    return engine.stitch(state.x_s, state.x_s)


def test_first_frame_is_exactly_the_neutral_and_later_frames_move(engine, state) -> None:
    driver = LiveDriver(engine, state, precropped=True)
    a, b = _camera(1), _camera(2)
    first = driver.step(a)
    assert first.face and first.neutral
    assert torch.equal(first.x_d, rest(engine, state))
    assert torch.equal(driver.step(a).x_d, rest(engine, state)), "the neutral frame again is still the rest pose"
    moved = driver.step(b)
    assert not moved.neutral and (moved.x_d - rest(engine, state)).abs().max() > 1e-4


def test_live_matches_the_video_path_frame_by_frame(engine, state) -> None:
    """Same crops through KeypointDriver in one sequence (what ``lpstudio drive`` does) give the same x_d."""
    frames = [_camera(i) for i in (4, 5, 6)]
    crops = [to_network_input(np.ascontiguousarray(centre_square(f)), filter="linear") for f in frames]
    video = KeypointDriver(engine, state, DriveSettings(), sequence=True)
    expected = [video(extract_motion(engine, [c], 1)) for c in crops]
    live = LiveDriver(engine, state, precropped=True)
    for frame, want in zip(frames, expected, strict=True):
        torch.testing.assert_close(live.step(frame).x_d, want, rtol=0, atol=0)


def test_reset_makes_the_current_frame_the_neutral(engine, state) -> None:
    driver = LiveDriver(engine, state, precropped=True)
    driver.step(_camera(1))
    b = _camera(2)
    assert not torch.equal(driver.step(b).x_d, rest(engine, state))
    driver.request_reset()
    after = driver.step(b)
    assert after.neutral and torch.equal(after.x_d, rest(engine, state))


def test_region_change_keeps_the_neutral(engine, state) -> None:
    driver = LiveDriver(engine, state, precropped=True)
    a, b = _camera(1), _camera(2)
    driver.step(a)
    full = driver.step(b).x_d
    driver.request_settings(DriveSettings(region="pose"))
    assert torch.equal(driver.step(a).x_d, rest(engine, state)), "the neutral frame stays neutral in any region"
    pose = driver.step(b).x_d
    reference = LiveDriver(engine, state, DriveSettings(region="pose"), precropped=True)
    reference.step(a)
    assert torch.equal(pose, reference.step(b).x_d) and not torch.equal(pose, full)


def test_centre_square_of_a_wide_frame_is_the_face() -> None:
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, 40:280] = 200
    square = centre_square(frame)
    assert square.shape == (240, 240, 3) and (square == 200).all()


def test_bad_settings_and_missing_face_models(engine, state) -> None:
    with pytest.raises(ParamError, match="not offered live"):
        LiveDriver(engine, state, DriveSettings(region="eyes"), precropped=True)
    with pytest.raises(ImageError, match="face models"):
        LiveDriver(engine, state)  # cropping camera frames without face models
    driver = LiveDriver(engine, state, precropped=True)
    with pytest.raises(ParamError):
        driver.request_settings(DriveSettings(region="eyes"))


# ---------------------------------------------------------------------- tracking with a scripted face pipeline
class ScriptedFace:
    """A face pipeline in plain Python: the face is the bright square of the frame (none when there is none).

    The "landmarks" are the square's corners and centre spread over 203 points; ``lose`` makes the
    landmark model answer a collapsed face, as a real one does when the face has left.
    """

    analysis_max_side = 4096

    def __init__(self) -> None:
        self.detections = 0
        self.tracked = 0
        self.lose = False
        self.detector = self

    def _square(self, image: np.ndarray) -> np.ndarray | None:
        ys, xs = np.nonzero(image[..., 0] > 128)
        if len(xs) == 0:
            return None
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)

    def _points(self, box: np.ndarray) -> np.ndarray:
        t = np.linspace(0, 1, 203, dtype=np.float32)
        return np.stack([box[0] + t * (box[2] - box[0]), box[1] + (t * 7 % 1) * (box[3] - box[1])], axis=1)

    def detect(self, image: np.ndarray) -> Detections:
        self.detections += 1
        box = self._square(image)
        if box is None:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), None)
        return Detections(box[None], np.array([0.9], np.float32), None)

    def landmark106(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        return self._points(np.asarray(box[:4], np.float32))[:106]

    def landmark203(self, image: np.ndarray, previous: np.ndarray) -> np.ndarray:
        if len(previous) == 203:
            self.tracked += 1
        box = self._square(image)
        if self.lose or box is None:
            centre = previous.mean(axis=0)
            return np.repeat(centre[None], 203, axis=0).astype(np.float32)  # collapsed: lost
        return self._points(box)


def _face_frame(x: int, y: int, side: int = 100) -> np.ndarray:
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[y : y + side, x : x + side] = 220
    return frame


def test_tracker_detects_once_then_follows_the_face() -> None:
    face = ScriptedFace()
    cropper = LiveCropper(face, verify_every=0)
    for i in range(6):
        assert cropper(_face_frame(50 + 5 * i, 60)) is not None
    assert face.detections == 1 and face.tracked == 5


def test_tracker_checks_with_the_detector_every_n_frames_and_redetects_when_lost() -> None:
    face = ScriptedFace()
    cropper = LiveCropper(face, verify_every=3)
    for i in range(7):
        cropper(_face_frame(50, 60 + i))
    assert face.detections == 3  # frames 0, 3 and 6
    face.lose = True
    assert cropper(_face_frame(50, 60)) is not None  # tracking collapsed -> detected again at once
    assert face.detections == 4
    face.lose = False
    assert cropper(np.zeros((240, 320, 3), np.uint8)) is None  # the face is gone: tracking fails, no detection


def test_tracker_rejects_implausible_landmarks() -> None:
    face = ScriptedFace()
    cropper = LiveCropper(face, verify_every=0)
    frame = _face_frame(50, 60)
    lmk = face._points(face._square(frame))
    cropper._last = lmk
    assert cropper._plausible(lmk, frame)
    assert not cropper._plausible(lmk * 0.2 + 10, frame), "a face shrinking five-fold in a frame is lost"
    tiny = np.full((203, 2), 100, np.float32)
    tiny[0] += TRACK_MIN_FACE_PX / 2
    assert not cropper._plausible(tiny, frame)
    assert not cropper._plausible(lmk + 1000, frame), "a face centred outside the frame is lost"


def test_cropped_live_frame_uses_the_fixed_square_until_reset() -> None:
    face = ScriptedFace()
    cropper = LiveCropper(face, verify_every=0)
    cropper(_face_frame(50, 60))
    square = cropper.m_o2c.copy()
    cropper(_face_frame(90, 60))
    assert np.array_equal(cropper.m_o2c, square), "the crop square stays where the neutral frame set it"
    cropper.reset()
    cropper(_face_frame(90, 60))
    assert not np.array_equal(cropper.m_o2c, square)
