"""The requires_action round trip through Redis, with real workers and the fake server."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent, ReplyRejectedEvent, RequiresActionEvent, docgen
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def fake_run(http: httpx.AsyncClient, script: Any) -> dict[str, Any]:
    response = await http.post("/_fake/runs", json={"script": script})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


async def next_event(client: RunpollerClient, run_id: str, after: str, kind: type) -> Any:
    async for item in client.events(run_id, after=after):
        if isinstance(item.event, kind):
            return item
    raise AssertionError(f"no {kind.__name__} event")


async def submits(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    log = (await http.get(f"/_fake/runs/{run_id}/log")).json()
    return [e for e in log if e["endpoint"] == "submit_tool_outputs"]


async def test_bad_reply_then_good_reply(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    job = await fake_run(fake_http, "parallel_calls")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    calls = ask.event.tool_calls
    # One answer missing, one unknown id.
    await client.submit_tool_outputs(rid, 1, {calls[0].id: "a", "call_nope": "b"})
    rejected = await next_event(client, rid, ask.id, ReplyRejectedEvent)
    problems = " | ".join(rejected.event.problems)
    assert "unknown tool_call_id 'call_nope'" in problems
    assert calls[1].id in problems and calls[2].id in problems
    await client.submit_tool_outputs(rid, 1, {c.id: "sunny" for c in calls})
    final = await client.wait(rid, 15)
    assert final.status == "completed"
    assert len(await submits(fake_http, job["run_id"])) == 1


async def test_malformed_reply_is_rejected_precisely(
    start_worker: StartWorker, client: RunpollerClient, redis: Redis, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    job = await fake_run(fake_http, "requires_action")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    await redis.xadd(client.keys.replies, {"run_id": rid, "round": "1", "outputs": "{oops"})
    rejected = await next_event(client, rid, ask.id, ReplyRejectedEvent)
    assert "outputs is not valid JSON" in rejected.event.problems[0]


async def test_no_reply_times_out_naming_pending_calls(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    job = await fake_run(fake_http, "parallel_calls")
    rid = await client.enqueue({**job, "timeout_ms": 1500})
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    final = await client.wait(rid, 15)
    assert final.status == "timed_out"
    assert "waiting for tool outputs" in final.reason
    for call in ask.event.tool_calls:
        assert call.id in final.reason


async def test_duplicate_reply_is_ignored(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    job = await fake_run(fake_http, "requires_action")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    answer = {c.id: "sunny" for c in ask.event.tool_calls}
    await client.submit_tool_outputs(rid, 1, answer)
    await client.submit_tool_outputs(rid, 1, answer)
    final = await client.wait(rid, 15)
    assert final.status == "completed"
    events = [item.event async for item in client.events(rid)]
    assert not any(isinstance(e, ReplyRejectedEvent) for e in events)
    assert len(await submits(fake_http, job["run_id"])) == 1


async def test_two_rounds_and_invalid_arguments_flagged(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    job = await fake_run(
        fake_http,
        {
            "steps": [
                {"status": "in_progress", "ms": 100},
                {
                    "status": "requires_action",
                    "tool_calls": [{"name": "lookup", "arguments": '{"q": "a"'}],
                },
                {"status": "in_progress", "ms": 100},
                {
                    "status": "requires_action",
                    "tool_calls": [{"name": "lookup", "arguments": '{"q": "b"}'}],
                },
                {"status": "completed", "messages": ["ok"]},
            ]
        },
    )
    rid = await client.enqueue(job)
    seen = []
    async for item in client.events(rid):
        if isinstance(item.event, RequiresActionEvent):
            call = item.event.tool_calls[0]
            seen.append((item.event.round, call.arguments_valid, call.parsed_arguments))
            await client.submit_tool_outputs(rid, item.event.round, {call.id: "r"})
    assert seen == [(1, False, None), (2, True, {"q": "b"})]
    assert (await client.result(rid)).status == "completed"  # type: ignore[union-attr]


async def test_worker_restart_mid_round_does_not_ask_again(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
) -> None:
    first = await start_worker()
    job = await fake_run(fake_http, "requires_action")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    # The worker goes away mid-round (graceful stop hands the run to the orphan set) ...
    await first.stop()
    # ... the app answers while no worker owns the run ...
    await client.submit_tool_outputs(rid, 1, {c.id: "sunny" for c in ask.event.tool_calls})
    # ... and a new worker takes over, finds the reply and submits it.
    await start_worker()
    final = await client.wait(rid, 20)
    assert final.status == "completed"
    events = [item.event async for item in client.events(rid)]
    asks = [e for e in events if isinstance(e, RequiresActionEvent)]
    assert len(asks) == 1, "the app is asked once per round, whatever happens to workers"
    assert len(await submits(fake_http, job["run_id"])) == 1


async def test_raw_redis_flow_from_the_protocol_doc(
    start_worker: StartWorker, redis: Redis, namespace: str, fake_http: httpx.AsyncClient
) -> None:
    """The whole round trip with only the raw commands docs/protocol.md shows (as Node would)."""
    await start_worker()
    job = await fake_run(fake_http, "requires_action")
    doc = docgen.render()
    # The doc's enqueue commands, with our run, prefix and queue substituted.
    enqueue = re.search(r"MULTI\n(SET .*)\n(ZADD .*)\nEXEC", doc)
    assert enqueue is not None
    set_cmd, zadd_cmd = enqueue.group(1), enqueue.group(2)
    body = json.loads(re.search(r"'(.*)'", set_cmd).group(1))  # type: ignore[union-attr]
    body["a"][0] = {**job, "id": f"{namespace}-raw"}
    body["et"] = int(time.time() * 1000)
    rid = body["a"][0]["id"]
    queue = zadd_cmd.split()[1].replace("runpoller:queue", f"{namespace}:queue")
    job_key = set_cmd.split()[1].replace("run:run_abc", f"run:{rid}")
    pipe = redis.pipeline(transaction=True)
    pipe.execute_command("SET", job_key, json.dumps(body), "PX", "86400000", "NX")
    pipe.execute_command("ZADD", queue, "NX", str(body["et"]), f"run:{rid}")
    await pipe.execute()

    events_key = f"{namespace}:events:{rid}"
    last = "0-0"
    final = None
    while final is None:
        reply = await redis.execute_command("XREAD", "BLOCK", "5000", "STREAMS", events_key, last)
        assert reply, "no event within 5 s"
        for _stream, entries in reply:
            for entry_id, fields in entries:
                last = entry_id
                if not isinstance(fields, dict):  # RESP2 without redis-py's parsing
                    fields = dict(zip(fields[::2], fields[1::2], strict=True))
                kind, data = fields[b"type"].decode(), json.loads(fields[b"data"])
                if kind == "requires_action":
                    outputs = [
                        {"tool_call_id": call["id"], "output": "sunny"}
                        for call in data["tool_calls"]
                    ]
                    await redis.execute_command(
                        "XADD",
                        f"{namespace}:replies",
                        "MAXLEN",
                        "~",
                        "100000",
                        "*",
                        "run_id",
                        rid,
                        "round",
                        str(data["round"]),
                        "outputs",
                        json.dumps(outputs),
                    )
                if kind == "final":
                    final = data
    assert final["status"] == "completed"
    stored = json.loads(await redis.execute_command("GET", f"{namespace}:result:{rid}"))
    assert stored == final
    FinalEvent.model_validate(stored)


async def test_event_driven_wake_up_beats_the_poll_interval(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    """With a 3 s interval, the submit must still follow the reply at once (not next tick)."""
    await start_worker(poll_interval_ms=3000, timeout_ms=30000)
    job = await fake_run(fake_http, "requires_action")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    replied = time.time()
    await client.submit_tool_outputs(rid, 1, {c.id: "x" for c in ask.event.tool_calls})
    for _ in range(100):
        done = await submits(fake_http, job["run_id"])
        if done:
            break
        await asyncio.sleep(0.05)
    assert done, "outputs were not submitted"
    # Functional, not a timing threshold: submitted before the next scheduled poll would be.
    assert done[0]["time"] - replied < 3.0


async def test_a_503_on_submit_is_retried_with_the_same_outputs(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    script = {
        "steps": [
            {"status": "queued", "ms": 50},
            {"status": "requires_action", "tool_calls": [{"name": "get_weather"}]},
            {"status": "in_progress", "ms": 100},
            {"status": "completed", "messages": ["sunny"]},
        ],
        "faults": [{"on": "submit_tool_outputs", "status": 503, "times": 1}],
    }
    job = await fake_run(fake_http, script)
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    (call,) = ask.event.tool_calls
    await client.submit_tool_outputs(rid, 1, {call.id: "sunny"})
    final = await client.wait(rid, 15)
    assert final.status == "completed", final.reason
    sent = await submits(fake_http, job["run_id"])
    assert [entry["status"] for entry in sent] == [503, 200]
    assert [o["tool_call_id"] for o in sent[1]["tool_outputs"]] == [call.id]


async def test_a_failed_call_is_submitted_as_an_error_output(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    """Assistants runs take outputs only: a call the app reports failed is sent as the output
    ``{"error": "<message>"}`` (agent turns send ``success: false``, tests/integration/
    test_agents.py)."""
    await start_worker()
    job = await fake_run(fake_http, "parallel_calls")
    rid = await client.enqueue(job)
    ask = await next_event(client, rid, "0-0", RequiresActionEvent)
    first, *rest = ask.event.tool_calls
    await client.submit_tool_outputs(
        rid, 1, {c.id: "sunny" for c in rest}, errors={first.id: "no such city"}
    )
    assert (await client.wait(rid, 15)).status == "completed"
    (submitted,) = await submits(fake_http, job["run_id"])
    sent = {o["tool_call_id"]: o["output"] for o in submitted["tool_outputs"]}
    assert json.loads(sent[first.id]) == {"error": "no such city"}
    assert all(sent[c.id] == "sunny" for c in rest)
