"""The app's cancel (engine.on_cancel_request) and the error code of every way a run ends."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runpoller import engine
from runpoller.engine import (
    MEANINGS,
    CancelOutcome,
    CancelReason,
    CancelStarted,
    ErrorCode,
    Failure,
    Finished,
    Op,
    Phase,
    Policy,
    ReplyRejected,
    RunState,
    Status,
    ToolCallRequest,
)
from tests.unit.engine.test_rules import POLICY, T0, finished, obs, state

WHY = "user pressed stop"


def polling() -> RunState:
    return engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 1, POLICY).state


# ---------------------------------------------------------------------------- app's cancel


def test_a_cancel_while_polling_is_sent_at_once_and_confirmed_ends_cancelled_by_app() -> None:
    d = engine.on_cancel_request(polling(), WHY, T0 + 5)
    assert d is not None and d.next == engine.Next(Op.CANCEL, T0 + 5)
    assert d.effects == (CancelStarted(CancelReason.APP, WHY),)
    assert d.state.phase is Phase.CANCELLING and d.state.cancel_detail == WHY
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 5, POLICY)
    d = engine.on_observation(d.state, Op.GET, obs(Status.CANCELLED), T0 + 7, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 7))
    reason = f"cancelled at the app's request ({WHY})"
    assert fin == Finished(
        "cancelled",
        reason,
        "cancelled",
        ("cancelled_by_app", reason),
        cancel=CancelOutcome(CancelReason.APP, "confirmed", WHY),
    )


def test_a_cancel_while_awaiting_tool_outputs_cancels_the_run_not_the_round() -> None:
    calls = (ToolCallRequest("call_a", "f", "{}"),)
    d = engine.on_observation(
        state(), Op.GET, obs(Status.REQUIRES_ACTION, tool_calls=calls), T0, POLICY
    )
    assert d.state.phase is Phase.AWAITING_OUTPUTS
    d2 = engine.on_cancel_request(d.state, "", T0 + 3)
    assert d2 is not None and d2.next == engine.Next(Op.CANCEL, T0 + 3)
    assert d2.next.wake_on_reply is False, "a reply no longer answers a run being cancelled"
    d3 = engine.on_observation(d2.state, Op.CANCEL, obs(Status.CANCELLED), T0 + 3, POLICY)
    fin = finished(engine.on_result_fetched(d3.state, T0 + 3))
    assert fin.status == "cancelled" and fin.reason == "cancelled at the app's request"
    assert fin.error == ("cancelled_by_app", fin.reason)


def test_a_cancel_before_the_object_exists_ends_at_once_without_a_request() -> None:
    s = engine.new_state("", now=T0, timeout_s=60, interval_s=2)  # a Responses create to come
    d = engine.on_cancel_request(s, WHY, T0)
    assert d is not None
    fin = finished(d)
    assert fin.status == "cancelled" and fin.error is not None
    assert fin.error[0] == "cancelled_by_app" and fin.api_status is None
    assert fin.cancel == CancelOutcome(CancelReason.APP, "confirmed", WHY)


@pytest.mark.parametrize("phase", [Phase.CANCELLING, Phase.FETCHING, Phase.DONE])
def test_a_cancel_changes_nothing_when_the_run_is_ending_already(phase: Phase) -> None:
    s = replace(polling(), phase=phase, cancel_reason=CancelReason.TIMEOUT)
    assert engine.on_cancel_request(s, WHY, T0 + 5) is None


def test_a_second_cancel_changes_nothing() -> None:
    d = engine.on_cancel_request(polling(), WHY, T0 + 5)
    assert d is not None
    assert engine.on_cancel_request(d.state, "again", T0 + 6) is None


def test_a_cancel_overtaken_by_completion_ends_completed_and_says_so() -> None:
    d = engine.on_cancel_request(polling(), WHY, T0 + 5)
    assert d is not None
    race = Failure("HTTP 400: Cannot cancel run with status 'completed'.", 400, race=True)
    d = engine.on_failure(d.state, Op.CANCEL, race, T0 + 5, POLICY, 0.5)
    d = engine.on_observation(d.state, Op.GET, obs(Status.COMPLETED), T0 + 5, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 5))
    assert fin.status == "completed" and fin.error is None
    assert fin.cancel == CancelOutcome(CancelReason.APP, "overtaken", WHY)


def test_an_unconfirmed_cancel_says_the_run_may_still_be_running() -> None:
    d = engine.on_cancel_request(polling(), WHY, T0 + 5)
    assert d is not None
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 5, POLICY)
    d = engine.on_observation(d.state, Op.GET, obs(Status.CANCELLING), T0 + 36, POLICY)
    fin = finished(d)
    assert fin.status == "cancelled" and fin.error is not None
    assert fin.error[0] == "cancel_unconfirmed"
    assert fin.cancel == CancelOutcome(CancelReason.APP, "unconfirmed", WHY)


def test_the_deadline_still_bounds_a_cancelled_run() -> None:
    d = engine.on_cancel_request(polling(), WHY, T0 + 59)
    assert d is not None
    failure = Failure("HTTP 503", 503, retryable=True)
    t = T0 + 59
    while d.next is not None:
        d = engine.on_failure(d.state, d.next.op, failure, t, POLICY, 0)
        t = max(t, d.next.at if d.next else t) + 0.1
    assert t <= T0 + 59 + POLICY.cancel_grace_s + 1
    assert finished(d).error == (
        "cancel_unconfirmed",
        "cancelled at the app's request (user pressed stop); the cancel could not be "
        "confirmed (HTTP 503)",
    )


# ---------------------------------------------------------------------------- codes


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (Status.FAILED, "run_failed"),
        (Status.INCOMPLETE, "run_incomplete"),
        (Status.EXPIRED, "run_expired"),
        (Status.CANCELLED, "cancelled_outside"),
        (Status.COMPLETED, None),
    ],
)
def test_each_end_the_api_decides_has_its_code(status: Status, code: str | None) -> None:
    d = engine.on_observation(state(), Op.GET, obs(status), T0 + 5, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 5))
    assert (fin.error[0] if fin.error else None) == code


def test_a_deadline_cancel_confirmed_is_deadline_exceeded() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 61, POLICY)
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLED), T0 + 61, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 61))
    assert fin.status == "timed_out" and fin.error is not None
    assert fin.error[0] == "deadline_exceeded"
    assert fin.cancel == CancelOutcome(CancelReason.TIMEOUT, "confirmed")


def test_an_api_refusal_keeps_the_apis_own_code_beside_runpollers() -> None:
    failure = Failure("HTTP 401: Incorrect API key", 401, code="invalid_api_key")
    fin = finished(engine.on_failure(state(), Op.GET, failure, T0, POLICY, 0))
    assert fin.error == ("unauthorized", "HTTP 401: Incorrect API key")
    assert fin.api_code == "invalid_api_key" and fin.http_status == 401


@pytest.mark.parametrize(
    ("policy", "observed", "code"),
    [
        (Policy(allowed_models=frozenset({"gpt-4o"})), {"model": "gpt-3.5"}, "refused_model"),
        (
            Policy(excluded_ids=frozenset({"asst_x"})),
            {"assistant_id": "asst_x"},
            "refused_assistant",
        ),
    ],
)
def test_refusals_name_what_was_refused(
    policy: Policy, observed: dict[str, str], code: str
) -> None:
    ended = engine.on_observation(state(), Op.GET, obs(Status.COMPLETED, **observed), T0, policy)
    assert finished(ended).error is not None and finished(ended).error[0] == code  # type: ignore[index]
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS, **observed), T0, policy)
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLED, **observed), T0, policy)
    fin = finished(engine.on_result_fetched(d.state, T0))
    assert fin.status == "refused" and fin.error is not None and fin.error[0] == code


def test_every_code_is_documented_for_the_statuses_it_ends() -> None:
    assert set(MEANINGS) == set(ErrorCode)
    for code, (statuses, meaning) in MEANINGS.items():
        assert statuses and meaning.endswith("."), code
        assert "completed" not in statuses


def test_a_reply_to_a_run_being_cancelled_is_rejected_saying_so() -> None:
    calls = (ToolCallRequest("call_a", "f", "{}"),)
    ask = obs(Status.REQUIRES_ACTION, tool_calls=calls)
    d = engine.on_observation(state(), Op.GET, ask, T0, POLICY)
    d2 = engine.on_cancel_request(d.state, WHY, T0 + 1)
    assert d2 is not None
    r = engine.on_reply(d2.state, 1, [("call_a", "x")], T0 + 2, POLICY)
    assert r.next is None and r.state == d2.state
    why = "the run is being cancelled and no longer takes tool outputs; this reply was not used"
    assert r.effects == (ReplyRejected(1, (why,)),)


# ---------------------------------------------------------------------------- adaptive polling

ADAPTIVE = Policy(cancel_grace_s=30, adaptive_after_s=10, adaptive_max_s=8)


def test_adaptive_polling_grows_the_interval_with_the_runs_age_up_to_its_cap() -> None:
    s = engine.new_state("run_1", now=T0, timeout_s=600, interval_s=2)
    nexts = []
    for age in (5, 10, 20, 30, 100):
        d = engine.on_observation(s, Op.GET, obs(Status.IN_PROGRESS), T0 + age, ADAPTIVE)
        assert d.next is not None
        nexts.append(round(d.next.at - (T0 + age), 6))
    # Young: the run's own interval; then in proportion to age (20 s: twice); capped at 8 s.
    assert nexts == [2, 2, 4, 6, 8]


def test_adaptive_polling_never_passes_the_deadline_nor_slows_a_cancel() -> None:
    s = engine.new_state("run_1", now=T0, timeout_s=60, interval_s=2)
    d = engine.on_observation(s, Op.GET, obs(Status.IN_PROGRESS), T0 + 57, ADAPTIVE)
    assert d.next == engine.Next(Op.GET, T0 + 60), "the deadline cuts the grown interval"
    d = engine.on_observation(d.state, Op.GET, obs(Status.IN_PROGRESS), T0 + 60, ADAPTIVE)
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 60, ADAPTIVE)
    assert d.next == engine.Next(Op.GET, T0 + 62), "a cancel is watched at the plain interval"


def test_off_by_default_and_for_states_that_predate_the_accepted_time() -> None:
    s = engine.new_state("run_1", now=T0, timeout_s=600, interval_s=2)
    d = engine.on_observation(s, Op.GET, obs(Status.IN_PROGRESS), T0 + 100, POLICY)
    assert d.next == engine.Next(Op.GET, T0 + 102)
    old = replace(s, accepted_at=0.0)
    d = engine.on_observation(old, Op.GET, obs(Status.IN_PROGRESS), T0 + 100, ADAPTIVE)
    assert d.next == engine.Next(Op.GET, T0 + 102)
