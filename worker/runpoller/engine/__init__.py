"""The run lifecycle as a pure decision engine.

Everything that decides what happens to a run lives in this module: given the run's durable
state, what the API just said (or how a request failed), the clock and the policy, it returns
the new state, the events to publish and the next request to make. It does no I/O and does not
know which backend it drives: backends map their API objects onto :class:`Observation`, the
driver (``runpoller.worker.driver``) performs the requests and writes the effects to Redis.

Theory of operation. A run is in one of five phases:

- ``polling``: GET the object every interval until it is terminal, needs tool outputs, or the
  wall-clock deadline passes (then cancel). The deadline is fixed when the run is first
  accepted and never moves: not for tool rounds, not for restarts.
- ``awaiting_outputs``: the app has been asked for tool outputs (one round). Keep polling (the
  run may be cancelled or expire meanwhile) and wake up at once when the reply arrives.
- ``cancelling``: we asked the API to cancel (timeout, refused assistant or model). Keep
  polling until the API reports a terminal status or the grace period ends.
- ``fetching``: the API reported a terminal status; collect the results (messages).
- ``done``: the final event was decided.

Failures: retryable errors back off (jittered exponential, or the server's retry-after),
never past the run's deadline or the grace period; a race 400 ("Cannot cancel run with
status …", "… do not accept tool outputs") means the run moved on: re-read it and report
what really happened. Fatal errors (401/403/404, …) end the run with an ``error`` event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

# ---------------------------------------------------------------------------- inputs


class Status(StrEnum):
    """Backend-neutral run status."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    REQUIRES_ACTION = "requires_action"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INCOMPLETE = "incomplete"
    EXPIRED = "expired"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.INCOMPLETE, Status.EXPIRED}
)


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    """One function call the model wants the app to answer."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Observation:
    """What the API reported about the run, mapped onto neutral terms by a backend."""

    status: Status
    api_status: str
    object_id: str
    model: str | None = None
    assistant_id: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    action_expires_at: float | None = None
    error: tuple[str, str] | None = None
    incomplete_details: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None
    poll_after_s: float | None = None
    payload: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The backend's own object, handed back to it when results are collected."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that did not produce an observation, classified by the API client."""

    message: str
    status_code: int | None = None
    code: str | None = None
    retryable: bool = False
    race: bool = False
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Policy:
    """The parts of the configuration that decisions depend on."""

    cancel_grace_s: float = 30.0
    max_retry_after_s: float = 120.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    supported_ids: frozenset[str] | None = None
    excluded_ids: frozenset[str] | None = None
    allowed_models: frozenset[str] | None = None
    max_reply_bytes: int = 1024 * 1024


# ---------------------------------------------------------------------------- state


class Phase(StrEnum):
    POLLING = "polling"
    AWAITING_OUTPUTS = "awaiting_outputs"
    CANCELLING = "cancelling"
    FETCHING = "fetching"
    DONE = "done"


class CancelReason(StrEnum):
    TIMEOUT = "timeout"
    TOOL_TIMEOUT = "tool_timeout"
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class RunState:
    """The durable state of one run: enough for any worker to resume it after a crash."""

    deadline: float
    interval: float
    object_id: str
    phase: Phase = Phase.POLLING
    phase_since: float = 0.0
    cancel_reason: CancelReason | None = None
    cancel_detail: str = ""
    cancel_sent: bool = False
    last_status: Status | None = None
    round: int = 0
    pending_calls: tuple[str, ...] = ()
    outputs_deadline: float | None = None
    failures: int = 0
    checked: bool = False
    object_ids: tuple[str, ...] = field(default=())

    def to_json(self) -> str:
        data = {name: getattr(self, name) for name in self.__slots__}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> RunState:
        data = json.loads(text)
        data["phase"] = Phase(data["phase"])
        if data.get("cancel_reason"):
            data["cancel_reason"] = CancelReason(data["cancel_reason"])
        if data.get("last_status"):
            data["last_status"] = Status(data["last_status"])
        data["pending_calls"] = tuple(data.get("pending_calls") or ())
        data["object_ids"] = tuple(data.get("object_ids") or ())
        return cls(**data)


