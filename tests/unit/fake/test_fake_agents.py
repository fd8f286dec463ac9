"""The fake's Agents API (beta): sessions, turns, events, items; every body checked against
openai-python's pydantic models (the beta API is not in the OpenAPI spec)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runpoller_fake import FakeServer
from runpoller_fake.testing import FakeClock
from tests.unit.fake.sdk_agents import check_agent_reply, validate_events_body

HEADERS = {"Authorization": "Bearer sk-test-key", "OpenAI-Beta": "agents=v1"}


@pytest.fixture
async def agents(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=server.base_url + "/",
        headers=HEADERS,
        event_hooks={"response": [check_agent_reply]},
    ) as http:
        yield http


async def start(
    control: httpx.AsyncClient, script: Any = "complete", **extra: Any
) -> tuple[str, str]:
    reply = await control.post("agents/sessions", json={"script": script, "input": "Hi", **extra})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return body["session"]["id"], body["turn"]["id"]


async def turn(agents: httpx.AsyncClient, session_id: str, turn_id: str) -> dict[str, Any]:
    reply = await agents.get(f"agents/sessions/{session_id}/turns/{turn_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def session(agents: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    reply = await agents.get(f"agents/sessions/{session_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def events(
    agents: httpx.AsyncClient, session_id: str, *items: dict[str, Any]
) -> httpx.Response:
    body = {"events": list(items)}
    validate_events_body(body)
    return await agents.post(f"agents/sessions/{session_id}/events", json=body)


async def test_a_turn_completes_with_a_message(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    session_id, turn_id = await start(control)
    assert (await turn(agents, session_id, turn_id))["status"] == "queued"
    assert (await session(agents, session_id))["status"] == "in_progress"
    clock.advance(0.05)
    assert (await turn(agents, session_id, turn_id))["status"] == "in_progress"
    clock.advance(0.1)
    done = await turn(agents, session_id, turn_id)
    assert done["status"] == "completed" and done["usage"]["total_tokens"] == 37
    assert (await session(agents, session_id))["status"] == "idle"
    path = f"agents/sessions/{session_id}/turns/{turn_id}/items"
    items = (await agents.get(path, params={"order": "asc"})).json()
    kinds = [(i["type"], i["role"]) for i in items["data"]]
    assert kinds == [("message", "user"), ("message", "assistant")]
    listed = await agents.get(f"agents/sessions/{session_id}/turns", params={"order": "desc"})
    assert [t["id"] for t in listed.json()["data"]] == [turn_id]


async def test_a_function_call_round(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    session_id, turn_id = await start(control, "tool_call")
    clock.advance(0.1)
    waiting = await session(agents, session_id)
    assert waiting["status"] == "requires_action"
    (action,) = waiting["required_actions"]
    assert (action["type"], action["name"], action["turn_id"]) == (
        "function_call",
        "get_weather",
        turn_id,
    )
    assert (await turn(agents, session_id, turn_id))["status"] == "waiting"
    result = {
        "type": "agent.session.input.tool_result",
        "call_id": action["call_id"],
        "turn_id": turn_id,
        "success": True,
        "output": '{"temp_c": 21}',
    }
    reply = await events(agents, session_id, result)
    assert reply.status_code == 202 and reply.content == b""
    assert (await session(agents, session_id))["required_actions"] == []
    again = await events(agents, session_id, result)
    assert again.status_code == 400 and "No pending action" in again.text
    clock.advance(0.1)
    assert (await turn(agents, session_id, turn_id))["status"] == "completed"
    path = f"agents/sessions/{session_id}/items"
    items = (await agents.get(path, params={"order": "asc"})).json()["data"]
    assert [i["type"] for i in items] == [
        "message",
        "function_call",
        "function_call_output",
        "message",
    ]


@pytest.mark.parametrize(
    ("script", "kind", "response"),
    [
        ("mcp_approval", "mcp_approval_request", {"type": "mcp_tool_call", "decision": "deny"}),
        (
            "origin_access",
            "computer_use_approval_request",
            {"type": "browser_origin_access", "decision": "approve"},
        ),
    ],
)
async def test_approvals_are_answered_through_events(
    agents: httpx.AsyncClient,
    control: httpx.AsyncClient,
    clock: FakeClock,
    script: str,
    kind: str,
    response: dict[str, str],
) -> None:
    session_id, turn_id = await start(control, script)
    clock.advance(0.1)
    (action,) = (await session(agents, session_id))["required_actions"]
    assert action["type"] == kind
    answer = {
        "type": f"agent.session.input.{kind}_result",
        "request_id": action["request_id"],
        "response": response,
    }
    assert (await events(agents, session_id, answer)).status_code == 202
    clock.advance(0.2)
    assert (await turn(agents, session_id, turn_id))["status"] == "completed"


async def test_cancel_ends_the_active_turn(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    session_id, turn_id = await start(
        control, {"steps": [{"status": "in_progress"}], "cancel_ms": 100}
    )
    assert (
        await events(agents, session_id, {"type": "agent.session.input.cancel"})
    ).status_code == 202
    assert (await turn(agents, session_id, turn_id))["status"] == "in_progress"
    clock.advance(0.1)
    cancelled = await turn(agents, session_id, turn_id)
    assert cancelled["status"] == "cancelled" and cancelled["completed_at"] is not None


async def test_a_failed_session_leaves_its_turn_unfinished(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    session_id, turn_id = await start(control, "session_fail")
    clock.advance(0.2)
    failed = await session(agents, session_id)
    assert (failed["status"], failed["error"]) == ("failed", "Sandbox lost.")
    assert (await turn(agents, session_id, turn_id))["status"] == "in_progress"


async def test_a_message_starts_a_turn_and_a_busy_session_refuses_another(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    created = await control.post("agents/sessions", json={"script": "never_ends"})
    session_id = created.json()["session"]["id"]
    assert created.json()["turn"] is None
    message = {
        "type": "agent.session.input.message",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hi"}]}],
    }
    assert (await events(agents, session_id, message)).status_code == 202
    busy = await events(agents, session_id, message)
    assert busy.status_code == 409 and "active turn" in busy.text


async def test_the_sdk_shapes_of_a_session_created_over_the_api(
    agents: httpx.AsyncClient, clock: FakeClock
) -> None:
    agent = (await agents.post("agents", json={"model": "gpt-5", "name": "helper"})).json()
    body = {
        "agent_id": agent["id"],
        "environment": {"type": "none"},
        "input": "Hi",
        "metadata": {"fake_scenario": json.dumps({"steps": [{"status": "failed"}]})},
    }
    created = await agents.post("agents/sessions", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["agent"]["id"] == agent["id"]
    turns = (await agents.get(f"agents/sessions/{created.json()['id']}/turns")).json()["data"]
    assert turns[0]["status"] == "failed" and turns[0]["error"]["code"] == "server_error"


async def test_bad_input_is_refused_naming_the_field(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, server: FakeServer
) -> None:
    session_id, _ = await start(control)
    bad = await agents.post(
        f"agents/sessions/{session_id}/events", json={"events": [{"type": "x"}]}
    )
    assert bad.status_code == 400 and "events[0].type" in bad.text
    missing = await agents.post(
        f"agents/sessions/{session_id}/events",
        json={"events": [{"type": "agent.session.input.tool_result", "call_id": "c"}]},
    )
    assert missing.status_code == 400 and "events[0].turn_id" in missing.text
    async with httpx.AsyncClient(base_url=server.base_url + "/") as plain:
        no_beta = await plain.get(
            f"agents/sessions/{session_id}", headers={"Authorization": "Bearer k"}
        )
    assert no_beta.status_code == 400 and "agents=v1" in no_beta.text
    script = await control.post("agents/sessions", json={"script": {"steps": [{"status": "nope"}]}})
    assert script.status_code == 400 and "steps.0.status" in script.text


@pytest.mark.parametrize("script", ["browser_sign_in", "reconnect"])
async def test_actions_no_event_answers_keep_the_turn_waiting(
    agents: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock, script: str
) -> None:
    session_id, turn_id = await start(control, script)
    clock.advance(0.1)
    waiting = await session(agents, session_id)  # its shape checked by the SDK's model
    assert waiting["status"] == "requires_action" and len(waiting["required_actions"]) == 1
    clock.advance(60)
    assert (await turn(agents, session_id, turn_id))["status"] == "waiting"
    await events(agents, session_id, {"type": "agent.session.input.cancel"})
    assert (await turn(agents, session_id, turn_id))["status"] == "cancelled"
