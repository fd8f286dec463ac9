"""End to end: real Redis, the fake OpenAI server over real HTTP, a real arq worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FN_RUN, FinalEvent, RequiresActionEvent, StatusEvent
from runpoller_fake import FakeServer
from tests.integration.conftest import FAKE_KEY, WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def fake_run(
    http: httpx.AsyncClient, script: Any, assistant_id: str = "asst_fake", model: str = "gpt-4o"
) -> tuple[str, str]:
    response = await http.post(
        "/_fake/runs", json={"script": script, "assistant_id": assistant_id, "model": model}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["thread_id"], body["id"]


def job(thread_id: str, run_id: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "assistants_run",
        "thread_id": thread_id,
        "run_id": run_id,
        "id": f"{namespace}-{run_id}",
        **extra,
    }


async def all_events(client: RunpollerClient, run_id: str) -> list[Any]:
    return [item.event async for item in client.events(run_id)]


COMPLETE = {
    "steps": [
        {"status": "queued", "ms": 100},
        {"status": "in_progress", "ms": 200},
        {
            "status": "completed",
            "messages": ["Paris is the capital of France."],
            "usage": {"prompt_tokens": 10, "completion_tokens": 7},
        },
    ]
}


async def test_completed_run_streams_statuses_and_result(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, COMPLETE)
    rid = await client.enqueue(job(thread_id, run_id, namespace, metadata={"conv": "c-1"}))
    events = await asyncio.wait_for(all_events(client, rid), 15)
    types = [e.type for e in events]
    assert types[0] == "accepted" and types[-1] == "final"
    statuses = [e.status for e in events if isinstance(e, StatusEvent)]
    assert statuses[-1] == "completed" and "in_progress" in statuses
    assert len(statuses) == len(set(statuses)), "one event per status change, not per poll"
    final = events[-1]
    assert isinstance(final, FinalEvent)
    assert final.status == "completed"
    assert final.output_text == "Paris is the capital of France."
    assert final.usage is not None and final.usage["total_tokens"] == 17
    assert final.metadata == {"conv": "c-1"}
    assert final.detail["thread_id"] == thread_id
    stored = await client.result(rid)
    assert stored == final


async def test_failed_run_reports_last_error(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, "fail")
    final = await client.wait(await client.enqueue(job(thread_id, run_id, namespace)), 15)
    assert final.status == "failed"
    assert final.error is not None and final.error.code == "run_failed"
    assert final.error.api_code == "server_error", "the API's own code, beside ours"


async def test_timeout_cancels_the_run_and_says_so(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    fake: FakeServer,
    namespace: str,
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, "never_ends")
    started = time.time()
    rid = await client.enqueue(job(thread_id, run_id, namespace, timeout_ms=800))
    final = await client.wait(rid, 15)
    assert final.status == "timed_out"
    assert final.api_status == "cancelled"
    assert "deadline" in final.reason
    assert time.time() - started < 10
    log = (await fake_http.get(f"/_fake/runs/{run_id}/log")).json()
    endpoints = [entry["endpoint"] for entry in log]
    assert endpoints.count("cancel_run") == 1


async def test_refused_assistant_is_cancelled(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(supported_ids=["asst_good"])
    thread_id, run_id = await fake_run(fake_http, "never_ends", assistant_id="asst_evil")
    final = await client.wait(await client.enqueue(job(thread_id, run_id, namespace)), 15)
    assert final.status == "refused"
    assert "asst_evil" in final.reason
    run = (
        await fake_http.get(
            f"/v1/threads/{thread_id}/runs/{run_id}",
            headers={"Authorization": f"Bearer {FAKE_KEY}", "OpenAI-Beta": "assistants=v2"},
        )
    ).json()
    assert run["status"] in ("cancelling", "cancelled")


async def test_model_not_in_allow_list_is_refused(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(assistants_models=["gpt-4o-mini"])
    thread_id, run_id = await fake_run(fake_http, "never_ends", model="gpt-4o")
    final = await client.wait(await client.enqueue(job(thread_id, run_id, namespace)), 15)
    assert final.status == "refused" and "gpt-4o" in final.reason


async def test_function_call_round_trip(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, "parallel_calls")
    rid = await client.enqueue(job(thread_id, run_id, namespace))
    final = None
    asked = 0
    async for item in client.events(rid):
        event = item.event
        if isinstance(event, RequiresActionEvent):
            asked += 1
            assert len(event.tool_calls) == 3 and event.round == 1
            await client.submit_tool_outputs(
                rid,
                event.round,
                {c.id: f"sunny in {c.parsed_arguments['city']}" for c in event.tool_calls},
            )
        if isinstance(event, FinalEvent):
            final = event
    assert asked == 1
    assert final is not None and final.status == "completed"
    log = (await fake_http.get(f"/_fake/runs/{run_id}/log")).json()
    submits = [e for e in log if e["endpoint"] == "submit_tool_outputs"]
    assert len(submits) == 1


async def test_enqueuing_twice_polls_once(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker()
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, "never_ends")
    the_job = job(thread_id, run_id, namespace, timeout_ms=1500)
    rid = await client.enqueue(the_job)
    # A raw producer ignoring the NX convention: a second arq job for the same run.
    body = {"f": FN_RUN, "a": [the_job], "k": {}, "t": None, "et": int(time.time() * 1000)}
    await redis.set(f"arq:job:dup-{rid}", json.dumps(body))
    await redis.zadd(f"{namespace}:queue", {f"dup-{rid}": time.time() * 1000})
    final = await client.wait(rid, 15)
    assert final.status == "timed_out"
    events = await all_events(client, rid)
    assert [e.type for e in events].count("accepted") == 1
    assert [e.type for e in events].count("final") == 1
    stats = (await fake_http.get("/_fake/stats")).json()
    assert stats["overlapping_polls"] == 0


async def test_invalid_job_with_a_run_id_gets_an_error_event(
    start_worker: StartWorker, client: RunpollerClient, redis: Redis, namespace: str
) -> None:
    await start_worker()
    rid = f"{namespace}-bad"
    bad = {"kind": "assistants_run", "id": rid, "thread_id": "../../files", "run_id": "run_1"}
    body = {"f": FN_RUN, "a": [bad], "k": {}, "t": None, "et": int(time.time() * 1000)}
    await redis.set(f"arq:job:{rid}", json.dumps(body))
    await redis.zadd(f"{namespace}:queue", {rid: time.time() * 1000})
    final = await client.wait(rid, 10)
    assert final.status == "error"
    assert final.error is not None and final.error.code == "invalid_job"
    assert "thread_id" in final.error.message


async def test_garbage_job_goes_to_dead_letters_and_worker_keeps_serving(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker()
    await redis.set(f"arq:job:{namespace}-garbage", b"\x80not json")
    await redis.zadd(f"{namespace}:queue", {f"{namespace}-garbage": time.time() * 1000})
    thread_id, run_id = await fake_run(fake_http, "complete")
    final = await client.wait(await client.enqueue(job(thread_id, run_id, namespace)), 15)
    assert final.status == "completed"
    letters = await redis.xrange(f"{namespace}:dead-letters")
    assert len(letters) == 1
    letter = json.loads(letters[0][1][b"data"])
    assert "not JSON" in letter["reason"]


async def test_user_provided_key_is_required_per_job(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(assistants_api_key="user_provided")
    thread_id, run_id = await fake_run(fake_http, "complete")
    final = await client.wait(await client.enqueue(job(thread_id, run_id, namespace)), 10)
    assert final.status == "error"
    assert final.error is not None and final.error.code == "missing_api_key"
    thread_id, run_id = await fake_run(fake_http, "complete")
    keyed = job(thread_id, run_id, namespace, api_key=FAKE_KEY)
    final = await client.wait(await client.enqueue(keyed), 15)
    assert final.status == "completed"


async def test_plaintext_or_undecryptable_job_keys_are_refused(
    start_worker: StartWorker, redis: Redis, client: RunpollerClient, namespace: str
) -> None:
    await start_worker()
    for suffix, key, code in [
        ("plain", "sk-plain-canary-123456789", "plaintext_api_key"),
        (
            "forged",
            "enc:v1:it1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "undecryptable_api_key",
        ),
        (
            "unknown",
            "enc:v1:zz:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "undecryptable_api_key",
        ),
    ]:
        rid = f"{namespace}-{suffix}"
        bad = {
            "kind": "assistants_run",
            "id": rid,
            "thread_id": "t1",
            "run_id": "r1",
            "api_key": key,
        }
        body = {"f": FN_RUN, "a": [bad], "k": {}, "t": None, "et": int(time.time() * 1000)}
        await redis.set(f"arq:job:{rid}", json.dumps(body))
        await redis.zadd(f"{namespace}:queue", {rid: time.time() * 1000})
        final = await client.wait(rid, 10)
        assert final.status == "error"
        assert final.error is not None and final.error.code == code, final.error
        assert "sk-plain-canary" not in final.model_dump_json()


async def test_client_refuses_to_store_a_plaintext_key(redis: Redis, namespace: str) -> None:
    bare = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    with pytest.raises(ValueError, match="plaintext"):
        await bare.enqueue(
            {"kind": "assistants_run", "thread_id": "t", "run_id": "r", "api_key": "sk-x"}
        )


async def test_wrong_key_ends_with_clear_error_and_no_secret(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, "complete")
    secret = "sk-wrong-canary-987654321"
    final = await client.wait(
        await client.enqueue(job(thread_id, run_id, namespace, api_key=secret)), 10
    )
    assert final.status == "error"
    assert final.error is not None and final.error.code == "unauthorized"
    assert (final.error.api_code, final.error.http_status) == ("invalid_api_key", 401)
    assert secret not in final.model_dump_json()


async def test_oversized_results_are_cut_and_flagged(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker(max_result_bytes=4000)
    big = {"steps": [{"status": "completed", "messages": ["x" * 3000, "y" * 3000]}]}
    thread_id, run_id = await fake_run(fake_http, big)
    final = await client.wait(
        await client.enqueue({"kind": "assistants_run", "thread_id": thread_id, "run_id": run_id}),
        15,
    )
    assert final.status == "completed"
    assert final.detail["truncated"] is True and "messages" not in final.detail
    assert final.output_text is not None and len(final.output_text) <= 2000
    assert len(final.model_dump_json()) <= 4000


# ------------------------------------------------- answers a compatible server may give


Rewrite = Callable[[str, str, dict[str, Any]], dict[str, Any]]


class RewritingProxy:
    """A compatible server (or proxy) in front of the fake: every request is forwarded as
    is; ``rewrite(method, path, answer)`` may change the JSON answer the worker gets, for
    answers the fake (which plays by the spec's rules) cannot be scripted to give."""

    def __init__(self, upstream: str, rewrite: Rewrite) -> None:
        self.upstream = upstream.removesuffix("/v1")
        self.rewrite = rewrite
        self.runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.forward)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        return f"http://127.0.0.1:{self.runner.addresses[0][1]}/v1"

    async def forward(self, request: web.Request) -> web.Response:
        skip = {"host", "content-length", "transfer-encoding", "content-encoding"}
        headers = {k: v for k, v in request.headers.items() if k.lower() not in skip}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=10) as http:
            answer = await http.request(
                request.method, request.path_qs, headers=headers, content=await request.read()
            )
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower() not in skip | {"content-type", "date", "server"}
        }
        if not answer.headers.get("content-type", "").startswith("application/json"):
            return web.Response(status=answer.status_code, body=answer.content, headers=kept)
        data = self.rewrite(request.method, request.path, answer.json())
        return web.json_response(data, status=answer.status_code, headers=kept)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def proxy(fake: FakeServer) -> AsyncIterator[Callable[[Rewrite], Awaitable[str]]]:
    proxies: list[RewritingProxy] = []

    async def start(rewrite: Rewrite) -> str:
        proxies.append(RewritingProxy(fake.base_url, rewrite))
        return await proxies[-1].start()

    yield start
    for p in proxies:
        await p.close()


