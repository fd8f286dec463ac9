r"""Scripts: the lifecycle a fake run or response plays, chosen when it is created.

Where a script comes from: ``metadata.fake_scenario`` on create (a scenario name, registered
with ``POST /_fake/scenarios`` or built in, or a JSON script), or the ``script`` field of
``POST /_fake/runs`` / ``POST /_fake/responses``. No script means ``complete``. Everything is
validated here, so a bad script fails at creation with a 400 naming the field.

Format (every field but ``steps`` optional)::

    {"steps": [
        {"status": "queued", "ms": 100},
        {"status": "in_progress", "ms": 400},
        {"status": "requires_action", "expires_in_s": 600,
         "tool_calls": [{"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}]},
        {"status": "in_progress", "ms": 300},
        {"status": "completed", "messages": ["It is sunny."],
         "usage": {"prompt_tokens": 10, "completion_tokens": 5}}],
     "cancel_ms": 200, "cancel_outcome": "cancelled", "requeue_ms": 0, "poll_after_ms": 500,
     "faults": [{"on": "get_run", "status": 429, "retry_after_ms": 200, "times": 2},
                {"on": "any", "drop": true, "skip": 3, "times": 1},
                {"on": "get_run", "latency_ms": 50}]}

- A step lasts ``ms``; without ``ms`` a non-terminal step lasts forever (a run that never
  ends). When the steps run out, the object completes with a default message.
- Terminal steps: ``completed`` (``messages``, ``usage``), ``failed`` (``last_error`` or
  ``error``: ``{code, message}``), ``incomplete`` (``reason``, ``messages``), ``expired``,
  ``cancelled``.
- Runs: ``requires_action`` waits for tool outputs until the run's ``expires_at``, then the
  run is ``expired``. As in the real API, ``expires_at`` is fixed when the run is created:
  ``expires_in_s`` (fractions allowed; default 600) after its creation, not after the step
  began, and a later round or a poll does not move it. A run has one ``expires_at``, so every
  ``requires_action`` step that sets ``expires_in_s`` must set the same; a round reached after
  ``expires_at`` expires at once. Accepted outputs put the run back to ``queued`` for
  ``requeue_ms``, then the next step plays. Tool call ``arguments`` are kept verbatim (a dict
  is JSON-encoded), so malformed JSON can be scripted; ``id`` fixes the call id.
- Responses: ``{"status": "completed", "function_calls": [...]}`` ends a response with
  function calls; a continuation (``previous_response_id``) plays the steps after it. The
  model calls only functions declared in the ``tools`` of the response's own request (they
  are not carried over through ``previous_response_id``, as in the real API): a scripted call
  to any other is not made, and with none left the response completes with a text message.
- Cancel: a run goes ``cancelling`` for ``cancel_ms``, then ``cancelled`` (or ``completed``
  with ``cancel_outcome: "completed"``: the cancel lost the race). Responses cancel at once.
- ``poll_after_ms`` sends ``openai-poll-after-ms`` on GET while non-terminal.
- Faults (see ``Fault``) apply to the requests addressed to the object, per object: each run
  or response (continuations too) starts with fresh ``times``/``skip`` counters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from runpoller_fake import spec

Kind = Literal["run", "response"]
StepStatus = Literal[
    "queued",
    "in_progress",
    "requires_action",
    "cancelling",
    "completed",
    "failed",
    "incomplete",
    "expired",
    "cancelled",
]
FaultTarget = Literal[
    "any",
    "create_thread",
    "create_run",
    "create_thread_and_run",
    "get_run",
    "cancel_run",
    "submit_tool_outputs",
    "list_messages",
    "list_steps",
    "create_response",
    "get_response",
    "cancel_response",
    "create_agent",
    "get_agent",
    "create_agent_session",
    "get_agent_session",
    "get_agent_turn",
    "list_agent_turns",
    "list_agent_turn_items",
    "list_agent_session_items",
    "create_agent_events",
]
# Faults in a script only see requests addressed to its object, which does not exist yet when
# it is being created; create faults belong in the server-wide list (POST /_fake/faults).
CREATE_ENDPOINTS = frozenset(
    {"create_thread", "create_run", "create_thread_and_run", "create_response"}
)

TERMINAL = frozenset({"completed", "failed", "incomplete", "expired", "cancelled"})
RUN_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})
RUN_INCOMPLETE_REASONS = frozenset({"max_completion_tokens", "max_prompt_tokens"})
RESPONSE_INCOMPLETE_REASONS = frozenset({"max_output_tokens", "content_filter"})
DEFAULT_MESSAGE = "Hello from the fake OpenAI server."
DEFAULT_EXPIRES_IN_S = 600.0


class ScriptError(ValueError):
    """A script that cannot be played; the message names the offending field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolCallSpec(_Model):
    """A function call the model "makes"; ``arguments`` is kept verbatim (may be bad JSON)."""

    name: str = Field(min_length=1)
    arguments: str = "{}"
    id: str | None = Field(None, min_length=1)

    @field_validator("arguments", mode="before")
    @classmethod
    def _encode_arguments(cls, value: Any) -> Any:
        return json.dumps(value) if isinstance(value, dict) else value


