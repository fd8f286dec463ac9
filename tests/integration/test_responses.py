"""Responses background mode end to end: real Redis, the fake server over HTTP, a worker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent, RequiresActionEvent, StatusEvent
from runpoller_fake import FakeServer
from runpoller_fake.testing import function_tools
from tests.integration.conftest import FAKE_KEY, WorkerHandle
from tests.integration.test_end_to_end import RewritingProxy

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def fake_response(http: httpx.AsyncClient, script: Any) -> str:
    response = await http.post("/_fake/responses", json={"script": script, "model": "gpt-4o"})
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def job(response_id: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "response",
        "response_id": response_id,
        "id": f"{namespace}-{response_id}",
    } | extra


@pytest.mark.parametrize(
    ("scenario", "status", "check"),
    [
        ("complete", "completed", lambda f: f.output_text == "Hello from the fake OpenAI server."),
        (
            "fail",
            "failed",
            lambda f: (
                f.error is not None
                and (f.error.code, f.error.api_code) == ("run_failed", "server_error")
            ),
        ),
        (
            "incomplete",
            "incomplete",
            lambda f: f.incomplete_details == {"reason": "max_output_tokens"},
        ),
    ],
)
async def test_final_statuses(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    scenario: str,
    status: str,
    check: Callable[[FinalEvent], bool],
) -> None:
    await start_worker()
    response_id = await fake_response(fake_http, scenario)
    final = await client.wait(await client.enqueue(job(response_id, namespace)), 15)
    assert final.status == status
    assert final.kind == "response"
    assert final.detail["response_ids"] == [response_id]
    assert check(final), final


async def test_timeout_cancels_the_response(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    response_id = await fake_response(fake_http, "never_ends")
    final = await client.wait(await client.enqueue(job(response_id, namespace, timeout_ms=600)), 15)
    assert final.status == "timed_out" and final.api_status == "cancelled"
    log = (await fake_http.get(f"/_fake/runs/{response_id}/log")).json()
    assert [e["endpoint"] for e in log].count("cancel_response") == 1


async def answer_every_round(
    client: RunpollerClient, rid: str
) -> tuple[list[int], list[str], FinalEvent]:
    """Follow the run, answering each round's calls; the rounds, object ids seen, and final."""
    rounds: list[int] = []
    seen_ids: list[str] = []
    final = None
    async for item in client.events(rid):
        event = item.event
        if isinstance(event, StatusEvent):
            seen_ids.append(event.object_id)
        if isinstance(event, RequiresActionEvent):
            rounds.append(event.round)
            await client.submit_tool_outputs(
                rid, event.round, {c.id: f"answer {event.round}" for c in event.tool_calls}
            )
        if isinstance(event, FinalEvent):
            final = event
    assert final is not None
    return rounds, seen_ids, final


