"""The Agents backend's mapping of a turn and its session onto an Observation."""

from __future__ import annotations

from typing import Any

from runpoller.backends.agents import observe, output_text
from runpoller.engine import Status

TURN = {"id": "turn_1", "object": "agent.session.turn", "agent_id": "agent_1", "status": "waiting"}


def session(*actions: dict[str, Any], status: str = "requires_action") -> dict[str, Any]:
    return {
        "id": "sess_1",
        "status": status,
        "required_actions": list(actions),
        "agent": {"id": "agent_1", "model": "gpt-5"},
        "error": None,
    }


def call(call_id: str, turn_id: str = "turn_1") -> dict[str, Any]:
    return {
        "type": "function_call",
        "call_id": call_id,
        "name": "f",
        "arguments": {"a": 1},
        "turn_id": turn_id,
    }


def test_only_this_turns_unanswered_calls_are_asked() -> None:
    seen = observe(
        TURN, session(call("c1"), call("c2"), call("c9", "turn_other")), frozenset({"c2"})
    )
    assert seen.status is Status.REQUIRES_ACTION
    assert [(c.id, c.arguments, c.turn_id) for c in seen.tool_calls] == [
        ("c1", '{"a": 1}', "turn_1")
    ]
    assert (seen.assistant_id, seen.model) == ("agent_1", "gpt-5")
    everything_answered = observe(TURN, session(call("c1")), frozenset({"c1"}))
    assert everything_answered.status is Status.IN_PROGRESS
    assert everything_answered.api_status == "waiting"


def test_a_failed_session_fails_an_unfinished_turn() -> None:
    failed = {**session(status="failed"), "error": "Sandbox lost."}
    seen = observe({**TURN, "status": "in_progress"}, failed)
    assert (seen.status, seen.error) == (Status.FAILED, ("session_failed", "Sandbox lost."))
    done = observe({**TURN, "status": "completed"}, failed)
    assert done.status is Status.COMPLETED


def test_an_unsupported_action_is_named_and_nothing_is_asked() -> None:
    sign_in = {
        "type": "computer_use_approval_request",
        "request_id": "r1",
        "turn_id": "turn_1",
        "request": {"type": "browser_authentication", "fields": [], "options": []},
    }
    seen = observe(TURN, session(call("c1"), sign_in))
    assert seen.tool_calls == () and "browser sign-in" in seen.unsupported_action
    reconnect = observe(TURN, session({"type": "environment_connection", "environment_id": "e1"}))
    assert "environment e1" in reconnect.unsupported_action
    unknown = observe({**TURN, "status": "paused"}, session(status="in_progress"))
    assert unknown.status is Status.UNKNOWN and unknown.api_status == "paused"


def test_output_text_joins_the_assistant_messages() -> None:
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "A"}]},
        {"type": "function_call", "call_id": "c1"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "B"}]},
    ]
    assert output_text(items) == "A\n\nB"
    assert output_text([]) is None
