"""Answers limited to choices (approvals) and actions no app can answer (agent turns)."""

from __future__ import annotations

from runpoller import engine
from runpoller.engine import (
    ActionRequired,
    CancelReason,
    CancelStarted,
    Finished,
    Observation,
    Op,
    Phase,
    Policy,
    ReplyRejected,
    RunState,
    Status,
    ToolCallRequest,
    ToolFailure,
)

T0 = 1_000_000.0
POLICY = Policy(cancel_grace_s=30)
APPROVAL = ToolCallRequest("mcpr_1", "ask", "{}", kind="mcp_approval", choices=("approve", "deny"))
FUNCTION = ToolCallRequest("call_1", "get_weather", "{}", turn_id="turn_1")


def asked(*calls: ToolCallRequest) -> RunState:
    state = engine.new_state("turn_1", now=T0, timeout_s=60, interval_s=1)
    seen = Observation(Status.REQUIRES_ACTION, "requires_action", "turn_1", tool_calls=calls)
    decision = engine.on_observation(state, Op.GET, seen, T0, POLICY)
    assert any(isinstance(e, ActionRequired) for e in decision.effects)
    return decision.state


def test_an_answer_outside_the_choices_is_rejected_naming_them() -> None:
    state = asked(APPROVAL, FUNCTION)
    assert state.pending_choices == (("approve", "deny"), ())
    outputs = [("mcpr_1", "yes"), ("call_1", "anything goes")]
    decision = engine.on_reply(state, 1, outputs, T0 + 1, POLICY)
    (rejected,) = decision.effects
    assert isinstance(rejected, ReplyRejected)
    assert rejected.problems == ("output for 'mcpr_1' must be 'approve' or 'deny', got 'yes'",)
    good = engine.on_reply(state, 1, [("mcpr_1", "deny"), ("call_1", "x")], T0 + 1, POLICY)
    assert good.next is not None and good.next.op is Op.SUBMIT
    assert good.next.outputs == (("mcpr_1", "deny"), ("call_1", "x"))


def test_choices_survive_a_restart_and_end_with_the_round() -> None:
    state = asked(APPROVAL)
    assert RunState.from_json(state.to_json()) == state
    back = engine.on_observation(
        state, Op.GET, Observation(Status.IN_PROGRESS, "in_progress", "turn_1"), T0 + 1, POLICY
    )
    assert back.state.pending_choices == () and back.state.phase is Phase.POLLING


def test_an_unsupported_action_cancels_at_once_and_ends_refused() -> None:
    state = engine.new_state("turn_1", now=T0, timeout_s=60, interval_s=1)
    waiting = Observation(
        Status.IN_PROGRESS, "waiting", "turn_1", unsupported_action="a browser sign-in"
    )
    decision = engine.on_observation(state, Op.GET, waiting, T0, POLICY)
    assert decision.next is not None and decision.next.op is Op.CANCEL
    assert CancelStarted(CancelReason.UNSUPPORTED_ACTION, "a browser sign-in") in decision.effects
    sent = engine.on_observation(decision.state, Op.CANCEL, waiting, T0 + 0.1, POLICY)
    assert sent.next is not None and sent.next.op is Op.GET  # waits for the confirmation
    cancelled = Observation(Status.CANCELLED, "cancelled", "turn_1")
    fetching = engine.on_observation(sent.state, Op.GET, cancelled, T0 + 0.5, POLICY)
    fin = engine.on_result_fetched(fetching.state, T0 + 0.6).effects[-1]
    assert isinstance(fin, Finished)
    assert (fin.status, fin.error) == (
        "refused",
        ("action_unsupported", "refused: a browser sign-in"),
    )
    assert fin.cancel is not None and fin.cancel.reason is CancelReason.UNSUPPORTED_ACTION


def test_a_failure_answers_a_function_call_but_not_an_approval() -> None:
    state = asked(APPROVAL, FUNCTION)
    failed = ToolFailure("weather service down")
    decision = engine.on_reply(state, 1, [("mcpr_1", "approve"), ("call_1", failed)], T0, POLICY)
    assert decision.next is not None and decision.next.outputs == (
        ("mcpr_1", "approve"),
        ("call_1", failed),
    )
    refused = engine.on_reply(state, 1, [("mcpr_1", failed), ("call_1", "x")], T0, POLICY)
    (rejected,) = refused.effects
    assert isinstance(rejected, ReplyRejected)
    assert rejected.problems == ("'mcpr_1' cannot fail: answer it with 'approve' or 'deny'",)