class UsageSpec(_Model):
    prompt_tokens: int = Field(25, ge=0)
    completion_tokens: int = Field(12, ge=0)


class ErrorSpec(_Model):
    code: str = "server_error"
    message: str = "The server had an error while processing your request. Sorry about that!"


class Step(_Model):
    """One phase of the lifecycle. A step without ``ms`` lasts until something else happens."""

    status: StepStatus
    ms: float | None = Field(None, ge=0)
    tool_calls: list[ToolCallSpec] | None = Field(None, min_length=1)
    expires_in_s: float | None = Field(None, gt=0)
    function_calls: list[ToolCallSpec] | None = Field(None, min_length=1)
    messages: list[str] | None = None
    usage: UsageSpec | None = None
    last_error: ErrorSpec | None = Field(None, validation_alias=AliasChoices("last_error", "error"))
    reason: str | None = None

    @model_validator(mode="after")
    def _fields_fit_status(self) -> Step:
        status = self.status
        allowed = {
            "tool_calls": status == "requires_action",
            "expires_in_s": status == "requires_action",
            "function_calls": status == "completed",
            "messages": status in ("completed", "incomplete"),
            "usage": status in TERMINAL,
            "last_error": status == "failed",
            "reason": status == "incomplete",
            "ms": status not in TERMINAL and status != "requires_action",
        }
        for field, ok in allowed.items():
            if not ok and getattr(self, field) is not None:
                raise ValueError(f"'{field}' does not apply to a step with status '{status}'")
        if status == "requires_action" and self.tool_calls is None:
            raise ValueError("a 'requires_action' step needs 'tool_calls'")
        if status == "cancelling":
            raise ValueError("'cancelling' is reached by cancelling, not scripted")
        return self

    @property
    def ends_life(self) -> bool:
        """Whether no later step can ever run after this one."""
        if self.status in TERMINAL:
            return self.function_calls is None
        return self.ms is None and self.status != "requires_action"


class Fault(_Model):
    """A fault injected into matching requests: latency, an HTTP error, a dropped connection,
    or a stream cut short.

    ``on`` names the endpoint (or ``any``). ``skip`` lets the first N matching requests
    through; ``times`` caps how many are affected (default: all). An error ``status`` comes in
    OpenAI's envelope (``message``/``type``/``code`` override the defaults) with the optional
    ``retry-after`` (seconds), ``retry-after-ms`` and ``x-should-retry`` headers. Server-wide
    faults are checked before the object's; latencies add up, and the first status or drop
    fault that applies ends the request (later ones are not counted). ``cut_after``: a streamed
    reply (SSE) closes its connection after that many events, without the rest (a request
    that does not stream is not affected, and not counted).
    """

    on: FaultTarget = "any"
    status: int | None = Field(None, ge=400, le=599)
    drop: bool = False
    latency_ms: float | None = Field(None, ge=0)
    cut_after: int | None = Field(None, ge=0)
    retry_after: float | None = Field(None, ge=0)
    retry_after_ms: int | None = Field(None, ge=0)
    should_retry: bool | None = None
    message: str | None = None
    type: str | None = None
    code: str | None = None
    times: int | None = Field(None, ge=1)
    skip: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_effect(self) -> Fault:
        effects = [self.status is not None, self.drop, self.cut_after is not None]
        if not any(effects) and self.latency_ms is None:
            raise ValueError("a fault needs 'status', 'drop', 'cut_after' or 'latency_ms'")
        if sum(effects) > 1:
            raise ValueError("'status', 'drop' and 'cut_after' exclude each other")
        extras = ("retry_after", "retry_after_ms", "should_retry", "message", "type", "code")
        if self.status is None:
            for field in extras:
                if getattr(self, field) is not None:
                    raise ValueError(f"'{field}' only applies to a fault with 'status'")
        return self

    @property
    def ends_request(self) -> bool:
        return self.status is not None or self.drop


