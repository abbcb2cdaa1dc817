"""A video as the portrait over HTTP (issue 21): ``POST /video-source``, its status, result and cancel.

The engine's networks are stand-ins here (F zeros, M one real output repeated, W+G a grey level of the
keypoints), so a job of a few frames takes well under a second; tracking, pasting, encoding and the
server's bounds are the real ones. The viewer-first rule is checked on the render worker itself, by the
order of events.
"""

from __future__ import annotations

import io
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from test_drive_api import DECODER_WORDS, noise_frames, template_bytes, video_bytes

from lpstudio.engine import LivePortrait
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.worker import PRIORITY_CLIP, RenderJob, RenderWorker

POLLS = 400
"""Status polls before a test gives up on a job (each after :data:`POLL_S`): a bound, not a timing."""
POLL_S = 0.05
MAX_SECONDS = 2.0
"""The source-video length limit of these tests' server."""


def _stand_ins(engine: LivePortrait) -> LivePortrait:
    """An engine on the session's networks whose F, M and W+G are instant stand-ins (this object only)."""
    fast = LivePortrait(engine.networks, "cpu", "float32", face=engine.face)
    one = engine.motion(torch.zeros(1, 3, 256, 256))
    fast.render_mixed = lambda items: [  # type: ignore[method-assign]
        np.full((512, 512, 3), int(k.abs().sum() * 997) % 256, np.uint8) for _, k in items
    ]
    fast.appearance = lambda x: torch.zeros(x.shape[0], 32, 16, 64, 64)  # type: ignore[method-assign]
    fast.motion = lambda x: type(one)(*(v.expand(len(x), *v.shape[1:]) for v in one))  # type: ignore[method-assign]
    return fast


@pytest.fixture(scope="module")
def fast_engine(engine) -> LivePortrait:
    return _stand_ins(engine)


@pytest.fixture(scope="module")
def vs_client(fast_engine):
    limits = ServiceLimits(max_source_video_seconds=MAX_SECONDS, max_drive_upload_bytes=256 * 1024)
    settings = ServerSettings(crop=False, fps=4.0, idle_default=False, prerender=False, limits=limits)
    with TestClient(create_app(fast_engine, settings)) as c:
        yield c, c.post("/session", json={}).json()["session"]


def _start(client: TestClient, session: str, source: tuple[str, bytes], driving: tuple[str, bytes], **options):
    files = {"source": (*source, "application/octet-stream"), "driving": (*driving, "application/octet-stream")}
    return client.post("/video-source", data={"session": session, **options}, files=files)


def _wait(client: TestClient, session: str, job_id: str):
    for _ in range(POLLS):
        answer = client.get(f"/video-source/{job_id}", params={"session": session})
        if answer.status_code != 200 or answer.json()["state"] not in ("queued", "running"):
            return answer
        time.sleep(POLL_S)
    raise AssertionError(f"the job did not end within {POLLS} polls: {answer.json()}")


def _read(data: bytes) -> tuple[int, Fraction, tuple[int, int]]:
    import av

    with av.open(io.BytesIO(data), format="mp4") as c:
        stream = c.streams.video[0]
        return sum(1 for _ in c.decode(stream)), Fraction(stream.average_rate), (stream.width, stream.height)


def _plain_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert "\n" not in message and len(message) < 300
    assert not any(word in message.lower() for word in DECODER_WORDS), message
    assert "/tmp" not in message and "demux" not in message, "a private path leaked into the message"
    return message


def test_a_source_video_driven_by_a_video_gives_the_shorter_clip_at_the_sources_fps(vs_client) -> None:
    client, session = vs_client
    source = ("me.mp4", video_bytes(noise_frames(3, seed=3), fps=5))
    started = _start(client, session, source, ("drive.webm", video_bytes(noise_frames(4), codec="libvpx", fmt="webm")))
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["fps"] == pytest.approx(5.0) and job["status_url"] == f"/video-source/{job['id']}"
    status = _wait(client, session, job["id"]).json()
    assert status["state"] == "done" and status["done"] is True and status["frames"] == 3, status
    assert status["progress"] == status["total"] > 0
    video = client.get(status["url"], params={"session": session})
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert _read(video.content) == (3, Fraction(5), (512, 512)), "min(3, 4) frames at the source's 5 fps"


