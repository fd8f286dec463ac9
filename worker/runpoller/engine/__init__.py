"""The run lifecycle as a pure decision engine.

Everything that decides what happens to a run lives in this package: given the run's durable
state, what the API just said (or how a request failed), the clock and the policy, it returns
the new state, the effects to publish and the next request to make. It does no I/O, imports
nothing beyond the standard library (a test keeps it so) and does not know which backend it
drives: backends map their API objects onto :class:`Observation`, the driver
(``runpoller.worker.driver``) performs the requests and writes the effects to Redis.

- ``model``: the vocabulary: statuses, observations, failures, policy, the durable
  :class:`RunState`, the requests (:class:`Op`, :class:`Next`), effects and :class:`Decision`.
- ``rules``: the decisions about a run, and the theory of operation.
- ``admission``: the decisions before a run exists: a job's bounds, the refusal outcome.
- ``codes``: the error code of every way a run ends other than ``completed``.

Use it as ``from runpoller import engine`` and ``engine.on_observation(...)``.
"""

from .admission import (
    INVALID_JOB,
    Bounds,
    Limits,
    Refusal,
    job_bounds,
    metadata_refusal,
    refused,
)
from .codes import HTTP_CODES, MEANINGS, ErrorCode
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
    ToolCallRequest,
    ToolFailure,
    UnknownStatusSeen,
)
from .rules import (
    new_state,
    on_cancel_request,
    on_crash,
    on_failure,
    on_observation,
    on_reply,
    on_result_fetched,
    request_deadline,
    resume,
    sending,
    start,
    step_for,
)

__all__ = [
    "HTTP_CODES",
    "INVALID_JOB",
    "MEANINGS",
    "ActionRequired",
    "Bounds",
    "CancelOutcome",
    "CancelReason",
    "CancelStarted",
    "Decision",
    "Effect",
    "ErrorCode",
    "Failure",
    "Finished",
    "Limits",
    "Next",
    "Observation",
    "Op",
    "Output",
    "Phase",
    "Policy",
    "Refusal",
    "ReplyRejected",
    "RunState",
    "Status",
    "StatusChanged",
    "ToolCallRequest",
    "ToolFailure",
    "UnknownStatusSeen",
    "job_bounds",
    "metadata_refusal",
    "new_state",
    "on_cancel_request",
    "on_crash",
    "on_failure",
    "on_observation",
    "on_reply",
    "on_result_fetched",
    "refused",
    "request_deadline",
    "resume",
    "sending",
    "start",
    "step_for",
]
