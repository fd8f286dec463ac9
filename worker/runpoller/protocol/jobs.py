"""Jobs: what an app enqueues (the argument of an arq job), and how the worker reads it.

The arq function names (``FN_*``), the id patterns every id must match before it reaches a
URL or a key name, the job kinds, and ``parse_job`` / ``describe_validation_error``, the
one way a raw payload becomes a job (or a one-line reason it does not).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    model_validator,
)

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
        "(`run_id`, `response_id` or `turn_id`).",
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
        "needs (e.g. `model`, `tools`, `instructions`): the API carries none of them over "
        "through `previous_response_id`. With a `request`, its `model`, `instructions`, "
        "`tools`, `tool_choice` and `parallel_tool_calls` are used unless given here; with a "
        "`response_id`, give them here or a continuation cannot call functions. "
        "`previous_response_id`, `input`, `background` and `store` are set by the worker.",
    )

    stream: bool = Field(
        False,
        strict=True,  # true or false, not "yes" or 1
        description="Stream the response's text as it is written: the worker creates the "
        "response (and each continuation) with `stream: true` and appends `progress` events "
        "to the run's stream. With a `response_id`, the app must have created it with "
        "`stream: true` (the API streams no other); otherwise the worker polls it.",
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


class AgentTurnJob(_Job):
    """Follow one turn of an Agents-API session (beta): the turn the producer started
    (``turn_id``), or one the worker starts from ``input`` (an ``agent.session.input.message``
    event)."""

    kind: Literal["agent_turn"]
    session_id: ApiId = Field(description="The `agent.session` the turn belongs to.")
    turn_id: ApiId | None = Field(
        None, description="The `agent.session.turn` to follow. Give this or `input`."
    )
    input: str | list[dict[str, Any]] | None = Field(
        None,
        description="The user message(s) that start the turn: a string (one user message of "
        "one `input_text` part) or a list of `AgentSessionInputMessageParam` objects "
        '(`{role: "user", content: [...]}`). The worker posts them as one '
        "`agent.session.input.message` event and follows the turn that starts. Requires `id`.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> AgentTurnJob:
        if (self.turn_id is None) == (self.input is None):
            raise ValueError("give exactly one of turn_id and input")
        if self.input is not None and self.id is None:
            raise ValueError("a job with input needs an id (the turn id is not known yet)")
        if isinstance(self.input, str) and not self.input:
            raise ValueError("input must not be empty")
        return self

    @property
    def run_key(self) -> str:
        return self.id or self.turn_id or ""

    @property
    def object_id(self) -> str:
        return self.turn_id or ""


_RESERVED_CREATE_FIELDS = frozenset(
    {"previous_response_id", "background", "store", "stream", "input", "conversation"}
)


Job = Annotated[AssistantsRunJob | ResponseJob | AgentTurnJob, Field(discriminator="kind")]
AnyJob = AssistantsRunJob | ResponseJob | AgentTurnJob


class JobEnvelope(BaseModel):
    """Wrapper used to validate one job of either kind."""

    model_config = ConfigDict(extra="forbid")
    job: Job


def stored_job(job: AnyJob) -> str:
    """The job as the run record keeps it: what a new owner (or a restore) parses back,
    its API key as the app sent it (encrypted, unless plaintext keys are allowed)."""
    stored = job.model_dump(mode="python", exclude_none=True)
    if job.api_key is not None:
        stored["api_key"] = job.api_key.get_secret_value()
    return json.dumps(stored)


def parse_job(raw: Any) -> AnyJob:
    """Validate a job payload (raises pydantic.ValidationError)."""
    return JobEnvelope.model_validate({"job": raw}).job


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the field: ``thread_id: String should match pattern…``."""
    lines = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if p != "job")
        lines.append(f"{loc or 'job'}: {err['msg']}")
    return "; ".join(lines)