def test_a_motion_template_drives_a_source_video(vs_client, tmp_path: Path) -> None:
    client, session = vs_client
    source = ("me.mp4", video_bytes(noise_frames(3, seed=4), fps=4))
    started = _start(client, session, source, ("motion.npz", template_bytes(tmp_path, 2)), audio="none",
                      reference_frame="auto", smooth="false")  # fmt: skip
    assert started.status_code == 202, started.text
    status = _wait(client, session, started.json()["id"]).json()
    assert status["state"] == "done" and status["frames"] == 2, status
    frames, fps, _ = _read(client.get(status["url"], params={"session": session}).content)
    assert (frames, fps) == (2, Fraction(4))


def test_a_source_video_over_the_length_limit_is_one_plain_line(vs_client) -> None:
    client, session = vs_client
    long = ("long.mp4", video_bytes(noise_frames(12, seed=5), fps=4))  # 3 s; the limit is 2 s
    message = _plain_error(_start(client, session, long, ("d.mp4", video_bytes(noise_frames(2)))), 400)
    assert "long.mp4" in message and "source video" in message and f"limit is {MAX_SECONDS:g} s" in message


@pytest.mark.parametrize(
    ("source", "driving", "status", "words"),
    [
        (("notes.mp4", b"just some text, not a video at all"), None, 400, "notes.mp4 is"),
        (("empty.mp4", b""), None, 400, "empty.mp4 is empty"),
        (("cut.mp4", b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200), None, 400, "cannot read cut.mp4"),
        (None, ("motion.pkl", b"\x80\x04\x95" + b"\x00" * 40), 400, "motion.pkl is"),
        (None, ("broken.npz", b"PK\x03\x04" + b"\x00" * 60), 400, "not a valid .npz"),
    ],
    ids=["text", "empty", "corrupt", "pickle-driving", "corrupt-template"],
)
def test_bad_uploads_are_plain_4xx(vs_client, source, driving, status: int, words: str) -> None:
    client, session = vs_client
    source = source or ("ok.mp4", video_bytes(noise_frames(2, seed=6), fps=4))
    driving = driving or ("d.mp4", video_bytes(noise_frames(2)))
    assert words in _plain_error(_start(client, session, source, driving), status)


def test_a_video_without_frames_is_refused(vs_client) -> None:
    import av

    client, session = vs_client
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        out.start_encoding()
    message = _plain_error(
        _start(client, session, ("none.mp4", buf.getvalue()), ("d.mp4", video_bytes(noise_frames(2)))), 400
    )
    assert "none.mp4" in message


def test_one_job_per_client_the_result_only_to_its_page_and_cancel(vs_client) -> None:
    client, session = vs_client
    other = client.post("/session", json={}).json()["session"]
    gate = threading.Event()
    worker = client.app.state.lp.worker
    held = worker.call(lambda: gate.wait(30))  # the model is busy: the first job stays queued
    try:
        source = ("me.mp4", video_bytes(noise_frames(2, seed=7), fps=4))
        first = _start(client, session, source, ("d.mp4", video_bytes(noise_frames(2))))
        assert first.status_code == 202, first.text
        job_id = first.json()["id"]
        second = _start(client, other, source, ("d.mp4", video_bytes(noise_frames(2))))
        assert "still running" in _plain_error(second, 429) and second.headers["retry-after"]
        assert client.get(f"/video-source/{job_id}", params={"session": other}).status_code == 404
        assert client.get(f"/video-source/{job_id}.mp4", params={"session": session}).status_code == 404  # not yet
    finally:
        gate.set()
        held.result(30)
    status = _wait(client, session, job_id).json()
    assert status["state"] == "done", status
    assert client.get(f"/video-source/{job_id}.mp4", params={"session": other}).status_code == 404, "not its page's"
    assert client.get(f"/video-source/{job_id}.mp4", params={"session": session}).status_code == 200
    store = client.app.state.video_jobs
    folder = store.jobs[job_id].folder
    assert client.post("/video-source/cancel", json={"session": session, "id": job_id}).json()["cancelled"]
    assert (
        not folder.exists()
        and client.get(f"/video-source/{job_id}.mp4", params={"session": session}).status_code == 404
    )
    again = _start(client, other, source, ("d.mp4", video_bytes(noise_frames(2))))
    assert again.status_code == 202, "the client's job ended: it may start another"
    assert _wait(client, other, again.json()["id"]).json()["state"] == "done"


