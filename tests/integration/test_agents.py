"""Agents API session turns end to end: real Redis, the fake server over HTTP, a worker.

Every events body the worker sent is checked against openai-python's ``EventCreateParams``
(the beta API is not in the OpenAPI spec); the fake's replies are checked in
tests/unit/fake/test_fake_agents.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from runpoller.client import RunpollerClient
from runpoller.protocol import ReplyRejectedEvent, RequiresActionEvent, StatusEvent
from tests.integration.conftest import WorkerHandle
from tests.integration.test_cancel import first
from tests.unit.fake.sdk_agents import validate_events_body

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def fake_turn(
    http: httpx.AsyncClient, script: Any, *, started: bool = True, **extra: Any
) -> tuple[str, str]:
    """A session playing ``script`` (its first turn started unless ``started`` is False)."""
    body = {"script": script, "model": "gpt-5", **extra}
    if started:
        body["input"] = "What is the weather in Paris?"
    reply = await http.post("/_fake/agents/sessions", json=body)
    assert reply.status_code == 200, reply.text
    data = reply.json()
    return data["session"]["id"], data["turn"]["id"] if data["turn"] else ""


def job(session_id: str, turn_id: str, namespace: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "agent_turn",
        "session_id": session_id,
        "turn_id": turn_id,
        "id": f"{namespace}-{turn_id}",
    } | extra


async def first_round(
    start_worker: StartWorker,
    client: RunpollerClient,
    http: httpx.AsyncClient,
    namespace: str,
    script: Any,
) -> tuple[str, str, str, RequiresActionEvent]:
    """A worker following a new turn of ``script`` until it asks: session, turn, run, event."""
    await start_worker()
    session_id, turn_id = await fake_turn(http, script)
    rid = await client.enqueue(job(session_id, turn_id, namespace))
    asked: RequiresActionEvent = await first(client, rid, RequiresActionEvent)
    return session_id, turn_id, rid, asked


async def sent_events(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    """Every event the worker posted to the session, each body checked against the SDK."""
    log = (await http.get(f"/_fake/agents/sessions/{session_id}/log")).json()
    for entry in log:
        validate_events_body({"events": entry["events"]})
    return [event for entry in log for event in entry["events"]]


# The built-in scripts work 100 ms, which a poll every 100 ms on a loaded machine may step
# over: these work long enough for every status to be seen.
_QUEUED = {"status": "queued", "ms": 300}
_WORKING = {"status": "in_progress", "ms": 600}


@pytest.mark.parametrize(
    ("script", "status", "code", "api_code"),
    [
        ({"steps": [_QUEUED, _WORKING]}, "completed", None, None),
        (
            {"steps": [_QUEUED, _WORKING, {"status": "failed", "error": {"code": "server_error"}}]},
            "failed",
            "run_failed",
            "server_error",
        ),
        (
            {"steps": [_QUEUED, _WORKING, {"status": "cancelled"}]},
            "cancelled",
            "cancelled_outside",
            None,
        ),
        (
            {"steps": [_QUEUED, _WORKING, {"status": "session_failed", "error": "Sandbox lost."}]},
            "failed",
            "run_failed",
            "session_failed",
        ),
    ],
    ids=["completed", "failed", "cancelled", "session_failed"],
)
async def test_every_turn_status(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    script: dict[str, Any],
    status: str,
    code: str | None,
    api_code: str | None,
) -> None:
    await start_worker()
    session_id, turn_id = await fake_turn(fake_http, script)
    rid = await client.enqueue(job(session_id, turn_id, namespace))
    statuses = []
    async for item in client.events(rid):
        if isinstance(item.event, StatusEvent):
            statuses.append(item.event.status)
            assert item.event.object_id == turn_id
    final = await client.wait(rid, 15)
    assert final.kind == "agent_turn" and final.status == status, final
    assert "in_progress" in statuses and statuses[-1] == status, statuses
    assert final.detail["session_id"] == session_id and final.detail["turn_id"] == turn_id
    assert final.detail["agent_id"].startswith("agent_")
    assert (final.error.code if final.error else None) == code
    assert (final.error.api_code if final.error else None) == api_code
    if status == "completed":
        assert final.output_text == "Hello from the fake OpenAI server."
        assert final.usage is not None and final.usage["total_tokens"] == 37
        assert final.model == "gpt-5"
        assert [i["role"] for i in final.detail["items"]] == ["user", "assistant"]
    if api_code == "session_failed":
        assert final.error is not None and final.error.message == "Sandbox lost."
    assert await sent_events(fake_http, session_id) == []


async def test_a_function_call_round(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    session_id, turn_id, rid, asked = await first_round(
        start_worker, client, fake_http, namespace, "tool_call"
    )
    (call,) = asked.tool_calls
    assert (call.type, call.name, call.turn_id, asked.object_id) == (
        "function",
        "get_weather",
        turn_id,
        turn_id,
    )
    assert call.parsed_arguments == {"city": "Paris"} and call.arguments_valid
    await client.submit_tool_outputs(rid, asked.round, {call.id: '{"temp_c": 21}'})
    final = await client.wait(rid, 15)
    assert final.status == "completed" and final.output_text == "It is sunny in Paris."
    kinds = [item["type"] for item in final.detail["items"]]
    assert kinds == ["message", "function_call", "function_call_output", "message"]
    assert await sent_events(fake_http, session_id) == [
        {
            "type": "agent.session.input.tool_result",
            "call_id": call.id,
            "turn_id": turn_id,
            "success": True,
            "output": '{"temp_c": 21}',
        }
    ]


async def test_the_worker_starts_the_turn_from_input(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    session_id, _ = await fake_turn(fake_http, "complete", started=False)
    rid = await client.enqueue(
        {"kind": "agent_turn", "session_id": session_id, "input": "Hi", "id": namespace}
    )
    final = await client.wait(rid, 15)
    assert final.status == "completed", final
    assert final.detail["turn_id"].startswith("turn_")
    assert await sent_events(fake_http, session_id) == [
        {
            "type": "agent.session.input.message",
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
        }
    ]


@pytest.mark.parametrize(
    ("script", "kind", "answer", "event"),
    [
        (
            "mcp_approval",
            "mcp_approval",
            "deny",
            {"type": "agent.session.input.mcp_approval_request_result"}
            | {"response": {"type": "mcp_tool_call", "decision": "deny"}},
        ),
        (
            "origin_access",
            "computer_use_approval",
            "approve",
            {"type": "agent.session.input.computer_use_approval_request_result"}
            | {"response": {"type": "browser_origin_access", "decision": "approve"}},
        ),
    ],
)
async def test_approvals_are_asked_and_answered_approve_or_deny(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    script: str,
    kind: str,
    answer: str,
    event: dict[str, Any],
) -> None:
    session_id, turn_id, rid, asked = await first_round(
        start_worker, client, fake_http, namespace, script
    )
    (call,) = asked.tool_calls
    assert call.type == kind and call.turn_id == turn_id and call.request is not None
    await client.submit_tool_outputs(rid, asked.round, {call.id: "yes"})
    rejected = await first(client, rid, ReplyRejectedEvent)
    assert rejected.problems == [f"output for {call.id!r} must be 'approve' or 'deny', got 'yes'"]
    await client.submit_tool_outputs(rid, asked.round, {call.id: answer})
    final = await client.wait(rid, 15)
    assert final.status == "completed", final
    assert await sent_events(fake_http, session_id) == [event | {"request_id": call.id}]


@pytest.mark.parametrize(
    ("script", "named"), [("browser_sign_in", "browser sign-in"), ("reconnect", "reconnected")]
)
async def test_actions_no_app_can_answer_cancel_the_turn_at_once(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    namespace: str,
    script: str,
    named: str,
) -> None:
    await start_worker(timeout_ms=60_000)
    session_id, turn_id = await fake_turn(fake_http, script)
    final = await client.wait(await client.enqueue(job(session_id, turn_id, namespace)), 15)
    assert final.status == "refused" and final.api_status == "cancelled", final
    assert final.error is not None and final.error.code == "action_unsupported"
    assert named in final.error.message
    assert final.cancel is not None
    assert (final.cancel.reason, final.cancel.outcome) == ("unsupported_action", "confirmed")
    assert await sent_events(fake_http, session_id) == [{"type": "agent.session.input.cancel"}]


async def test_the_deadline_cancels_the_turn(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    session_id, turn_id = await fake_turn(fake_http, "never_ends")
    rid = await client.enqueue(job(session_id, turn_id, namespace, timeout_ms=600))
    final = await client.wait(rid, 15)
    assert final.status == "timed_out" and final.api_status == "cancelled", final
    assert final.cancel is not None and final.cancel.outcome == "confirmed"
    assert await sent_events(fake_http, session_id) == [{"type": "agent.session.input.cancel"}]


async def test_a_cancel_on_demand_cancels_the_turn(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(timeout_ms=60_000)
    session_id, turn_id = await fake_turn(fake_http, "never_ends")
    rid = await client.enqueue(job(session_id, turn_id, namespace))
    await first(client, rid, StatusEvent, status="in_progress")
    await client.cancel(rid, "user pressed stop")
    final = await client.wait(rid, 15)
    assert final.status == "cancelled" and final.api_status == "cancelled", final
    assert final.error is not None and final.error.code == "cancelled_by_app"
    assert final.cancel is not None and final.cancel.app_reason == "user pressed stop"
    assert await sent_events(fake_http, session_id) == [{"type": "agent.session.input.cancel"}]


async def test_supported_ids_apply_to_the_agent(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(supported_ids=["agent_good"], timeout_ms=60_000)
    session_id, turn_id = await fake_turn(fake_http, "never_ends", agent_id="agent_bad")
    final = await client.wait(await client.enqueue(job(session_id, turn_id, namespace)), 15)
    assert final.status == "refused" and final.error is not None
    assert final.error.code == "refused_assistant" and "agent_bad" in final.reason
    assert await sent_events(fake_http, session_id) == [{"type": "agent.session.input.cancel"}]


async def test_assistants_models_apply_to_the_agents_model(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker(assistants_models=["gpt-4o-mini"], timeout_ms=60_000)
    session_id, turn_id = await fake_turn(fake_http, "never_ends")
    final = await client.wait(await client.enqueue(job(session_id, turn_id, namespace)), 15)
    assert final.status == "refused" and final.error is not None
    assert final.error.code == "refused_model" and "gpt-5" in final.reason


async def test_a_turn_survives_the_faults_its_script_injects(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    script = {
        "steps": [{"status": "in_progress", "ms": 2500}],  # outlasts the two backoffs
        "faults": [{"on": "get_agent_turn", "status": 500, "times": 2}],
    }
    session_id, turn_id = await fake_turn(fake_http, script)
    final = await client.wait(await client.enqueue(job(session_id, turn_id, namespace)), 15)
    assert final.status == "completed", final
    log = (await fake_http.get(f"/_fake/agents/turns/{turn_id}/log")).json()
    seen = [(e["endpoint"], e["status"]) for e in log]
    assert seen[:2] == [("get_agent_turn", 500), ("get_agent_turn", 500)]
    # An unfinished turn's poll reads the turn and its session; a finished one only the turn
    # (the agent's model is known by then).
    polls = [e for e, status in seen if status == 200]
    assert polls.count("get_agent_turn") > 2
    assert polls.count("get_agent_session") == polls.count("get_agent_turn") - 1
    assert polls[-1] == "list_agent_turn_items"


async def test_the_tool_result_is_sent_again_after_a_refused_post(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    script: dict[str, Any] = {
        "steps": [
            {"status": "in_progress", "ms": 50},
            {"status": "waiting", "actions": [{"type": "function_call", "name": "f"}]},
        ],
        "faults": [{"on": "create_agent_events", "status": 503, "times": 1}],
    }
    session_id, turn_id, rid, asked = await first_round(
        start_worker, client, fake_http, namespace, script
    )
    await client.submit_tool_outputs(rid, asked.round, {asked.tool_calls[0].id: "done"})
    final = await client.wait(rid, 15)
    assert final.status == "completed", final
    sent = await sent_events(fake_http, session_id)
    assert [e["type"] for e in sent] == ["agent.session.input.tool_result"]
    log = (await fake_http.get(f"/_fake/agents/turns/{turn_id}/log")).json()
    posts = [e["status"] for e in log if e["endpoint"] == "create_agent_events"]
    assert posts == [503, 202]


async def test_a_call_the_app_could_not_run_is_sent_as_a_failed_tool_result(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    session_id, turn_id, rid, asked = await first_round(
        start_worker, client, fake_http, namespace, "tool_call"
    )
    call_id = asked.tool_calls[0].id
    await client.submit_tool_outputs(rid, asked.round, {}, errors={call_id: "weather service down"})
    final = await client.wait(rid, 15)
    assert final.status == "completed", final
    assert await sent_events(fake_http, session_id) == [
        {
            "type": "agent.session.input.tool_result",
            "call_id": call_id,
            "turn_id": turn_id,
            "success": False,
            "error": "weather service down",
        }
    ]
    output = next(i for i in final.detail["items"] if i["type"] == "function_call_output")
    assert (output["status"], output["error"]) == ("failed", "weather service down")


async def test_status_events_follow_the_turn_queued_then_in_progress(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    await start_worker()
    script = {"steps": [{"status": "queued", "ms": 800}, {"status": "in_progress", "ms": 300}]}
    session_id, turn_id = await fake_turn(fake_http, script)
    rid = await client.enqueue(job(session_id, turn_id, namespace))
    statuses = [
        item.event.status
        async for item in client.events(rid)
        if isinstance(item.event, StatusEvent)
    ]
    assert statuses == ["queued", "in_progress", "completed"]
