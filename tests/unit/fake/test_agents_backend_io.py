"""The Agents backend's requests against the fake over HTTP: what it never posts twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from runpoller import engine
from runpoller.backends.agents import AgentsBackend
from runpoller.engine import Status
from runpoller.http.api import ApiClient, ApiFailure
from runpoller.protocol import AgentTurnJob, parse_job
from runpoller_fake import FakeServer, FakeState
from runpoller_fake.script import Fault
from runpoller_fake.testing import FakeClock
from tests.unit.fake.sdk_agents import validate_events_body

KEY = "sk-test-key"


@pytest.fixture
async def backend(server: FakeServer) -> AsyncIterator[AgentsBackend]:
    async with httpx.AsyncClient() as http:
        yield AgentsBackend(ApiClient(http, server.base_url))


async def session_with(control: httpx.AsyncClient, script: str, **extra: Any) -> dict[str, Any]:
    reply = await control.post("agents/sessions", json={"script": script, **extra})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def turn_job(session_id: str, turn_id: str | None = None) -> AgentTurnJob:
    raw: dict[str, Any] = {"kind": "agent_turn", "session_id": session_id, "id": "r1"}
    raw |= {"turn_id": turn_id} if turn_id else {"input": "Hi"}
    job = parse_job(raw)
    assert isinstance(job, AgentTurnJob)
    return job


def posted(state: FakeState, session_id: str) -> list[dict[str, Any]]:
    log = state.sessions[session_id].log
    for entry in log:
        validate_events_body({"events": entry["events"]})
    return [event for entry in log for event in entry["events"]]


async def test_a_retried_answer_whose_events_went_through_is_not_posted_again(
    backend: AgentsBackend, control: httpx.AsyncClient, state: FakeState, clock: FakeClock
) -> None:
    body = await session_with(control, "tool_call", input="Hi")
    session_id, turn_id = body["session"]["id"], body["turn"]["id"]
    job = turn_job(session_id, turn_id)
    run = engine.new_state(turn_id, now=0, timeout_s=60, interval_s=1)
    memo: dict[str, Any] = {}
    clock.advance(0.1)
    asked = await backend.get(job, run, KEY, memo)
    assert asked.status is Status.REQUIRES_ACTION
    call_id = asked.tool_calls[0].id
    state.set_faults([Fault(on="get_agent_turn", status=500, times=1)])
    with pytest.raises(ApiFailure):  # accepted, but the read after it failed
        await backend.submit(job, run, KEY, ((call_id, "sunny"),), memo)
    again = await backend.submit(job, run, KEY, ((call_id, "sunny"),), memo)
    assert again.status is Status.IN_PROGRESS
    assert [e["type"] for e in posted(state, session_id)] == ["agent.session.input.tool_result"]


async def test_an_answer_refused_because_the_turn_moved_on_reads_on(
    backend: AgentsBackend, control: httpx.AsyncClient, state: FakeState, clock: FakeClock
) -> None:
    body = await session_with(control, "tool_call", input="Hi")
    session_id, turn_id = body["session"]["id"], body["turn"]["id"]
    job = turn_job(session_id, turn_id)
    run = engine.new_state(turn_id, now=0, timeout_s=60, interval_s=1)
    clock.advance(0.1)
    call_id = (await backend.get(job, run, KEY, {})).tool_calls[0].id
    await backend.cancel(job, run, KEY)  # the turn ends before the answer arrives
    moved_on = await backend.submit(job, run, KEY, ((call_id, "late"),), {})
    assert moved_on.status is Status.CANCELLED


async def test_an_answer_refused_while_still_pending_is_a_refusal(
    backend: AgentsBackend, control: httpx.AsyncClient, state: FakeState, clock: FakeClock
) -> None:
    body = await session_with(control, "tool_call", input="Hi")
    session_id, turn_id = body["session"]["id"], body["turn"]["id"]
    job = turn_job(session_id, turn_id)
    run = engine.new_state(turn_id, now=0, timeout_s=60, interval_s=1)
    memo: dict[str, Any] = {}
    clock.advance(0.1)
    call_id = (await backend.get(job, run, KEY, memo)).tool_calls[0].id
    state.set_faults([Fault(on="create_agent_events", status=400, times=1)])
    with pytest.raises(ApiFailure) as refused:
        await backend.submit(job, run, KEY, ((call_id, "x"),), memo)
    assert refused.value.failure.status_code == 400


async def test_a_message_whose_turn_cannot_be_found_is_never_posted_twice(
    backend: AgentsBackend, control: httpx.AsyncClient, state: FakeState
) -> None:
    session_id = (await session_with(control, "never_ends"))["session"]["id"]
    state.set_faults([Fault(on="list_agent_turns", status=500, skip=1)])
    with pytest.raises(ApiFailure) as unknown:
        await backend.create(turn_job(session_id), KEY, {})
    assert unknown.value.failure.ambiguous  # the engine ends create_outcome_unknown
    assert "its turn could not be found (HTTP 500" in unknown.value.failure.message
    assert [e["type"] for e in posted(state, session_id)] == ["agent.session.input.message"]


async def test_the_worker_starts_a_turn_and_follows_it(
    backend: AgentsBackend, control: httpx.AsyncClient, state: FakeState
) -> None:
    session_id = (await session_with(control, "never_ends"))["session"]["id"]
    created = await backend.create(turn_job(session_id), KEY, {})
    assert created.object_id == state.sessions[session_id].turns[0].id
    assert (created.status, created.model, created.assistant_id) == (
        Status.IN_PROGRESS,
        "gpt-5",
        state.sessions[session_id].agent.id,
    )


async def test_a_finished_turns_first_read_still_learns_the_agents_model(
    backend: AgentsBackend, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    body = await session_with(control, "complete", input="Hi")
    job = turn_job(body["session"]["id"], body["turn"]["id"])
    run = engine.new_state(body["turn"]["id"], now=0, timeout_s=60, interval_s=1)
    clock.advance(1)
    memo: dict[str, Any] = {}
    done = await backend.get(job, run, KEY, memo)  # what ASSISTANTS_MODELS is checked on
    assert (done.status, done.model) == (Status.COMPLETED, "gpt-5")
    assert (await backend.get(job, run, KEY, memo)).model == "gpt-5"