class Counted(Protocol):
    """What a fault counter reads of a fault (``Fault``, ``webhooks.WebhookFault``)."""

    @property
    def skip(self) -> int: ...

    @property
    def times(self) -> int | None: ...


F = TypeVar("F", bound=Counted)


@dataclass(slots=True)
class FaultCounter(Generic[F]):
    """A fault plus how often it has matched and fired, for ``skip`` and ``times``."""

    fault: F
    seen: int = 0
    fired: int = 0

    def fires(self) -> bool:
        """Count one matching request; whether the fault applies to it."""
        self.seen += 1
        if self.seen <= self.fault.skip:
            return False
        if self.fault.times is not None and self.fired >= self.fault.times:
            return False
        self.fired += 1
        return True


class Script(_Model):
    """A whole lifecycle; see the module docstring and ``BUILTIN_SCENARIOS``."""

    steps: list[Step] = Field(min_length=1)
    cancel_ms: float = Field(100, ge=0)
    cancel_outcome: Literal["cancelled", "completed"] = "cancelled"
    requeue_ms: float = Field(0, ge=0)
    poll_after_ms: int | None = Field(None, ge=0)
    faults: list[Fault] = []

    @model_validator(mode="after")
    def _reachable(self) -> Script:
        for index, step in enumerate(self.steps[:-1]):
            if step.ends_life:
                raise ValueError(
                    f"steps.{index} ('{step.status}' without 'ms') ends the lifecycle, "
                    f"so steps.{index + 1} and later can never run"
                )
        expiries = {step.expires_in_s for step in self.steps if step.expires_in_s is not None}
        if len(expiries) > 1:
            index = next(i for i, s in enumerate(self.steps) if s.expires_in_s is not None)
            raise ValueError(
                f"steps.{index}.expires_in_s: a run has one expires_at, fixed at creation; "
                f"the steps set {sorted(expiries)}"
            )
        for index, fault in enumerate(self.faults):
            if fault.on in CREATE_ENDPOINTS:
                raise ValueError(
                    f"faults.{index}: '{fault.on}' faults only work server-wide "
                    "(POST /_fake/faults), the object does not exist yet"
                )
        return self

    @property
    def run_expires_in_s(self) -> float:
        """Seconds from a run's creation to its ``expires_at``."""
        for step in self.steps:
            if step.expires_in_s is not None:
                return step.expires_in_s
        return DEFAULT_EXPIRES_IN_S

    def check_kind(self, kind: Kind) -> None:
        """Refuse what the other API kind cannot do (runs have no function_calls, etc.)."""
        for index, step in enumerate(self.steps):
            where = f"steps.{index}"
            if kind == "response":
                if step.status in ("requires_action", "expired"):
                    raise ScriptError(
                        f"{where}.status: '{step.status}' is a run status; responses end "
                        "'completed' with 'function_calls' instead"
                    )
                _check_in(where + ".reason", step.reason, RESPONSE_INCOMPLETE_REASONS)
                if step.last_error is not None:
                    _check_in(where + ".last_error.code", step.last_error.code, _response_codes())
            else:
                if step.function_calls is not None:
                    raise ScriptError(
                        f"{where}.function_calls: runs ask for tools with a "
                        "'requires_action' step and 'tool_calls'"
                    )
                _check_in(where + ".reason", step.reason, RUN_INCOMPLETE_REASONS)
                if step.last_error is not None:
                    _check_in(where + ".last_error.code", step.last_error.code, RUN_ERROR_CODES)
        for index, fault in enumerate(self.faults):
            if fault.on != "any" and _KIND_OF_TARGET.get(fault.on, kind) != kind:
                raise ScriptError(f"faults.{index}.on: '{fault.on}' never addresses a {kind}")

    def continuation(self, start: int) -> Script:
        """The script a Responses continuation plays: the steps after ``start``."""
        steps = self.steps[start:] or BUILTIN_SCENARIOS["response"]["complete"].steps
        return self.model_copy(update={"steps": list(steps)})


_KIND_OF_TARGET: dict[str, Kind] = {
    "get_run": "run",
    "cancel_run": "run",
    "submit_tool_outputs": "run",
    "list_messages": "run",
    "list_steps": "run",
    "get_response": "response",
    "cancel_response": "response",
}


def _check_in(where: str, value: str | None, allowed: frozenset[str]) -> None:
    if value is not None and value not in allowed:
        raise ScriptError(f"{where}: '{value}' is not one of {sorted(allowed)}")


