"""Responses background mode: lifecycle, cancel, function calls and continuations."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from runpoller_fake import FakeServer
from runpoller_fake.testing import FakeClock, function_tools

WEATHER = function_tools("get_weather")


async def create(
    client: httpx.AsyncClient, scenario: str | dict[str, Any] | None = None, **extra: Any
) -> httpx.Response:
    body: dict[str, Any] = {"model": "gpt-4o", "input": "Hi", "background": True, "store": True}
    if scenario is not None:
        if not isinstance(scenario, str):
            scenario = json.dumps(scenario)
        body["metadata"] = {"fake_scenario": scenario}
    return await client.post("/responses", json={**body, **extra})


async def get(client: httpx.AsyncClient, response_id: str) -> dict[str, Any]:
    reply = await client.get(f"/responses/{response_id}")
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def outputs_for(response: dict[str, Any]) -> list[dict[str, str]]:
    return [
        {"type": "function_call_output", "call_id": item["call_id"], "output": "ok"}
        for item in response["output"]
        if item["type"] == "function_call"
    ]


async def test_background_lifecycle(client: httpx.AsyncClient, clock: FakeClock) -> None:
    reply = await create(client)
    assert reply.status_code == 200
    created = reply.json()
    assert (created["status"], created["background"], created["output"]) == ("queued", True, [])
    assert "usage" not in created and created["completed_at"] is None
    clock.advance(0.05)
    assert (await get(client, created["id"]))["status"] == "in_progress"
    clock.advance(0.25)
    done = await get(client, created["id"])
    assert done["status"] == "completed"
    assert done["completed_at"] == int(clock.wall_start + 0.3)
    [message] = done["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"][0]["type"] == "output_text"
    assert message["content"][0]["text"] == "Hello from the fake OpenAI server."
    assert done["usage"]["total_tokens"] == 37


@pytest.mark.parametrize(
    ("scenario", "status", "field", "value"),
    [
        ("fail", "failed", "error", {"code": "server_error"}),
        ("incomplete", "incomplete", "incomplete_details", {"reason": "max_output_tokens"}),
    ],
)
async def test_failed_and_incomplete(
    client: httpx.AsyncClient,
    clock: FakeClock,
    scenario: str,
    status: str,
    field: str,
    value: dict[str, str],
) -> None:
    created = (await create(client, scenario)).json()
    clock.advance(1)
    response = await get(client, created["id"])
    assert response["status"] == status
    assert value.items() <= response[field].items()


async def test_cancel_is_immediate_and_idempotent(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    created = (await create(client, "never_ends")).json()
    clock.advance(5)
    first = await client.post(f"/responses/{created['id']}/cancel")
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    second = await client.post(f"/responses/{created['id']}/cancel")
    assert second.status_code == 200 and second.json() == first.json()
    clock.advance(5)
    assert (await get(client, created["id"]))["status"] == "cancelled"


async def test_cancel_of_a_finished_response_is_refused(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    created = (await create(client, "complete")).json()
    clock.advance(1)
    reply = await client.post(f"/responses/{created['id']}/cancel")
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == "Cannot cancel a completed response."


async def test_only_background_mode(client: httpx.AsyncClient) -> None:
    reply = await create(client, background=False)
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "background"


async def test_no_beta_header_needed_but_a_key_is(server: FakeServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as bare:
        body = {"model": "gpt-4o", "input": "Hi", "background": True}
        assert (await bare.post("/responses", json=body)).status_code == 401
        headers = {"Authorization": "Bearer sk-x"}
        assert (await bare.post("/responses", json=body, headers=headers)).status_code == 200


async def test_function_calls_and_continuation(client: httpx.AsyncClient, clock: FakeClock) -> None:
    first = (await create(client, "parallel_calls", tools=WEATHER)).json()
    clock.advance(0.2)
    first = await get(client, first["id"])
    assert first["status"] == "completed"
    calls = [item for item in first["output"] if item["type"] == "function_call"]
    assert [json.loads(c["arguments"])["city"] for c in calls] == ["Paris", "London", "Tokyo"]
    assert all(c["id"].startswith("fc_") and c["call_id"].startswith("call_") for c in calls)
    assert first["tools"] == WEATHER

    reply = await create(client, previous_response_id=first["id"], input=outputs_for(first))
    assert reply.status_code == 200, reply.text
    second = reply.json()
    assert second["previous_response_id"] == first["id"]
    assert second["tools"] == [], "tools are not carried over"
    assert second["status"] == "in_progress"  # the script carries on after the function calls
    clock.advance(0.15)
    second = await get(client, second["id"])
    assert second["status"] == "completed"
    assert second["output"][0]["content"][0]["text"] == "It is sunny in Paris."


async def test_continuation_rejects_bad_call_ids(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = (await create(client, "parallel_calls", tools=WEATHER)).json()
    clock.advance(0.2)
    first = await get(client, first["id"])
    outputs = outputs_for(first)
    assert len(outputs) == 3

    wrong = [*outputs[:2], {**outputs[2], "call_id": "call_bogus"}]
    reply = await create(client, previous_response_id=first["id"], input=wrong)
    assert reply.status_code == 400
    assert "call_bogus" in reply.json()["error"]["message"]

    reply = await create(client, previous_response_id=first["id"], input=outputs[:2])
    assert reply.status_code == 400
    assert outputs[2]["call_id"] in reply.json()["error"]["message"]

    reply = await create(client, input=outputs)
    assert reply.status_code == 400, "outputs without the calls they answer"


async def test_continuation_needs_a_completed_previous_response(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    reply = await create(client, previous_response_id="resp_missing", input="Hi")
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "Previous response with id 'resp_missing' not found."
    running = (await create(client, "never_ends")).json()
    reply = await create(client, previous_response_id=running["id"], input="Hi")
    assert reply.status_code == 400
    assert "'queued'" in reply.json()["error"]["message"]


async def test_plain_text_continuation_of_a_message(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first = (await create(client, "complete")).json()
    clock.advance(1)
    reply = await create(client, previous_response_id=first["id"], input="And then?")
    assert reply.status_code == 200
    clock.advance(1)
    assert (await get(client, reply.json()["id"]))["status"] == "completed"


async def test_create_body_is_checked_against_the_spec(client: httpx.AsyncClient) -> None:
    reply = await create(client, input=[{"type": "function_call_output", "output": 5}])
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "CreateResponse" in error["message"] and error["param"].startswith("input")


async def test_run_only_statuses_are_refused_for_responses(client: httpx.AsyncClient) -> None:
    reply = await create(client, "expire")
    assert reply.status_code == 400
    script = {"steps": [{"status": "requires_action", "tool_calls": [{"name": "f"}]}]}
    reply = await create(client, script)
    assert reply.status_code == 400
    assert "steps.0.status" in reply.json()["error"]["message"]


async def test_unknown_response_is_404(client: httpx.AsyncClient) -> None:
    reply = await client.get("/responses/resp_nope")
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "Response with id 'resp_nope' not found."


def function_call_names(response: dict[str, Any]) -> list[str]:
    return [item["name"] for item in response["output"] if item["type"] == "function_call"]


def message_texts(response: dict[str, Any]) -> list[str]:
    return [
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    ]


async def answered(
    client: httpx.AsyncClient, clock: FakeClock, previous: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """Continue ``previous`` with an output for each of its calls; the continuation, finished."""
    reply = await create(
        client, previous_response_id=previous["id"], input=outputs_for(previous), **extra
    )
    assert reply.status_code == 200, reply.text
    clock.advance(0.2)
    return await get(client, reply.json()["id"])


async def test_tools_are_not_carried_over_through_previous_response_id(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """A continuation has what its own request sent: no tools, instructions or tool_choice
    from the response it continues, so a second round it declares no tool for is not made."""
    tools = function_tools("get_weather", "get_time")
    first = (
        await create(
            client, "two_rounds", tools=tools, instructions="Be brief.", tool_choice="required"
        )
    ).json()
    clock.advance(0.2)
    first = await get(client, first["id"])
    assert function_call_names(first) == ["get_weather"]
    second = await answered(client, clock, first)
    assert (second["tools"], second["instructions"], second["tool_choice"]) == ([], None, "auto")
    assert second["status"] == "completed"
    assert function_call_names(second) == [], "the model cannot call get_time: not in tools"
    assert message_texts(second) == ["I cannot call get_time: this request gave me no such tool."]
    assert second["usage"]["total_tokens"] > 0
    # A continuation of it needs no function_call_output: there is no call to answer.
    third = await create(client, previous_response_id=second["id"], input="And then?")
    assert third.status_code == 200, third.text


async def test_a_continuation_that_sends_its_tools_again_can_call_them(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    tools = function_tools("get_weather", "get_time")
    first = (await create(client, "two_rounds", tools=tools)).json()
    clock.advance(0.2)
    first = await get(client, first["id"])
    second = await answered(client, clock, first, tools=tools)
    assert second["tools"] == tools
    assert function_call_names(second) == ["get_time"]
    third = await answered(client, clock, second)
    assert message_texts(third) == ["It is sunny in Paris."]


async def test_a_response_without_tools_calls_no_function(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    created = (await create(client, "requires_action")).json()
    assert created["tools"] == []
    clock.advance(0.2)
    done = await get(client, created["id"])
    assert done["status"] == "completed" and function_call_names(done) == []
    assert message_texts(done) == ["I cannot call get_weather: this request gave me no such tool."]


@pytest.mark.parametrize(
    ("tool_choice", "names"),
    [
        ("auto", ["f", "g"]),
        ("required", ["f", "g"]),
        ("none", []),
        ({"type": "function", "name": "g"}, ["g"]),
        (
            {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]},
            ["f"],
        ),
    ],
)
async def test_only_declared_functions_that_tool_choice_allows_are_called(
    client: httpx.AsyncClient, clock: FakeClock, tool_choice: Any, names: list[str]
) -> None:
    calls = [{"name": "f"}, {"name": "g"}, {"name": "h"}]  # h is declared nowhere
    script = {"steps": [{"status": "completed", "function_calls": calls}]}
    reply = await create(client, script, tools=function_tools("f", "g"), tool_choice=tool_choice)
    assert reply.status_code == 200, reply.text
    done = await get(client, reply.json()["id"])
    assert function_call_names(done) == names
    if not names:
        assert message_texts(done) == ["I cannot call f, g, h: this request gave me no such tool."]


async def test_the_control_route_declares_the_scripts_functions_unless_told(
    control: httpx.AsyncClient, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    by_default = (await control.post("responses", json={"script": "two_rounds"})).json()
    assert [tool["name"] for tool in by_default["tools"]] == ["get_weather", "get_time"]
    bare = (await control.post("responses", json={"script": "two_rounds", "tools": []})).json()
    clock.advance(0.2)
    assert function_call_names(await get(client, by_default["id"])) == ["get_weather"]
    assert function_call_names(await get(client, bare["id"])) == []
    wrong = await control.post("responses", json={"script": "two_rounds", "tools": "all"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "tools"