def new_state(object_id: str, *, now: float, timeout_s: float, interval_s: float) -> RunState:
    """The state of a run accepted at ``now``: the deadline is anchored here for good."""
    return RunState(
        deadline=now + timeout_s,
        interval=interval_s,
        object_id=object_id,
        phase_since=now,
        object_ids=(object_id,) if object_id else (),
    )


# ---------------------------------------------------------------------------- outputs


class Op(StrEnum):
    GET = "get"
    CANCEL = "cancel"
    SUBMIT = "submit"
    FETCH_RESULT = "fetch_result"


@dataclass(frozen=True, slots=True)
class Next:
    """The next request to make, and when. ``outputs`` travel with a SUBMIT."""

    op: Op
    at: float
    wake_on_reply: bool = False
    outputs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class StatusChanged:
    status: Status
    api_status: str
    object_id: str


@dataclass(frozen=True, slots=True)
class ActionRequired:
    round: int
    object_id: str
    calls: tuple[ToolCallRequest, ...]
    deadline: float


@dataclass(frozen=True, slots=True)
class ReplyRejected:
    round: int
    problems: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReplyIgnored:
    round: int
    why: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over. ``status`` is the protocol's final status."""

    status: str
    reason: str
    api_status: str | None
    error: tuple[str, str] | None = None


Effect = StatusChanged | ActionRequired | ReplyRejected | ReplyIgnored | Finished


@dataclass(frozen=True, slots=True)
class Decision:
    state: RunState
    effects: tuple[Effect, ...] = ()
    next: Next | None = None


# ---------------------------------------------------------------------------- decisions


def resume(state: RunState, now: float) -> Next | None:
    """The first request for a run just accepted or taken over from another worker."""
    if state.phase is Phase.DONE:
        return None
    if state.phase is Phase.CANCELLING and not state.cancel_sent:
        return Next(Op.CANCEL, now)
    return Next(Op.GET, now, wake_on_reply=state.phase is Phase.AWAITING_OUTPUTS)


def on_observation(
    state: RunState, op: Op, obs: Observation, now: float, policy: Policy
) -> Decision:
    """The API answered a GET, CANCEL or SUBMIT with the run object."""
    effects: list[Effect] = []
    if state.failures:
        state = replace(state, failures=0)
    if obs.object_id != state.object_id:
        state = replace(
            state, object_id=obs.object_id, object_ids=(*state.object_ids, obs.object_id)
        )
    if op is Op.CANCEL:
        state = replace(state, cancel_sent=True)
    if op is Op.SUBMIT:
        state = _back_to_polling(state, now)
    if obs.status != state.last_status:
        effects.append(StatusChanged(obs.status, obs.api_status, obs.object_id))
        state = replace(state, last_status=obs.status)

    if not state.checked:
        state = replace(state, checked=True)
        refusal = _refusal(obs, policy)
        if refusal is not None:
            if obs.status.terminal:
                return _finish(state, "refused", refusal, obs.api_status, effects)
            state = _start_cancel(state, CancelReason.REFUSED, refusal, now)
            return Decision(state, tuple(effects), Next(Op.CANCEL, now))

    if obs.status.terminal:
        state = replace(state, phase=Phase.FETCHING, phase_since=now)
        return Decision(state, tuple(effects), Next(Op.FETCH_RESULT, now))

    if state.phase is Phase.CANCELLING:
        if now >= state.phase_since + policy.cancel_grace_s:
            status, reason = _cancel_outcome(state, confirmed=False, why="")
            return _finish(state, status, reason, obs.api_status, effects)
        if not state.cancel_sent:
            return Decision(state, tuple(effects), Next(Op.CANCEL, now))
        at = min(now + _interval(state, obs), state.phase_since + policy.cancel_grace_s)
        return Decision(state, tuple(effects), Next(Op.GET, at))

    if obs.status is Status.REQUIRES_ACTION:
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
                outputs_deadline=until,
            )
            effects.append(ActionRequired(state.round, obs.object_id, obs.tool_calls, until))
    elif state.phase is Phase.AWAITING_OUTPUTS:
        # Outputs were submitted elsewhere (or by a previous owner): back to plain polling.
        state = _back_to_polling(state, now)

    if now >= state.deadline:
        return Decision(_cancel_at_deadline(state, now), tuple(effects), Next(Op.CANCEL, now))

    at = min(now + _interval(state, obs), state.deadline)
    awaiting = state.phase is Phase.AWAITING_OUTPUTS
    return Decision(state, tuple(effects), Next(Op.GET, at, wake_on_reply=awaiting))


