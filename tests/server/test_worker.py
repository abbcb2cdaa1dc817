"""The render worker's scheduling: cross-job batches, priorities, cancellation, errors."""

from __future__ import annotations

import threading

import numpy as np
import torch

from lpstudio.errors import ParamError
from lpstudio.params import EditParams
from lpstudio.server.worker import PRIORITY_BACKGROUND, PRIORITY_INTERACTIVE, RenderJob, RenderWorker


class GatedEngine:
    """Records every batch; each frame encodes (source id, smile). Batches wait for ``gate``."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, float]]] = []
        self.gate = threading.Event()
        self.gate.set()

    def edited_keypoints(self, state, params, stitching=True):
        if any(p.wink == 39 for p in params):
            raise ParamError("bad wink")
        return torch.tensor([[[p.smile] * 3] * 21 for p in params])

    def render_mixed(self, items):
        self.gate.wait(5)
        self.batches.append([(state, float(x_d[0, 0])) for state, x_d in items])
        return [np.full((2, 2, 3), int(state), np.uint8) for state, _ in items]


def _job(state, smiles, frames, done, priority=1):
    params = [EditParams(smile=s) for s in smiles]
    return RenderJob(
        state, params, lambda i, f: frames.append((state, i, int(f[0, 0, 0]))), lambda e: done.append(e), priority
    )


def test_frames_of_two_jobs_share_a_batch_and_keep_order():
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=4)
    frames, done = [], []
    blocker = worker.submit(_job(9, [0.0], frames, done))  # occupies the worker while we queue
    a = worker.submit(_job(1, [0.1, 0.2, 0.3], frames, done))
    b = worker.submit(_job(2, [0.5, 0.6, 0.7], frames, done))
    engine.gate.set()
    worker.call(lambda: None).result(5)
    for _ in range(100):
        if len(done) == 3:
            break
        threading.Event().wait(0.02)
    worker.close()
    assert len(done) == 3 and all(e is None for e in done)
    mixed = [batch for batch in engine.batches if {s for s, _ in batch} == {1, 2}]
    assert mixed, f"no batch mixed the two jobs: {engine.batches}"
    assert [i for s, i, _ in frames if s == 1] == [0, 1, 2]
    assert [i for s, i, _ in frames if s == 2] == [0, 1, 2]
    assert blocker.remaining == a.remaining == b.remaining == 0


def test_interactive_preview_jumps_the_queue():
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=2)
    frames, done = [], []
    worker.submit(_job(9, [0.0], frames, done))
    worker.submit(_job(3, [0.1] * 6, frames, done, priority=PRIORITY_BACKGROUND))
    worker.submit(_job(4, [0.9], frames, done, priority=PRIORITY_INTERACTIVE))
    engine.gate.set()
    for _ in range(200):
        if len(done) == 3:
            break
        threading.Event().wait(0.02)
    worker.close()
    order = [s for batch in engine.batches for s, _ in batch]
    assert order.index(4) < order.index(3), order


def test_cancelled_job_stops_rendering():
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=1)
    frames, done = [], []
    job = worker.submit(_job(5, [0.1] * 20, frames, done))
    threading.Event().wait(0.1)
    job.cancel()
    engine.gate.set()
    for _ in range(100):
        if done:
            break
        threading.Event().wait(0.02)
    worker.close()
    assert done == [None]
    assert len([f for f in frames if f[0] == 5]) <= 2  # at most the batch in flight


def test_error_reaches_only_its_job():
    engine = GatedEngine()
    worker = RenderWorker(engine, batch_size=4)
    frames, done = [], []
    bad = worker.submit(_job(6, [0.0], frames, done))
    bad.params = [EditParams(wink=39)]
    good = worker.submit(_job(7, [0.2, 0.4], frames, done))
    for _ in range(100):
        if len(done) == 2:
            break
        threading.Event().wait(0.02)
    worker.close()
    errors = [e for e in done if e is not None]
    assert len(errors) == 1 and isinstance(errors[0], ParamError)
    assert good.remaining == 0 and [i for s, i, _ in frames if s == 7] == [0, 1]


def test_call_runs_on_worker_thread_and_propagates_errors():
    worker = RenderWorker(GatedEngine())
    assert worker.call(threading.current_thread).result(5).name == "lpstudio-render"
    fut = worker.call(lambda: 1 / 0)
    try:
        fut.result(5)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the error was swallowed")
    worker.close()


def test_first_frames_are_rendered_before_full_batches():
    """A new job's first frame is not held back until a whole batch is ready."""
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=4)
    frames, done = [], []
    worker.submit(_job(9, [0.0], frames, done))
    worker.submit(_job(1, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], frames, done))
    engine.gate.set()
    for _ in range(100):
        if len(done) == 2:
            break
        threading.Event().wait(0.02)
    worker.close()
    first_batch_with_1 = next(batch for batch in engine.batches if any(s == 1 for s, _ in batch))
    assert [round(smile, 3) for s, smile in first_batch_with_1 if s == 1] == [0.1]  # job 1's first frame alone
    assert max(len(b) for b in engine.batches) == 4  # the rest still goes in full batches