def test_the_routes_sit_behind_the_key(fast_engine) -> None:
    settings = ServerSettings(crop=False, idle_default=False, prerender=False, api_key="k" * 32)
    with TestClient(create_app(fast_engine, settings)) as c:
        assert c.get("/video-source/abc.mp4", params={"session": "s"}).status_code == 401
        assert c.post("/video-source", data={"session": "s"}).status_code == 401


def test_no_face_in_any_frame_fails_the_job_with_one_line(engine, tmp_path: Path) -> None:
    from lpstudio.face import FacePipeline
    from standin_models import empty_det_outputs, write_face_models

    cpu = ["CPUExecutionProvider"]
    finds = FacePipeline(write_face_models(tmp_path / "w"), cpu)
    faceless = FacePipeline(write_face_models(tmp_path / "n", det_outputs=empty_det_outputs()), cpu)
    fast = _stand_ins(LivePortrait(engine.networks, "cpu", "float32", face=finds))
    settings = ServerSettings(crop=True, fps=4.0, idle_default=False, prerender=False)
    with TestClient(create_app(fast, settings)) as c:
        session = c.post("/session", json={}).json()["session"]  # the default portrait has a face
        fast.face = faceless  # the source video has none
        started = _start(c, session, ("faceless.mp4", video_bytes(noise_frames(2, seed=8), fps=4)),
                         ("d.mp4", video_bytes(noise_frames(2))))  # fmt: skip
        assert started.status_code == 202, started.text
        message = _plain_error(_wait(c, session, started.json()["id"]), 422)
        assert "No face was found" in message and "faceless.mp4" in message


class _Recorder:
    """A stand-in engine for the worker: records each rendered frame."""

    def __init__(self, events: list[str]) -> None:
        self.events = events

    def render_mixed(self, rows):  # noqa: ANN001, ANN201
        self.events.append("frame")
        return [np.zeros((4, 4, 3), np.uint8) for _ in rows]


def test_video_steps_wait_for_the_viewers_frames() -> None:
    """A clip submitted while a step runs gets all its frames before the next step (viewer first)."""
    events: list[str] = []
    worker = RenderWorker(_Recorder(events), batch_size=1)  # type: ignore[arg-type]
    running, release = threading.Event(), threading.Event()

    def step(k: int) -> None:
        if k == 0:
            running.set()
            release.wait(30)
        events.append(f"step{k}")

    try:
        steps = [worker.call_when_idle(lambda k=k: step(k)) for k in range(3)]
        assert running.wait(30)
        done = threading.Event()
        clip = RenderJob(None, [None] * 3, lambda i, f: None, lambda exc: done.set(), priority=PRIORITY_CLIP,  # type: ignore[arg-type]
                         x_d=torch.zeros(3, 21, 3))  # fmt: skip
        worker.submit(clip)
        release.set()
        for future in steps:
            future.result(30)
        assert done.wait(30)
    finally:
        release.set()
        worker.close()
    assert events == ["step0", "frame", "frame", "frame", "step1", "step2"]
    late = worker.call_when_idle(lambda: None)
    assert late.cancelled(), "a closed worker takes no more steps"


def test_a_command_over_a_source_video_keeps_every_frame(vs_client) -> None:
    client, session = vs_client
    files = {"source": ("talk.mp4", video_bytes(noise_frames(3, seed=9), fps=4), "video/mp4")}
    started = client.post("/video-source", data={"session": session, "command": "웃어줘"}, files=files)
    assert started.status_code == 202, started.text
    status = _wait(client, session, started.json()["id"]).json()
    assert status["state"] == "done" and status["frames"] == 3, status
    frames, fps, _ = _read(client.get(status["url"], params={"session": session}).content)
    assert (frames, fps) == (3, Fraction(4)), "every source frame, at its fps"
    both = dict(files, driving=("d.mp4", video_bytes(noise_frames(2)), "video/mp4"))
    assert "exactly one" in _plain_error(client.post("/video-source", data={"session": session, "command": "웃어줘"},
                                                     files=both), 400)  # fmt: skip
    neither = client.post("/video-source", data={"session": session}, files=files)
    assert "exactly one" in _plain_error(neither, 400)