def on_result_fetched(state: RunState, now: float, note: str = "") -> Decision:
    """Results are collected (or given up on, with ``note`` saying why): finish the run."""
    last = state.last_status
    api_status = last.value if last else None
    if state.cancel_reason is not None and last is Status.CANCELLED:
        status, reason = _cancel_outcome(state, confirmed=True, why="")
    elif last is None:
        status, reason = "error", "the run ended before its status could be read"
    else:
        status = last.value
        reason = _TERMINAL_REASONS[last]
        if state.cancel_reason is not None:
            reason += f" (it reached {last.value} before the cancel took effect)"
    if note:
        reason = f"{reason}; {note}"
    return _finish(state, status, reason, api_status, [])


def on_failure(
    state: RunState, op: Op, failure: Failure, now: float, policy: Policy, rand: float
) -> Decision:
    """A request failed. ``rand`` in [0, 1) supplies the jitter, so this stays pure."""
    api_status = state.last_status.value if state.last_status else None
    if failure.race:
        # The run moved on (finished before our cancel, or left requires_action): re-read it.
        if op is Op.CANCEL:
            state = replace(state, cancel_sent=True)
        if op is Op.SUBMIT:
            state = _back_to_polling(state, now)
        return Decision(replace(state, failures=0), (), Next(Op.GET, now))

    if not failure.retryable:
        if op is Op.FETCH_RESULT:
            return on_result_fetched(state, now, note=f"results unavailable: {failure.message}")
        if op is Op.CANCEL:
            status, reason = _cancel_outcome(state, confirmed=False, why=failure.message)
            return _finish(state, status, reason, api_status, [])
        return _finish(
            state,
            "error",
            f"the API refused the request: {failure.message}",
            api_status,
            [],
            error=(failure.code or _code_for(failure.status_code), failure.message),
        )

    failures = state.failures + 1
    state = replace(state, failures=failures)
    delay = _backoff(failures, failure, policy, rand)
    at = now + delay
    if state.phase in (Phase.CANCELLING, Phase.FETCHING):
        limit = state.phase_since + policy.cancel_grace_s
        if now >= limit:
            if state.phase is Phase.FETCHING:
                return on_result_fetched(state, now, note=f"results unavailable: {failure.message}")
            status, reason = _cancel_outcome(state, confirmed=False, why=failure.message)
            return _finish(state, status, reason, api_status, [])
        return Decision(state, (), Next(op, min(at, limit)))
    if now >= state.deadline:
        return Decision(_cancel_at_deadline(state, now), (), Next(Op.CANCEL, now))
    awaiting = state.phase is Phase.AWAITING_OUTPUTS
    if op is Op.SUBMIT:
        return Decision(state, (), Next(Op.SUBMIT, min(at, state.deadline)))
    return Decision(state, (), Next(Op.GET, min(at, state.deadline), wake_on_reply=awaiting))


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
    reply for a round already answered is ignored (a duplicate or redelivery), not an error.
    """
    if round_ < state.round or (
        round_ == state.round and state.phase is not Phase.AWAITING_OUTPUTS
    ):
        return Decision(state, (ReplyIgnored(round_, "this round was already answered"),), None)
    if round_ > state.round or state.phase is not Phase.AWAITING_OUTPUTS:
        stale = f"round {round_} has not been asked (current round {state.round})"
        return Decision(state, (ReplyRejected(round_, (stale,)),), None)
    if outputs is None:
        return Decision(state, (ReplyRejected(round_, (problem,)),), None)
    problems = _check_outputs(state.pending_calls, outputs)
    size = sum(len(str(output).encode()) for _, output in outputs)
    if size > policy.max_reply_bytes:
        problems.append(f"outputs total {size} bytes; the limit is {policy.max_reply_bytes} bytes")
    if problems:
        return Decision(state, (ReplyRejected(round_, tuple(problems)),), None)
    pairs = tuple((str(call_id), str(output)) for call_id, output in outputs)
    return Decision(state, (), Next(Op.SUBMIT, now, outputs=pairs))


# ---------------------------------------------------------------------------- helpers


_TERMINAL_REASONS = {
    Status.COMPLETED: "the run completed",
    Status.FAILED: "the run failed",
    Status.INCOMPLETE: "the run ended incomplete",
    Status.EXPIRED: "the run expired (tool outputs were not submitted in time)",
    Status.CANCELLED: "the run was cancelled outside runpoller",
}


def _interval(state: RunState, obs: Observation) -> float:
    """The configured interval, or the server's poll-after hint when that is longer."""
    if obs.poll_after_s is not None and obs.poll_after_s > state.interval:
        return obs.poll_after_s
    return state.interval


