"""Events: what a worker appends to a run's stream, and the final one stored as its result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runpoller.protocol.jobs import MetadataValue

FinalStatus = Literal[
    "completed", "failed", "incomplete", "expired", "cancelled", "timed_out", "refused", "error"
]


class ErrorInfo(BaseModel):
    """Why the run did not complete: set on every final event whose status is not
    `completed`."""

    code: str = Field(
        description="runpoller's code, one of the table under Error codes (e.g. "
        "`deadline_exceeded`, `run_failed`, `unauthorized`)."
    )
    message: str = Field(description="One line a person can read.")
    api_code: str | None = Field(
        None,
        description="The API's own error code, when it gave one (a failed run's "
        "`last_error.code`, an error body's `code`, e.g. `invalid_api_key`).",
    )
    http_status: int | None = Field(
        None, description="The HTTP status of the API's refusal, for `error` finals."
    )


JobKind = Literal["assistants_run", "response", "agent_turn"]

_CancelReason = Literal[
    "deadline",
    "tool_outputs_timeout",
    "app",
    "refused_assistant",
    "refused_model",
    "unsupported_action",
]


class CancelInfo(BaseModel):
    """A cancel runpoller started for the run, and how it ended."""

    model_config = ConfigDict(extra="forbid")

    reason: _CancelReason = Field(
        description="Why: the `deadline` passed, the deadline passed while the app owed "
        "tool outputs (`tool_outputs_timeout`), the `app` asked, the assistant or model is "
        "not allowed, or the run waits for an action runpoller cannot hand to the app "
        "(`unsupported_action`, agent turns)."
    )
    outcome: Literal["confirmed", "unconfirmed", "overtaken"] = Field(
        description="`confirmed`: the API reports the run cancelled (or nothing ran yet that "
        "needed cancelling); `unconfirmed`: no confirmation before the grace period ended, "
        "so the run may still be running on the API side; `overtaken`: the run ended on its "
        "own before the cancel took effect (its status says how)."
    )
    app_reason: str | None = Field(
        None, description="The reason the app gave with its cancel request, if any."
    )


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="The logical run id.")
    ts: int = Field(description="When the worker wrote the event, Unix epoch milliseconds.")


class AcceptedEvent(_Event):
    """A worker took the run; first event of every stream."""

    type: Literal["accepted"] = "accepted"
    kind: JobKind
    deadline: int = Field(description="Wall-clock deadline, epoch ms; never moves.")
    poll_interval_ms: int
    metadata: dict[str, MetadataValue] | None = None


class StatusEvent(_Event):
    """The API reported a new status for the run."""

    type: Literal["status"] = "status"
    status: str = Field(description="Status as the API reports it (e.g. `in_progress`).")
    object_id: str = Field(description="The run id or response id that was polled.")


class ToolCall(BaseModel):
    id: str = Field(
        description="The tool call id to answer (`tool_call_id` / `call_id`; an approval's "
        "`request_id`)."
    )
    type: Literal["function", "mcp_approval", "computer_use_approval"] = Field(
        "function",
        description="`function`: answer with the function's output. `mcp_approval` / "
        "`computer_use_approval` (agent turns): answer with exactly `approve` or `deny`; "
        "`name` says what is asked and `request` holds the API's request object.",
    )
    turn_id: str | None = Field(
        None, description="Agent turns: the turn that asked (`agent_turn` jobs only)."
    )
    request: dict[str, Any] | None = Field(
        None,
        description="An approval's request as the API gave it (`mcp_tool_call`, "
        "`browser_origin_access`).",
    )
    name: str
    arguments: str = Field(description="Arguments exactly as the model produced them.")
    parsed_arguments: Any = Field(
        None, description="The arguments parsed as JSON, or null when they are not valid JSON."
    )
    arguments_valid: bool = Field(description="False when `arguments` is not valid JSON.")


class RequiresActionEvent(_Event):
    """The run waits for the app's function outputs."""

    type: Literal["requires_action"] = "requires_action"
    round: int = Field(description="1 for the first round of tool calls, then 2, ...")
    object_id: str
    tool_calls: list[ToolCall]
    deadline: int = Field(
        description="Epoch ms by which outputs must arrive: the earlier of the run's deadline "
        "and the API's own expiry."
    )


class ReplyRejectedEvent(_Event):
    """The app's reply could not be used; the run keeps waiting for a correct one."""

    type: Literal["reply_rejected"] = "reply_rejected"
    round: int
    problems: list[str]


class ProgressEvent(_Event):
    """Text the model wrote since the last `progress` event, for a job with `stream: true`.

    Joined in stream order, the `delta`s of one `object_id` are its output text so far: none is
    lost or repeated, also across a worker's takeover. Deltas are coalesced (at most one event
    per 100 ms, or per 1 KiB of text). The final event still carries the whole text."""

    type: Literal["progress"] = "progress"
    object_id: str = Field(description="The response the text belongs to.")
    delta: str = Field(description="The new text.")
    sequence_number: int = Field(
        description="The API's `sequence_number` of the last stream event this text includes."
    )


class FinalEvent(_Event):
    """The last event of a run. Also stored as the run's result."""

    type: Literal["final"] = "final"
    kind: JobKind | None = None
    status: FinalStatus
    api_status: str | None = Field(None, description="The last status the API reported, if any.")
    reason: str = Field(description="One sentence a person can read.")
    error: ErrorInfo | None = None
    incomplete_details: dict[str, Any] | None = None
    output_text: str | None = Field(
        None, description="All assistant text the run produced, joined by blank lines."
    )
    usage: dict[str, Any] | None = None
    model: str | None = None
    metadata: dict[str, MetadataValue] | None = None
    cancel: CancelInfo | None = Field(
        None, description="Set when runpoller started cancelling the run (for any reason)."
    )
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend-specific detail: `assistants` has thread_id, run_id, messages; "
        "`responses` has response_ids and output items; `agent_turn` has session_id, turn_id, "
        "agent_id and the turn's items; `object_ids` when the run followed "
        "more than one object. `truncated: true` when the event would have exceeded "
        "`RUNPOLLER_MAX_RESULT_BYTES`: messages and output items were dropped and "
        "`output_text` cut to half that size; ids and status are kept.",
    )


Event = Annotated[
    AcceptedEvent
    | StatusEvent
    | RequiresActionEvent
    | ReplyRejectedEvent
    | ProgressEvent
    | FinalEvent,
    Field(discriminator="type"),
]
