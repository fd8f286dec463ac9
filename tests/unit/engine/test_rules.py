"""The rules (engine.rules), without I/O: every status, deadline and error."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runpoller import engine
from runpoller.engine import (
    ActionRequired,
    CancelOutcome,
    CancelReason,
    CancelStarted,
    Failure,
    Finished,
    Observation,
    Op,
    Phase,
    Policy,
    ReplyRejected,
    RunState,
    Status,
    StatusChanged,
    ToolCallRequest,
)

T0 = 1_000_000.0
POLICY = Policy(cancel_grace_s=30)


def state(**kw: object) -> RunState:
    base = engine.new_state("run_1", now=T0, timeout_s=60, interval_s=2)
    return replace(base, **kw)  # type: ignore[arg-type]


def obs(status: Status, **kw: object) -> Observation:
    return Observation(status=status, api_status=status.value, object_id="run_1", **kw)  # type: ignore[arg-type]


def finished(decision: engine.Decision) -> Finished:
    fins = [e for e in decision.effects if isinstance(e, Finished)]
    assert len(fins) == 1, decision.effects
    assert decision.next is None and decision.state.phase is Phase.DONE
    return fins[0]


NON_TERMINAL = [Status.QUEUED, Status.IN_PROGRESS, Status.CANCELLING]
TERMINAL = [Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INCOMPLETE, Status.EXPIRED]


def test_new_state_anchors_deadline() -> None:
    s = engine.new_state("run_1", now=T0, timeout_s=60, interval_s=2)
    assert s.deadline == T0 + 60 and s.phase is Phase.POLLING
    assert engine.resume(s, T0) == engine.Next(Op.GET, T0)


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_non_terminal_before_deadline_polls_after_interval(status: Status) -> None:
    d = engine.on_observation(state(), Op.GET, obs(status), T0 + 1, POLICY)
    assert d.next == engine.Next(Op.GET, T0 + 3)
    assert d.effects == (StatusChanged(status, status.value, "run_1"),)


def test_same_status_publishes_nothing() -> None:
    s = state(last_status=Status.IN_PROGRESS, checked=True)
    d = engine.on_observation(s, Op.GET, obs(Status.IN_PROGRESS), T0 + 1, POLICY)
    assert d.effects == ()
    assert d.state == s


@pytest.mark.parametrize("status", NON_TERMINAL)
def test_non_terminal_at_deadline_cancels(status: Status) -> None:
    d = engine.on_observation(state(), Op.GET, obs(status), T0 + 60, POLICY)
    assert d.next == engine.Next(Op.CANCEL, T0 + 60)
    assert d.state.phase is Phase.CANCELLING
    assert d.state.cancel_reason is CancelReason.TIMEOUT


def test_next_poll_never_after_deadline() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 59.5, POLICY)
    assert d.next == engine.Next(Op.GET, T0 + 60)


def test_poll_after_header_slows_but_never_speeds_up() -> None:
    slow = engine.on_observation(state(), Op.GET, obs(Status.QUEUED, poll_after_s=5), T0, POLICY)
    fast = engine.on_observation(state(), Op.GET, obs(Status.QUEUED, poll_after_s=0.1), T0, POLICY)
    assert slow.next is not None and slow.next.at == T0 + 5
    assert fast.next is not None and fast.next.at == T0 + 2


@pytest.mark.parametrize("status", TERMINAL)
def test_terminal_fetches_results_then_finishes(status: Status) -> None:
    d = engine.on_observation(state(), Op.GET, obs(status), T0 + 5, POLICY)
    assert d.next == engine.Next(Op.FETCH_RESULT, T0 + 5)
    assert d.state.phase is Phase.FETCHING
    fin = finished(engine.on_result_fetched(d.state, T0 + 5))
    assert fin.api_status == status.value
    assert fin.status == status.value


def test_cancel_at_deadline_then_cancelled_is_timed_out() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 61, POLICY)
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 61, POLICY)
    assert d.state.cancel_sent and d.next == engine.Next(Op.GET, T0 + 63)
    d = engine.on_observation(d.state, Op.GET, obs(Status.CANCELLED), T0 + 63, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 63))
    assert fin.status == "timed_out"
    assert fin.api_status == "cancelled"
    assert "deadline" in fin.reason and "not be confirmed" not in fin.reason


def test_cancel_race_reports_real_outcome() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 61, POLICY)
    race = Failure("HTTP 400: Cannot cancel run with status 'completed'.", 400, race=True)
    d = engine.on_failure(d.state, Op.CANCEL, race, T0 + 61, POLICY, 0.5)
    assert d.next == engine.Next(Op.GET, T0 + 61)
    d = engine.on_observation(d.state, Op.GET, obs(Status.COMPLETED), T0 + 61, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 61))
    assert fin.status == "completed"
    assert "before the cancel took effect" in fin.reason


def test_slow_cancel_gives_up_after_grace_and_says_so() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 60, POLICY)
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 60, POLICY)
    t = T0 + 60
    while d.next is not None:
        assert d.next.op is Op.GET and d.next.at <= T0 + 90
        t = d.next.at
        d = engine.on_observation(d.state, Op.GET, obs(Status.CANCELLING), t, POLICY)
    fin = finished(d)
    assert fin.status == "timed_out" and "could not be confirmed" in fin.reason
    assert t == T0 + 90


def test_cancel_is_resent_after_restart_if_not_confirmed() -> None:
    s = state(phase=Phase.CANCELLING, cancel_reason=CancelReason.TIMEOUT, phase_since=T0 + 60)
    assert engine.resume(s, T0 + 61) == engine.Next(Op.CANCEL, T0 + 61)
    s2 = replace(s, cancel_sent=True)
    assert engine.resume(s2, T0 + 61) == engine.Next(Op.GET, T0 + 61)


def test_resume_past_deadline_reads_then_cancels() -> None:
    s = state(last_status=Status.IN_PROGRESS, checked=True)
    nxt = engine.resume(s, T0 + 500)
    assert nxt == engine.Next(Op.GET, T0 + 500)
    d = engine.on_observation(s, Op.GET, obs(Status.IN_PROGRESS), T0 + 500, POLICY)
    assert d.next is not None and d.next.op is Op.CANCEL
    assert d.state.deadline == T0 + 60  # never moved


# ----------------------------------------------------------------- refusal


@pytest.mark.parametrize(
    ("policy", "assistant", "model", "refused"),
    [
        (Policy(supported_ids=frozenset({"asst_ok"})), "asst_ok", "gpt-4o", False),
        (Policy(supported_ids=frozenset({"asst_ok"})), "asst_no", "gpt-4o", True),
        (Policy(excluded_ids=frozenset({"asst_bad"})), "asst_bad", "gpt-4o", True),
        (Policy(excluded_ids=frozenset({"asst_bad"})), "asst_ok", "gpt-4o", False),
        (Policy(allowed_models=frozenset({"gpt-4o"})), "asst_ok", "gpt-4o", False),
        (Policy(allowed_models=frozenset({"gpt-4o"})), "asst_ok", "gpt-3.5", True),
        (Policy(), "asst_any", "any-model", False),
    ],
)
def test_allow_lists(policy: Policy, assistant: str, model: str, refused: bool) -> None:
    o = obs(Status.IN_PROGRESS, assistant_id=assistant, model=model)
    d = engine.on_observation(state(), Op.GET, o, T0, policy)
    assert (d.next is not None and d.next.op is Op.CANCEL) is refused
    if refused:
        d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLED), T0, policy)
        fin = finished(engine.on_result_fetched(d.state, T0))
        assert fin.status == "refused"
        assert (assistant in fin.reason) or (model in fin.reason)


def test_refused_but_already_finished_is_reported_refused_without_cancel() -> None:
    policy = Policy(supported_ids=frozenset({"asst_ok"}))
    o = obs(Status.COMPLETED, assistant_id="asst_no")
    fin = finished(engine.on_observation(state(), Op.GET, o, T0, policy))
    assert fin.status == "refused"


# ----------------------------------------------------------------- failures


RETRYABLE = [
    Failure("HTTP 500", 500, retryable=True),
    Failure("HTTP 503", 503, retryable=True),
    Failure("HTTP 429", 429, retryable=True),
    Failure("connection error", None, retryable=True),
]


@pytest.mark.parametrize("failure", RETRYABLE)
def test_retryable_backs_off_exponentially(failure: Failure) -> None:
    s = state()
    delays = []
    t = T0
    for _ in range(6):
        d = engine.on_failure(s, Op.GET, failure, t, POLICY, 0.0)
        assert d.next is not None and d.next.op is Op.GET
        delays.append(d.next.at - t)
        s = d.state
    assert delays == [0.5, 1, 2, 4, 8, 8]


def test_jitter_reduces_delay_by_up_to_a_quarter() -> None:
    d = engine.on_failure(state(), Op.GET, RETRYABLE[0], T0, POLICY, 0.999)
    assert d.next is not None and 0.375 <= d.next.at - T0 < 0.5


def test_retry_after_is_honoured_and_capped() -> None:
    f = Failure("HTTP 429", 429, retryable=True, retry_after_s=7)
    d = engine.on_failure(state(), Op.GET, f, T0, POLICY, 0.3)
    assert d.next is not None and d.next.at == T0 + 7
    huge = Failure("HTTP 429", 429, retryable=True, retry_after_s=1000)
    d = engine.on_failure(state(deadline=T0 + 10_000), Op.GET, huge, T0, POLICY, 0.3)
    assert d.next is not None and d.next.at == T0 + 120


def test_retry_never_pushes_past_deadline() -> None:
    f = Failure("HTTP 429", 429, retryable=True, retry_after_s=100)
    d = engine.on_failure(state(), Op.GET, f, T0 + 50, POLICY, 0)
    assert d.next is not None and d.next.at == T0 + 60


def test_api_down_at_deadline_switches_to_cancel_then_gives_up_after_grace() -> None:
    f = RETRYABLE[1]
    d = engine.on_failure(state(), Op.GET, f, T0 + 60, POLICY, 0)
    assert d.next is not None and d.next.op is Op.CANCEL
    t = T0 + 60
    while d.next is not None:
        assert d.next.op is Op.CANCEL and d.next.at <= T0 + 90
        t = d.next.at
        d = engine.on_failure(d.state, Op.CANCEL, f, t, POLICY, 0)
    fin = finished(d)
    assert fin.status == "timed_out"
    assert "could not be confirmed" in fin.reason and "HTTP 503" in fin.reason


def test_success_resets_failure_count() -> None:
    d = engine.on_failure(state(), Op.GET, RETRYABLE[0], T0, POLICY, 0)
    assert d.state.failures == 1
    d = engine.on_observation(d.state, Op.GET, obs(Status.QUEUED), T0 + 1, POLICY)
    assert d.state.failures == 0


@pytest.mark.parametrize(
    ("code", "expected"), [(401, "unauthorized"), (403, "forbidden"), (404, "not_found")]
)
def test_fatal_errors_end_the_run_at_once(code: int, expected: str) -> None:
    f = Failure(f"HTTP {code}: nope", code, retryable=False)
    fin = finished(engine.on_failure(state(), Op.GET, f, T0, POLICY, 0))
    assert fin.status == "error"
    assert fin.error == (expected, f"HTTP {code}: nope")


def test_fatal_on_fetch_still_reports_the_terminal_status() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.COMPLETED), T0, POLICY)
    f = Failure("HTTP 404: gone", 404, retryable=False)
    fin = finished(engine.on_failure(d.state, Op.FETCH_RESULT, f, T0, POLICY, 0))
    assert fin.status == "completed" and "results unavailable" in fin.reason


def test_fetch_retries_then_gives_up_after_grace() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.COMPLETED), T0, POLICY)
    f = RETRYABLE[0]
    t = T0
    while d.next is not None:
        assert d.next.op is Op.FETCH_RESULT
        t = d.next.at
        d = engine.on_failure(d.state, Op.FETCH_RESULT, f, t, POLICY, 0)
    fin = finished(d)
    assert fin.status == "completed" and "results unavailable" in fin.reason
    assert t <= T0 + 30


def test_fatal_cancel_error_reports_unconfirmed_timeout() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 60, POLICY)
    f = Failure("HTTP 404: no run", 404, retryable=False)
    fin = finished(engine.on_failure(d.state, Op.CANCEL, f, T0 + 60, POLICY, 0))
    assert fin.status == "timed_out" and "could not be confirmed" in fin.reason


# ----------------------------------------------------------------- tool calls

CALLS = (
    ToolCallRequest("call_a", "get_weather", '{"city":"Paris"}'),
    ToolCallRequest("call_b", "get_time", "{not json"),
)


def requires_action(expires_at: float | None = None) -> Observation:
    return obs(Status.REQUIRES_ACTION, tool_calls=CALLS, action_expires_at=expires_at)


def test_requires_action_asks_once_per_round() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(T0 + 30), T0 + 1, POLICY)
    actions = [e for e in d.effects if isinstance(e, ActionRequired)]
    assert actions == [ActionRequired(1, "run_1", CALLS, T0 + 30)]
    assert d.state.phase is Phase.AWAITING_OUTPUTS
    assert d.next == engine.Next(Op.GET, T0 + 3, wake_on_reply=True)
    again = engine.on_observation(d.state, Op.GET, requires_action(T0 + 30), T0 + 3, POLICY)
    assert again.effects == ()
    assert again.state.round == 1


def test_outputs_deadline_is_the_earlier_of_run_and_api() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(T0 + 600), T0, POLICY)
    assert d.state.outputs_deadline == T0 + 60


def test_valid_reply_submits_all_outputs_in_one_request() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    r = engine.on_reply(d.state, 1, [("call_a", "sunny"), ("call_b", "noon")], T0 + 1, POLICY)
    assert r.next == engine.Next(
        Op.SUBMIT, T0 + 1, outputs=(("call_a", "sunny"), ("call_b", "noon"))
    )
    after = engine.on_observation(d.state, Op.SUBMIT, obs(Status.QUEUED), T0 + 1, POLICY)
    assert after.state.phase is Phase.POLLING and after.state.pending_calls == ()
    assert after.state.round == 1


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        ([("call_a", "x")], "missing outputs for tool_call_id call_b"),
        ([("call_a", "x"), ("call_b", "y"), ("call_c", "z")], "unknown tool_call_id 'call_c'"),
        ([("call_a", "x"), ("call_a", "y"), ("call_b", "z")], "answered more than once"),
        ([("call_a", 5), ("call_b", "y")], "must be a string, got int"),
    ],
)
def test_invalid_reply_is_rejected_and_keeps_waiting(
    outputs: list[tuple[str, object]], problem: str
) -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    r = engine.on_reply(d.state, 1, outputs, T0 + 1, POLICY)
    assert r.next is None and r.state == d.state
    (rejected,) = r.effects
    assert isinstance(rejected, ReplyRejected)
    assert any(problem in p for p in rejected.problems), rejected.problems


def test_reply_for_a_round_not_yet_asked_is_rejected() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    r = engine.on_reply(d.state, 2, [("call_a", "x"), ("call_b", "y")], T0, POLICY)
    assert r.next is None and isinstance(r.effects[0], ReplyRejected)
    assert "round 2 has not been asked" in r.effects[0].problems[0]


def test_a_reply_for_a_round_already_answered_is_rejected_saying_so() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    d = engine.on_observation(d.state, Op.SUBMIT, obs(Status.QUEUED), T0 + 1, POLICY)
    r = engine.on_reply(d.state, 1, [("call_a", "x"), ("call_b", "y")], T0 + 2, POLICY)
    assert r.next is None and r.state == d.state
    assert r.effects == (
        ReplyRejected(1, ("round 1 was already answered; this reply was not used",)),
    )


def test_oversized_reply_is_rejected_with_sizes() -> None:
    small = replace(POLICY, max_reply_bytes=10)
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, small)
    r = engine.on_reply(d.state, 1, [("call_a", "x" * 8), ("call_b", "y" * 8)], T0, small)
    assert isinstance(r.effects[0], ReplyRejected)
    assert "16 bytes; the limit is 10 bytes" in r.effects[0].problems[0]


def test_unparseable_reply_is_rejected_with_its_problem() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    r = engine.on_reply(d.state, 1, None, T0, POLICY, problem="outputs is not valid JSON")
    assert r.effects == (ReplyRejected(1, ("outputs is not valid JSON",)),)


def test_no_reply_until_deadline_cancels_naming_pending_calls() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    d = engine.on_observation(d.state, Op.GET, requires_action(), T0 + 60, POLICY)
    assert d.next is not None and d.next.op is Op.CANCEL
    assert d.state.cancel_reason is CancelReason.TOOL_TIMEOUT
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLED), T0 + 60, POLICY)
    fin = finished(engine.on_result_fetched(d.state, T0 + 60))
    assert fin.status == "timed_out"
    assert "call_a" in fin.reason and "call_b" in fin.reason and "tool outputs" in fin.reason


def test_submit_race_rereads_the_run() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    race = Failure('Runs in status "expired" do not accept tool outputs.', 400, race=True)
    r = engine.on_failure(d.state, Op.SUBMIT, race, T0 + 1, POLICY, 0)
    assert r.next == engine.Next(Op.GET, T0 + 1)
    r = engine.on_observation(r.state, Op.GET, obs(Status.EXPIRED), T0 + 1, POLICY)
    fin = finished(engine.on_result_fetched(r.state, T0 + 1))
    assert fin.status == "expired"


def test_second_round_increments_round_and_keeps_deadline() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    d = engine.on_observation(d.state, Op.SUBMIT, obs(Status.QUEUED), T0 + 1, POLICY)
    second = obs(Status.REQUIRES_ACTION, tool_calls=(ToolCallRequest("call_c", "f", "{}"),))
    d = engine.on_observation(d.state, Op.GET, second, T0 + 3, POLICY)
    assert d.state.round == 2 and d.state.pending_calls == ("call_c",)
    assert d.state.deadline == T0 + 60


def test_new_object_id_is_followed_and_recorded() -> None:
    # A Responses continuation: the submit creates a new response, whose id is followed.
    s = replace(engine.new_state("resp_1", now=T0, timeout_s=60, interval_s=2), answer_creates=True)
    o = Observation(Status.QUEUED, "queued", "resp_2", answer_creates=True)
    d = engine.on_observation(s, Op.SUBMIT, o, T0, POLICY)
    assert d.state.object_id == "resp_2"
    assert d.state.object_ids == ("resp_1", "resp_2")
    assert d.effects == (StatusChanged(Status.QUEUED, "queued", "resp_2"),)


# ----------------------------------------------------------------- creating the object


def created(status: Status = Status.QUEUED) -> Observation:
    return Observation(status, status.value, "resp_new")


def test_a_run_without_an_object_starts_by_creating_it() -> None:
    s = engine.new_state("", now=T0, timeout_s=60, interval_s=2)
    assert engine.resume(s, T0) == engine.Next(Op.CREATE, T0)
    d = engine.on_observation(s, Op.CREATE, created(), T0, POLICY)
    assert d.state.object_id == "resp_new" and d.state.object_ids == ("resp_new",)
    assert d.next == engine.Next(Op.GET, T0 + 2)
    assert d.effects == (StatusChanged(Status.QUEUED, "queued", "resp_new"),)


def test_a_failed_create_is_retried_as_a_create_within_the_deadline() -> None:
    s = engine.new_state("", now=T0, timeout_s=60, interval_s=2)
    d = engine.on_failure(s, Op.CREATE, RETRYABLE[0], T0, POLICY, 0)
    assert d.next == engine.Next(Op.CREATE, T0 + 0.5)
    late = Failure("HTTP 429", 429, retryable=True, retry_after_s=100)
    d = engine.on_failure(s, Op.CREATE, late, T0 + 50, POLICY, 0)
    assert d.next == engine.Next(Op.CREATE, T0 + 60)
    race = Failure("HTTP 400: Cannot cancel", 400, race=True)
    assert engine.on_failure(s, Op.CREATE, race, T0, POLICY, 0).next == engine.Next(Op.CREATE, T0)


def test_a_refused_create_ends_the_run_with_an_error() -> None:
    s = engine.new_state("", now=T0, timeout_s=60, interval_s=2)
    f = Failure("HTTP 401: bad key", 401, retryable=False)
    fin = finished(engine.on_failure(s, Op.CREATE, f, T0, POLICY, 0))
    assert fin.status == "error" and fin.error == ("unauthorized", "HTTP 401: bad key")


# ----------------------------------------------------------------- cancel started


def cancels_started(d: engine.Decision) -> list[CancelStarted]:
    return [e for e in d.effects if isinstance(e, CancelStarted)]


def test_the_deadline_starts_a_cancel_once() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.IN_PROGRESS), T0 + 60, POLICY)
    assert cancels_started(d) == [CancelStarted(CancelReason.TIMEOUT, "")]
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.CANCELLING), T0 + 60, POLICY)
    assert cancels_started(d) == []


def test_a_failure_at_the_deadline_starts_a_cancel() -> None:
    d = engine.on_failure(state(), Op.GET, RETRYABLE[0], T0 + 60, POLICY, 0)
    assert cancels_started(d) == [CancelStarted(CancelReason.TIMEOUT, "")]


def test_a_refusal_starts_a_cancel_naming_why() -> None:
    policy = Policy(allowed_models=frozenset({"gpt-4o"}))
    d = engine.on_observation(state(), Op.GET, obs(Status.QUEUED, model="gpt-3.5"), T0, policy)
    why = "model gpt-3.5 is not in ASSISTANTS_MODELS"
    assert cancels_started(d) == [CancelStarted(CancelReason.REFUSED_MODEL, why)]


def test_a_run_already_cancelling_is_not_announced_again() -> None:
    # The API was down until the deadline; the cancel's answer is the first look at the run.
    d = engine.on_failure(state(), Op.GET, RETRYABLE[0], T0 + 60, POLICY, 0)
    policy = Policy(allowed_models=frozenset({"gpt-4o"}))
    d = engine.on_observation(d.state, Op.CANCEL, obs(Status.QUEUED, model="x"), T0 + 60, policy)
    assert d.state.cancel_reason is CancelReason.REFUSED_MODEL and d.next == engine.Next(
        Op.CANCEL, T0 + 60
    )
    assert cancels_started(d) == []


def test_a_tool_timeout_names_the_calls_in_its_cancel() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    d = engine.on_observation(d.state, Op.GET, requires_action(), T0 + 60, POLICY)
    (started,) = cancels_started(d)
    assert started.reason is CancelReason.TOOL_TIMEOUT and "call_a, call_b" in started.detail


# ----------------------------------------------------------------- nothing left to cancel


def done_with_calls() -> Observation:
    """A response that completed with function calls: nothing runs that a cancel could stop."""
    return replace(requires_action(), cancellable=False)


def test_the_last_answer_says_whether_there_is_anything_to_cancel() -> None:
    d = engine.on_observation(state(), Op.GET, done_with_calls(), T0, POLICY)
    assert d.state.cancellable is False
    d = engine.on_observation(d.state, Op.GET, obs(Status.IN_PROGRESS), T0 + 2, POLICY)
    assert d.state.cancellable is True


def test_a_tool_timeout_with_nothing_to_cancel_ends_cancelled_without_a_request() -> None:
    d = engine.on_observation(state(), Op.GET, done_with_calls(), T0, POLICY)
    d = engine.on_observation(d.state, Op.GET, done_with_calls(), T0 + 60, POLICY)
    assert d.next == engine.Next(Op.FETCH_RESULT, T0 + 60), "no CANCEL request"
    assert [type(e) for e in d.effects] == [CancelStarted, StatusChanged]
    assert d.effects[1] == StatusChanged(Status.CANCELLED, "cancelled", "run_1")
    assert d.state.phase is Phase.FETCHING and d.state.cancel_sent
    fin = finished(engine.on_result_fetched(d.state, T0 + 60))
    reason = "timed out waiting for tool outputs (unanswered call ids: call_a, call_b)"
    assert fin == Finished(
        "timed_out",
        reason,
        "cancelled",
        ("tool_outputs_timeout", reason),
        cancel=CancelOutcome(CancelReason.TOOL_TIMEOUT, "confirmed"),
    )


def test_a_refused_run_with_nothing_to_cancel_ends_refused_without_a_request() -> None:
    policy = Policy(allowed_models=frozenset({"gpt-4o"}))
    o = replace(done_with_calls(), model="gpt-3.5")
    d = engine.on_observation(state(), Op.GET, o, T0, policy)
    assert d.next == engine.Next(Op.FETCH_RESULT, T0)
    assert [type(e) for e in d.effects] == [StatusChanged, CancelStarted, StatusChanged]
    fin = finished(engine.on_result_fetched(d.state, T0))
    assert fin.status == "refused" and fin.api_status == "cancelled"
    assert fin.reason == "refused: model gpt-3.5 is not in ASSISTANTS_MODELS"


def test_an_api_outage_at_the_deadline_with_nothing_to_cancel_lets_go_too() -> None:
    d = engine.on_observation(state(), Op.GET, done_with_calls(), T0, POLICY)
    d = engine.on_failure(d.state, Op.GET, RETRYABLE[1], T0 + 30, POLICY, 0)
    d = engine.on_failure(d.state, Op.GET, RETRYABLE[1], T0 + 60, POLICY, 0)
    assert d.next == engine.Next(Op.FETCH_RESULT, T0 + 60)
    assert d.state.failures == 0, "the fetch starts its backoff afresh"
    assert finished(engine.on_result_fetched(d.state, T0 + 60)).status == "timed_out"


def test_a_restart_mid_cancel_with_nothing_to_cancel_reads_the_run_first() -> None:
    s = state(
        phase=Phase.CANCELLING,
        phase_since=T0 + 60,
        cancel_reason=CancelReason.TOOL_TIMEOUT,
        cancel_detail="timed out waiting for tool outputs (unanswered call ids: call_a)",
        last_status=Status.REQUIRES_ACTION,
        checked=True,
        cancellable=False,
    )
    assert engine.resume(s, T0 + 61) == engine.Next(Op.GET, T0 + 61)
    d = engine.on_observation(s, Op.GET, done_with_calls(), T0 + 61, POLICY)
    assert d.next == engine.Next(Op.FETCH_RESULT, T0 + 61)
    assert cancels_started(d) == [], "announced when it started, before the restart"


# ----------------------------------------------------------------- crash, and after the end


def test_a_crash_ends_the_run_with_an_internal_error() -> None:
    s = state(last_status=Status.IN_PROGRESS)
    fin = finished(engine.on_crash(s, "RuntimeError"))
    message = "internal error while driving the run (RuntimeError)"
    assert fin == Finished("error", message, "in_progress", ("internal_error", message))


def test_a_crash_before_any_status_has_no_api_status() -> None:
    assert finished(engine.on_crash(state(), "KeyError")).api_status is None


def test_nothing_is_decided_after_the_end() -> None:
    done = engine.on_crash(state(), "KeyError").state
    assert done.phase is Phase.DONE
    decisions = [
        engine.on_observation(done, Op.GET, obs(Status.COMPLETED), T0, POLICY),
        engine.on_failure(done, Op.GET, RETRYABLE[0], T0, POLICY, 0),
        engine.on_result_fetched(done, T0),
        engine.on_reply(done, 1, [], T0, POLICY),
        engine.on_crash(done, "KeyError"),
    ]
    assert all(d == engine.Decision(done) for d in decisions)
    assert engine.resume(done, T0) is None


def test_a_retried_submit_carries_its_outputs_again() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    outputs = (("call_a", "sunny"), ("call_b", "noon"))
    r = engine.on_failure(d.state, Op.SUBMIT, RETRYABLE[0], T0 + 1, POLICY, 0, outputs)
    assert r.next == engine.Next(Op.SUBMIT, T0 + 1.5, outputs=outputs)


# ----------------------------------------------------------------- whose answer it is


def foreign(status: Status = Status.COMPLETED, oid: str = "resp_other") -> Observation:
    return Observation(status, status.value, oid, usage={"total_tokens": 9})


@pytest.mark.parametrize("op", [Op.GET, Op.CANCEL])
def test_an_answer_about_another_object_ends_the_run_and_is_never_adopted(op: Op) -> None:
    s = engine.new_state("resp_1", now=T0, timeout_s=60, interval_s=2)
    s = replace(s, last_status=Status.IN_PROGRESS, answer_creates=True, checked=True)
    d = engine.on_observation(s, op, foreign(), T0 + 1, POLICY)
    fin = finished(d)
    assert fin.status == "error" and fin.api_status == "in_progress"
    assert fin.error is not None and fin.error[0] == "object_mismatch"
    assert "resp_1" in fin.reason and "resp_other" in fin.reason
    assert fin.error[1] == fin.reason
    assert d.state.object_id == "resp_1" and d.state.object_ids == ("resp_1",)
    assert [e for e in d.effects if isinstance(e, StatusChanged)] == [], "not this run's status"


def test_an_assistants_submit_answered_with_another_run_is_a_mismatch() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    assert not d.state.answer_creates  # an Assistants submit answers the same run
    d = engine.on_observation(d.state, Op.SUBMIT, foreign(Status.QUEUED, "run_2"), T0 + 1, POLICY)
    fin = finished(d)
    assert fin.error is not None and fin.error[0] == "object_mismatch"
    assert "run_1" in fin.reason and "run_2" in fin.reason
    assert d.state.object_id == "run_1"


def test_a_continuation_answered_with_an_object_already_followed_is_a_mismatch() -> None:
    s = engine.new_state("resp_1", now=T0, timeout_s=60, interval_s=2)
    s = replace(s, object_id="resp_2", object_ids=("resp_1", "resp_2"), answer_creates=True)
    for old in ("resp_1", "resp_2"):
        fin = finished(engine.on_observation(s, Op.SUBMIT, foreign(Status.QUEUED, old), T0, POLICY))
        assert fin.error is not None and fin.error[0] == "object_mismatch"
        assert "already followed" in fin.reason and old in fin.reason


@pytest.mark.parametrize("op", [Op.GET, Op.CREATE])
def test_an_answer_without_an_object_id_is_a_mismatch(op: Op) -> None:
    s = state() if op is Op.GET else engine.new_state("", now=T0, timeout_s=60, interval_s=2)
    fin = finished(engine.on_observation(s, op, foreign(Status.QUEUED, ""), T0, POLICY))
    assert fin.error is not None and fin.error[0] == "object_mismatch"
    assert "no object id" in fin.reason


# ----------------------------------------------------------------- requires_action, no calls


def test_requires_action_without_function_calls_is_no_tool_round() -> None:
    d = engine.on_observation(state(), Op.GET, obs(Status.REQUIRES_ACTION), T0 + 1, POLICY)
    assert not [e for e in d.effects if isinstance(e, ActionRequired)], "the app is not asked"
    assert d.effects == (StatusChanged(Status.REQUIRES_ACTION, "requires_action", "run_1"),)
    assert d.state.phase is Phase.POLLING and d.state.round == 0
    assert d.next == engine.Next(Op.GET, T0 + 3), "re-read at the interval"
    # Calls appearing later start the round; the deadline still cancels a run that never asks.
    later = engine.on_observation(d.state, Op.GET, requires_action(), T0 + 3, POLICY)
    assert [e.round for e in later.effects if isinstance(e, ActionRequired)] == [1]
    late = engine.on_observation(d.state, Op.GET, obs(Status.REQUIRES_ACTION), T0 + 60, POLICY)
    assert late.next == engine.Next(Op.CANCEL, T0 + 60)
    assert late.state.cancel_reason is CancelReason.TIMEOUT


def test_requires_action_losing_its_calls_keeps_the_round_open() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    again = engine.on_observation(d.state, Op.GET, obs(Status.REQUIRES_ACTION), T0 + 2, POLICY)
    assert again.effects == () and again.state == d.state
    r = engine.on_reply(again.state, 1, [("call_a", "x"), ("call_b", "y")], T0 + 3, POLICY)
    assert r.next is not None and r.next.op is Op.SUBMIT


# ----------------------------------------------------------------- unknown statuses


def unknown(raw: str = "thinking_hard") -> Observation:
    return Observation(Status.UNKNOWN, raw, "run_1")


def test_an_unknown_status_keeps_polling_reports_it_raw_and_once() -> None:
    d = engine.on_observation(state(), Op.GET, unknown(), T0 + 1, POLICY)
    assert d.effects == (
        StatusChanged(Status.UNKNOWN, "thinking_hard", "run_1"),
        engine.UnknownStatusSeen("thinking_hard", "run_1"),
    )
    assert d.next == engine.Next(Op.GET, T0 + 3) and d.state.phase is Phase.POLLING
    same = engine.on_observation(d.state, Op.GET, unknown(), T0 + 3, POLICY)
    assert same.effects == ()
    other = engine.on_observation(same.state, Op.GET, unknown("pondering"), T0 + 5, POLICY)
    assert other.effects == (StatusChanged(Status.UNKNOWN, "pondering", "run_1"),)
    known = engine.on_observation(other.state, Op.GET, obs(Status.IN_PROGRESS), T0 + 7, POLICY)
    back = engine.on_observation(known.state, Op.GET, unknown(), T0 + 9, POLICY)
    assert back.effects == (StatusChanged(Status.UNKNOWN, "thinking_hard", "run_1"),)
    restarted = RunState.from_json(back.state.to_json())
    assert restarted.unknown_status == "thinking_hard", "reported once per run, restarts too"


def test_an_unknown_status_is_cancelled_at_the_deadline_and_reported_raw() -> None:
    d = engine.on_observation(state(), Op.GET, unknown(), T0 + 1, POLICY)
    d = engine.on_observation(d.state, Op.GET, unknown(), T0 + 60, POLICY)
    assert d.next == engine.Next(Op.CANCEL, T0 + 60)
    assert d.state.cancel_reason is CancelReason.TIMEOUT
    # A cancel that cannot be confirmed reports the raw status the API last gave.
    refused = Failure("HTTP 404: gone", 404)
    fin = finished(engine.on_failure(d.state, Op.CANCEL, refused, T0 + 60, POLICY, 0))
    assert fin.status == "timed_out" and fin.api_status == "thinking_hard"


def test_an_unknown_status_while_awaiting_outputs_keeps_the_round() -> None:
    d = engine.on_observation(state(), Op.GET, requires_action(), T0, POLICY)
    u = engine.on_observation(d.state, Op.GET, unknown(), T0 + 2, POLICY)
    assert u.state.phase is Phase.AWAITING_OUTPUTS and u.state.pending_calls == ("call_a", "call_b")
    assert u.next == engine.Next(Op.GET, T0 + 4, wake_on_reply=True)