def test_a_cancelled_or_abandoned_job_leaves_no_file(vs_client) -> None:
    client, session = vs_client
    store = client.app.state.video_jobs
    gate = threading.Event()
    held = client.app.state.lp.worker.call(lambda: gate.wait(30))  # the job waits behind it
    try:
        started = _start(client, session, ("me.mp4", video_bytes(noise_frames(3, seed=10), fps=4)),
                         ("d.mp4", video_bytes(noise_frames(3))))  # fmt: skip
        assert started.status_code == 202, started.text
        job = store.jobs[started.json()["id"]]
        assert client.post("/video-source/cancel", json={"session": session, "id": job.id}).status_code == 200
        assert client.get(f"/video-source/{job.id}", params={"session": session}).status_code == 404
    finally:
        gate.set()
        held.result(30)
    for _ in range(POLLS):  # the step in flight ends, then the job stops and its folder goes
        if job.task.done():
            break
        time.sleep(POLL_S)
    assert job.state == "cancelled" and not job.folder.exists() and not job.result.exists()

    done = _start(client, session, ("me.mp4", video_bytes(noise_frames(2, seed=11), fps=4)),
                  ("d.mp4", video_bytes(noise_frames(2))))  # fmt: skip
    finished = store.jobs[done.json()["id"]]
    assert _wait(client, session, finished.id).json()["state"] == "done" and finished.result.exists()
    store.sweep(client.app.state.lp.limits, lambda sid: sid != session)  # as when the page's session closed
    assert finished.id not in store.jobs and not finished.folder.exists()


def test_a_source_longer_than_its_header_fails_while_tracking(tmp_path: Path) -> None:
    """The job is given one frame past its allowed length: reaching it fails the job, and its output goes."""
    import asyncio
    import concurrent.futures

    from lpstudio.drive.v2v import V2VStep
    from lpstudio.server.video_jobs import VideoJob, run_job

    class Lying:
        """A job whose source keeps giving frames (the header said 3)."""

        def __init__(self) -> None:
            self.closed = False
            self.partial_path = None
            self._done = 0

        def step(self) -> V2VStep:
            self._done += 1
            return V2VStep("source", self._done, 3, self._done, 9)

        def close(self) -> None:
            self.closed = True

    def now(fn):  # noqa: ANN001, ANN202
        future: concurrent.futures.Future = concurrent.futures.Future()
        future.set_result(fn())
        return future

    lying = Lying()
    job = VideoJob("id", "client", "session", tmp_path, source_name="liar.mp4", allowed_frames=3)
    asyncio.run(run_job(job, lambda: lying, now, ServiceLimits(max_source_video_seconds=MAX_SECONDS)))
    assert job.state == "failed" and lying.closed and lying._done == 4, "stopped at the first frame past the limit"
    assert "liar.mp4 is longer than its header says" in job.error.message and job.error.http_status == 400


# ---------------------------------------------------------------------- dubbing (text / speech upload)
SPEECH_RATE = 16_000
"""Sample rate of the tests' speech uploads (Hz)."""


