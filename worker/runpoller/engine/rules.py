"""The run lifecycle's rules: every decision about a run that exists, as a pure function.

Everything that affects what happens to a run lives in this module, and this module does not
know which backend it drives. Each rule takes the durable state, what just happened (an
observation, a failure, a reply, a crash), the clock and the policy, and returns a
:class:`Decision`. No rule does I/O, reads a clock or draws a random number: the driver
(``runpoller.worker.driver``) does, and feeds the results in.

Theory of operation. A run is in one of five phases:

- ``polling``: GET the object every interval until it is terminal, needs tool outputs, or the
  wall-clock deadline passes (then cancel). The deadline is fixed when the run is first
  accepted and never moves: not for tool rounds, not for restarts. A run whose object the
  worker must create first (no object id yet) starts with CREATE instead of GET.
- ``awaiting_outputs``: the app has been asked for tool outputs (one round). Keep polling (the
  run may be cancelled or expire meanwhile) and wake up at once when the reply arrives.
- ``cancelling``: we asked the API to cancel (timeout, refused assistant or model). Keep
  polling until the API reports a terminal status or the grace period ends. When the last
  observation said nothing runs that a cancel could stop, no CANCEL is sent: the run counts
  as cancelled at once.
- ``fetching``: the API reported a terminal status; collect the results (messages).
- ``done``: the final event was decided. Nothing is decided after it.

What an answer may say. An answer to a GET or a CANCEL (and an Assistants submit) must carry
the id requested; only an answer to a request that creates an object (a create, a Responses
continuation) brings a new id, which the run then follows, and never one it followed before.
Anything else (a proxy or compatible server answering with another object) ends the run
``error`` / ``object_mismatch`` naming both ids: that object's status and output are never
taken for this run's. A status the backend does not know (``unknown``, the raw one kept)
changes nothing: the run keeps polling in its phase, reported once (:class:`UnknownStatusSeen`)
and cancelled at the deadline. ``requires_action`` without a function call to answer is no
tool round: the app is not asked, the run keeps polling.

Failures: retryable errors back off (jittered exponential, or the server's retry-after),
never past the run's deadline or the grace period; a race 400 ("Cannot cancel run with
status …", "… do not accept tool outputs") means the run moved on: re-read it and report
what really happened. Fatal errors (401/403/404, …) end the run with an ``error`` event.

Requests with side effects (a create, a submit, a cancel) are *steps*: the driver records the
step in the durable state, fenced by ownership, before sending it (:func:`step_for`,
:func:`sending`), so a worker that lost the run cannot send it and a new owner knows what may
be in flight. A step that creates an object (a create, a Responses continuation) is never
sent twice: when its fate is unknown (no answer came, or its sender died) the run ends with
``request_unconfirmed`` instead of risking a second billed response. Every request has a
time limit (:func:`request_deadline`): the run's deadline, or the end of the cancel grace.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .codes import HTTP_CODES, ErrorCode
from .model import (
    ActionRequired,
    CancelOutcome,
    CancelReason,
    CancelStarted,
    Decision,
    Effect,
    Failure,
    Finished,
    Next,
    Observation,
    Op,
    Output,
    Phase,
    Policy,
    ReplyRejected,
    RunState,
    Status,
    StatusChanged,
    ToolFailure,
    UnknownStatusSeen,
)

# ---------------------------------------------------------------------------- tables

_TERMINAL_REASONS: Mapping[Status, str] = {
    Status.COMPLETED: "the run completed",
    Status.FAILED: "the run failed",
    Status.INCOMPLETE: "the run ended incomplete",
    Status.EXPIRED: "the run expired (tool outputs were not submitted in time)",
    Status.CANCELLED: "the run was cancelled outside runpoller",
}

# The error code of a run the API ended other than completed (nobody here cancelled it).
_TERMINAL_CODES: Mapping[Status, ErrorCode] = {
    Status.FAILED: ErrorCode.RUN_FAILED,
    Status.INCOMPLETE: ErrorCode.RUN_INCOMPLETE,
    Status.EXPIRED: ErrorCode.RUN_EXPIRED,
    Status.CANCELLED: ErrorCode.CANCELLED_OUTSIDE,
}

# Why a cancel was started -> (final status, reason, error code); ``{detail}`` is the state's
# cancel detail (for an app's cancel, the reason it gave, shown in parentheses when given).
_CANCEL_OUTCOMES: Mapping[CancelReason, tuple[str, str, ErrorCode]] = {
    CancelReason.TIMEOUT: (
        "timed_out",
        "the run passed its deadline and was cancelled",
        ErrorCode.DEADLINE_EXCEEDED,
    ),
    CancelReason.TOOL_TIMEOUT: ("timed_out", "{detail}", ErrorCode.TOOL_OUTPUTS_TIMEOUT),
    CancelReason.REFUSED: ("refused", "refused: {detail}", ErrorCode.REFUSED_ASSISTANT),
    CancelReason.REFUSED_MODEL: ("refused", "refused: {detail}", ErrorCode.REFUSED_MODEL),
    CancelReason.UNSUPPORTED_ACTION: ("refused", "refused: {detail}", ErrorCode.ACTION_UNSUPPORTED),
    CancelReason.APP: (
        "cancelled",
        "cancelled at the app's request{detail}",
        ErrorCode.CANCELLED_BY_APP,
    ),
}

# Phases bounded by the cancel grace period (counted from entering them), not the deadline.
_GRACE_BOUNDED = frozenset({Phase.CANCELLING, Phase.FETCHING})


def _cancel_answered(state: RunState, now: float) -> RunState:
    return replace(state, cancel_sent=True)


def _back_to_polling(state: RunState, now: float) -> RunState:
    """Leave a tool round (answered here, elsewhere, or overtaken by the run's own end)."""
    return replace(
        state,
        phase=Phase.POLLING,
        phase_since=now,
        pending_calls=(),
        pending_choices=(),
        outputs_deadline=None,
    )


# What any answer to a request tells, whatever it says (a race included): a cancel was
# received; submitted outputs ended the tool round.
_ANSWERED: Mapping[Op, Callable[[RunState, float], RunState]] = {
    Op.CANCEL: _cancel_answered,
    Op.SUBMIT: _back_to_polling,
}

# ---------------------------------------------------------------------------- decisions


def new_state(object_id: str, *, now: float, timeout_s: float, interval_s: float) -> RunState:
    """The state of a run accepted at ``now``: the deadline is anchored here for good."""
    return RunState(
        deadline=now + timeout_s,
        interval=interval_s,
        object_id=object_id,
        phase_since=now,
        accepted_at=now,
        object_ids=(object_id,) if object_id else (),
    )


def start(state: RunState, now: float) -> Decision:
    """A run just accepted or taken over: its first request, or its end when the previous
    owner may have sent a step that must not be sent twice."""
    if state.phase is Phase.DONE:
        return Decision(state)
    if state.sending:
        if _creates(state, _STEP_OPS.get(state.sending.partition(":")[0], Op.GET)):
            return _unconfirmed(state, "its sender stopped before the answer came", [])
        state = replace(state, sending="")
    return Decision(state, (), resume(state, now))


def resume(state: RunState, now: float) -> Next | None:
    """The first request for a run just accepted or taken over from another worker."""
    if state.phase is Phase.DONE:
        return None
    if state.phase is Phase.CANCELLING and not state.cancel_sent and state.cancellable:
        return Next(Op.CANCEL, now)
    return Next(_read(state), now, wake_on_reply=state.phase is Phase.AWAITING_OUTPUTS)


def on_observation(
    state: RunState, op: Op, obs: Observation, now: float, policy: Policy
) -> Decision:
    """The API answered a CREATE, GET, CANCEL or SUBMIT with the run object."""
    if state.phase is Phase.DONE:
        return Decision(state)
    effects: list[Effect] = []
    if state.failures or state.sending:
        state = replace(state, failures=0, sending="")
    mismatch = _mismatch(state, op, obs)
    if mismatch:
        # Another object's answer says nothing about this run: not adopted, not reported.
        error = (ErrorCode.OBJECT_MISMATCH.value, mismatch)
        return _finish(state, "error", mismatch, _api_status(state), effects, error)
    if obs.object_id != state.object_id:
        state = replace(
            state, object_id=obs.object_id, object_ids=(*state.object_ids, obs.object_id)
        )
    if obs.cancellable is not state.cancellable or obs.answer_creates is not state.answer_creates:
        state = replace(state, cancellable=obs.cancellable, answer_creates=obs.answer_creates)
    answered = _ANSWERED.get(op)
    if answered is not None:
        state = answered(state, now)
    unknown = obs.status is Status.UNKNOWN
    if obs.status != state.last_status or (unknown and obs.api_status != state.unknown_status):
        effects.append(StatusChanged(obs.status, obs.api_status, obs.object_id))
        state = replace(state, last_status=obs.status)
    if unknown and obs.api_status != state.unknown_status:
        if not state.unknown_status:
            effects.append(UnknownStatusSeen(obs.api_status, obs.object_id))
        state = replace(state, unknown_status=obs.api_status)

    if not state.checked:
        state = replace(state, checked=True)
        refusal = _refusal(obs, policy)
        if refusal is not None:
            why, text = refusal
            if obs.status.terminal:
                code = _CANCEL_OUTCOMES[why][2]
                reason = f"refused: {text}"
                return _finish(state, "refused", reason, obs.api_status, effects, (code, reason))
            state = _start_cancel(state, why, text, now, effects)
            return _send_cancel(state, now, effects)

    if obs.status.terminal:
        state = replace(state, phase=Phase.FETCHING, phase_since=now)
        return Decision(state, tuple(effects), Next(Op.FETCH_RESULT, now))

    if state.phase is Phase.CANCELLING:
        if now >= state.phase_since + policy.cancel_grace_s:
            return _finish_cancel(state, "unconfirmed", "", obs.api_status, effects)
        if not state.cancel_sent:
            return _send_cancel(state, now, effects)
        at = min(now + _interval(state, obs), state.phase_since + policy.cancel_grace_s)
        return Decision(state, tuple(effects), Next(_read(state), at))

    if obs.unsupported_action and not obs.status.terminal:
        # Waiting for what the app cannot be asked: cancel now, not at the deadline.
        state = _start_cancel(
            state, CancelReason.UNSUPPORTED_ACTION, obs.unsupported_action, now, effects
        )
        return _send_cancel(state, now, effects)

    if unknown or (obs.status is Status.REQUIRES_ACTION and not obs.tool_calls):
        # Neither says where the run is: an unknown status, or requires_action without a
        # function call to answer (only other actions, or a transient state) is no tool round
        # and ends none. Keep polling as before; the deadline cancels the run.
        pass
    elif obs.status is Status.REQUIRES_ACTION:
        call_ids = tuple(call.id for call in obs.tool_calls)
        if state.phase is not Phase.AWAITING_OUTPUTS or call_ids != state.pending_calls:
            until = state.deadline
            if obs.action_expires_at is not None:
                until = min(until, obs.action_expires_at)
            state = replace(
                state,
                phase=Phase.AWAITING_OUTPUTS,
                phase_since=now,
                round=state.round + 1,
                pending_calls=call_ids,
                pending_choices=tuple(call.choices for call in obs.tool_calls),
                outputs_deadline=until,
            )
            effects.append(ActionRequired(state.round, obs.object_id, obs.tool_calls, until))
    elif state.phase is Phase.AWAITING_OUTPUTS:
        # Outputs were submitted elsewhere (or by a previous owner): back to plain polling.
        state = _back_to_polling(state, now)

    if now >= state.deadline:
        state = _cancel_at_deadline(state, now, effects)
        return _send_cancel(state, now, effects)

    awaiting = state.phase is Phase.AWAITING_OUTPUTS
    if obs.follow_now and not awaiting:
        at = now  # the answer's stream is open: read on
    else:
        at = min(now + _interval(state, obs, now, policy), state.deadline)
    return Decision(state, tuple(effects), Next(_read(state), at, wake_on_reply=awaiting))


def on_result_fetched(state: RunState, now: float, note: str = "") -> Decision:
    """Results are collected (or given up on, with ``note`` saying why): finish the run."""
    if state.phase is Phase.DONE:
        return Decision(state)
    last = state.last_status
    api_status = last.value if last else None
    if state.cancel_reason is not None and last is Status.CANCELLED:
        return _finish_cancel(state, "confirmed", "", api_status, [], note)
    cancel = None
    if last is None:
        status, reason = "error", "the run ended before its status could be read"
        code: ErrorCode | None = ErrorCode.API_ERROR
    else:
        status = last.value
        reason = _TERMINAL_REASONS[last]
        code = _TERMINAL_CODES.get(last)
        if state.cancel_reason is not None:
            reason += f" (it reached {last.value} before the cancel took effect)"
            cancel = CancelOutcome(state.cancel_reason, "overtaken", _app_reason(state))
    if note:
        reason = f"{reason}; {note}"
    error = (code.value, reason) if code is not None else None
    return _finish(state, status, reason, api_status, [], error, cancel=cancel)


def on_failure(
    state: RunState,
    op: Op,
    failure: Failure,
    now: float,
    policy: Policy,
    rand: float,
    outputs: tuple[tuple[str, Output], ...] = (),
) -> Decision:
    """A request failed. ``rand`` in [0, 1) supplies the jitter, so this stays pure;
    ``outputs`` are those of a failed SUBMIT, which its retry must carry again."""
    if state.phase is Phase.DONE:
        return Decision(state)
    if failure.ambiguous and _creates(state, op):
        return _unconfirmed(state, failure.message, [])
    if state.sending:
        state = replace(state, sending="")
    api_status = _api_status(state)
    if failure.race:
        # The run moved on (finished before our cancel, or left requires_action): re-read it.
        answered = _ANSWERED.get(op)
        if answered is not None:
            state = answered(state, now)
        return Decision(replace(state, failures=0), (), Next(_read(state), now))

    if not failure.retryable:
        if op is Op.FETCH_RESULT:
            return on_result_fetched(state, now, note=f"results unavailable: {failure.message}")
        if op is Op.CANCEL:
            return _finish_cancel(state, "unconfirmed", failure.message, api_status, [])
        code = HTTP_CODES.get(failure.status_code or 0, ErrorCode.API_ERROR)
        return _finish(
            state,
            "error",
            f"the API refused the request: {failure.message}",
            api_status,
            [],
            (code.value, failure.message),
            api_code=failure.code,
            http_status=failure.status_code,
        )

    failures = state.failures + 1
    state = replace(state, failures=failures)
    at = now + _backoff(failures, failure, policy, rand)
    if state.phase in _GRACE_BOUNDED:
        limit = state.phase_since + policy.cancel_grace_s
        if now >= limit:
            if state.phase is Phase.FETCHING:
                return on_result_fetched(state, now, note=f"results unavailable: {failure.message}")
            return _finish_cancel(state, "unconfirmed", failure.message, api_status, [])
        return Decision(state, (), Next(op, min(at, limit)))
    if now >= state.deadline:
        effects: list[Effect] = []
        state = _cancel_at_deadline(state, now, effects)
        return _send_cancel(state, now, effects)
    if op is Op.SUBMIT:
        return Decision(state, (), Next(Op.SUBMIT, min(at, state.deadline), outputs=outputs))
    awaiting = state.phase is Phase.AWAITING_OUTPUTS
    return Decision(state, (), Next(_read(state), min(at, state.deadline), wake_on_reply=awaiting))


def on_reply(
    state: RunState,
    round_: int,
    outputs: Sequence[tuple[str, Any]] | None,
    now: float,
    policy: Policy,
    problem: str = "",
) -> Decision:
    """The app answered a round of tool calls: submit if the answer is complete and exact.

    ``outputs`` is None when the reply could not even be parsed (``problem`` says why). A
    reply for a round already answered is rejected too, so the app learns its answer was not
    used (the driver drops a redelivery of the very entry it submitted before asking here).
    """
    if state.phase is Phase.DONE:
        return Decision(state)
    if state.phase in _GRACE_BOUNDED:
        ending = "being cancelled" if state.phase is Phase.CANCELLING else "ending"
        why = f"the run is {ending} and no longer takes tool outputs; this reply was not used"
        return Decision(state, (ReplyRejected(round_, (why,)),), None)
    if round_ < state.round or (
        round_ == state.round and state.phase is not Phase.AWAITING_OUTPUTS
    ):
        answered = f"round {round_} was already answered; this reply was not used"
        return Decision(state, (ReplyRejected(round_, (answered,)),), None)
    if round_ > state.round or state.phase is not Phase.AWAITING_OUTPUTS:
        stale = f"round {round_} has not been asked (current round {state.round})"
        return Decision(state, (ReplyRejected(round_, (stale,)),), None)
    if outputs is None:
        return Decision(state, (ReplyRejected(round_, (problem,)),), None)
    problems = _check_outputs(state.pending_calls, outputs, state.pending_choices)
    size = sum(len(_text(output).encode()) for _, output in outputs)
    if size > policy.max_reply_bytes:
        problems.append(f"outputs total {size} bytes; the limit is {policy.max_reply_bytes} bytes")
    if problems:
        return Decision(state, (ReplyRejected(round_, tuple(problems)),), None)
    pairs = tuple(
        (str(call_id), output if isinstance(output, ToolFailure) else str(output))
        for call_id, output in outputs
    )
    return Decision(state, (), Next(Op.SUBMIT, now, outputs=pairs))


def on_cancel_request(state: RunState, app_reason: str, now: float) -> Decision | None:
    """The app asked to cancel the run (``app_reason``: what it said, maybe ""). None when
    that changes nothing: the run is over or ending (fetching its results), or a cancel is
    under way already (the app's own, asked again, or the deadline's, which the final event
    then reports). Otherwise cancel now, as for the deadline; a run whose object was never
    created (a Responses create not sent yet) ends at once, with no request."""
    if state.phase in (Phase.DONE, Phase.FETCHING, Phase.CANCELLING):
        return None
    effects: list[Effect] = []
    state = _start_cancel(state, CancelReason.APP, app_reason, now, effects)
    return _send_cancel(state, now, effects)


def on_crash(state: RunState, error_type: str) -> Decision:
    """The driver failed on a bug (``error_type`` names the exception, never its message,
    which may hold secrets): end the run with an error rather than strand or retry it."""
    if state.phase is Phase.DONE:
        return Decision(state)
    message = f"internal error while driving the run ({error_type})"
    api_status = _api_status(state)
    error = (ErrorCode.INTERNAL_ERROR.value, message)
    return _finish(state, "error", message, api_status, [], error)


def step_for(state: RunState, op: Op) -> str:
    """The step a request is, when it has side effects ("" for reads): what the driver claims,
    fenced, before sending it."""
    if op is Op.SUBMIT:
        return f"submit:{state.round}"
    if op is Op.CREATE:
        return "create"
    if op is Op.CANCEL:
        return "cancel"
    return ""


def sending(state: RunState, step: str) -> RunState:
    """The state that records ``step`` as claimed (persisted before the request is sent)."""
    return replace(state, sending=step)


def request_deadline(state: RunState, op: Op, policy: Policy) -> float:
    """When a request must have its answer: the run's deadline, or in the phases bounded by
    the cancel grace (cancelling, fetching) the end of the grace."""
    if state.phase in _GRACE_BOUNDED:
        return state.phase_since + policy.cancel_grace_s
    return state.deadline


# ---------------------------------------------------------------------------- helpers

_STEP_OPS: Mapping[str, Op] = {"submit": Op.SUBMIT, "create": Op.CREATE, "cancel": Op.CANCEL}


def _creates(state: RunState, op: Op) -> bool:
    """Whether the request creates an object (and so must never be sent twice)."""
    return op is Op.CREATE or (op is Op.SUBMIT and state.answer_creates)


def _unconfirmed(state: RunState, why: str, effects: list[Effect]) -> Decision:
    creating = not state.object_id
    what = "create" if creating else "continuation"
    message = (
        f"the {what} request may have been processed but was not confirmed ({why}); it is "
        "not sent again, which could start a second billed response"
    )
    code = ErrorCode.CREATE_OUTCOME_UNKNOWN if creating else ErrorCode.REQUEST_UNCONFIRMED
    return _finish(state, "error", message, _api_status(state), effects, (code.value, message))


def _mismatch(state: RunState, op: Op, obs: Observation) -> str:
    """Why the answer is not about this run's object ("" when it is). Only a request that
    creates an object (a create, a Responses continuation) may introduce a new id, and never
    one the run already followed; every other answer must carry the id requested."""
    got, requested = obs.object_id, state.object_id
    creates = _creates(state, op)
    asked = "create" if op is Op.CREATE else f"{op.value} {requested}".rstrip()
    if creates and op is Op.SUBMIT:
        asked = f"continuation of {requested}"
    if not got:
        return f"the API's answer to {asked} carries no object id; it is not adopted"
    if creates:
        if got not in state.object_ids:
            return ""
        return (
            f"the API's answer to {asked} carries {got}, an object this run already followed, "
            "not a new one; it is not adopted"
        )
    if got == requested:
        return ""
    return (
        f"the API's answer to {asked} carries another object ({got}); it is not adopted: its "
        "status and output are not this run's"
    )


def _api_status(state: RunState) -> str | None:
    """The API's last status for the run as it said it (an unknown one included)."""
    last = state.last_status
    if last is None:
        return None
    if last is Status.UNKNOWN and state.unknown_status:
        return state.unknown_status
    return last.value


def _read(state: RunState) -> Op:
    """How to learn the run's status: GET its object, or CREATE it when there is none yet."""
    return Op.GET if state.object_id else Op.CREATE


def _interval(
    state: RunState, obs: Observation, now: float = 0.0, policy: Policy | None = None
) -> float:
    """The run's interval (grown with its age when adaptive polling is on, for a run polled
    or waiting for outputs; a cancel is watched at the plain interval), or the server's
    poll-after hint when that is longer."""
    interval = state.interval
    if policy is not None and policy.adaptive_after_s > 0 and state.accepted_at > 0:
        age = now - state.accepted_at
        if age > policy.adaptive_after_s:
            grown = state.interval * age / policy.adaptive_after_s
            interval = max(state.interval, min(grown, policy.adaptive_max_s))
    if obs.poll_after_s is not None and obs.poll_after_s > interval:
        return obs.poll_after_s
    return interval


def _refusal(obs: Observation, policy: Policy) -> tuple[CancelReason, str] | None:
    assistant = obs.assistant_id
    if assistant is not None:
        if policy.supported_ids is not None and assistant not in policy.supported_ids:
            return CancelReason.REFUSED, f"assistant {assistant} is not in supportedIds"
        if policy.excluded_ids is not None and assistant in policy.excluded_ids:
            return CancelReason.REFUSED, f"assistant {assistant} is in excludedIds"
    models = policy.allowed_models
    if models is not None and obs.model is not None and obs.model not in models:
        return CancelReason.REFUSED_MODEL, f"model {obs.model} is not in ASSISTANTS_MODELS"
    return None


def _cancel_at_deadline(state: RunState, now: float, effects: list[Effect]) -> RunState:
    """The deadline passed: cancel, naming the unanswered tool calls if we were waiting."""
    if state.phase is Phase.AWAITING_OUTPUTS:
        pending = ", ".join(state.pending_calls)
        detail = f"timed out waiting for tool outputs (unanswered call ids: {pending})"
        return _start_cancel(state, CancelReason.TOOL_TIMEOUT, detail, now, effects)
    return _start_cancel(state, CancelReason.TIMEOUT, "", now, effects)


def _start_cancel(
    state: RunState, reason: CancelReason, detail: str, now: float, effects: list[Effect]
) -> RunState:
    """Enter ``cancelling`` (announced once: a run already cancelling only learns a new why)."""
    if state.phase is not Phase.CANCELLING:
        effects.append(CancelStarted(reason, detail))
    return replace(
        state,
        phase=Phase.CANCELLING,
        phase_since=now,
        cancel_reason=reason,
        cancel_detail=detail,
        cancel_sent=False,
    )


def _send_cancel(state: RunState, now: float, effects: list[Effect]) -> Decision:
    """Send the cancel now; or, when nothing runs on the API side (a response that completed
    with function calls), count the run as cancelled without a request and collect it; or,
    when nothing was ever created (a create not sent yet, or surely not processed), end the
    run at once saying so: there is nothing to cancel, and no cancel is claimed."""
    if not state.object_id:
        return _finish_cancel(state, "confirmed", "", _api_status(state), effects)
    if state.cancellable:
        return Decision(state, tuple(effects), Next(Op.CANCEL, now))
    if state.last_status is not Status.CANCELLED:
        effects.append(StatusChanged(Status.CANCELLED, Status.CANCELLED.value, state.object_id))
    state = replace(
        state,
        failures=0,
        cancel_sent=True,
        last_status=Status.CANCELLED,
        phase=Phase.FETCHING,
        phase_since=now,
    )
    return Decision(state, tuple(effects), Next(Op.FETCH_RESULT, now))


# The reason of a cancel that found nothing created (a Responses create never sent, or surely
# not processed): no request, and no claim that anything was cancelled.
_NOTHING_CREATED: Mapping[CancelReason, str] = {
    CancelReason.TIMEOUT: "the run passed its deadline before its response could be created; "
    "nothing was created, nothing to cancel",
    CancelReason.APP: "cancelled at the app's request{detail} before the response was created",
}


def _app_reason(state: RunState) -> str:
    return state.cancel_detail if state.cancel_reason is CancelReason.APP else ""


def _finish_cancel(
    state: RunState,
    outcome: str,
    why: str,
    api_status: str | None,
    effects: list[Effect],
    note: str = "",
) -> Decision:
    """End a run runpoller cancelled: ``outcome`` is ``confirmed`` (the API reports it
    cancelled, or nothing ran to cancel) or ``unconfirmed`` (``why``: the last failure)."""
    reason_ = state.cancel_reason or CancelReason.TIMEOUT
    status, template, code = _CANCEL_OUTCOMES[reason_]
    if not state.object_id:
        template = _NOTHING_CREATED.get(reason_, template)
    detail = state.cancel_detail
    if reason_ is CancelReason.APP:
        detail = f" ({detail})" if detail else ""
    text = template.format(detail=detail)
    if outcome != "confirmed":
        code = ErrorCode.CANCEL_UNCONFIRMED
        text += "; the cancel could not be confirmed"
        if why:
            text += f" ({why})"
    if note:
        text = f"{text}; {note}"
    cancel = CancelOutcome(reason_, outcome, _app_reason(state))
    return _finish(state, status, text, api_status, effects, (code.value, text), cancel=cancel)


def _finish(
    state: RunState,
    status: str,
    reason: str,
    api_status: str | None,
    effects: list[Effect],
    error: tuple[str, str] | None = None,
    *,
    api_code: str | None = None,
    http_status: int | None = None,
    cancel: CancelOutcome | None = None,
) -> Decision:
    effects.append(Finished(status, reason, api_status, error, api_code, http_status, cancel))
    return Decision(replace(state, phase=Phase.DONE), tuple(effects), None)


def _backoff(failures: int, failure: Failure, policy: Policy, rand: float) -> float:
    if failure.retry_after_s is not None and failure.retry_after_s > 0:
        return min(failure.retry_after_s, policy.max_retry_after_s)
    base: float = min(policy.backoff_base_s * 2.0 ** (failures - 1), policy.backoff_cap_s)
    return base * (1 - 0.25 * rand)


def _check_outputs(
    pending: Sequence[str],
    outputs: Sequence[tuple[str, Any]],
    choices: Sequence[tuple[str, ...]] = (),
) -> list[str]:
    problems: list[str] = []
    allowed = {cid: opts for cid, opts in zip(pending, choices, strict=False) if opts}
    seen: set[str] = set()
    for call_id, output in outputs:
        if call_id not in pending:
            problems.append(f"unknown tool_call_id {call_id!r}")
        elif call_id in seen:
            problems.append(f"tool_call_id {call_id!r} answered more than once")
        seen.add(call_id)
        if isinstance(output, ToolFailure):
            if call_id in allowed:
                options = " or ".join(repr(o) for o in allowed[call_id])
                problems.append(f"{call_id!r} cannot fail: answer it with {options}")
        elif not isinstance(output, str):
            problems.append(f"output for {call_id!r} must be a string, got {type(output).__name__}")
        elif call_id in allowed and output not in allowed[call_id]:
            options = " or ".join(repr(o) for o in allowed[call_id])
            problems.append(f"output for {call_id!r} must be {options}, got {output!r}")
    missing = [call_id for call_id in pending if call_id not in seen]
    if missing:
        problems.append("missing outputs for tool_call_id " + ", ".join(missing))
    return problems


def _text(output: Any) -> str:
    return output.message if isinstance(output, ToolFailure) else str(output)
