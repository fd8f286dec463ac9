"""The app's cancel, end to end: real Redis, real workers, the fake server over HTTP.

The requests are written exactly as docs/protocol.md tells an app in any language to (one
MULTI: the durable request, then the cancels-stream entry), not through the Python client,
so the contract itself is what is tested. Each case is a moment the app may press "stop":
(a) while the run is polled, (b) while it waits for tool outputs, (c) before any worker took
the job, (d) while no worker owns it, (e) after it ended, (f) twice, with two workers.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent, Keys, RequiresActionEvent, StatusEvent
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]
STOP = "user pressed stop"


async def send_cancel(redis: Redis, keys: Keys, run_id: str, reason: str = STOP) -> None:
    """The protocol's cancel, as docs/protocol.md writes it."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.cancel(run_id),
            mapping={"reason": reason, "requested_at": int(time.time() * 1000)},
        )
        pipe.expire(keys.cancel(run_id), 604800)
        pipe.xadd(keys.cancels, {"run_id": run_id, "reason": reason}, maxlen=100_000)
        await pipe.execute()


async def fake_run(http: httpx.AsyncClient, script: str) -> dict[str, Any]:
    body = (await http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


async def endpoints(http: httpx.AsyncClient, object_id: str) -> list[str]:
    log = (await http.get(f"/_fake/runs/{object_id}/log")).json()
    return [entry["endpoint"] for entry in log]


async def first(client: RunpollerClient, run_id: str, kind: type, **match: Any) -> Any:
    async for item in client.events(run_id):
        event = item.event
        if isinstance(event, kind) and all(getattr(event, k) == v for k, v in match.items()):
            return event
        if isinstance(event, FinalEvent):
            raise AssertionError(f"the run ended ({event.status}) before a {kind.__name__}")
    raise AssertionError("no event")


def assert_cancelled_by_app(final: FinalEvent, reason: str = STOP) -> None:
    assert final.status == "cancelled", final
    assert final.error is not None and final.error.code == "cancelled_by_app", final.error
    assert final.cancel is not None
    assert (final.cancel.reason, final.cancel.outcome) == ("app", "confirmed")
    assert final.cancel.app_reason == reason
    assert reason in final.reason


async def test_a_cancel_while_polling_cancels_the_run_through_the_api_once(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
) -> None:
    await start_worker(timeout_ms=60_000)
    job = await fake_run(fake_http, "never_ends")
    rid = await client.enqueue(job)
    await first(client, rid, StatusEvent, status="in_progress")
    await send_cancel(redis, client.keys, rid)
    final = await client.wait(rid, 15)
    assert_cancelled_by_app(final)
    assert final.api_status == "cancelled"
    assert (await endpoints(fake_http, job["run_id"])).count("cancel_run") == 1


async def test_a_responses_run_is_cancelled_through_its_own_endpoint(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker(timeout_ms=60_000)
    body = (
        await fake_http.post("/_fake/responses", json={"script": "never_ends", "model": "gpt-4o"})
    ).json()
    rid = await client.enqueue({"kind": "response", "response_id": body["id"], "id": namespace})
    await first(client, rid, StatusEvent, status="in_progress")
    await send_cancel(redis, client.keys, rid)
    assert_cancelled_by_app(await client.wait(rid, 15))
    assert (await endpoints(fake_http, body["id"])).count("cancel_response") == 1


async def test_a_cancel_while_awaiting_tool_outputs_cancels_and_submits_nothing(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
) -> None:
    await start_worker(timeout_ms=60_000)
    job = await fake_run(fake_http, "requires_action")
    rid = await client.enqueue(job)
    ask = await first(client, rid, RequiresActionEvent)
    await send_cancel(redis, client.keys, rid)
    assert_cancelled_by_app(await client.wait(rid, 15))
    # A late answer to the round is not submitted: the app learns it was not used.
    calls = await endpoints(fake_http, job["run_id"])
    assert calls.count("cancel_run") == 1 and "submit_tool_outputs" not in calls
    entry = await client.submit_tool_outputs(rid, ask.round, {ask.tool_calls[0].id: "x"})
    status = await wait_for_key(redis, client.keys.reply_status(entry))
    assert status["status"] == "rejected" and "had ended (cancelled)" in status["problem"]


async def test_a_cancel_before_intake_takes_effect_when_the_job_is_taken(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    # Nobody is running yet: the request waits in Redis for whoever takes the job.
    job = await fake_run(fake_http, "never_ends")
    await send_cancel(redis, client.keys, job["run_id"])
    created = f"{namespace}-to-create"
    await send_cancel(redis, client.keys, created, "changed my mind")
    log_start = (await fake_http.get("/_fake/log")).json()["next"]
    await client.enqueue(job)
    await client.enqueue(
        {"kind": "response", "id": created, "request": {"model": "gpt-4o", "input": "hi"}}
    )
    await start_worker(timeout_ms=60_000)
    assert_cancelled_by_app(await client.wait(job["run_id"], 15))
    assert (await endpoints(fake_http, job["run_id"])).count("cancel_run") == 1
    # A response the worker would have created is never created: nothing to cancel, no bill.
    final = await client.wait(created, 15)
    assert_cancelled_by_app(final, "changed my mind")
    assert final.api_status is None
    log = (await fake_http.get(f"/_fake/log?since={log_start}")).json()["requests"]
    assert "create_response" not in [entry["endpoint"] for entry in log]


async def test_a_cancel_while_no_worker_owns_the_run_is_applied_by_the_next_owner(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
) -> None:
    first_worker = await start_worker(timeout_ms=60_000)
    job = await fake_run(fake_http, "never_ends")
    rid = await client.enqueue(job)
    await first(client, rid, StatusEvent, status="in_progress")
    await first_worker.stop()  # hands the run off: orphaned, queued for the next worker
    assert await redis.hget(client.keys.run(rid), "owner") in (b"", None)
    await send_cancel(redis, client.keys, rid)
    await start_worker(timeout_ms=60_000)
    assert_cancelled_by_app(await client.wait(rid, 15))
    assert (await endpoints(fake_http, job["run_id"])).count("cancel_run") == 1


async def test_a_cancel_after_the_end_changes_nothing_and_is_answered(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
) -> None:
    await start_worker()
    job = await fake_run(fake_http, "complete")
    rid = await client.enqueue(job)
    final = await client.wait(rid, 15)
    assert final.status == "completed"
    events_before = await redis.xlen(client.keys.events(rid))
    await send_cancel(redis, client.keys, rid)
    answer = await wait_for_key(redis, client.keys.cancel(rid), field="outcome")
    assert answer == {"outcome": "already_ended", "final_status": "completed"}
    assert await client.result(rid) == final
    assert await redis.xlen(client.keys.events(rid)) == events_before
    assert "cancel_run" not in await endpoints(fake_http, job["run_id"])


async def test_a_cancel_sent_twice_to_two_workers_reaches_the_api_once(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
) -> None:
    await start_worker(timeout_ms=60_000)
    await start_worker(timeout_ms=60_000)
    jobs = [await fake_run(fake_http, "never_ends") for _ in range(4)]
    rids = [await client.enqueue(job) for job in jobs]
    for rid in rids:
        await first(client, rid, StatusEvent, status="in_progress")
    for rid in rids:
        await send_cancel(redis, client.keys, rid)
        await send_cancel(redis, client.keys, rid, "pressed again")
    finals = await asyncio.gather(*(client.wait(rid, 15) for rid in rids))
    for final in finals:
        assert_cancelled_by_app(final)  # the first request's reason: the second changed nothing
    for job in jobs:
        assert (await endpoints(fake_http, job["run_id"])).count("cancel_run") == 1


async def wait_for_key(
    redis: Redis, key: str, *, field: str | None = None, timeout_s: float = 10
) -> dict[str, Any]:
    """A key a worker writes in the background: its JSON (string) or its fields (hash)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if field is None:
            raw = await redis.get(key)
            if raw is not None:
                value: dict[str, Any] = json.loads(raw)
                return value
        elif await redis.hexists(key, field):  # type: ignore[misc]
            fields = await redis.hgetall(key)  # type: ignore[misc]
            wanted = ("outcome", "final_status")
            return {k.decode(): v.decode() for k, v in fields.items() if k.decode() in wanted}
        await asyncio.sleep(0.05)
    raise AssertionError(f"{key} was never written")
