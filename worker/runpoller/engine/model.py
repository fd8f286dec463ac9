"""The engine's vocabulary: what goes into a decision and what comes out of it.

Inputs are what a backend observed (:class:`Observation`) or how a request failed
(:class:`Failure`), plus the :class:`Policy`. The run's durable state is :class:`RunState`.
Outputs are a :class:`Decision`: the new state, small immutable effects for the driver to
write or count, and the :class:`Next` request. Nothing here decides anything (that is
``rules``); everything here is plain data, and a state survives JSON unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
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
    UNKNOWN = "unknown"
    """A status the backend does not know (one the API added since): neither terminal nor a
    tool round. The run keeps polling, with its phase unchanged, until the deadline cancels
    it; :attr:`Observation.api_status` keeps what the API said."""

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
    kind: str = "function"
    """What is asked: ``function`` (any string output), or an approval kind the backend
    names (its ``choices`` are the only outputs accepted)."""
    choices: tuple[str, ...] = ()
    """When not empty, the only outputs the app may answer with (``approve``, ``deny``)."""
    turn_id: str = ""
    """The part of the run that asked (an agent session's turn), when the backend has one."""
    request: Mapping[str, Any] | None = field(default=None, compare=False)
    """What the API said about the request, handed to the app as is."""


@dataclass(frozen=True, slots=True)
class ToolFailure:
    """The app's answer that a call failed (its message), in place of the call's output.

    A backend whose API takes a failure says so (an agent turn's ``success: false``); one
    whose API takes outputs only submits ``{"error": message}`` as the output."""

    message: str


Output = str | ToolFailure
"""One call's answer: its output, or that it failed."""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the API reported about the run, mapped onto neutral terms by a backend."""

    status: Status
    api_status: str
    object_id: str
    """The id the answer carries (``""`` when it carries none): checked against the one
    requested, never adopted unless the request creates an object (see the rules)."""
    model: str | None = None
    assistant_id: str | None = None
    tool_calls: tuple[ToolCallRequest, ...] = ()
    """The function calls to answer; a ``requires_action`` without any is no tool round."""
    action_expires_at: float | None = None
    error: tuple[str, str] | None = None
    incomplete_details: Mapping[str, Any] | None = None
    usage: Mapping[str, Any] | None = None
    poll_after_s: float | None = None
    cancellable: bool = True
    """False when nothing runs on the API side that a cancel could stop (a response that
    completed with function calls): the engine then ends a cancel without a request."""
    answer_creates: bool = False
    """True when answering the tool calls creates a new object (a Responses continuation):
    such a submit, once sent, is never sent again unless it was surely not processed."""
    follow_now: bool = False
    """The answer came on a stream that stays open (a streamed create): the next read follows
    it at once, not after an interval."""
    payload: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    """The backend's own object, handed back to it when results are collected."""
    unsupported_action: str = ""
    """The run waits for an action the app cannot be asked for (the backend says which, in
    one line): the engine cancels the run rather than let it wait until its deadline."""


@dataclass(frozen=True, slots=True)
class Failure:
    """A request that did not produce an observation, classified by the API client."""

    message: str
    status_code: int | None = None
    code: str | None = None
    retryable: bool = False
    race: bool = False
    retry_after_s: float | None = None
    ambiguous: bool = False
    """The request may have reached the API although no answer came (a read timeout, a
    dropped connection, a request cut at the deadline): repeating it could do it twice."""


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
    adaptive_after_s: float = 0.0
    """Age-based polling: a run older than this is polled less often, its interval growing in
    proportion to its age (twice the age, twice the interval) up to :attr:`adaptive_max_s`.
    0: off, every poll at the run's interval."""
    adaptive_max_s: float = 0.0


# ---------------------------------------------------------------------------- state


class Phase(StrEnum):
    POLLING = "polling"
    AWAITING_OUTPUTS = "awaiting_outputs"
    CANCELLING = "cancelling"
    FETCHING = "fetching"
    DONE = "done"


class CancelReason(StrEnum):
    """Why runpoller started cancelling a run (also the ``reason`` label of the cancel
    counter)."""

    TIMEOUT = "timeout"
    TOOL_TIMEOUT = "tool_timeout"
    REFUSED = "refused"
    """The run's assistant is not allowed (``supportedIds`` / ``excludedIds``)."""
    REFUSED_MODEL = "refused_model"
    APP = "app"
    """The app asked (its reason, if it gave one, is the state's ``cancel_detail``)."""
    UNSUPPORTED_ACTION = "unsupported_action"
    """The run waits for an action runpoller cannot hand to the app
    (:attr:`Observation.unsupported_action`)."""


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
    pending_choices: tuple[tuple[str, ...], ...] = ()
    """Per pending call (same order), the only outputs accepted (empty: any string)."""
    outputs_deadline: float | None = None
    failures: int = 0
    checked: bool = False
    object_ids: tuple[str, ...] = field(default=())
    cancellable: bool = True
    """What the last observation said (:attr:`Observation.cancellable`), kept for a restart."""
    answer_creates: bool = False
    """What the last observation said (:attr:`Observation.answer_creates`)."""
    sending: str = ""
    """The request that must not be sent twice (:func:`~runpoller.engine.step_for`) claimed
    by the owner and not yet answered: a new owner learns from it what may be in flight."""
    accepted_at: float = 0.0
    """When the run was first accepted (0: not known, a state written before it was kept)."""
    unknown_status: str = ""
    """The last status the API reported that the backend does not know (``""`` until one is
    seen; never cleared, so it is reported once per run): what the final event reports as
    the API's status while :attr:`last_status` is :attr:`Status.UNKNOWN`."""
    stream_object: str = ""
    stream_seq: int = -1
    """A streamed run's progress so far: the last ``sequence_number`` of ``stream_object``'s
    stream whose text is in the run's events (-1: none). The rules never read it; the driver
    writes it with each ``progress`` event, and a new owner resumes the stream after it."""

    def durable_changed(self, other: RunState) -> bool:
        """Whether ``other`` differs in more than the transient fields: worth persisting."""
        if self is other:  # what the rules hand back when a poll changes nothing
            return False
        return any(getattr(self, name) != getattr(other, name) for name in _DURABLE_FIELDS)

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
        data["pending_choices"] = tuple(tuple(c) for c in data.get("pending_choices") or ())
        data["object_ids"] = tuple(data.get("object_ids") or ())
        return cls(**data)


# A new owner loses nothing without the retry count: at worst one backoff starts over.
_TRANSIENT_FIELDS = frozenset({"failures"})
_DURABLE_FIELDS = tuple(name for name in RunState.__slots__ if name not in _TRANSIENT_FIELDS)


# ---------------------------------------------------------------------------- outputs


class Op(StrEnum):
    """The requests a decision asks for; the values are the metrics' ``op`` label."""

    CREATE = "create"
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
    outputs: tuple[tuple[str, Output], ...] = ()


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
class UnknownStatusSeen:
    """The API reported a status the backend does not know, the first time in this run: for
    the driver's log and counter. The run keeps polling; the deadline cancels it."""

    api_status: str
    object_id: str


@dataclass(frozen=True, slots=True)
class CancelStarted:
    """The run started cancelling (once per run): for the driver's log and counter."""

    reason: CancelReason
    detail: str


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """How a cancel runpoller started ended, and why it was started (with the app's reason
    for an app's cancel). ``outcome``: ``confirmed`` (the API reports the run cancelled, or
    nothing ran that needed cancelling), ``unconfirmed`` (no confirmation before the grace
    ended: the run may still be running), ``overtaken`` (the run ended on its own first)."""

    reason: CancelReason
    outcome: str
    app_reason: str = ""


@dataclass(frozen=True, slots=True)
class Finished:
    """The run is over. ``status`` is the protocol's final status; ``error`` (code, message)
    is set for every status but ``completed``, its code one of :class:`~.codes.ErrorCode`."""

    status: str
    reason: str
    api_status: str | None
    error: tuple[str, str] | None = None
    api_code: str | None = None
    """What the API itself said: its error code (a failed run's ``last_error.code``, an
    error body's ``code``)."""
    http_status: int | None = None
    cancel: CancelOutcome | None = None


Effect = (
    StatusChanged | ActionRequired | ReplyRejected | UnknownStatusSeen | CancelStarted | Finished
)


@dataclass(frozen=True, slots=True)
class Decision:
    state: RunState
    effects: tuple[Effect, ...] = ()
    next: Next | None = None