def test_background_job_waits_while_a_clip_has_frames():
    """The viewer first: background work gets no batch while a clip has a frame to render."""
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=2)
    frames, done = [], []
    worker.submit(_job(9, [0.0], frames, done))
    worker.submit(_job(3, [0.3] * 4, frames, done, priority=PRIORITY_BACKGROUND))
    worker.submit(_job(4, [0.4] * 10, frames, done))  # a clip at clip priority
    threading.Event().wait(0.1)
    engine.gate.set()
    for _ in range(300):
        if len(done) == 3:
            break
        threading.Event().wait(0.02)
    worker.close()
    order = [s for batch in engine.batches for s, _ in batch]
    assert order.index(3) > len(order) - order[::-1].index(4) - 1, f"background rendered before the clip: {order}"


def _wait(predicate, timeout_s: float = 10.0) -> bool:
    event = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if predicate():
            return True
        event.wait(0.01)
    return predicate()


def test_a_preview_flood_cannot_starve_another_clients_clip():
    """Client A keeps 8 previews queued at all times (re-submitted as each ends); client B's clip still gets
    a batch within MAX_PRIORITY_STREAK + 1 batches, and all its frames long before the flood ends."""
    from lpstudio.server.worker import MAX_PRIORITY_STREAK

    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=4)
    frames, done = [], []
    flood_batches = 60
    stop = threading.Event()

    def preview(_exc=None) -> None:
        if stop.is_set() or len(engine.batches) >= flood_batches:
            return
        job = RenderJob(1, [EditParams(smile=0.1)], lambda i, f: None, preview, PRIORITY_INTERACTIVE, client="a")
        worker.submit(job)

    worker.submit(_job(9, [0.0], frames, done))  # holds the worker while the queue fills
    for _ in range(8):
        preview()
    clip_frames: list[int] = []
    clip = RenderJob(2, [EditParams(smile=0.5)] * 6, lambda i, f: clip_frames.append(i), done.append, client="b")
    worker.submit(clip)
    engine.gate.set()
    assert _wait(lambda: clip.remaining == 0 or len(engine.batches) >= flood_batches)
    stop.set()
    worker.close()
    owners = [{s for s, _ in batch} for batch in engine.batches]
    first = next(i for i, batch in enumerate(owners) if 2 in batch)
    assert first <= 1 + MAX_PRIORITY_STREAK + 1, owners[: first + 1]  # the blocker, the streak, then the clip
    last = max(i for i, batch in enumerate(owners) if 2 in batch)
    assert clip_frames == list(range(6)) and last < flood_batches - 1, owners


def test_clients_share_a_priority_round_robin_not_by_job_count():
    """Client A opens 6 clips, client B one: B gets half of each batch, not a seventh."""
    engine = GatedEngine()
    engine.gate.clear()
    worker = RenderWorker(engine, batch_size=4)
    frames, done = [], []
    worker.submit(_job(9, [0.0], frames, done))
    for k in range(6):
        job = RenderJob(10 + k, [EditParams(smile=0.1)] * 20, lambda i, f: None, done.append, client="a")
        worker.submit(job)
    b = RenderJob(2, [EditParams(smile=0.9)] * 20, lambda i, f: None, done.append, client="b")
    worker.submit(b)
    engine.gate.set()
    assert _wait(lambda: b.remaining == 0)
    worker.close()
    seen: set[int] = set()
    started = 0  # batches of first frames: every job's first frame, one per client in turn
    while len(seen) < 8:
        seen |= {s for s, _ in engine.batches[started]}
        started += 1
    b_share = [sum(1 for s, _ in batch if s == 2) for batch in engine.batches[started : started + 4]]
    assert b_share == [2, 2, 2, 2], engine.batches[: started + 4]