def _wav(seconds: float) -> bytes:
    """A mono 16-bit WAV of ``seconds``: a 150 Hz tone whose loudness rises and falls like syllables."""
    import wave

    t = np.arange(int(round(seconds * SPEECH_RATE))) / SPEECH_RATE
    wave_form = np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * 0.6
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SPEECH_RATE)
        out.writeframes((wave_form * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _audio_seconds(data: bytes) -> float:
    """Length of an MP4's audio stream (decoded samples / rate); 0 when it has none."""
    import av

    with av.open(io.BytesIO(data), format="mp4") as c:
        if not c.streams.audio:
            return 0.0
        stream = c.streams.audio[0]
        samples = sum(frame.samples for frame in c.decode(stream))
        return samples / stream.rate


def _dub(client: TestClient, session: str, source: tuple[str, bytes], *, speech: bytes | None = None,
         **form: str):  # fmt: skip
    files = {"source": (*source, "video/mp4")}
    if speech is not None:
        files["speech"] = ("speech.wav", speech, "audio/wav")
    return client.post("/video-source", data={"session": session, **form}, files=files)


def test_a_dub_by_uploaded_speech_has_the_sources_frames_and_the_speech_as_its_sound(vs_client) -> None:
    client, session = vs_client
    source = ("talk.mp4", video_bytes(noise_frames(4, seed=12), fps=4))  # 1 s, no audio track
    started = _dub(client, session, source, speech=_wav(1.0))
    assert started.status_code == 202, started.text
    assert started.json()["total"] == 4, "ceil(1 s * 4 fps) output frames expected"
    status = _wait(client, session, started.json()["id"]).json()
    assert status["state"] == "done" and status["frames"] == 4, status
    video = client.get(status["url"], params={"session": session}).content
    frames, fps, _ = _read(video)
    assert (frames, fps) == (4, Fraction(4)), "every source frame at the source's fps"
    assert _audio_seconds(video) == pytest.approx(1.0, abs=0.03), "the uploaded speech is the only sound"


def test_a_speech_longer_than_the_video_is_one_line_before_any_model_work(vs_client) -> None:
    client, session = vs_client
    store = client.app.state.video_jobs
    before = set(store.jobs)
    source = ("short.mp4", video_bytes(noise_frames(4, seed=13), fps=4))  # 1 s
    message = _plain_error(_dub(client, session, source, speech=_wav(2.0)), 400)
    assert "speech lasts 2.00 s" in message and "short.mp4" in message, message
    message = _plain_error(
        _dub(client, session, source, text="안녕하세요. 오늘은 날씨가 정말 좋네요. 산책하러 갈까요?"), 400
    )
    assert "short.mp4" in message and "speech lasts" in message, message
    assert set(store.jobs) == before, "a refused dub leaves no job (and no files)"


def test_a_dub_by_text_is_spoken_and_muxed(vs_client) -> None:
    client, session = vs_client
    source = ("talk.mp4", video_bytes(noise_frames(8, seed=14), fps=4))  # 2 s
    started = _dub(client, session, source, text="네")
    assert started.status_code == 202, started.text
    status = _wait(client, session, started.json()["id"]).json()
    assert status["state"] == "done" and 1 <= status["frames"] <= 8, status
    video = client.get(status["url"], params={"session": session}).content
    frames, fps, _ = _read(video)
    assert fps == Fraction(4) and frames == status["frames"]
    assert _audio_seconds(video) == pytest.approx(frames / 4, abs=0.03), "the speech, on the video's clock"


@pytest.mark.parametrize(
    ("form", "with_speech", "with_driving", "words"),
    [
        ({"text": "안녕"}, True, False, "exactly one"),
        ({"command": "웃어줘", "text": "안녕"}, False, False, "exactly one"),
        ({}, True, True, "exactly one"),
        ({"text": "안녕", "audio": "none"}, False, False, "does not apply to a dub"),
        ({"text": "가" * 501}, False, False, "text to say is 501 characters long; the limit is 500"),
    ],
    ids=["text+speech", "command+text", "driving+speech", "audio-none", "text-too-long"],
)
def test_a_dub_with_another_choice_is_refused(vs_client, form, with_speech: bool, with_driving: bool,
                                              words: str) -> None:  # fmt: skip
    client, session = vs_client
    files = {"source": ("talk.mp4", video_bytes(noise_frames(2, seed=15), fps=4), "video/mp4")}
    if with_speech:
        files["speech"] = ("s.wav", _wav(0.3), "audio/wav")
    if with_driving:
        files["driving"] = ("d.mp4", video_bytes(noise_frames(2)), "video/mp4")
    assert words in _plain_error(client.post("/video-source", data={"session": session, **form}, files=files), 400)


def test_a_speech_upload_that_is_no_audio_is_refused(vs_client) -> None:
    client, session = vs_client
    files = {"source": ("talk.mp4", video_bytes(noise_frames(2, seed=16), fps=4), "video/mp4"),
             "speech": ("notes.wav", b"just some text, not audio at all", "audio/wav")}  # fmt: skip
    assert "notes.wav" in _plain_error(client.post("/video-source", data={"session": session}, files=files), 400)


def test_the_dub_length_check_allows_one_held_frame_and_no_more() -> None:
    from lpstudio.drive.dub_job import DUB_HOLD_FRAMES, check_dub_length
    from lpstudio.errors import LimitError

    assert check_dub_length(1000.0, 4.0, 4, None, "v.mp4") == 4, "as long as the video: every frame"
    assert check_dub_length(600.0, 4.0, 4, None, "v.mp4") == 3, "shorter: the speech's ceil(0.6 s * 4)"
    assert check_dub_length(1000.0 + 250.0 * DUB_HOLD_FRAMES, 4.0, 4, None, "v.mp4") == 4 + DUB_HOLD_FRAMES
    with pytest.raises(LimitError, match="speech lasts 1.75 s but the source video v.mp4 only 1.00 s"):
        check_dub_length(1750.0, 4.0, 4, None, "v.mp4")
    with pytest.raises(LimitError, match="only 1.00 s"):
        check_dub_length(1750.0, 4.0, None, 1.0, "v.mp4")  # the header gives seconds only
    assert check_dub_length(9000.0, 4.0, None, None, "v.mp4") == 36, "no length in the header: the job checks"
