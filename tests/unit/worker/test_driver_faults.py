"""The driver under faults: a lost lease, an API that never answers, a Redis that hangs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis
import httpx

from runpoller import engine
from runpoller.backends import RunResult
from runpoller.backends.responses import ResponsesBackend
from runpoller.engine import Observation, RunState, Status
from runpoller.http.api import ApiClient
from runpoller.protocol import AssistantsRunJob, FinalEvent, Keys, ParsedReply, ResponseJob
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner
from tests.unit.worker.test_driver import FUNCTION_CALL, ResponsesApi, response


async def until(condition: Any, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        await asyncio.sleep(0.01)


class HangingBackend:
    """An API that takes every request and never answers (until released)."""

    def __init__(self, *, first: Status | None = Status.IN_PROGRESS) -> None:
        self.first = first
        self.gets = 0
        self.cancels = 0
        self.release = asyncio.Event()

    async def get(self, job: Any, state: RunState, *_: Any) -> Observation:
        self.gets += 1
        if self.gets == 1 and self.first is not None:
            return Observation(self.first, self.first.value, "run_1")
        await self.release.wait()
        return Observation(Status.IN_PROGRESS, "in_progress", "run_1")

    async def cancel(self, job: Any, state: RunState, api_key: str) -> Observation:
        self.cancels += 1
        await self.release.wait()
        return Observation(Status.CANCELLED, "cancelled", "run_1")

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, *args: Any) -> RunResult:
        return RunResult(None, {})


async def assistants_run(
    backend: Any, *, timeout_s: float, grace_s: float
) -> tuple[fakeredis.FakeAsyncRedis, RunStore, Runner]:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    policy = engine.Policy(cancel_grace_s=grace_s)
    runner = Runner(store, {"assistants_run": backend}, policy, http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=timeout_s, interval_s=0.05)
    await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    runner.adopt("run_1", job, state, "sk-test")
    return redis, store, runner


async def test_an_api_that_never_answers_still_gets_its_final_within_deadline_and_grace() -> None:
    backend = HangingBackend()
    redis, _, runner = await assistants_run(backend, timeout_s=0.4, grace_s=0.4)
    await until(lambda: not runner.runs)
    assert not backend.release.is_set(), "ended while the API was still silent"
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "timed_out"
    assert "the cancel could not be confirmed" in final.reason
    assert "no answer before the end of the cancel grace" in final.reason
    assert backend.cancels >= 1, "the cancel was sent"


async def test_a_hanging_redis_does_not_hold_up_the_cancel_at_the_deadline() -> None:
    backend = HangingBackend(first=Status.QUEUED)
    redis, store, runner = await assistants_run(backend, timeout_s=0.3, grace_s=5)
    backend.release.set()  # the API answers; Redis is what hangs now
    redis_back = asyncio.Event()
    publish = store.publish

    async def hanging_publish(*args: Any) -> int:
        await redis_back.wait()
        return await publish(*args)

    store.publish = hanging_publish  # type: ignore[method-assign]
    await until(lambda: backend.cancels >= 1)
    assert not redis_back.is_set(), "the cancel went out while Redis hung"
    redis_back.set()
    await until(lambda: not runner.runs)
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "timed_out"


async def test_a_worker_that_lost_the_run_sends_no_continuation() -> None:
    api = ResponsesApi([response("completed", output=[FUNCTION_CALL])])
    job = ResponseJob(kind="response", response_id="resp_1", id="run_1")
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    backend = ResponsesBackend(ApiClient(http, "http://api.test/v1"))
    runner = Runner(store, {"response": backend}, engine.Policy(), http_concurrency=4)
    state = engine.new_state("resp_1", now=time.time(), timeout_s=600, interval_s=0.01)
    await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    runner.adopt("run_1", job, state, "sk-test")
    await until(lambda: runner.runs["run_1"].state.round == 1)
    # Presumed dead meanwhile (a long pause): another worker took the run over.
    await redis.hset("t:run:run_1", "owner", "w2")
    assert runner.deliver_reply(ParsedReply("run_1", 1, [("call_1", "42")]))
    await until(lambda: not runner.runs)
    assert [m for m, _, _ in api.requests if m == "POST"] == [], "no continuation was sent"
    assert await redis.get("t:result:run_1") is None
    assert await redis.hget("t:run:run_1", "owner") == b"w2"
