"""The run driver against a real Redis: which commands a run costs, seen through MONITOR."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from runpoller import engine
from runpoller.backends import RunResult
from runpoller.engine import Observation, RunState, Status
from runpoller.protocol import AssistantsRunJob, Keys
from runpoller.redis import scripts
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner

pytestmark = pytest.mark.integration


class Scripted:
    """Plays a list of statuses, one per GET, for any run."""

    def __init__(self, statuses: dict[str, list[Status]]) -> None:
        self.statuses = statuses
        self.gets: Counter[str] = Counter()

    async def get(self, job: AssistantsRunJob, state: RunState, *_: Any) -> Observation:
        self.gets[job.run_id] += 1
        plan = self.statuses[job.run_id]
        status = plan[min(self.gets[job.run_id] - 1, len(plan) - 1)]
        return Observation(status, status.value, job.run_id)

    async def cancel(self, *args: Any) -> Observation:
        raise AssertionError("nothing is cancelled here")

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, job: AssistantsRunJob, *args: Any) -> RunResult:
        return RunResult("done", {"run_id": job.run_id})


class Monitor:
    """Commands that name this test's keys, as MONITOR shows them (``lua`` ones included)."""

    def __init__(self, redis: Redis, namespace: str) -> None:
        self.redis = redis
        self.namespace = namespace
        self.seen: list[tuple[str, list[str]]] = []  # (client type, words)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Monitor:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        async with self.redis.monitor() as monitor:
            self._ready.set()
            async for info in monitor.listen():
                if self.namespace in info["command"]:
                    self.seen.append((info["client_type"], info["command"].split(" ")))

    async def settle(self) -> None:
        """Wait until MONITOR has shown everything sent before this call."""
        marker = f"{self.namespace}:end"
        await self.redis.echo(marker)
        for _ in range(500):
            if any(words[-1] == marker for _, words in self.seen):
                return
            await asyncio.sleep(0.01)
        raise AssertionError("MONITOR did not show the marker")

    def count(self, name: str, client: str | None = None) -> int:
        return sum(
            1
            for kind, words in self.seen
            if words[0].upper() == name and (client is None or kind == client)
        )


@pytest.fixture
async def monitor(redis: Redis, namespace: str) -> AsyncIterator[Monitor]:
    # Loaded first: a script new to this Redis costs a NOSCRIPT EVALSHA and a retry, which
    # the counts below would take for the worker's own (a changed script, a fresh server).
    for name in scripts.NAMES:
        await redis.script_load(scripts.source(name))
    async with Monitor(redis, namespace) as mon:
        yield mon


async def drive_all(redis: Redis, namespace: str, plans: dict[str, list[Status]]) -> Scripted:
    backend = Scripted(plans)
    store = RunStore(redis, Keys(namespace), worker_id="w1", maxlen=100, ttl_s=60)
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=4)
    for run_id in plans:
        job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id=run_id)
        state = engine.new_state(run_id, now=time.time(), timeout_s=600, interval_s=0.01)
        claim = await store.claim(run_id, job.model_dump_json(), state.to_json(), "{}")
        assert claim.outcome == "new"
        runner.adopt(run_id, job, state, "sk-test")
    for _ in range(500):
        if not runner.runs:
            return backend
        await asyncio.sleep(0.01)
    raise AssertionError("the runs did not finish")


async def test_a_run_costs_one_script_per_status_change_and_one_to_finish(
    redis: Redis, namespace: str, monitor: Monitor
) -> None:
    plans = {
        "run_a": [Status.QUEUED, Status.IN_PROGRESS, Status.IN_PROGRESS, Status.COMPLETED],
        "run_b": [Status.QUEUED, Status.IN_PROGRESS, Status.COMPLETED],
        "run_c": [Status.IN_PROGRESS, Status.COMPLETED],
        "run_d": [Status.QUEUED, Status.FAILED],
    }
    await drive_all(redis, namespace, plans)
    await monitor.settle()

    # What an app reads: every status change once, the terminal one just before the final.
    keys = Keys(namespace)
    for run_id, plan in plans.items():
        entries = await redis.xrange(keys.events(run_id))
        types = [fields[b"type"].decode() for _, fields in entries]
        changes = len(dict.fromkeys(plan))
        assert types == ["accepted"] + ["status"] * changes + ["final"], run_id

    # Scripts the worker sent: a claim, a publish per non-terminal status change, a finalize
    # (which also writes the terminal status event).
    non_terminal_changes = sum(len(dict.fromkeys(p)) - 1 for p in plans.values())
    scripts = monitor.count("EVALSHA", "tcp") + monitor.count("EVAL", "tcp")
    assert scripts == 2 * len(plans) + non_terminal_changes

    # The per-minute outcomes hash gets its TTL when a status is first counted in it, not
    # once per run.
    outcomes = keys.outcomes(0).rsplit(":", 1)[0] + ":"
    counted = {
        (words[1], words[2])
        for kind, words in monitor.seen
        if kind == "lua" and words[0].upper() == "HINCRBY" and words[1].startswith(outcomes)
    }
    assert 2 <= len(counted) <= 4  # completed and failed (a minute may turn in between)
    expires = [
        words[1]
        for kind, words in monitor.seen
        if kind == "lua" and words[0].upper() == "EXPIRE" and words[1].startswith(outcomes)
    ]
    assert len(expires) == len(counted)
    for key in set(expires):
        assert 0 < await redis.ttl(key) <= 7200