def _refusal(obs: Observation, policy: Policy) -> str | None:
    assistant = obs.assistant_id
    if assistant is not None:
        if policy.supported_ids is not None and assistant not in policy.supported_ids:
            return f"assistant {assistant} is not in supportedIds"
        if policy.excluded_ids is not None and assistant in policy.excluded_ids:
            return f"assistant {assistant} is in excludedIds"
    models = policy.allowed_models
    if models is not None and obs.model is not None and obs.model not in models:
        return f"model {obs.model} is not in ASSISTANTS_MODELS"
    return None


def _back_to_polling(state: RunState, now: float) -> RunState:
    """Leave a tool round (answered here, elsewhere, or overtaken by the run's own end)."""
    return replace(
        state, phase=Phase.POLLING, phase_since=now, pending_calls=(), outputs_deadline=None
    )


def _cancel_at_deadline(state: RunState, now: float) -> RunState:
    """The deadline passed: cancel, naming the unanswered tool calls if we were waiting."""
    if state.phase is Phase.AWAITING_OUTPUTS:
        pending = ", ".join(state.pending_calls)
        detail = f"timed out waiting for tool outputs (unanswered call ids: {pending})"
        return _start_cancel(state, CancelReason.TOOL_TIMEOUT, detail, now)
    return _start_cancel(state, CancelReason.TIMEOUT, "", now)


def _start_cancel(state: RunState, reason: CancelReason, detail: str, now: float) -> RunState:
    return replace(
        state,
        phase=Phase.CANCELLING,
        phase_since=now,
        cancel_reason=reason,
        cancel_detail=detail,
        cancel_sent=False,
    )


def _cancel_outcome(state: RunState, *, confirmed: bool, why: str) -> tuple[str, str]:
    reason = state.cancel_reason
    if reason is CancelReason.REFUSED:
        status, text = "refused", f"refused: {state.cancel_detail}"
    elif reason is CancelReason.TOOL_TIMEOUT:
        status, text = "timed_out", state.cancel_detail
    else:
        status, text = "timed_out", "the run passed its deadline and was cancelled"
    if not confirmed:
        text += "; the cancel could not be confirmed"
        if why:
            text += f" ({why})"
    return status, text


def _finish(
    state: RunState,
    status: str,
    reason: str,
    api_status: str | None,
    effects: list[Effect],
    error: tuple[str, str] | None = None,
) -> Decision:
    effects.append(Finished(status, reason, api_status, error))
    return Decision(replace(state, phase=Phase.DONE), tuple(effects), None)


def _backoff(failures: int, failure: Failure, policy: Policy, rand: float) -> float:
    if failure.retry_after_s is not None and failure.retry_after_s > 0:
        return min(failure.retry_after_s, policy.max_retry_after_s)
    base: float = min(policy.backoff_base_s * 2.0 ** (failures - 1), policy.backoff_cap_s)
    return base * (1 - 0.25 * rand)


def _code_for(status_code: int | None) -> str:
    return {
        400: "invalid_request",
        401: "unauthorized",
        403: "forbidden",
        404: "not_found",
    }.get(status_code or 0, "api_error")


def _check_outputs(pending: Sequence[str], outputs: Sequence[tuple[str, Any]]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for call_id, output in outputs:
        if call_id not in pending:
            problems.append(f"unknown tool_call_id {call_id!r}")
        elif call_id in seen:
            problems.append(f"tool_call_id {call_id!r} answered more than once")
        seen.add(call_id)
        if not isinstance(output, str):
            problems.append(f"output for {call_id!r} must be a string, got {type(output).__name__}")
    missing = [call_id for call_id in pending if call_id not in seen]
    if missing:
        problems.append("missing outputs for tool_call_id " + ", ".join(missing))
    return problems
