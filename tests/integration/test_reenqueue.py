"""Re-enqueueing a run id: the first job's identity wins (real Redis, the real fake server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import DeadLetter, FinalEvent, StatusEvent
from tests.integration.conftest import WorkerHandle
from tests.integration.test_end_to_end import fake_run, job

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]

LONG_RUN = {
    "steps": [
        {"status": "queued", "ms": 100},
        {"status": "in_progress", "ms": 2500},
        {"status": "completed", "messages": ["Still the first thread."]},
    ]
}


async def wait_in_progress(client: RunpollerClient, run_id: str) -> None:
    async for item in client.events(run_id):
        if isinstance(item.event, StatusEvent) and item.event.status == "in_progress":
            return
        assert not isinstance(item.event, FinalEvent), item.event


async def test_a_reenqueue_with_another_thread_while_orphaned_is_refused(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
) -> None:
    a = await start_worker(timeout_ms=30_000)
    thread_id, run_id = await fake_run(fake_http, LONG_RUN)
    rid = await client.enqueue(job(thread_id, run_id, namespace))
    await asyncio.wait_for(wait_in_progress(client, rid), 10)

    # Worker A stops without handing the run off: its record stays, its owner gone (a worker
    # id with no heartbeat, so A's own shutdown does not release it either).
    await a.app.runner.stop_runs()
    await redis.hset(f"{namespace}:run:{rid}", "owner", "gone-worker")
    await a.stop()

    # The same run id, another thread: the hijack.
    assert await client.enqueue(job("thread_other", run_id, namespace)) == rid
    assert await redis.zcard(f"{namespace}:queue") == 1, "the second job is queued"
    await start_worker(timeout_ms=30_000)

    final = await asyncio.wait_for(client.wait(rid), 20)
    assert final.status == "completed", final
    assert final.output_text == "Still the first thread."

    log = (await fake_http.get("/_fake/log")).json()["requests"]
    polls = [r for r in log if r["object_id"] == run_id and r["endpoint"] == "get_run"]
    assert polls and {r["thread_id"] for r in polls} == {thread_id}, polls
    assert {r["status"] for r in polls} == {200}

    letters = [
        DeadLetter.model_validate_json(fields[b"data"])
        for _, fields in await redis.xrange(f"{namespace}:dead-letters")
    ]
    assert [letter.reason for letter in letters] == [
        f"conflicting_job: a second job for run {rid} was refused: thread_id differs from the "
        "run's first job, which the run keeps"
    ]
    assert '"thread_other"' in letters[0].raw
