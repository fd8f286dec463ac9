"""Steps (requests with side effects) and time limits: what is claimed before it is sent,
what a new owner does with a step in flight, and why a create is never sent twice."""

from __future__ import annotations

from dataclasses import replace

import pytest

from runpoller import engine
from runpoller.engine import Failure, Finished, Observation, Op, Phase, Policy, RunState, Status

T0 = 1_000_000.0
POLICY = Policy(cancel_grace_s=30)
OUTPUTS = (("call_1", "42"),)


def state(**kw: object) -> RunState:
    base = engine.new_state("resp_1", now=T0, timeout_s=60, interval_s=2)
    return replace(base, **kw)  # type: ignore[arg-type]


def awaiting(**kw: object) -> RunState:
    return state(phase=Phase.AWAITING_OUTPUTS, round=1, pending_calls=("call_1",), **kw)


def final_of(decision: engine.Decision) -> Finished:
    fins = [e for e in decision.effects if isinstance(e, Finished)]
    assert len(fins) == 1 and decision.next is None and decision.state.phase is Phase.DONE
    return fins[0]


def test_reads_are_no_steps_and_side_effects_are() -> None:
    s = awaiting()
    assert engine.step_for(s, Op.GET) == "" and engine.step_for(s, Op.FETCH_RESULT) == ""
    assert engine.step_for(s, Op.SUBMIT) == "submit:1"
    assert engine.step_for(s, Op.CREATE) == "create"
    assert engine.step_for(s, Op.CANCEL) == "cancel"
    assert engine.sending(s, "submit:1").sending == "submit:1"


def test_any_answer_clears_the_step() -> None:
    s = engine.sending(awaiting(answer_creates=True), "submit:1")
    answer = Observation(Status.IN_PROGRESS, "in_progress", "resp_2")
    d = engine.on_observation(s, Op.SUBMIT, answer, T0 + 1, POLICY)
    assert d.state.sending == "" and d.state.object_id == "resp_2"
    assert d.state.sending == "" and d.state.durable_changed(s)


def test_a_new_owner_re_reads_a_run_whose_submit_may_be_in_flight_when_it_creates_nothing() -> None:
    # Assistants: a second submit is refused by the API ("... do not accept tool outputs").
    s = engine.sending(awaiting(), "submit:1")
    d = engine.start(s, T0 + 5)
    assert d.next == engine.Next(Op.GET, T0 + 5, wake_on_reply=True)
    assert d.state.sending == "" and not d.effects


@pytest.mark.parametrize(
    ("s", "what", "code"),
    [
        (
            engine.sending(awaiting(answer_creates=True), "submit:1"),
            "continuation",
            "request_unconfirmed",
        ),
        (
            engine.sending(state(object_id="", object_ids=()), "create"),
            "create",
            "create_outcome_unknown",
        ),
    ],
    ids=["continuation", "create"],
)
def test_a_new_owner_never_repeats_a_create_whose_fate_is_unknown(
    s: RunState, what: str, code: str
) -> None:
    fin = final_of(engine.start(s, T0 + 5))
    assert fin.status == "error" and fin.error is not None
    assert fin.error[0] == code
    assert f"the {what} request may have been processed" in fin.reason
    assert "its sender stopped" in fin.reason


def test_a_new_owner_sends_a_cancel_that_may_be_in_flight_again() -> None:
    s = engine.sending(state(phase=Phase.CANCELLING, phase_since=T0 + 60), "cancel")
    d = engine.start(s, T0 + 61)
    assert d.next == engine.Next(Op.CANCEL, T0 + 61) and d.state.sending == ""


@pytest.mark.parametrize("answer_creates", [False, True], ids=["assistants", "responses"])
def test_a_503_on_a_submit_retries_it_with_the_same_outputs(answer_creates: bool) -> None:
    s = engine.sending(awaiting(answer_creates=answer_creates), "submit:1")
    busy = Failure("HTTP 503", status_code=503, retryable=True)
    d = engine.on_failure(s, Op.SUBMIT, busy, T0 + 1, POLICY, 0.0, OUTPUTS)
    assert d.next is not None and d.next.op is Op.SUBMIT and d.next.outputs == OUTPUTS
    assert d.state.sending == ""


