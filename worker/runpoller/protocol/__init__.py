"""The language-neutral Redis contract: job payloads, events, results and key names.

These pydantic models are the single source of truth: ``docs/protocol.md`` and its JSON
Schemas are generated from them (``python -m runpoller.protocol.docgen``) and a test fails when the
document drifts. Everything here is plain JSON so a Node or Go backend can speak it with
ordinary Redis commands.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

PROTOCOL_VERSION = 1

# Function names of the arq jobs (the ``f`` field of an arq job body).
FN_RUN = "runpoller.run"
FN_RESUME = "runpoller.resume"
FN_DEAD_LETTER = "runpoller.dead_letter"

# IDs that end up in a URL path: letters, digits, ``_`` and ``-`` only. This refuses
# ``../``, ``/``, ``?``, ``%`` and whitespace before anything is requested.
API_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
# Logical run ids end up in Redis key names: also allow ``.`` and ``:``.
RUN_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

ApiId = Annotated[str, Field(pattern=API_ID_PATTERN)]
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN)]
MetadataValue = str | int | float | bool | None

MAX_METADATA_KEYS = 16


class _Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    v: Literal[1] = Field(1, description="Protocol version.")
    id: RunId | None = Field(
        None,
        description="Logical run id used in every key and event; defaults to the API object id "
        "(`run_id` or `response_id`).",
    )
    api_key: SecretStr | None = Field(
        None,
        description="The API key for this run. Required when the worker runs with "
        "ASSISTANTS_API_KEY=user_provided; otherwise optional (overrides the worker's key).",
    )
    poll_interval_ms: int | None = Field(
        None, ge=100, description="Per-run poll interval, bounded by the worker's maximum."
    )
    timeout_ms: int | None = Field(
        None, ge=1, description="Per-run timeout, bounded by the worker's maximum."
    )
    metadata: dict[str, MetadataValue] | None = Field(
        None,
        max_length=MAX_METADATA_KEYS,
        description="Opaque values echoed back in the `accepted` and `final` events.",
    )

    @field_serializer("api_key", when_used="json")
    def _hide_key(self, key: SecretStr | None) -> str | None:
        return None if key is None else "**********"


class AssistantsRunJob(_Job):
    """Poll an Assistants-API run the producer has created."""

    kind: Literal["assistants_run"]
    thread_id: ApiId
    run_id: ApiId

    @property
    def run_key(self) -> str:
        return self.id or self.run_id

    @property
    def object_id(self) -> str:
        return self.run_id


class ResponseJob(_Job):
    """Poll a Responses-API background response (created by the producer, or by the worker)."""

    kind: Literal["response"]
    response_id: ApiId | None = Field(
        None, description="The background response to follow. Give this or `request`."
    )
    request: dict[str, Any] | None = Field(
        None,
        description="A CreateResponse body: the worker creates the response itself (adding "
        "`background: true` and `store: true`), so apps with user-provided keys never call the "
        "API. Requires `id`.",
    )
    continuation: dict[str, Any] | None = Field(
        None,
        description="CreateResponse fields every continuation after a function-call round "
        "needs (e.g. `model`, `tools`, `instructions`). `previous_response_id`, `input`, "
        "`background` and `store` are set by the worker.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ResponseJob:
        if (self.response_id is None) == (self.request is None):
            raise ValueError("give exactly one of response_id and request")
        if self.request is not None and self.id is None:
            raise ValueError("a job with request needs an id (the response id is not known yet)")
        for name, body in (("request", self.request), ("continuation", self.continuation)):
            reserved = sorted(set(body or {}) & _RESERVED_CREATE_FIELDS)
            if reserved and not (name == "request" and reserved == ["input"]):
                raise ValueError(f"{name} must not set {', '.join(reserved)}")
        return self

    @property
    def run_key(self) -> str:
        return self.id or self.response_id or ""

    @property
    def object_id(self) -> str:
        return self.response_id or ""


_RESERVED_CREATE_FIELDS = frozenset(
    {"previous_response_id", "background", "store", "stream", "input", "conversation"}
)


Job = Annotated[AssistantsRunJob | ResponseJob, Field(discriminator="kind")]


class JobEnvelope(BaseModel):
    """Wrapper used to validate one job of either kind."""

    model_config = ConfigDict(extra="forbid")
    job: Job


# ---------------------------------------------------------------------------- events

FinalStatus = Literal[
    "completed", "failed", "incomplete", "expired", "cancelled", "timed_out", "refused", "error"
]


class ErrorInfo(BaseModel):
    code: str = Field(description="Machine-readable code, e.g. `server_error`, `not_found`.")
    message: str


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="The logical run id.")
    ts: int = Field(description="When the worker wrote the event, Unix epoch milliseconds.")


class AcceptedEvent(_Event):
    """A worker took the run; first event of every stream."""

    type: Literal["accepted"] = "accepted"
    kind: Literal["assistants_run", "response"]
    deadline: int = Field(description="Wall-clock deadline, epoch ms; never moves.")
    poll_interval_ms: int
    metadata: dict[str, MetadataValue] | None = None


class StatusEvent(_Event):
    """The API reported a new status for the run."""

    type: Literal["status"] = "status"
    status: str = Field(description="Status as the API reports it (e.g. `in_progress`).")
    object_id: str = Field(description="The run id or response id that was polled.")


class ToolCall(BaseModel):
    id: str = Field(description="The tool call id to answer (`tool_call_id` / `call_id`).")
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


class FinalEvent(_Event):
    """The last event of a run. Also stored as the run's result."""

    type: Literal["final"] = "final"
    kind: Literal["assistants_run", "response"] | None = None
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
    detail: dict[str, Any] = Field(
        default_factory=dict,
        description="Backend-specific detail: `assistants` has thread_id, run_id, messages; "
        "`responses` has response_ids and output items.",
    )


class ToolOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool_call_id: str
    output: str


class ToolOutputsReply(BaseModel):
    """The app's answer to a `requires_action` event: one entry on the replies stream.

    Stream entries are flat field/value pairs, so `outputs` travels as a JSON string holding
    an array of `ToolOutput` objects.
    """

    model_config = ConfigDict(extra="forbid")
    run_id: str
    round: int = Field(description="The `round` of the requires_action event answered.")
    outputs: str = Field(description="JSON array of {tool_call_id, output} objects.")


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """A replies-stream entry as the worker understood it."""

    run_id: str
    round: int
    outputs: list[tuple[str, Any]] | None
    problem: str = ""


def parse_reply(fields: Mapping[Any, Any]) -> ParsedReply | None:
    """Decode one entry of the replies stream; None when it names no run or round at all."""

    def get(name: str) -> str | None:
        value = fields.get(name.encode(), fields.get(name))
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

    run_id, round_text, raw = get("run_id"), get("round"), get("outputs")
    if not run_id or round_text is None:
        return None
    try:
        round_ = int(round_text)
    except ValueError:
        return None
    if raw is None:
        return ParsedReply(run_id, round_, None, "the reply has no outputs field")
    try:
        items = json.loads(raw)
    except json.JSONDecodeError as exc:
        return ParsedReply(run_id, round_, None, f"outputs is not valid JSON: {exc}")
    if not isinstance(items, list):
        return ParsedReply(run_id, round_, None, "outputs must be a JSON array")
    outputs: list[tuple[str, Any]] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("tool_call_id"), str):
            return ParsedReply(
                run_id, round_, None, f"outputs[{index}] needs a string tool_call_id"
            )
        if "output" not in item:
            return ParsedReply(run_id, round_, None, f"outputs[{index}] has no output")
        outputs.append((item["tool_call_id"], item["output"]))
    return ParsedReply(run_id, round_, outputs)


class ReplyRejectedEvent(_Event):
    """The app's reply could not be used; the run keeps waiting for a correct one."""

    type: Literal["reply_rejected"] = "reply_rejected"
    round: int
    problems: list[str]


class DeadLetter(BaseModel):
    """A job that could not be tied to any run: kept for inspection, never retried."""

    reason: str
    raw: str = Field(description="The job as received, truncated to 4 KiB.")
    ts: int


Event = Annotated[
    AcceptedEvent | StatusEvent | RequiresActionEvent | ReplyRejectedEvent | FinalEvent,
    Field(discriminator="type"),
]


class EventEnvelope(BaseModel):
    event: Event


# ---------------------------------------------------------------------------- keys


class Keys:
    """Every Redis key runpoller uses, under one prefix (``runpoller`` by default)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}:events:{run_id}"

    def result(self, run_id: str) -> str:
        return f"{self.prefix}:result:{run_id}"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def owned(self, worker_id: str) -> str:
        return f"{self.prefix}:owned:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def orphans(self) -> str:
        return f"{self.prefix}:orphans"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def replies(self) -> str:
        return f"{self.prefix}:replies"

    @property
    def control(self) -> str:
        """Worker-to-worker messages (a 429 pause for a key, ...)."""
        return f"{self.prefix}:control"

    @property
    def worker_events(self) -> str:
        return f"{self.prefix}:worker-events"

    def outcomes(self, minute: int) -> str:
        """Per-minute counts of final statuses (hash status -> count; minute = epoch // 60)."""
        return f"{self.prefix}:outcomes:{minute}"
