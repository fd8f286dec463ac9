"""Streamed progress end to end (issue 16): real Redis, the fake over HTTP, real workers.

A job with ``stream: true`` has its response created as a background stream; its text
reaches the run's events as ``progress`` events, coalesced; joined, they are the final text
exactly, through broken streams, a continuation after a function call, and a worker killed
mid-stream (its successor resumes after the last sequence number written).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent, ProgressEvent, RequiresActionEvent
from runpoller_fake import FakeServer
from runpoller_fake.streaming import chunks
from runpoller_fake.testing import function_tools
from tests.integration.conftest import FAKE_KEY, WorkerHandle
from tests.procs import kill_all, start_worker, wait_for, worker_env

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]
TEXT = (
    "Background responses can be streamed: each word the model writes arrives as a delta, "
    "and a dropped stream resumes after the last sequence number it delivered, so nothing "
    "is lost and nothing is repeated."
)


def scenario(in_progress_ms: int, *, text: str = TEXT, **end: Any) -> str:
    last = end or {"status": "completed", "messages": [text]}
    steps = [
        {"status": "queued", "ms": 30},
        {"status": "in_progress", "ms": in_progress_ms},
        last,
    ]
    return json.dumps({"steps": steps})


def streamed_job(namespace: str, name: str, script: str, **extra: Any) -> dict[str, Any]:
    request = {"model": "gpt-4o", "input": "Tell me", "metadata": {"fake_scenario": script}}
    return {"kind": "response", "id": f"{namespace}-{name}", "request": request, "stream": True}


async def progress_of(client: RunpollerClient, run_id: str) -> list[ProgressEvent]:
    return [e.event for e in await client.history(run_id) if isinstance(e.event, ProgressEvent)]


def joined(events: list[ProgressEvent], object_id: str) -> str:
    mine = [e for e in events if e.object_id == object_id]
    numbers = [e.sequence_number for e in mine]
    assert numbers == sorted(set(numbers)), f"sequence numbers repeat or go back: {numbers}"
    return "".join(e.delta for e in mine)


async def requests_for(fake_http: httpx.AsyncClient, response_id: str) -> list[dict[str, Any]]:
    log = (await fake_http.get("/_fake/log")).json()["requests"]
    return [r for r in log if r["object_id"] == response_id]


async def test_a_streamed_run_relays_its_text_as_progress_in_one_request(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    run_id = await client.enqueue(streamed_job(namespace, "one", scenario(1500)))
    final = await client.wait(run_id, 20)
    assert final.status == "completed" and final.output_text == TEXT
    events = await progress_of(client, run_id)
    [response_id] = final.detail["response_ids"]
    assert joined(events, response_id) == TEXT
    # Coalesced: fewer events than deltas, but the text came while the model wrote it.
    assert 2 <= len(events) < len(chunks(TEXT))
    history = [e.event.type for e in await client.history(run_id)]
    assert history.index("progress") < history.index("final")
    assert history[-1] == "final"
    # The whole run was one request: the streamed create, followed to its end.
    requests = await requests_for(fake_http, response_id)
    assert [(r["method"], r["endpoint"]) for r in requests] == [("POST", "create_response")]


async def test_broken_streams_resume_with_nothing_lost_or_repeated(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    faults = [
        {"on": "create_response", "cut_after": 6, "times": 1},
        {"on": "get_response", "cut_after": 9, "times": 2},
    ]
    assert (await fake_http.post("/_fake/faults", json={"faults": faults})).status_code == 200
    await start_worker()
    run_id = await client.enqueue(streamed_job(namespace, "cut", scenario(1200)))
    final = await client.wait(run_id, 20)
    assert final.status == "completed"
    [response_id] = final.detail["response_ids"]
    assert joined(await progress_of(client, run_id), response_id) == TEXT
    gets = [r for r in await requests_for(fake_http, response_id) if r["method"] == "GET"]
    assert len(gets) >= 3, "each cut was resumed"
    assert all("stream=true" in r["query"] and "starting_after=" in r["query"] for r in gets)


async def test_a_continuation_after_a_function_call_streams_too(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    script = json.dumps(
        {
            "steps": [
                {"status": "queued", "ms": 20},
                {"status": "in_progress", "ms": 200},
                {"status": "completed", "function_calls": [call]},
                {"status": "in_progress", "ms": 800},
                {"status": "completed", "messages": ["It is sunny in Paris today."]},
            ]
        }
    )
    job = streamed_job(namespace, "tools", script)
    job["request"]["tools"] = function_tools("get_weather")
    await start_worker()
    run_id = await client.enqueue(job)
    async for item in client.events(run_id):
        if isinstance(item.event, RequiresActionEvent):
            [asked] = item.event.tool_calls
            await client.submit_tool_outputs(run_id, item.event.round, {asked.id: "sunny"})
            break
    final = await client.wait(run_id, 20)
    assert final.status == "completed" and final.output_text == "It is sunny in Paris today."
    first, second = final.detail["response_ids"]
    events = await progress_of(client, run_id)
    assert joined(events, second) == "It is sunny in Paris today."
    assert joined(events, first) == ""  # a function call is no text
    [continuation] = await requests_for(fake_http, second)
    assert continuation["endpoint"] == "create_response"
    assert continuation["previous_response_id"] == first


async def test_the_apps_cancel_cuts_a_stream_short(
    start_worker: StartWorker, client: RunpollerClient, namespace: str
) -> None:
    await start_worker()
    run_id = await client.enqueue(streamed_job(namespace, "stop", scenario(30_000)))
    async for item in client.events(run_id):
        if isinstance(item.event, ProgressEvent):
            break
    await client.cancel(run_id, "the user pressed stop")
    final = await client.wait(run_id, 10)  # long before the 30 s the response would take
    assert final.status == "cancelled"
    assert final.cancel is not None and final.cancel.outcome == "confirmed"
    assert final.error is not None and final.error.code == "cancelled_by_app"


async def test_a_stream_at_the_deadline_is_cancelled(
    start_worker: StartWorker, client: RunpollerClient, namespace: str
) -> None:
    await start_worker()
    job = streamed_job(namespace, "late", scenario(30_000)) | {"timeout_ms": 1200}
    final = await client.wait(await client.enqueue(job), 15)
    assert final.status == "timed_out"
    assert final.cancel is not None and final.cancel.reason == "deadline"
    assert await progress_of(client, final.run_id), "it streamed until the deadline"


async def test_a_response_the_app_created_without_streaming_is_polled(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    created = await fake_http.post("/_fake/responses", json={"script": "complete"})
    response_id = created.json()["id"]
    await start_worker()
    job = {"kind": "response", "id": f"{namespace}-plain", "response_id": response_id}
    final = await client.wait(await client.enqueue(job | {"stream": True}), 15)
    assert final.status == "completed"
    assert await progress_of(client, final.run_id) == []


async def test_a_worker_killed_mid_stream_is_resumed_without_a_lost_or_repeated_word(
    fake: FakeServer, redis: Redis, client: RunpollerClient, namespace: str
) -> None:
    env = worker_env(fake, namespace, FAKE_KEY)
    first = await start_worker(env)
    procs = [first]
    try:
        run_id = await client.enqueue(streamed_job(namespace, "kill", scenario(4000)))

        async def some_progress() -> bool:
            return len(await progress_of(client, run_id)) >= 3

        await wait_for(some_progress, 20, "progress from the first worker")
        first.kill()
        await first.wait()
        before = await progress_of(client, run_id)
        procs.append(await start_worker(env))
        final = await client.wait(run_id, 30)
    finally:
        await kill_all(procs)
    assert final.status == "completed" and final.output_text == TEXT
    [response_id] = final.detail["response_ids"]
    events = await progress_of(client, run_id)
    assert events[: len(before)] == before
    assert len(events) > len(before), "the second worker relayed the rest"
    assert joined(events, response_id) == TEXT
    finals = [e for e in await client.history(run_id) if isinstance(e.event, FinalEvent)]
    assert len(finals) == 1
