"""Auth, headers, injected faults, stats, overlapping polls and the control endpoints."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from runpoller_fake import FakeServer, FakeState
from runpoller_fake.app import BETA_MESSAGE
from runpoller_fake.testing import FakeClock, check_reply


async def create_run(
    control: httpx.AsyncClient, script: str | dict[str, Any] = "complete"
) -> dict[str, Any]:
    reply = await control.post("runs", json={"script": script})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def run_url(run: dict[str, Any]) -> str:
    return f"/threads/{run['thread_id']}/runs/{run['id']}"


async def test_missing_or_wrong_key_is_401(server: FakeServer) -> None:
    server.state.api_keys = {"sk-right-key-1234"}
    async with httpx.AsyncClient(
        base_url=server.base_url, event_hooks={"response": [check_reply]}
    ) as http:
        body = {"assistant_id": "asst_1"}
        missing = await http.post("/threads/runs", json=body)
        assert missing.status_code == 401
        assert missing.json()["error"]["message"].startswith("You didn't provide an API key.")
        wrong = await http.post(
            "/threads/runs", json=body, headers={"Authorization": "Bearer sk-wrong-key-9876"}
        )
        assert wrong.status_code == 401
        error = wrong.json()["error"]
        assert error["code"] == "invalid_api_key"
        assert "sk-wrong-key-9876" not in error["message"] and "9876" in error["message"]
        right = await http.post(
            "/threads/runs",
            json=body,
            headers={"Authorization": "Bearer sk-right-key-1234", "OpenAI-Beta": "assistants=v2"},
        )
        assert right.status_code == 200


async def test_assistants_need_the_beta_header(server: FakeServer) -> None:
    async with httpx.AsyncClient(
        base_url=server.base_url, headers={"Authorization": "Bearer sk-x"}
    ) as http:
        for headers in ({}, {"OpenAI-Beta": "assistants=v1"}):
            reply = await http.post("/threads", json={}, headers=headers)
            assert reply.status_code == 400
            assert reply.json()["error"] == {
                "message": BETA_MESSAGE,
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_beta",
            }
        ok = await http.post("/threads", json={}, headers={"OpenAI-Beta": "other=1,assistants=v2"})
        assert ok.status_code == 200


async def test_headers_clients_read(
    client: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    script = {"steps": [{"status": "queued", "ms": 100}, {"status": "completed"}]}
    run = await create_run(control, {**script, "poll_after_ms": 250})
    reply = await client.get(run_url(run))
    assert reply.headers["openai-poll-after-ms"] == "250"
    assert reply.headers["x-request-id"].startswith("req_")
    assert int(reply.headers["openai-processing-ms"]) >= 0
    for name in ("limit", "remaining", "reset"):
        assert reply.headers[f"x-ratelimit-{name}-requests"]
        assert reply.headers[f"x-ratelimit-{name}-tokens"]
    clock.advance(1)
    done = await client.get(run_url(run))
    assert done.json()["status"] == "completed"
    assert "openai-poll-after-ms" not in done.headers


async def test_429_with_retry_headers_then_503_then_success(
    client: httpx.AsyncClient, control: httpx.AsyncClient, state: FakeState
) -> None:
    faults = [
        {"on": "get_run", "status": 429, "retry_after_ms": 200, "retry_after": 1, "times": 2},
        {"on": "get_run", "status": 503, "should_retry": False, "times": 1},
    ]
    run = await create_run(control, {"steps": [{"status": "in_progress"}], "faults": faults})
    first, second, third, fourth = [await client.get(run_url(run)) for _ in range(4)]
    for reply in (first, second):
        assert reply.status_code == 429
        assert reply.headers["retry-after-ms"] == "200"
        assert reply.headers["retry-after"] == "1"
        assert reply.json()["error"]["code"] == "rate_limit_exceeded"
        assert reply.headers["x-request-id"].startswith("req_")
    assert third.status_code == 503
    assert third.headers["x-should-retry"] == "false"
    assert third.json()["error"]["type"] == "server_error"
    assert fourth.status_code == 200
    assert state.stats.status_count("get_run", 429) == 2
    assert state.stats.faults["status"] == 3
    # Faults on one endpoint leave the others alone.
    assert (await client.post(run_url(run) + "/cancel")).status_code == 200


async def test_dropped_connection(
    client: httpx.AsyncClient, control: httpx.AsyncClient, state: FakeState
) -> None:
    faults = [{"on": "any", "drop": True, "skip": 1, "times": 1}]
    run = await create_run(control, {"steps": [{"status": "in_progress"}], "faults": faults})
    assert (await client.get(run_url(run))).status_code == 200
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(run_url(run))
    assert (await client.get(run_url(run))).status_code == 200
    stats = (await control.get("stats")).json()
    assert stats["requests"]["get_run"] == {"200": 2, "dropped": 1}
    assert stats["faults_injected"]["drop"] == 1
    log = (await control.get(f"runs/{run['id']}/log")).json()
    assert [entry["status"] for entry in log] == [200, "dropped", 200]


async def test_latency_is_injected_and_counted(
    client: httpx.AsyncClient, control: httpx.AsyncClient, state: FakeState
) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    state.sleep = sleep
    faults = [{"on": "get_run", "latency_ms": 50}, {"on": "any", "latency_ms": 25, "times": 1}]
    run = await create_run(control, {"steps": [{"status": "in_progress"}], "faults": faults})
    for _ in range(3):
        assert (await client.get(run_url(run))).status_code == 200
    assert slept == pytest.approx([0.075, 0.05, 0.05])
    assert state.stats.faults["latency"] == 4


async def test_server_wide_outage_until_cleared(
    client: httpx.AsyncClient, control: httpx.AsyncClient
) -> None:
    run = await create_run(control)
    reply = await control.post("faults", json={"on": "any", "status": 503})
    assert reply.status_code == 200
    assert reply.json()["faults"][0]["status"] == 503
    for _ in range(3):
        assert (await client.get(run_url(run))).status_code == 503
    assert (await client.post("/threads", json={})).status_code == 503
    assert (await control.get("faults")).json()["faults"][0]["fired"] == 4
    await control.delete("faults")
    assert (await client.get(run_url(run))).status_code == 200


async def test_bad_faults_are_refused(control: httpx.AsyncClient) -> None:
    reply = await control.post(
        "faults", json={"faults": [{"on": "get_run", "drop": True, "status": 500}]}
    )
    assert reply.status_code == 400
    assert "faults.0" in reply.json()["error"]["message"]


async def test_overlapping_polls_are_counted(
    server: FakeServer, control: httpx.AsyncClient, state: FakeState
) -> None:
    release = asyncio.Event()

    async def held(seconds: float) -> None:
        await release.wait()

    state.sleep = held
    faults = [{"on": "get_run", "latency_ms": 100, "times": 1}]
    run = await create_run(control, {"steps": [{"status": "in_progress"}], "faults": faults})
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": "Bearer sk-x", "OpenAI-Beta": "assistants=v2"},
    ) as http:
        slow = asyncio.create_task(http.get(run_url(run)))
        object_stats = state.stats.objects[run["id"]]
        while object_stats.in_flight == 0:
            await asyncio.sleep(0.001)
        fast = await http.get(run_url(run))  # arrives while the first is still being handled
        assert fast.status_code == 200
        release.set()
        assert (await slow).status_code == 200
        assert (await http.get(run_url(run))).status_code == 200  # sequential: no overlap
    stats = (await control.get("stats")).json()
    assert stats["overlapping_polls"] == 1
    assert stats["objects"][run["id"]]["overlapping_polls"] == 1
    assert stats["objects"][run["id"]]["max_in_flight"] == 2
    assert stats["objects"][run["id"]]["polls"] == 3


async def test_named_scenarios_and_the_request_log(
    client: httpx.AsyncClient, control: httpx.AsyncClient, clock: FakeClock
) -> None:
    script = {
        "steps": [
            {"status": "requires_action", "tool_calls": [{"name": "lookup", "id": "call_fixed"}]},
            {"status": "completed", "messages": ["found"]},
        ]
    }
    reply = await control.post("scenarios", json={"name": "lookup_once", "script": script})
    assert reply.status_code == 200
    assert "lookup_once" in (await control.get("scenarios")).json()["registered"]
    run = (
        await client.post(
            "/threads/runs",
            json={"assistant_id": "asst_1", "metadata": {"fake_scenario": "lookup_once"}},
        )
    ).json()
    assert run["status"] == "requires_action"
    assert run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"] == "call_fixed"
    outputs = [{"tool_call_id": "call_fixed", "output": json.dumps({"hits": 3})}]
    clock.advance(1)
    reply = await client.post(run_url(run) + "/submit_tool_outputs", json={"tool_outputs": outputs})
    assert reply.status_code == 200
    log = (await control.get(f"runs/{run['id']}/log")).json()
    assert [entry["endpoint"] for entry in log] == ["create_thread_and_run", "submit_tool_outputs"]
    assert log[1]["tool_outputs"] == outputs
    assert log[1]["time"] == clock.wall_start + 1
    assert log[1]["status"] == 200


async def test_bad_named_scenario_is_refused(control: httpx.AsyncClient) -> None:
    reply = await control.post(
        "scenarios", json={"name": "x", "script": {"steps": [{"status": "done"}]}}
    )
    assert reply.status_code == 400
    assert "steps.0.status" in reply.json()["error"]["message"]


async def test_control_responses_and_reset(
    client: httpx.AsyncClient, control: httpx.AsyncClient, state: FakeState
) -> None:
    reply = await control.post("responses", json={"script": "fail", "model": "gpt-4.1"})
    assert reply.status_code == 200
    response = reply.json()
    assert response["model"] == "gpt-4.1"
    assert (await client.get(f"/responses/{response['id']}")).status_code == 200
    assert (await control.get(f"responses/{response['id']}/log")).status_code == 200
    await control.post("reset")
    assert state.responses == {}
    assert (await control.get("stats")).json()["requests_total"] == 0
    assert (await control.get(f"runs/{response['id']}/log")).status_code == 404


async def test_stats_shape(client: httpx.AsyncClient, control: httpx.AsyncClient) -> None:
    run = await create_run(control)
    await client.get(run_url(run))
    await client.get("/threads/thread_nope/runs/run_nope")
    stats = (await control.get("stats")).json()
    assert stats["requests_total"] == 2
    assert stats["requests"] == {"get_run": {"200": 1, "404": 1}}
    assert stats["by_status"] == {"200": 1, "404": 1}
    assert stats["created"] == {"thread": 1, "run": 1, "response": 0}
    assert stats["objects"][run["id"]] == {
        "kind": "run",
        "requests": 1,
        "polls": 1,
        "overlapping_polls": 0,
        "max_in_flight": 1,
        "by_endpoint": {"get_run": 1},
    }


async def test_unknown_url_and_bad_json(client: httpx.AsyncClient) -> None:
    reply = await client.get("/assistants")
    assert reply.status_code == 404
    assert reply.json()["error"]["message"] == "Invalid URL (GET /v1/assistants)"
    reply = await client.post("/threads/runs", content=b"{nope", headers={"Content-Type": "x"})
    assert reply.status_code == 400
    assert "could not parse the JSON body" in reply.json()["error"]["message"]
