"""Assistants runs: lifecycles driven by a manual clock, race errors, tool outputs, lists."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from runpoller_fake import FakeState
from runpoller_fake.testing import FakeClock

WALL_START = FakeClock().wall_start


async def create_run(client: httpx.AsyncClient, scenario: str | dict[str, Any]) -> dict[str, Any]:
    if not isinstance(scenario, str):
        scenario = json.dumps(scenario)
    reply = await client.post(
        "/threads/runs", json={"assistant_id": "asst_1", "metadata": {"fake_scenario": scenario}}
    )
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def run_url(run: dict[str, Any], suffix: str = "") -> str:
    return f"/threads/{run['thread_id']}/runs/{run['id']}{suffix}"


async def get_run(client: httpx.AsyncClient, run: dict[str, Any]) -> dict[str, Any]:
    reply = await client.get(run_url(run))
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def submit(
    client: httpx.AsyncClient, run: dict[str, Any], outputs: list[dict[str, Any]]
) -> httpx.Response:
    return await client.post(run_url(run, "/submit_tool_outputs"), json={"tool_outputs": outputs})


def pending_calls(run: dict[str, Any]) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    return calls


async def test_statuses_follow_the_script_to_the_millisecond(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    script = {
        "steps": [
            {"status": "queued", "ms": 100},
            {"status": "in_progress", "ms": 2000},
            {"status": "completed", "messages": ["done"], "usage": {"prompt_tokens": 7}},
        ]
    }
    run = await create_run(client, script)
    assert run["status"] == "queued"
    assert run["created_at"] == int(WALL_START)
    assert run["expires_at"] == int(WALL_START) + 600
    clock.advance(0.0999)
    assert (await get_run(client, run))["status"] == "queued"
    clock.advance(0.0001)
    run = await get_run(client, run)
    assert (run["status"], run["started_at"], run["usage"]) == ("in_progress", WALL_START, None)
    clock.advance(5)  # one poll long after both boundaries: timestamps still exact
    run = await get_run(client, run)
    assert run["status"] == "completed"
    assert run["completed_at"] == int(WALL_START + 2.1)
    assert run["expires_at"] is None
    assert run["usage"] == {"prompt_tokens": 7, "completion_tokens": 12, "total_tokens": 19}
    assert run["required_action"] is None and run["last_error"] is None


async def test_default_scenario_completes_in_about_300ms(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    reply = await client.post("/threads/runs", json={"assistant_id": "asst_1"})
    run = reply.json()
    clock.advance(0.29)
    assert (await get_run(client, run))["status"] == "in_progress"
    clock.advance(0.01)
    assert (await get_run(client, run))["status"] == "completed"


@pytest.mark.parametrize(
    ("scenario", "status", "field", "value"),
    [
        ("fail", "failed", "last_error", {"code": "server_error"}),
        ("incomplete", "incomplete", "incomplete_details", {"reason": "max_completion_tokens"}),
    ],
)
async def test_failed_and_incomplete_runs(
    client: httpx.AsyncClient,
    clock: FakeClock,
    scenario: str,
    status: str,
    field: str,
    value: dict[str, str],
) -> None:
    run = await create_run(client, scenario)
    clock.advance(1)
    run = await get_run(client, run)
    assert run["status"] == status
    assert value.items() <= run[field].items()
    assert run["usage"] is not None


async def test_cancel_goes_through_cancelling(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "slow_cancel")
    clock.advance(10)
    assert (await get_run(client, run))["status"] == "in_progress"
    reply = await client.post(run_url(run, "/cancel"))
    assert reply.status_code == 200
    assert reply.json()["status"] == "cancelling"
    clock.advance(0.999)
    assert (await get_run(client, run))["status"] == "cancelling"
    again = await client.post(run_url(run, "/cancel"))
    assert again.status_code == 400
    assert again.json()["error"]["message"] == "Cannot cancel run with status 'cancelling'."
    clock.advance(0.001)
    run = await get_run(client, run)
    assert run["status"] == "cancelled"
    assert run["cancelled_at"] == int(WALL_START + 11)


async def test_cancel_on_a_terminal_run_names_its_status(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, "complete")
    clock.advance(1)
    reply = await client.post(run_url(run, "/cancel"))
    assert reply.status_code == 400
    assert reply.json()["error"] == {
        "message": "Cannot cancel run with status 'completed'.",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


async def test_cancel_can_lose_to_completion(client: httpx.AsyncClient, clock: FakeClock) -> None:
    script = {
        "steps": [{"status": "in_progress"}],
        "cancel_ms": 50,
        "cancel_outcome": "completed",
    }
    run = await create_run(client, script)
    assert (await client.post(run_url(run, "/cancel"))).json()["status"] == "cancelling"
    clock.advance(0.05)
    assert (await get_run(client, run))["status"] == "completed"


async def test_cancel_in_requires_action_cancels_the_tool_step(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, "requires_action")
    clock.advance(0.2)
    assert (await get_run(client, run))["status"] == "requires_action"
    cancelling = (await client.post(run_url(run, "/cancel"))).json()
    assert cancelling["status"] == "cancelling"
    assert cancelling["required_action"] is None
    clock.advance(0.1)
    assert (await get_run(client, run))["status"] == "cancelled"
    steps = (await client.get(run_url(run, "/steps"))).json()["data"]
    assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "cancelled")]


async def test_submit_outside_requires_action_names_the_status(
    client: httpx.AsyncClient,
) -> None:
    run = await create_run(client, "requires_action")
    reply = await submit(client, run, [{"tool_call_id": "call_x", "output": "x"}])
    assert reply.status_code == 400
    assert reply.json()["error"]["message"] == (
        'Runs in status "queued" do not accept tool outputs.'
    )
    assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_one_round_of_tool_calls(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "requires_action")
    clock.advance(0.2)
    run = await get_run(client, run)
    assert run["status"] == "requires_action"
    assert run["expires_at"] == int(WALL_START) + 600
    [call] = pending_calls(run)
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert [tool["function"]["name"] for tool in run["tools"]] == ["get_weather"]
    reply = await submit(client, run, [{"tool_call_id": call["id"], "output": "sunny"}])
    assert reply.status_code == 200
    assert reply.json()["status"] == "queued"
    clock.advance(0.0001)
    assert (await get_run(client, run))["status"] == "in_progress"
    clock.advance(0.15)
    run = await get_run(client, run)
    assert run["status"] == "completed"
    steps = (await client.get(run_url(run, "/steps"), params={"order": "asc"})).json()["data"]
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
    tool_call = steps[0]["step_details"]["tool_calls"][0]
    assert tool_call["function"]["output"] == "sunny"
    assert steps[0]["status"] == "completed"


async def test_two_rounds(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "two_rounds")
    names = []
    for _ in range(2):
        clock.advance(0.2)
        run = await get_run(client, run)
        assert run["status"] == "requires_action"
        calls = pending_calls(run)
        names.append(calls[0]["function"]["name"])
        outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in calls]
        assert (await submit(client, run, outputs)).status_code == 200
    clock.advance(0.2)
    assert (await get_run(client, run))["status"] == "completed"
    assert names == ["get_weather", "get_time"]


async def test_parallel_calls_need_exactly_one_output_each(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, "parallel_calls")
    clock.advance(0.2)
    calls = pending_calls(await get_run(client, run))
    assert len(calls) == 3
    assert len({call["id"] for call in calls}) == 3
    outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in calls]

    missing = await submit(client, run, outputs[:2])
    assert missing.status_code == 400
    assert calls[2]["id"] in missing.json()["error"]["message"]
    assert missing.json()["error"]["param"] == "tool_outputs"

    unknown = await submit(client, run, [*outputs, {"tool_call_id": "call_nope", "output": "x"}])
    assert unknown.status_code == 400
    assert "call_nope" in unknown.json()["error"]["message"]

    duplicated = await submit(client, run, [*outputs, outputs[0]])
    assert duplicated.status_code == 400
    assert calls[0]["id"] in duplicated.json()["error"]["message"]

    assert (await get_run(client, run))["status"] == "requires_action"
    assert (await submit(client, run, outputs)).json()["status"] == "queued"


async def test_submit_body_is_checked_against_the_spec(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, "requires_action")
    clock.advance(0.2)
    [call] = pending_calls(await get_run(client, run))
    reply = await submit(client, run, [{"tool_call_id": call["id"], "output": {"not": "a str"}}])
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert "SubmitToolOutputsRunRequest" in error["message"]
    assert "/tool_outputs/0/output" in error["message"]
    assert error["param"] == "tool_outputs.0.output"


async def test_bad_arguments_are_passed_through_verbatim(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, "bad_arguments")
    clock.advance(0.2)
    [call] = pending_calls(await get_run(client, run))
    assert call["function"]["arguments"] == '{"city": "Paris"'
    with pytest.raises(json.JSONDecodeError):
        json.loads(call["function"]["arguments"])


async def test_requires_action_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "expire")  # expires_in_s 0.5, asks for tools at 0.2 s
    clock.advance(0.2)
    run = await get_run(client, run)
    assert run["status"] == "requires_action"
    assert run["expires_at"] == int(WALL_START + 0.5)
    clock.advance(0.2999)
    assert (await get_run(client, run))["status"] == "requires_action"
    clock.advance(0.0001)  # 0.5 s after creation, not after the wait began
    run = await get_run(client, run)
    assert run["status"] == "expired"
    assert run["required_action"] is None and run["expires_at"] is None
    late = await submit(client, run, [{"tool_call_id": "call_x", "output": "x"}])
    assert late.json()["error"]["message"] == 'Runs in status "expired" do not accept tool outputs.'
    [step] = (await client.get(run_url(run, "/steps"))).json()["data"]
    assert (step["status"], step["expired_at"]) == ("expired", int(WALL_START + 0.5))


def _two_round_script(expires_in_s: float) -> dict[str, Any]:
    ask = {
        "status": "requires_action",
        "expires_in_s": expires_in_s,
        "tool_calls": [{"name": "get_weather"}],
    }
    return {
        "steps": [
            {"status": "queued", "ms": 1000},
            {"status": "in_progress", "ms": 4000},
            ask,
            {"status": "in_progress", "ms": 20_000},
            ask,
            {"status": "completed"},
        ]
    }


async def test_expires_at_is_fixed_at_creation(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """The real API's expires_at is set once: polls and later rounds leave it where it was."""
    run = await create_run(client, _two_round_script(600))
    fixed = int(WALL_START) + 600
    seen = [run["expires_at"]]
    for _ in range(5):  # queued, in_progress: polled over time
        clock.advance(1.2)
        run = await get_run(client, run)
        seen.append(run["expires_at"])
    assert run["status"] == "requires_action"  # entered 5 s after creation
    outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in pending_calls(run)]
    answered = (await submit(client, run, outputs)).json()
    seen.append(answered["expires_at"])
    clock.advance(30)
    run = await get_run(client, run)
    assert run["status"] == "requires_action"  # the second round, 25 s after creation
    seen.append(run["expires_at"])
    assert seen == [fixed] * len(seen)
    outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in pending_calls(run)]
    assert (await submit(client, run, outputs)).status_code == 200
    clock.advance(1)
    run = await get_run(client, run)
    assert (run["status"], run["expires_at"]) == ("completed", None)


