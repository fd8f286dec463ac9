"""Every built-in scenario, played to its end: every reply on the way must match the spec.

The ``client`` fixture validates each reply (objects in every status, lists, errors from the
scenarios' injected faults) against the OpenAPI schema of its endpoint; these tests make sure
every status of every scenario is actually produced, and document what each scenario does.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from runpoller_fake import BUILTIN_SCENARIOS
from runpoller_fake.testing import FakeClock, function_tools

TERMINAL = {"completed", "failed", "incomplete", "expired", "cancelled"}

# The statuses each scenario goes through (repeats squeezed), when driven as the tests do:
# tools answered at once, and a cancel after 0.5 s for runs that never end. Responses declare
# the built-in scenarios' functions on every request, continuations too (nothing carries over).
TOOLS = function_tools("get_weather", "get_time")
_ROUND = "requires_action queued in_progress"
RUN_STATUSES = {
    "complete": "queued in_progress completed",
    "fail": "queued in_progress failed",
    "incomplete": "queued in_progress incomplete",
    "expire": "queued in_progress requires_action expired",
    "never_ends": "queued in_progress cancelling cancelled",
    "slow_cancel": "queued in_progress cancelling cancelled",
    "requires_action": f"queued in_progress {_ROUND} completed",
    "parallel_calls": f"queued in_progress {_ROUND} completed",
    "bad_arguments": f"queued in_progress {_ROUND} completed",
    "two_rounds": f"queued in_progress {_ROUND} {_ROUND} completed",
    "rate_limited": "queued in_progress completed",
    "flaky": "queued in_progress completed",
}
RESPONSE_STATUSES = {
    "complete": "queued in_progress completed",
    "fail": "queued in_progress failed",
    "incomplete": "queued in_progress incomplete",
    "never_ends": "queued in_progress cancelled",
    "slow_cancel": "queued in_progress cancelled",
    "requires_action": "queued in_progress completed in_progress completed",
    "parallel_calls": "queued in_progress completed in_progress completed",
    "bad_arguments": "queued in_progress completed in_progress completed",
    "two_rounds": "queued in_progress completed in_progress completed in_progress completed",
    "rate_limited": "queued in_progress completed",
    "flaky": "queued in_progress completed",
}


def test_every_builtin_scenario_is_covered() -> None:
    assert set(RUN_STATUSES) == set(BUILTIN_SCENARIOS["run"])
    assert set(RESPONSE_STATUSES) == set(BUILTIN_SCENARIOS["response"])


async def retrying(
    client: httpx.AsyncClient, method: str, url: str, **kwargs: Any
) -> dict[str, Any]:
    """Send until a 200, as a client with retries would (the reply hook checks each error)."""
    for _ in range(5):
        try:
            reply = await client.request(method, url, **kwargs)
        except httpx.RemoteProtocolError:
            continue
        if reply.status_code == 200:
            body: dict[str, Any] = reply.json()
            return body
        assert reply.status_code in (429, 503), reply.text
    raise AssertionError("no 200 after 5 attempts")


def squeeze(statuses: list[str]) -> list[str]:
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


@pytest.mark.parametrize("scenario", sorted(RUN_STATUSES))
async def test_run_scenario_replies_match_the_spec(
    client: httpx.AsyncClient, clock: FakeClock, scenario: str
) -> None:
    body = {"assistant_id": "asst_1", "metadata": {"fake_scenario": scenario}}
    run = await retrying(client, "POST", "/threads/runs", json=body)
    url = f"/threads/{run['thread_id']}/runs/{run['id']}"
    statuses = [run["status"]]
    for tick in range(100):
        if run["status"] in TERMINAL:
            break
        if run["status"] == "requires_action" and scenario != "expire":
            calls = run["required_action"]["submit_tool_outputs"]["tool_calls"]
            outputs = [{"tool_call_id": call["id"], "output": "ok"} for call in calls]
            run = await retrying(
                client, "POST", url + "/submit_tool_outputs", json={"tool_outputs": outputs}
            )
            statuses.append(run["status"])
        if tick == 10 and run["status"] == "in_progress":
            run = await retrying(client, "POST", url + "/cancel")
            statuses.append(run["status"])
        clock.advance(0.05)
        run = await retrying(client, "GET", url)
        statuses.append(run["status"])
        await retrying(client, "GET", url + "/steps")
        messages_url = f"/threads/{run['thread_id']}/messages"
        await retrying(client, "GET", messages_url, params={"run_id": run["id"]})
    assert squeeze(statuses) == RUN_STATUSES[scenario].split()


@pytest.mark.parametrize("scenario", sorted(RESPONSE_STATUSES))
async def test_response_scenario_replies_match_the_spec(
    client: httpx.AsyncClient, clock: FakeClock, scenario: str
) -> None:
    body = {
        "model": "gpt-4o",
        "input": "Hi",
        "background": True,
        "store": True,
        "tools": TOOLS,
        "metadata": {"fake_scenario": scenario},
    }
    response = await retrying(client, "POST", "/responses", json=body)
    statuses = [response["status"]]
    for tick in range(100):
        calls = [item for item in response["output"] if item["type"] == "function_call"]
        if response["status"] == "completed" and calls:
            outputs = [
                {"type": "function_call_output", "call_id": call["call_id"], "output": "ok"}
                for call in calls
            ]
            follow_up = {
                "model": "gpt-4o",
                "background": True,
                "tools": TOOLS,
                "input": outputs,
                "previous_response_id": response["id"],
            }
            response = await retrying(client, "POST", "/responses", json=follow_up)
            statuses.append(response["status"])
        elif response["status"] in TERMINAL:
            break
        if tick == 10 and response["status"] == "in_progress":
            response = await retrying(client, "POST", f"/responses/{response['id']}/cancel")
            statuses.append(response["status"])
        clock.advance(0.05)
        response = await retrying(client, "GET", f"/responses/{response['id']}")
        statuses.append(response["status"])
    assert squeeze(statuses) == RESPONSE_STATUSES[scenario].split()