async def test_an_unknown_status_keeps_the_run_polling_until_the_deadline_cancels_it(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    proxy: Callable[[Rewrite], Awaitable[str]],
) -> None:
    def new_status(method: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
        # A status the API may add tomorrow, in place of in_progress.
        if data.get("object") == "thread.run" and data.get("status") == "in_progress":
            return data | {"status": "thinking_hard"}
        return data

    await start_worker(assistants_base_url=await proxy(new_status))
    thread_id, run_id = await fake_run(fake_http, "never_ends")
    rid = await client.enqueue(job(thread_id, run_id, namespace, timeout_ms=800))
    final = await client.wait(rid, 15)
    assert final.status == "timed_out" and final.api_status == "cancelled", final
    events = await all_events(client, rid)
    statuses = [e.status for e in events if isinstance(e, StatusEvent)]
    assert "thinking_hard" in statuses, statuses
    assert statuses[-1] == "cancelled"
    log = (await fake_http.get(f"/_fake/runs/{run_id}/log")).json()
    endpoints = [e["endpoint"] for e in log]
    assert endpoints.count("cancel_run") == 1, "the deadline cancelled it on the API side"
    assert endpoints.count("get_run") >= 3, "it kept polling"


async def test_requires_action_without_function_calls_is_not_asked_of_the_app(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    proxy: Callable[[Rewrite], Awaitable[str]],
) -> None:
    # The spec's tool_calls has no minItems; the fake's scripts refuse an empty list, so a
    # proxy empties it: the run waits for outputs nobody is asked for, until it expires.
    def no_calls(method: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
        if data.get("object") == "thread.run" and data.get("required_action"):
            action = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
            return data | {"required_action": action}
        return data

    await start_worker(assistants_base_url=await proxy(no_calls))
    script = {
        "steps": [
            {"status": "queued", "ms": 50},
            {
                "status": "requires_action",
                "expires_in_s": 0.6,
                "tool_calls": [{"name": "get_weather", "arguments": "{}"}],
            },
        ]
    }
    thread_id, run_id = await fake_run(fake_http, script)
    rid = await client.enqueue(job(thread_id, run_id, namespace))
    final = await client.wait(rid, 15)
    assert final.status == "expired", final
    events = await all_events(client, rid)
    assert not [e for e in events if isinstance(e, RequiresActionEvent)], "no empty round"
    statuses = [e.status for e in events if isinstance(e, StatusEvent)]
    assert "requires_action" in statuses and statuses[-1] == "expired", statuses
    log = (await fake_http.get(f"/_fake/runs/{run_id}/log")).json()
    assert [e["endpoint"] for e in log].count("get_run") >= 3, "it kept polling"
