"""HTTP slots: result fetches, submits and cancels go before routine polls."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import pytest

from runpoller import engine
from runpoller.backends import RunResult
from runpoller.engine import Observation, RunState, Status
from runpoller.http.slots import PrioritySemaphore
from runpoller.protocol import AssistantsRunJob, Keys
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_waiting_urgent_acquirer_goes_before_earlier_routine_ones() -> None:
    sem = PrioritySemaphore(1)
    order: list[str] = []

    async def use(name: str, urgent: bool) -> None:
        async with sem.urgent if urgent else sem.routine:
            order.append(name)
            await asyncio.sleep(0)

    await sem.acquire()  # the one slot is busy
    tasks = [asyncio.create_task(use(f"poll{i}", False)) for i in range(3)]
    await settle()
    tasks.append(asyncio.create_task(use("fetch", True)))
    tasks.append(asyncio.create_task(use("submit", True)))
    await settle()
    assert sem.waiting == 5
    sem.release()
    await asyncio.gather(*tasks)
    assert order == ["fetch", "submit", "poll0", "poll1", "poll2"]
    assert sem.free == 1 and sem.waiting == 0


async def test_a_released_slot_goes_to_a_waiter_not_to_a_newcomer() -> None:
    sem = PrioritySemaphore(1)
    order: list[str] = []

    async def use(name: str) -> None:
        async with sem.routine:
            order.append(name)

    await sem.acquire()
    waiter = asyncio.create_task(use("waiter"))
    await settle()
    sem.release()
    newcomer = asyncio.create_task(use("newcomer"))  # asks before the waiter has run
    await asyncio.gather(waiter, newcomer)
    assert order == ["waiter", "newcomer"]
    assert sem.free == 1


async def test_cancelled_waiters_leak_no_slot() -> None:
    sem = PrioritySemaphore(2)
    await sem.acquire()
    await sem.acquire()
    queued = [asyncio.create_task(sem.acquire(urgent=i % 2 == 0)) for i in range(4)]
    await settle()
    queued[0].cancel()  # cancelled while waiting
    queued[1].cancel()
    await settle()
    sem.release()  # handed to queued[2] ...
    queued[2].cancel()  # ... which is cancelled before it could run: it passes the slot on
    await settle()
    assert queued[3].done() and not queued[3].cancelled()
    assert all(t.cancelled() for t in queued[:3])
    sem.release()
    sem.release()
    assert sem.free == 2 and sem.waiting == 0
    async with sem.routine, sem.urgent:
        assert sem.free == 0
    assert sem.free == 2


async def test_a_cancelled_holder_gives_its_slot_back() -> None:
    sem = PrioritySemaphore(1)
    entered = asyncio.Event()

    async def hold() -> None:
        async with sem.urgent:
            entered.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(hold())
    await entered.wait()
    assert sem.free == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sem.free == 1


def test_a_semaphore_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        PrioritySemaphore(0)


class Recorder:
    """Records requests in the order they got an HTTP slot. ``hold`` keeps the first GET."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.gate = asyncio.Event()

    async def get(self, job: AssistantsRunJob, state: RunState, *_: Any) -> Observation:
        self.order.append(f"get {job.run_id}")
        if job.run_id == "hold":
            await self.gate.wait()
        status = Status.COMPLETED if job.run_id == "fin" else Status.IN_PROGRESS
        return Observation(status, status.value, job.run_id)

    async def cancel(self, *args: Any) -> Observation:
        raise AssertionError("nothing is cancelled here")

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, job: AssistantsRunJob, *args: Any) -> RunResult:
        self.order.append(f"fetch {job.run_id}")
        return RunResult("done")


async def test_the_result_fetch_of_a_finished_run_skips_the_queue_of_polls() -> None:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    backend = Recorder()
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=1)
    for run_id in ("hold", "fin", "p1", "p2", "p3"):
        job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id=run_id)
        state = engine.new_state(run_id, now=time.time(), timeout_s=600, interval_s=60)
        await store.claim(run_id, job.model_dump_json(), state.to_json(), "{}")
        runner.adopt(run_id, job, state, "sk-test")
    await settle()
    assert backend.order == ["get hold"], "one slot: the others wait"
    backend.gate.set()
    for _ in range(200):
        if len(backend.order) == 6:
            break
        await asyncio.sleep(0.01)
    # fin's GET was queued first; its result fetch, asked for after p1..p3 queued, goes next.
    assert backend.order == ["get hold", "get fin", "get p1", "fetch fin", "get p2", "get p3"]
    for _ in range(200):  # its final event is written (in the background, after the fetch)
        if "fin" not in runner.runs:
            break
        await asyncio.sleep(0.01)
    assert "fin" not in runner.runs
    assert await redis.get("t:result:fin") is not None
    await runner.stop_runs()
