"""The run driver on fakeredis with a scripted backend: what reaches Redis, and when."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis

from worker import engine
from worker.backends import RunResult
from worker.engine import Observation, RunState, Status
from worker.protocol import AssistantsRunJob, FinalEvent, Keys
from worker.runner import Runner
from worker.store import RunStore


class ScriptedBackend:
    def __init__(self, statuses: list[Status], crash_at: int | None = None) -> None:
        self.statuses = statuses
        self.crash_at = crash_at
        self.gets = 0

    async def get(self, job: Any, state: RunState, api_key: str) -> Observation:
        self.gets += 1
        if self.crash_at is not None and self.gets >= self.crash_at:
            raise RuntimeError("a bug sk-should-not-appear-123456")
        status = self.statuses[min(self.gets - 1, len(self.statuses) - 1)]
        return Observation(status, status.value, "run_1")

    async def cancel(self, job: Any, state: RunState, api_key: str) -> Observation:
        return Observation(Status.CANCELLED, "cancelled", "run_1")

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, *args: Any) -> RunResult:
        return RunResult("done", {"run_id": "run_1"})


async def drive(backend: ScriptedBackend) -> tuple[fakeredis.FakeAsyncRedis, Runner]:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=600, interval_s=0.01)
    claim = await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    assert claim.outcome == "new"
    runner.adopt("run_1", job, state, "sk-test")
    for _ in range(200):
        if not runner.runs:
            break
        await asyncio.sleep(0.01)
    return redis, runner


async def test_steady_polls_touch_redis_only_on_status_changes() -> None:
    statuses = [Status.QUEUED] * 3 + [Status.IN_PROGRESS] * 5 + [Status.COMPLETED]
    backend = ScriptedBackend(statuses)
    redis, _ = await drive(backend)
    entries = await redis.xrange("t:events:run_1")
    types = [fields[b"type"].decode() for _, fields in entries]
    # accepted (from the claim), queued, in_progress, completed, final: not one per poll.
    assert types == ["accepted", "status", "status", "status", "final"]
    assert backend.gets == len(statuses)
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "completed" and final.output_text == "done"


async def test_a_bug_in_the_driver_ends_the_run_with_an_error_not_silence() -> None:
    backend = ScriptedBackend([Status.IN_PROGRESS], crash_at=2)
    redis, runner = await drive(backend)
    assert not runner.runs
    raw = await redis.get("t:result:run_1")
    assert raw is not None, "the run was not stranded"
    final = FinalEvent.model_validate_json(raw)
    assert final.status == "error" and final.error is not None
    assert final.error.code == "internal_error" and "RuntimeError" in final.error.message
    assert "sk-should-not-appear" not in raw.decode()
    assert not await redis.sismember("t:owned:w1", "run_1")