def test_an_ambiguous_failure_of_a_continuation_ends_the_run_instead_of_a_second_one() -> None:
    s = engine.sending(awaiting(answer_creates=True), "submit:1")
    cut = Failure("request timed out (ReadTimeout)", retryable=True, ambiguous=True)
    fin = final_of(engine.on_failure(s, Op.SUBMIT, cut, T0 + 1, POLICY, 0.0, OUTPUTS))
    assert fin.error is not None and fin.error[0] == "request_unconfirmed"
    assert "ReadTimeout" in fin.reason


def test_an_ambiguous_failure_of_an_assistants_submit_is_retried() -> None:
    s = engine.sending(awaiting(), "submit:1")
    cut = Failure("request timed out (ReadTimeout)", retryable=True, ambiguous=True)
    d = engine.on_failure(s, Op.SUBMIT, cut, T0 + 1, POLICY, 0.0, OUTPUTS)
    assert d.next is not None and d.next.op is Op.SUBMIT and d.next.outputs == OUTPUTS


def test_an_ambiguous_failure_of_a_create_ends_the_run() -> None:
    s = engine.sending(state(object_id="", object_ids=()), "create")
    cut = Failure("no answer before the deadline", retryable=True, ambiguous=True)
    fin = final_of(engine.on_failure(s, Op.CREATE, cut, T0 + 1, POLICY, 0.0))
    assert fin.error is not None and fin.error[0] == "create_outcome_unknown"
    assert "cancel" not in fin.reason and fin.cancel is None, "no cancel is claimed"


def test_a_create_never_sent_by_the_deadline_ends_without_a_cancel_request() -> None:
    # Rate limited (surely not sent) until the deadline: nothing was created. No CANCEL with
    # no object id, and no claim that anything was cancelled.
    s = state(object_id="", object_ids=())
    limited = Failure("rate limited before sending", code="rate_limited", retryable=True)
    fin = final_of(engine.on_failure(s, Op.CREATE, limited, T0 + 60, POLICY, 0.0))
    assert fin.status == "timed_out" and fin.error is not None
    assert fin.error[0] == "deadline_exceeded"
    assert fin.reason == (
        "the run passed its deadline before its response could be created; nothing was "
        "created, nothing to cancel"
    )


def test_a_create_refused_before_it_was_sent_is_retried() -> None:
    s = engine.sending(state(object_id="", object_ids=()), "create")
    refused = Failure("connection error (ConnectError)", retryable=True)
    d = engine.on_failure(s, Op.CREATE, refused, T0 + 1, POLICY, 0.0)
    assert d.next is not None and d.next.op is Op.CREATE and d.state.sending == ""


def test_requests_end_at_the_deadline_and_in_cancelling_at_the_end_of_the_grace() -> None:
    assert engine.request_deadline(state(), Op.GET, POLICY) == T0 + 60
    assert engine.request_deadline(awaiting(), Op.SUBMIT, POLICY) == T0 + 60
    cancelling = state(phase=Phase.CANCELLING, phase_since=T0 + 61)
    assert engine.request_deadline(cancelling, Op.CANCEL, POLICY) == T0 + 91
    fetching = state(phase=Phase.FETCHING, phase_since=T0 + 10)
    assert engine.request_deadline(fetching, Op.FETCH_RESULT, POLICY) == T0 + 40


def test_the_step_and_its_backend_flag_survive_a_restart() -> None:
    s = engine.sending(awaiting(answer_creates=True), "submit:1")
    assert RunState.from_json(s.to_json()) == s


def test_state_json_of_an_older_worker_still_reads() -> None:
    old = state().to_json().replace(',"answer_creates":false,"sending":""', "")
    assert "sending" not in old
    assert RunState.from_json(old) == state()
