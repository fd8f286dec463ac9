"""Full scenarios with canary keys; then everything written is scanned for them.

Redis (every key the run touched: records, events, results, arq jobs, dead letters, replies),
the logs, and the events apps read must never contain an API key.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FN_RUN, RequiresActionEvent
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.integration.conftest import SECRET_KEYS, WorkerHandle

pytestmark = pytest.mark.integration

WORKER_CANARY = "sk-canary-worker-7f3a9c1e5b"
JOB_CANARY = "sk-canary-job-2d8e6b4f0a"
WRONG_CANARY = "sk-canary-wrong-91c7e3a5d2"
CANARIES = (WORKER_CANARY, JOB_CANARY, WRONG_CANARY)
# Fragments that would betray a key even if partly masked (the API itself echoes the last 4).
FRAGMENTS = tuple(c[3:-4] for c in CANARIES)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={WORKER_CANARY, JOB_CANARY}))
    yield server
    await server.close()


async def dump_namespace(redis: Redis, namespace: str) -> str:
    """Everything stored under the test's keys, as text."""
    chunks: list[str] = []
    for pattern in (f"{namespace}*", f"arq:*{namespace}*", "arq:*run:run_*"):
        async for key in redis.scan_iter(match=pattern, count=1000):
            kind = (await redis.type(key)).decode()
            if kind == "string":
                value: Any = await redis.get(key)
            elif kind == "hash":
                value = await redis.hgetall(key)
            elif kind == "stream":
                value = await redis.xrange(key)
            elif kind == "set":
                value = await redis.smembers(key)
            elif kind == "zset":
                value = await redis.zrange(key, 0, -1, withscores=True)
            else:
                value = kind
            chunks.append(f"{key!r} {value!r}")
    return "\n".join(chunks)


async def test_canary_keys_never_appear_anywhere(
    start_worker: Callable[..., Awaitable[WorkerHandle]],
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    capfd: pytest.CaptureFixture[str],
) -> None:
    await start_worker(assistants_api_key=WORKER_CANARY, log_level="DEBUG")

    async def run(script: Any, **extra: Any) -> dict[str, Any]:
        body = (await fake_http.post("/_fake/runs", json={"script": script})).json()
        return {
            "kind": "assistants_run",
            "thread_id": body["thread_id"],
            "run_id": body["id"],
            **extra,
        }

    jobs = [
        await run("complete"),
        await run("fail"),
        await run("never_ends", timeout_ms=800),
        await run("complete", api_key=JOB_CANARY),
        await run("complete", api_key=WRONG_CANARY),
        await run("flaky"),
    ]
    rids = [await client.enqueue(job) for job in jobs]
    # A function-call round trip, with the job's own key.
    fc = await run("requires_action", api_key=JOB_CANARY)
    fc_id = await client.enqueue(fc)
    async for item in client.events(fc_id):
        if isinstance(item.event, RequiresActionEvent):
            await client.submit_tool_outputs(fc_id, 1, {c.id: "ok" for c in item.event.tool_calls})
    # A background response.
    resp = (await fake_http.post("/_fake/responses", json={"script": "complete"})).json()
    rids.append(await client.enqueue({"kind": "response", "response_id": resp["id"]}))
    # A raw producer that put a plaintext key into an invalid job, and into garbage.
    bad_id = f"{namespace}-plain"
    bad = {
        "kind": "assistants_run",
        "id": bad_id,
        "thread_id": "../x",
        "run_id": "r",
        "api_key": WORKER_CANARY,
    }
    for job_id, body in (
        (
            bad_id,
            json.dumps(
                {"f": FN_RUN, "a": [bad], "k": {}, "t": None, "et": int(time.time() * 1000)}
            ),
        ),
        (
            f"{namespace}-garbage",
            json.dumps({"f": FN_RUN, "a": [{"api_key": JOB_CANARY}], "k": {}}),
        ),
    ):
        await redis.set(f"arq:job:{job_id}", body)
        await redis.zadd(f"{namespace}:queue", {job_id: time.time() * 1000})
    rids.append(bad_id)

    finals = [await client.wait(rid, 20) for rid in [*rids, fc_id]]
    statuses = sorted(f.status for f in finals)
    assert statuses.count("completed") >= 4 and "timed_out" in statuses and "error" in statuses
    await asyncio.sleep(0.3)  # let the garbage job reach the dead letters

    stored = await dump_namespace(redis, namespace)
    events = "\n".join(f.model_dump_json() for f in finals)
    captured = capfd.readouterr()
    logs = captured.out + captured.err
    assert "run.final" in logs, "the worker's logs were captured"
    for name, text in (("redis", stored), ("events", events), ("logs", logs)):
        for secret in (*CANARIES, *FRAGMENTS):
            assert secret not in text, f"{secret!r} leaked into {name}"
    # Nor does the encryption key itself.
    assert SECRET_KEYS.split(":", 1)[1] not in stored + logs