def _response_codes() -> frozenset[str]:
    return frozenset(spec.enum_values("ResponseErrorCode"))


def describe_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def parse_script(value: Any) -> Script:
    """Validate a script given as a mapping or a JSON string."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ScriptError(f"not valid JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise ScriptError("a script must be a JSON object with 'steps'")
    try:
        return Script.model_validate(value)
    except ValidationError as exc:
        raise ScriptError(describe_validation_error(exc)) from None


def resolve(value: Any, kind: Kind, registered: Mapping[str, Script]) -> Script:
    """A script from a name (registered, then built-in), a JSON string or a mapping."""
    if value is None:
        script = BUILTIN_SCENARIOS[kind]["complete"]
    elif isinstance(value, str) and not value.lstrip().startswith("{"):
        name = value.strip()
        found = registered.get(name) or BUILTIN_SCENARIOS[kind].get(name)
        if found is None:
            known = sorted(set(registered) | set(BUILTIN_SCENARIOS[kind]))
            raise ScriptError(f"unknown scenario '{name}' for a {kind}; known: {known}")
        script = found
    else:
        script = parse_script(value)
    script.check_kind(kind)
    return script


def _scenario(**fields: Any) -> Script:
    return Script.model_validate(fields)


_WEATHER = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
_QUEUED = {"status": "queued", "ms": 50}
_WORKING = {"status": "in_progress", "ms": 150}
_SUNNY = {
    "status": "completed",
    "messages": ["It is sunny in Paris."],
    "usage": {"prompt_tokens": 60, "completion_tokens": 9},
}
_PARALLEL = [
    _WEATHER,
    {"name": "get_weather", "arguments": '{"city": "London"}'},
    {"name": "get_weather", "arguments": '{"city": "Tokyo"}'},
]
_ROUND_TWO = [{"name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'}]
_BAD_ARGUMENTS = [{"name": "get_weather", "arguments": '{"city": "Paris"'}]


def _builtins(kind: Kind) -> dict[str, Script]:
    def ask(calls: list[dict[str, str]]) -> dict[str, Any]:
        if kind == "run":
            return {"status": "requires_action", "tool_calls": calls}
        return {"status": "completed", "function_calls": calls}

    fast_end = [_QUEUED, {"status": "in_progress", "ms": 250}]
    reason = "max_completion_tokens" if kind == "run" else "max_output_tokens"
    scenarios = {
        "complete": _scenario(
            steps=[*fast_end, {"status": "completed", "messages": [DEFAULT_MESSAGE]}]
        ),
        "fail": _scenario(
            steps=[*fast_end, {"status": "failed", "last_error": {"code": "server_error"}}]
        ),
        "incomplete": _scenario(
            steps=[
                *fast_end,
                {"status": "incomplete", "reason": reason, "messages": ["This answer was cut"]},
            ]
        ),
        "never_ends": _scenario(steps=[_QUEUED, {"status": "in_progress"}]),
        "slow_cancel": _scenario(steps=[_QUEUED, {"status": "in_progress"}], cancel_ms=1000),
        "requires_action": _scenario(steps=[_QUEUED, _WORKING, ask([_WEATHER]), _WORKING, _SUNNY]),
        "parallel_calls": _scenario(steps=[_QUEUED, _WORKING, ask(_PARALLEL), _WORKING, _SUNNY]),
        "two_rounds": _scenario(
            steps=[_QUEUED, _WORKING, ask([_WEATHER]), _WORKING, ask(_ROUND_TWO), _WORKING, _SUNNY]
        ),
        "bad_arguments": _scenario(
            steps=[_QUEUED, _WORKING, ask(_BAD_ARGUMENTS), _WORKING, _SUNNY]
        ),
        "rate_limited": _scenario(
            steps=[*fast_end, {"status": "completed", "messages": [DEFAULT_MESSAGE]}],
            faults=[{"on": "any", "status": 429, "retry_after_ms": 100, "times": 2}],
        ),
        "flaky": _scenario(
            steps=[*fast_end, {"status": "completed", "messages": [DEFAULT_MESSAGE]}],
            faults=[
                {"on": "any", "status": 503, "times": 1},
                {"on": "any", "drop": True, "times": 1},
            ],
        ),
    }
    if kind == "run":
        scenarios["expire"] = _scenario(
            steps=[_QUEUED, _WORKING, {**ask([_WEATHER]), "expires_in_s": 0.5}]
        )
    return scenarios


BUILTIN_SCENARIOS: dict[Kind, dict[str, Script]] = {
    "run": _builtins("run"),
    "response": _builtins("response"),
}
