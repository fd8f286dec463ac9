"""Streamed background responses: SSE events with sequence numbers, resumable, checked
against the spec's ``ResponseStreamEvent`` and the official SDK's models."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from runpoller_fake import FakeServer, FakeState, running_fake_server
from runpoller_fake.params import response_params
from runpoller_fake.script import parse_script
from runpoller_fake.streaming import StreamLog, chunks
from runpoller_fake.testing import (
    FakeClock,
    check_reply,
    function_tools,
    sse_events,
    stream_problems,
)

TEXT = "The weather in Paris is sunny, twenty-two degrees, light wind from the west."
SDK_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
HEADERS = {"Authorization": "Bearer sk-test-key"}


def script(in_progress_ms: float = 200, **end: Any) -> str:
    end = end or {"status": "completed", "messages": [TEXT]}
    steps = [{"status": "queued", "ms": 20}, {"status": "in_progress", "ms": in_progress_ms}, end]
    return json.dumps({"steps": steps})


@pytest.fixture
async def live() -> AsyncIterator[FakeServer]:
    """A fake on the real clock: a stream's events come out as time passes."""
    async with running_fake_server(state=FakeState()) as running:
        yield running


@pytest.fixture
async def http(live: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=live.base_url + "/", headers=HEADERS, event_hooks={"response": [check_reply]}
    ) as client:
        yield client


def body(scenario: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "input": "Weather in Paris?",
        "background": True,
        "store": True,
        "stream": True,
        "metadata": {"fake_scenario": scenario},
        **extra,
    }


def events_of(reply: httpx.Response) -> list[dict[str, Any]]:
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert stream_problems(reply.text) == []
    events = [data for _, data in sse_events(reply.text)]
    for event in events:
        SDK_EVENT.validate_python(event)  # the official SDK reads every event
    return events


