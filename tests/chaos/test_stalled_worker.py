"""A worker stalled (SIGSTOP) for less than the dead-worker TTL keeps every tool reply.

Issue 14, item 2: the replies stream was read from ``$`` on every call until the worker had
read an entry, so a reply written while the worker was not blocked in that read (here: while
it was stopped, after its blocking read had timed out on the server) was never seen, and the
run ended ``timed_out`` "waiting for tool outputs".
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import RequiresActionEvent
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.procs import wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-stall-key-0123456789"
TTL_MS = 6000  # the stall below stays well inside it: the worker keeps its run
TIMEOUT_MS = 9000  # the run's deadline; a lost reply shows as timed_out at this point


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    yield server
    await server.close()


@pytest.fixture
async def worker(fake: FakeServer, namespace: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = worker_env(
        fake,
        namespace,
        KEY,
        RUNPOLLER_DEAD_WORKER_AFTER_MS=str(TTL_MS),
        RUNPOLLER_TIMEOUT_MS=str(TIMEOUT_MS),
        RUNPOLLER_POLL_INTERVAL_MS="200",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runpoller", "worker", env=env
    )
    yield proc
    if proc.returncode is None:
        proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGKILL until continued
        proc.kill()
        await proc.wait()


async def first_ask(client: RunpollerClient, run_id: str) -> Any:
    async for item in client.events(run_id, after="0-0"):
        if isinstance(item.event, RequiresActionEvent):
            return item.event
    raise AssertionError("the run ended without asking for tool outputs")


async def test_reply_written_during_a_stall_shorter_than_the_ttl_is_not_lost(
    fake: FakeServer, worker: asyncio.subprocess.Process, redis: Redis, namespace: str
) -> None:
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)

    async def up() -> bool:
        return int(await redis.zcard(f"{namespace}:workers")) == 1

    await wait_for(up, 20, "the worker to start")
    async with httpx.AsyncClient(base_url=fake.root_url) as http:
        created = (await http.post("/_fake/runs", json={"script": "requires_action"})).json()
    job = {"kind": "assistants_run", "thread_id": created["thread_id"], "run_id": created["id"]}
    rid = await client.enqueue(job)
    ask = await asyncio.wait_for(first_ask(client, rid), 15)
    # The worker has read no entry of the replies stream yet (none was ever written); let it
    # settle into its blocking read, then stop it for longer than that read blocks.
    await asyncio.sleep(0.3)
    worker.send_signal(signal.SIGSTOP)
    try:
        await asyncio.sleep(1.5)
        answer = {call.id: "sunny" for call in ask.tool_calls}
        await client.submit_tool_outputs(rid, ask.round, answer)
        await asyncio.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGCONT)  # 2.5 s stopped, well inside the TTL

    final = await client.wait(rid, TIMEOUT_MS / 1000 + 10)
    assert final.status == "completed", final.reason
    obj = fake.state.lookup(created["id"])
    assert obj is not None
    submitted = [e["tool_outputs"] for e in obj.log if e["endpoint"] == "submit_tool_outputs"]
    assert submitted == [[{"tool_call_id": cid, "output": "sunny"} for cid in answer]]