async def test_two_round_function_call_continuation(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    first_id = await fake_response(fake_http, "two_rounds")
    # Nothing carries over previous_response_id: the second round's get_time can only be
    # called because every continuation declares the tools again, as a real app's must.
    tools = function_tools("get_weather", "get_time")
    continuation = {"model": "gpt-4o", "instructions": "Be brief.", "tools": tools}
    rid = await client.enqueue(job(first_id, namespace, continuation=continuation))
    rounds, seen_ids, final = await answer_every_round(client, rid)
    assert rounds == [1, 2]
    assert final.status == "completed"
    ids = final.detail["response_ids"]
    assert len(ids) == 3 and ids[0] == first_id and len(set(ids)) == 3
    assert set(seen_ids) == set(ids)
    # The continuation carried the job's instructions and tools, and pointed at the previous
    # response.
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    second = (await fake_http.get(f"/v1/responses/{ids[1]}", headers=headers)).json()
    assert second["previous_response_id"] == ids[0]
    assert second["instructions"] == "Be brief."
    assert second["tools"] == tools


async def test_a_continuation_without_tools_cannot_call_a_function(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    """A job whose continuation declares no tools: its second round is never asked for, the
    model answers with text instead (tools do not carry over previous_response_id)."""
    await start_worker()
    first_id = await fake_response(fake_http, "two_rounds")
    rid = await client.enqueue(job(first_id, namespace, continuation={"model": "gpt-4o"}))
    rounds, _, final = await answer_every_round(client, rid)
    assert rounds == [1]
    assert final.status == "completed", final
    assert final.output_text == "I cannot call get_time: this request gave me no such tool."
    assert len(final.detail["response_ids"]) == 2


async def test_worker_creates_the_response_from_the_job(
    start_worker: StartWorker, client: RunpollerClient, namespace: str
) -> None:
    await start_worker()
    rid = f"{namespace}-created"
    final = await client.wait(
        await client.enqueue(
            {
                "kind": "response",
                "id": rid,
                "request": {"model": "gpt-4o", "input": "Say hello"},
            }
        ),
        15,
    )
    assert final.status == "completed"
    assert len(final.detail["response_ids"]) == 1
    assert final.detail["response_ids"][0].startswith("resp_")


async def test_response_job_validation() -> None:
    from pydantic import ValidationError

    from runpoller.protocol import JobEnvelope

    with pytest.raises(ValidationError, match="exactly one of response_id and request"):
        JobEnvelope.model_validate({"job": {"kind": "response"}})
    with pytest.raises(ValidationError, match="needs an id"):
        JobEnvelope.model_validate({"job": {"kind": "response", "request": {"model": "m"}}})
    with pytest.raises(ValidationError, match="must not set previous_response_id"):
        JobEnvelope.model_validate(
            {
                "job": {
                    "kind": "response",
                    "response_id": "resp_1",
                    "continuation": {"previous_response_id": "x"},
                }
            }
        )


async def test_response_cancelled_by_someone_else(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    response_id = await fake_response(fake_http, "never_ends")
    rid = await client.enqueue(job(response_id, namespace))
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    cancelled = await fake_http.post(f"/v1/responses/{response_id}/cancel", headers=headers)
    assert cancelled.status_code == 200
    final = await client.wait(rid, 15)
    assert final.status == "cancelled"
    assert "outside runpoller" in final.reason


async def test_a_503_on_the_continuation_is_retried_with_its_outputs(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    first_id = await fake_response(fake_http, "requires_action")
    rid = await client.enqueue(job(first_id, namespace, continuation={"model": "gpt-4o"}))
    final = None
    async for item in client.events(rid):
        event = item.event
        if isinstance(event, RequiresActionEvent):
            faults = [{"on": "create_response", "status": 503, "times": 1}]
            await fake_http.post("/_fake/faults", json=faults)
            await client.submit_tool_outputs(rid, 1, {c.id: "sunny" for c in event.tool_calls})
        if isinstance(event, FinalEvent):
            final = event
    assert final is not None and final.status == "completed", final
    ids = final.detail["response_ids"]
    assert len(ids) == 2 and ids[0] == first_id, "one continuation, created on the retry"
    headers = {"Authorization": f"Bearer {FAKE_KEY}"}
    second = (await fake_http.get(f"/v1/responses/{ids[1]}", headers=headers)).json()
    assert second["previous_response_id"] == first_id


async def test_a_poll_answered_with_another_response_is_an_error_never_its_output(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    fake: FakeServer,
) -> None:
    mine = await fake_response(fake_http, "never_ends")
    other = await fake_response(fake_http, "complete")
    auth = {"Authorization": f"Bearer {FAKE_KEY}"}
    for _ in range(100):  # the other response's finished object, output and all
        other_object = (await fake_http.get(f"/v1/responses/{other}", headers=auth)).json()
        if other_object["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert other_object["status"] == "completed" and other_object["output"], other_object

    def swapped(method: str, path: str, data: dict[str, Any]) -> dict[str, Any]:
        # A confused proxy: the poll of this response is answered with another's object.
        return other_object if method == "GET" and path.endswith(f"/responses/{mine}") else data

    proxy = RewritingProxy(fake.base_url, swapped)
    try:
        await start_worker(assistants_base_url=await proxy.start())
        final = await client.wait(await client.enqueue(job(mine, namespace)), 15)
    finally:
        await proxy.close()
    assert final.status == "error" and final.error is not None, final
    assert final.error.code == "object_mismatch"
    assert mine in final.reason and other in final.reason
    assert final.output_text is None and final.usage is None, "nothing of the other response"
    assert final.detail.get("response_ids", [mine]) == [mine]