async def test_a_round_expires_at_the_runs_expires_at(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, _two_round_script(30))
    clock.advance(5)
    run = await get_run(client, run)
    assert (run["status"], run["expires_at"]) == ("requires_action", int(WALL_START) + 30)
    outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in pending_calls(run)]
    assert (await submit(client, run, outputs)).status_code == 200
    clock.advance(20)  # the second round begins at 25 s: 5 s left of the run's 30
    run = await get_run(client, run)
    assert (run["status"], run["expires_at"]) == ("requires_action", int(WALL_START) + 30)
    clock.advance(4.999)
    assert (await get_run(client, run))["status"] == "requires_action"
    clock.advance(0.001)
    run = await get_run(client, run)
    assert (run["status"], run["expires_at"]) == ("expired", None)
    steps = (await client.get(run_url(run, "/steps"), params={"order": "asc"})).json()["data"]
    assert [(s["status"], s["expired_at"]) for s in steps] == [
        ("completed", None),
        ("expired", int(WALL_START) + 30),
    ]


async def test_a_round_reached_after_expires_at_expires_at_once(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    run = await create_run(client, _two_round_script(10))
    clock.advance(5)
    outputs = [
        {"tool_call_id": c["id"], "output": "ok"} for c in pending_calls(await get_run(client, run))
    ]
    assert (await submit(client, run, outputs)).status_code == 200
    clock.advance(20)  # still in_progress at 10 s; the second round begins at 25 s
    run = await get_run(client, run)
    assert (run["status"], run["required_action"]) == ("expired", None)


async def test_run_that_never_ends(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "never_ends")
    clock.advance(86_400)
    assert (await get_run(client, run))["status"] == "in_progress"


async def test_active_run_locks_its_thread(client: httpx.AsyncClient, clock: FakeClock) -> None:
    run = await create_run(client, "complete")
    body = {"assistant_id": "asst_1"}
    busy = await client.post(f"/threads/{run['thread_id']}/runs", json=body)
    assert busy.status_code == 400
    assert run["id"] in busy.json()["error"]["message"]
    clock.advance(1)
    assert (await client.post(f"/threads/{run['thread_id']}/runs", json=body)).status_code == 200


async def test_unknown_run_and_thread_are_404(client: httpx.AsyncClient) -> None:
    run = await create_run(client, "complete")
    reply = await client.get(f"/threads/{run['thread_id']}/runs/run_nope")
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "No run found with id 'run_nope'."
    reply = await client.get(f"/threads/thread_nope/runs/{run['id']}")
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "No thread found with id 'thread_nope'."


async def test_create_run_body_is_checked(client: httpx.AsyncClient) -> None:
    thread = (await client.post("/threads", json={})).json()
    reply = await client.post(f"/threads/{thread['id']}/runs", json={"model": "gpt-4o"})
    assert reply.status_code == 400
    assert "'assistant_id' is a required property" in reply.json()["error"]["message"]
    reply = await client.post(
        f"/threads/{thread['id']}/runs", json={"assistant_id": "a", "bogus": 1}
    )
    assert reply.status_code == 400
    assert "'bogus' was unexpected" in reply.json()["error"]["message"]


async def test_invalid_scripts_are_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    cases = {
        json.dumps({"steps": [{"status": "completed", "ms": 5}]}): "steps.0",
        json.dumps({"steps": [{"status": "requires_action"}]}): "tool_calls",
        json.dumps({"steps": [{"status": "queued", "ms": -1}]}): "steps.0.ms",
        json.dumps({"steps": [{"status": "in_progress"}, {"status": "completed"}]}): "steps.1",
        json.dumps({"steps": [{"status": "completed"}], "faults": [{"on": "get_run"}]}): "faults.0",
        json.dumps(
            {
                "steps": [
                    {"status": "requires_action", "expires_in_s": 5, "tool_calls": [{"name": "f"}]},
                    {"status": "requires_action", "expires_in_s": 9, "tool_calls": [{"name": "f"}]},
                ]
            }
        ): "steps.0.expires_in_s: a run has one expires_at",
        "no_such_scenario": "unknown scenario 'no_such_scenario'",
        "{not json": "not valid JSON",
    }
    for scenario, expected in cases.items():
        reply = await client.post(
            "/threads/runs", json={"assistant_id": "a", "metadata": {"fake_scenario": scenario}}
        )
        assert reply.status_code == 400, scenario
        error = reply.json()["error"]
        assert expected in error["message"], (scenario, error["message"])
        assert error["param"] == "metadata.fake_scenario"


async def test_messages_pagination_and_run_filter(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    texts = [f"part {i}" for i in range(5)]
    script = {"steps": [{"status": "completed", "messages": texts}]}
    reply = await client.post(
        "/threads/runs",
        json={
            "assistant_id": "asst_1",
            "thread": {"messages": [{"role": "user", "content": "Hi"}]},
            "metadata": {"fake_scenario": json.dumps(script)},
        },
    )
    run = reply.json()
    url = f"/threads/{run['thread_id']}/messages"

    everything = (await client.get(url)).json()
    assert [m["role"] for m in everything["data"]] == ["assistant"] * 5 + ["user"]
    assert everything["data"][0]["content"][0]["text"]["value"] == "part 4"  # desc by default

    seen: list[str] = []
    params: dict[str, Any] = {"run_id": run["id"], "order": "asc", "limit": 2}
    while True:
        page = (await client.get(url, params=params)).json()
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
        seen += [m["content"][0]["text"]["value"] for m in page["data"]]
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    assert seen == texts
    assert all(m["run_id"] == run["id"] for m in everything["data"][:5])

    ids = [m["id"] for m in everything["data"][:5]][::-1]  # asc
    params = {"run_id": run["id"], "order": "asc", "limit": 2, "before": ids[3]}
    before = (await client.get(url, params=params)).json()
    assert [m["id"] for m in before["data"]] == ids[1:3]
    assert before["has_more"] is True

    empty = (await client.get(url, params={"run_id": "run_other"})).json()
    assert empty == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    for bad in (0, 101):
        reply = await client.get(url, params={"limit": bad})
        assert reply.status_code == 400
        assert reply.json()["error"]["param"] == "limit"


async def test_user_messages_from_create_run(client: httpx.AsyncClient, clock: FakeClock) -> None:
    thread = (
        await client.post("/threads", json={"messages": [{"role": "user", "content": "one"}]})
    ).json()
    reply = await client.post(
        f"/threads/{thread['id']}/runs",
        json={
            "assistant_id": "asst_1",
            "additional_messages": [{"role": "user", "content": [{"type": "text", "text": "two"}]}],
        },
    )
    assert reply.status_code == 200
    clock.advance(1)
    page = (await client.get(f"/threads/{thread['id']}/messages", params={"order": "asc"})).json()
    texts = [m["content"][0]["text"]["value"] for m in page["data"]]
    assert texts == ["one", "two", "Hello from the fake OpenAI server."]


async def test_objects_echo_the_request(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/threads/runs",
        json={
            "assistant_id": "asst_1",
            "model": "gpt-4.1-mini",
            "instructions": "Be brief.",
            "temperature": 0.2,
            "metadata": {"fake_scenario": "complete", "user": "u1"},
        },
    )
    run = reply.json()
    assert run["model"] == "gpt-4.1-mini"
    assert run["instructions"] == "Be brief."
    assert run["temperature"] == 0.2
    assert run["metadata"] == {"fake_scenario": "complete", "user": "u1"}


async def test_state_is_inspectable_in_process(client: httpx.AsyncClient, state: FakeState) -> None:
    run = await create_run(client, "complete")
    assert state.runs[run["id"]].status == "queued"
    assert state.stats.created["run"] == 1
