"""Planning is bounded: a command is understood within a work budget, and few requests are planned at once.

A 70-character command used to hold a shared worker thread for 8-18 s, and six of them at once took all
of them (photo decoding and everyone's planning waited). Now such a command plans in milliseconds, a
command too costly to understand is a 400, and planning holds at most ``max_plans`` threads (429 past it).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from lpstudio.errors import OverloadedError
from lpstudio.server import ServerSettings, ServiceLimits, create_app
from lpstudio.server.plans import GenerateRequest, PlanningSlots, plan_clip

FILLER_RUN = "say smile with " + "해요" * 24 + "가"
"""The reported command (a run of filler syllables ending in one that is not filler)."""
MANY_VERBS = "say " * 125
"""500 characters of speech verbs: each tail is tried as a command of its own (quadratic work)."""
CONCURRENT = 6
"""Requests sent at once in the report."""
FAST_S = 2.0
"""Generous bound on /health and /session while they are planned (milliseconds when idle; seconds before)."""
PLAN_BOUND_S = 0.5
SHORT_CLIP_MS = 1000.0
"""This app's clip limit: the flood's commands are planned in full, then refused (400) without rendering."""


@pytest.fixture(scope="module")
def client(engine):
    settings = ServerSettings(
        crop=False, fps=1.0, idle_default=False, limits=ServiceLimits(max_sessions=3, max_clip_ms=SHORT_CLIP_MS)
    )
    with TestClient(create_app(engine, settings)) as c:
        yield c


@pytest.fixture(scope="module")
def session(client) -> str:
    return client.post("/session", json={}).json()["session"]


def test_reported_command_plans_in_bounded_time() -> None:
    start = time.perf_counter()
    plan = plan_clip(GenerateRequest(session="-", command=FILLER_RUN), fps=1.0, idle=False, limits=ServiceLimits())
    assert time.perf_counter() - start < PLAN_BOUND_S
    assert plan.frame_count > 0


def test_too_complex_command_is_a_400_with_a_clear_message(client, session) -> None:
    r = client.post("/generate", json={"session": session, "command": MANY_VERBS})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["kind"] == "CommandTooComplexError"
    assert "too complex" in body["error"]
    assert "split it into several commands" in body["hint"]
    assert "Traceback" not in r.text


def test_concurrent_costly_commands_leave_health_and_sessions_fast(client, session) -> None:
    def generate(i: int) -> int:
        command = FILLER_RUN if i % 2 else FILLER_RUN.replace("smile", "wink")
        with client.stream("POST", "/generate", json={"session": session, "command": command, "fps": 1.0}) as r:
            for _ in r.iter_lines():
                pass
            return r.status_code

    with ThreadPoolExecutor(CONCURRENT + 2) as pool:
        flood = [pool.submit(generate, i) for i in range(CONCURRENT)]
        start = time.perf_counter()
        health = client.get("/health")
        health_s = time.perf_counter() - start
        start = time.perf_counter()
        new = client.post("/session", json={})
        session_s = time.perf_counter() - start
        statuses = [f.result(timeout=120) for f in flood]
    assert health.status_code == 200 and new.status_code == 200
    assert health_s < FAST_S and session_s < FAST_S, (health_s, session_s)
    assert set(statuses) <= {400, 429}, statuses  # planned (then over the clip limit) or refused; never a 500
    assert 400 in statuses


def test_planning_slots_refuse_past_their_size_and_free_when_work_ends() -> None:
    rejected: list[str] = []
    slots = PlanningSlots(2, retry_after_s=3.0, on_reject=rejected.append)
    gate = threading.Event()

    async def scenario() -> None:
        def off_loop(fn):  # noqa: ANN001, ANN202
            return asyncio.to_thread(fn)

        held = [asyncio.create_task(slots.run(off_loop, gate.wait)) for _ in range(2)]
        while slots.busy < 2:
            await asyncio.sleep(0)
        with pytest.raises(OverloadedError) as err:
            await slots.run(off_loop, lambda: 1)
        assert err.value.http_status == 429 and err.value.retry_after_s == 3.0
        assert "being planned" in err.value.message
        gate.set()
        assert await asyncio.gather(*held) == [True, True]
        assert slots.busy == 0
        assert await slots.run(off_loop, lambda: 7) == 7

    asyncio.run(scenario())
    assert rejected == ["planning"]


def test_a_cancelled_wait_keeps_the_slot_until_the_work_is_done() -> None:
    slots = PlanningSlots(1)
    gate = threading.Event()

    async def scenario() -> None:
        task = asyncio.create_task(slots.run(lambda fn: asyncio.to_thread(fn), gate.wait))
        while slots.busy < 1:
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # let the thread start the work
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert slots.busy == 1  # the work still runs on its thread
        gate.set()
        for _ in range(200):
            if slots.busy == 0:
                break
            await asyncio.sleep(0.01)
        assert slots.busy == 0

    asyncio.run(scenario())


def test_a_short_burst_waits_in_the_queue_and_only_past_it_is_refused() -> None:
    """Two slots and a queue of two: four requests at once all get planned (two after a wait), a fifth is a 429,
    and the waiters run in arrival order as slots free."""
    rejected: list[str] = []
    slots = PlanningSlots(2, queue=2, retry_after_s=1.0, on_reject=rejected.append)
    gate = threading.Event()
    order: list[int] = []

    async def scenario() -> None:
        def off_loop(fn):  # noqa: ANN001, ANN202
            return asyncio.to_thread(fn)

        def work(i: int):  # noqa: ANN202
            def run() -> int:
                gate.wait()
                order.append(i)
                return i

            return run

        held = [asyncio.create_task(slots.run(off_loop, work(i))) for i in range(4)]
        while slots.busy < 2 or slots.waiting < 2:
            await asyncio.sleep(0)
        with pytest.raises(OverloadedError):
            await slots.run(off_loop, lambda: -1)
        gate.set()
        assert sorted(await asyncio.gather(*held)) == [0, 1, 2, 3]
        assert slots.busy == 0 and slots.waiting == 0

    asyncio.run(scenario())
    assert rejected == ["planning"]
    assert set(order[2:]) == {2, 3}  # the queued two ran after the first two


def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    slots = PlanningSlots(1, queue=1)
    gate = threading.Event()

    async def scenario() -> None:
        first = asyncio.create_task(slots.run(lambda fn: asyncio.to_thread(fn), gate.wait))
        while slots.busy < 1:
            await asyncio.sleep(0)
        waiter = asyncio.create_task(slots.run(lambda fn: asyncio.to_thread(fn), lambda: "never"))
        while slots.waiting < 1:
            await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert slots.waiting == 0 and slots.busy == 1
        gate.set()
        assert await first is True
        assert slots.busy == 0

    asyncio.run(scenario())
