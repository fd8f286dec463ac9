"""The language-neutral Redis contract: job payloads, events, replies, results and key names.

These pydantic models are the single source of truth: ``docs/protocol.md`` and its JSON
Schemas are generated from them (``python -m runpoller.protocol.docgen``) and a test fails when the
document drifts. Everything here is plain JSON so a Node or Go backend can speak it with
ordinary Redis commands.

- ``jobs``: what an app enqueues; arq function names, id patterns, ``parse_job``.
- ``events``: what a worker appends to a run's stream; the final event is the run's result.
- ``replies``: how an app answers function calls, and ``parse_reply``, the worker's reading.
- ``keys``: every Redis key name.
- ``deadletter``: jobs no run could be tied to.
- ``serde``: arq's job serializer (JSON); ``docgen``: renders docs/protocol.md.

Only pydantic and the standard library are imported here: this is what apps import.
"""

from __future__ import annotations

from runpoller.protocol.deadletter import DeadLetter
from runpoller.protocol.events import (
    AcceptedEvent,
    CancelInfo,
    ErrorInfo,
    Event,
    FinalEvent,
    FinalStatus,
    JobKind,
    ProgressEvent,
    ReplyRejectedEvent,
    RequiresActionEvent,
    StatusEvent,
    ToolCall,
)
from runpoller.protocol.jobs import (
    API_ID_PATTERN,
    FN_DEAD_LETTER,
    FN_RESUME,
    FN_RUN,
    MAX_METADATA_KEYS,
    PROTOCOL_VERSION,
    RUN_ID_PATTERN,
    AgentTurnJob,
    AnyJob,
    ApiId,
    AssistantsRunJob,
    Job,
    JobEnvelope,
    MetadataValue,
    ResponseJob,
    RunId,
    describe_validation_error,
    parse_job,
    stored_job,
)
from runpoller.protocol.keys import Keys
from runpoller.protocol.replies import ParsedReply, ToolOutput, ToolOutputsReply, parse_reply

__all__ = [
    "API_ID_PATTERN",
    "FN_DEAD_LETTER",
    "FN_RESUME",
    "FN_RUN",
    "MAX_METADATA_KEYS",
    "PROTOCOL_VERSION",
    "RUN_ID_PATTERN",
    "AcceptedEvent",
    "AgentTurnJob",
    "AnyJob",
    "ApiId",
    "AssistantsRunJob",
    "CancelInfo",
    "DeadLetter",
    "ErrorInfo",
    "Event",
    "FinalEvent",
    "FinalStatus",
    "Job",
    "JobEnvelope",
    "JobKind",
    "Keys",
    "MetadataValue",
    "ParsedReply",
    "ProgressEvent",
    "ReplyRejectedEvent",
    "RequiresActionEvent",
    "ResponseJob",
    "RunId",
    "StatusEvent",
    "ToolCall",
    "ToolOutput",
    "ToolOutputsReply",
    "describe_validation_error",
    "parse_job",
    "parse_reply",
    "stored_job",
]