def deltas(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")


async def test_a_streamed_create_sends_every_event_in_order(http: httpx.AsyncClient) -> None:
    events = events_of(await http.post("/responses", json=body(script())))
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types[3:5] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert deltas(events) == TEXT
    assert len([t for t in types if t.endswith(".delta")]) == len(chunks(TEXT)) > 5
    final = events[-1]["response"]
    assert final["status"] == "completed"
    message = final["output"][0]
    assert message["content"][0]["text"] == TEXT
    # The deltas name the message the response ends with.
    assert {e["item_id"] for e in events if "item_id" in e} == {message["id"]}
    got = (await http.get(f"/responses/{final['id']}")).json()
    assert got["output"] == final["output"]


async def test_resuming_after_a_sequence_number_sends_only_the_rest(
    http: httpx.AsyncClient,
) -> None:
    events = events_of(await http.post("/responses", json=body(script(50))))
    response_id = events[0]["response"]["id"]
    rest = events_of(
        await http.get(f"/responses/{response_id}", params={"stream": "true", "starting_after": 6})
    )
    assert rest == events[7:]
    everything = events_of(await http.get(f"/responses/{response_id}", params={"stream": "true"}))
    assert everything == events


async def test_a_cut_stream_resumes_with_no_event_lost_or_repeated(
    http: httpx.AsyncClient, live: FakeServer
) -> None:
    await http.post(
        live.root_url + "/_fake/faults",
        json={"faults": [{"on": "create_response", "cut_after": 7}]},
    )
    text = ""
    with pytest.raises(httpx.RemoteProtocolError):  # the connection closes mid-body
        async with http.stream("POST", "/responses", json=body(script())) as reply:
            async for line in reply.aiter_lines():
                text += line + "\n"
    assert stream_problems(text) == []
    first = [data for _, data in sse_events(text)]
    assert len(first) == 7
    response_id = first[0]["response"]["id"]
    after = first[-1]["sequence_number"]
    rest = events_of(
        await http.get(
            f"/responses/{response_id}", params={"stream": "true", "starting_after": after}
        )
    )
    whole = first + rest
    assert [e["sequence_number"] for e in whole] == list(range(len(whole)))
    assert deltas(whole) == TEXT and whole[-1]["type"] == "response.completed"


async def test_a_response_not_created_streaming_cannot_be_streamed(
    http: httpx.AsyncClient,
) -> None:
    created = await http.post("/responses", json={**body(script()), "stream": False})
    reply = await http.get(f"/responses/{created.json()['id']}", params={"stream": "true"})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "stream"
    bad = await http.post("/responses", json=body(script()))
    response_id = sse_events(bad.text)[0][1]["response"]["id"]
    reply = await http.get(
        f"/responses/{response_id}", params={"stream": "true", "starting_after": "x"}
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "starting_after"


async def test_a_cancelled_stream_ends_without_an_end_event(
    http: httpx.AsyncClient, live: FakeServer
) -> None:
    never = json.dumps({"steps": [{"status": "queued", "ms": 10}, {"status": "in_progress"}]})
    async with http.stream("POST", "/responses", json=body(never)) as reply:
        lines = reply.aiter_lines()
        async for line in lines:
            if line.startswith("data: ") and "response.in_progress" in line:
                break
        response_id = json.loads(line[6:])["response"]["id"]
        cancelled = await http.post(f"/responses/{response_id}/cancel")
        assert cancelled.json()["status"] == "cancelled"
        rest = [line async for line in lines if line.startswith("data: ")]
    # The spec has no response.cancelled stream event: the stream just ends.
    assert rest == []


async def test_function_calls_stream_as_argument_events(http: httpx.AsyncClient) -> None:
    call = {"name": "get_weather", "arguments": {"city": "Paris"}}
    scenario = script(30, status="completed", function_calls=[call])
    events = events_of(
        await http.post("/responses", json=body(scenario, tools=function_tools("get_weather")))
    )
    types = [e["type"] for e in events]
    assert "response.function_call_arguments.done" in types
    assert "response.output_text.delta" not in types
    assert events[-1]["response"]["output"][0]["type"] == "function_call"


def test_deltas_are_spread_over_the_in_progress_step() -> None:
    """Pure: on a manual clock, each word comes at its own instant inside the step."""
    clock = FakeClock()
    state = FakeState(clock=clock, wall_clock=clock.wall)
    params = response_params({"model": "gpt-4o", "input": "Hi", "background": True})
    response = state.create_response(params, parse_script(json.loads(script(1000))), streamed=True)
    log = response.stream
    assert isinstance(log, StreamLog)
    clock.advance(0.02 + 0.5)
    response.advance(clock())
    log.release(clock())
    half = deltas(log.events)
    assert 0 < len(half) < len(TEXT) and TEXT.startswith(half)
    clock.advance(0.6)
    response.advance(clock())
    assert deltas(log.events) == TEXT and log.ended
    times = [t for t, e in zip(log.times, log.events, strict=True) if "delta" in e]
    assert times == sorted(times) and len(set(times)) == len(times)


async def test_the_control_log_says_when_each_event_was_emitted(
    http: httpx.AsyncClient, live: FakeServer
) -> None:
    events = events_of(await http.post("/responses", json=body(script(100))))
    response_id = events[0]["response"]["id"]
    async with httpx.AsyncClient(base_url=live.root_url) as control:
        log = (await control.get(f"/_fake/responses/{response_id}/stream")).json()
        plain = await http.post("/responses", json={**body(script()), "stream": False})
        missing = await control.get(f"/_fake/responses/{plain.json()['id']}/stream")
    assert [e["type"] for e in log["events"]] == [e["type"] for e in events]
    assert log["ended"] is True
    times = [e["time"] for e in log["events"]]
    first_delta = next(e for e in log["events"] if e["type"] == "response.output_text.delta")
    # The first word comes after the in_progress step began, inside it.
    assert times[2] < first_delta["time"] < times[-1]
    assert missing.status_code == 404
