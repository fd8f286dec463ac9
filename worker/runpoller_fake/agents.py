r"""The Agents API (beta): agents, sessions, turns, session events and items.

Shapes follow openai-python's generated types (``openai.types.beta``: ``Agent``,
``AgentSession``, ``agents.sessions.Turn``, ``AgentSessionItem``; the beta API is not in the
OpenAPI spec the fake holds): tests validate every body against those pydantic models.

A turn plays a script, like runs and responses, lazily from the clock. Where a script comes
from: ``metadata.fake_scenario`` of the session (a JSON script), or the ``script`` of
``POST /_fake/agents/sessions``; every turn of the session plays it. No script means
``complete``. Format::

    {"steps": [
        {"status": "queued", "ms": 100},
        {"status": "in_progress", "ms": 300},
        {"status": "waiting", "actions": [
            {"type": "function_call", "name": "get_weather", "arguments": {"city": "Paris"}},
            {"type": "mcp_approval_request", "server_label": "deepwiki", "name": "ask"},
            {"type": "computer_use_approval_request",
             "request": {"type": "browser_origin_access", "origin": "https://example.com"}},
            {"type": "environment_connection"}]},
        {"status": "in_progress", "ms": 200},
        {"status": "completed", "messages": ["It is sunny."],
         "usage": {"input_tokens": 10, "output_tokens": 5}}],
     "cancel_ms": 0}

- A step lasts ``ms``; without ``ms`` a ``queued``/``in_progress`` step lasts until cancelled.
  When the steps run out, the turn completes with a default message.
- ``waiting`` puts the actions on the session's ``required_actions`` (session status
  ``requires_action``) and lasts until every action is answered through ``POST …/events``
  (``tool_result`` for a function call, an ``…_approval_request_result`` for an approval); an
  ``environment_connection`` or a ``browser_authentication`` request is answered by nothing a
  runpoller worker sends, so that turn waits until cancelled.
- Terminal steps: ``completed`` (``messages``, ``usage``), ``failed`` (``error``:
  ``{code, message}``, ``code`` one of ``SessionTurnError``'s), ``cancelled``.
  ``session_failed`` (``error``: a string) fails the session and leaves the turn as it was
  (a client must read the session to learn it).
- Cancel (``agent.session.input.cancel``): the active turn is ``cancelled`` after ``cancel_ms``
  (its status unchanged until then); the session's actions of that turn are dropped.
- ``poll_after_ms`` sends ``openai-poll-after-ms`` on a turn's GET while it is unfinished.
- Webhooks (``runpoller_fake.webhooks``): ``agent.session.created`` when a session is
  created, then ``in_progress`` / ``action_required`` / ``idle`` / ``failed`` each time its
  status changes, at the instant it changes (a ticker moves unpolled turns on).
- Faults (``faults``, as for runs, with ``on`` one of the agent endpoints:
  ``get_agent_turn``, ``get_agent_session``, ``create_agent_events``, ``list_agent_turns``,
  ``list_agent_turn_items``, …) apply to the requests addressed to each turn of the session:
  its own paths, and the session's (its GET, its events) while it is the newest turn. The
  server-wide list (``POST /_fake/faults``) applies to every request.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from runpoller_fake.errors import ApiError
from runpoller_fake.script import Fault, FaultCounter

DEFAULT_MESSAGE = "Hello from the fake OpenAI server."
TURN_TERMINAL = frozenset({"completed", "failed", "cancelled"})
# SessionTurnError.code in openai-python 3.51+.
TURN_ERROR_CODES = frozenset(
    {
        "context_length_exceeded",
        "max_output_tokens",
        "usage_limit_exceeded",
        "rate_limit_exceeded",
        "server_overloaded",
        "connection_failed",
        "server_error",
        "invalid_request",
        "resource_not_found",
        "sandbox_error",
        "request_timeout",
        "internal_error",
    }
)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ActionSpec(_Model):
    """A required action a ``waiting`` step asks for."""

    type: Literal[
        "function_call",
        "mcp_approval_request",
        "computer_use_approval_request",
        "environment_connection",
    ]
    name: str | None = None
    arguments: Any = None
    call_id: str | None = None
    server_label: str = "fake_mcp"
    message: str = "Allow this MCP tool call?"
    request: dict[str, Any] | None = None
    environment_id: str | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> ActionSpec:
        if self.type == "function_call" and not self.name:
            raise ValueError("a function_call action needs 'name'")
        if self.type == "computer_use_approval_request":
            kind = (self.request or {}).get("type")
            if kind not in ("browser_origin_access", "browser_authentication"):
                raise ValueError(
                    "a computer_use_approval_request needs 'request.type' "
                    "'browser_origin_access' or 'browser_authentication'"
                )
        return self


class TurnError(_Model):
    code: str = "server_error"
    message: str = "The server had an error while processing your request."

    @model_validator(mode="after")
    def _known_code(self) -> TurnError:
        if self.code not in TURN_ERROR_CODES:
            raise ValueError(f"'code' must be one of {sorted(TURN_ERROR_CODES)}")
        return self


class UsageSpec(_Model):
    input_tokens: int = Field(25, ge=0)
    output_tokens: int = Field(12, ge=0)


class AgentStep(_Model):
    status: Literal[
        "queued", "in_progress", "waiting", "completed", "failed", "cancelled", "session_failed"
    ]
    ms: float | None = Field(None, ge=0)
    actions: list[ActionSpec] | None = Field(None, min_length=1)
    messages: list[str] | None = None
    usage: UsageSpec | None = None
    error: TurnError | str | None = None

    @model_validator(mode="after")
    def _fields_fit_status(self) -> AgentStep:
        status = self.status
        allowed = {
            "ms": status in ("queued", "in_progress"),
            "actions": status == "waiting",
            "messages": status == "completed",
            "usage": status in TURN_TERMINAL,
            "error": status in ("failed", "session_failed"),
        }
        for name, ok in allowed.items():
            if not ok and getattr(self, name) is not None:
                raise ValueError(f"'{name}' does not apply to a step with status '{status}'")
        if status == "waiting" and not self.actions:
            raise ValueError("a 'waiting' step needs 'actions'")
        if status == "failed" and isinstance(self.error, str):
            raise ValueError("a failed turn's 'error' is {code, message}")
        if status == "session_failed" and isinstance(self.error, TurnError):
            raise ValueError("a failed session's 'error' is a string")
        return self


class AgentScript(_Model):
    steps: list[AgentStep] = Field(default_factory=list)
    cancel_ms: float = Field(0, ge=0)
    poll_after_ms: int | None = Field(None, ge=0)
    faults: list[Fault] = Field(default_factory=list)


def _builtin(*steps: dict[str, Any], **extra: Any) -> AgentScript:
    return AgentScript.model_validate({"steps": list(steps), **extra})


_WORK = {"status": "in_progress", "ms": 100}
_WEATHER = {"type": "function_call", "name": "get_weather", "arguments": {"city": "Paris"}}
BUILTIN: dict[str, AgentScript] = {
    "complete": _builtin({"status": "queued", "ms": 50}, _WORK),
    "fail": _builtin(_WORK, {"status": "failed", "error": {"code": "server_error"}}),
    "cancelled": _builtin(_WORK, {"status": "cancelled"}),
    "session_fail": _builtin(_WORK, {"status": "session_failed", "error": "Sandbox lost."}),
    "never_ends": _builtin({"status": "in_progress"}),
    "tool_call": _builtin(
        _WORK,
        {"status": "waiting", "actions": [_WEATHER]},
        _WORK,
        {"status": "completed", "messages": ["It is sunny in Paris."]},
    ),
    "mcp_approval": _builtin(
        _WORK,
        {"status": "waiting", "actions": [{"type": "mcp_approval_request", "name": "ask"}]},
        _WORK,
    ),
    "origin_access": _builtin(
        _WORK,
        {
            "status": "waiting",
            "actions": [
                {
                    "type": "computer_use_approval_request",
                    "request": {"type": "browser_origin_access", "origin": "https://example.com"},
                }
            ],
        },
        _WORK,
    ),
    "browser_sign_in": _builtin(
        _WORK,
        {
            "status": "waiting",
            "actions": [
                {
                    "type": "computer_use_approval_request",
                    "request": {"type": "browser_authentication", "reason": "Sign in."},
                }
            ],
        },
    ),
    "reconnect": _builtin(
        _WORK, {"status": "waiting", "actions": [{"type": "environment_connection"}]}
    ),
}
"""Built-in scripts by name (``script: "tool_call"``)."""


def parse_agent_script(value: Any) -> AgentScript:
    """A script from a JSON object, a JSON string or a built-in name (400 naming the field)."""
    if value is None:
        return AgentScript()
    if isinstance(value, str):
        if value in BUILTIN:
            return BUILTIN[value]
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(400, f"Unknown fake agent scenario {value!r}.", param="script") from None
    try:
        return AgentScript.model_validate(value)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "script"
        raise ApiError(
            400, f"Invalid fake agent script: {loc}: {err['msg']}", param="script"
        ) from None


def _usage(spec: UsageSpec | None) -> dict[str, Any]:
    spec = spec or UsageSpec()
    return {
        "input_tokens": spec.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": spec.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": spec.input_tokens + spec.output_tokens,
    }


@dataclass(slots=True)
class Agent:
    id: str
    created_at: int
    model: str
    name: str | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Action:
    """A required action on the session, and its answer once given."""

    body: dict[str, Any]
    answer: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        return str(self.body.get("call_id") or self.body.get("request_id") or "")


class Turn:
    """One turn: walks the session's script lazily from the clock."""

    def __init__(self, session: Session, turn_id: str, now: float) -> None:
        self.session = session
        self.id = turn_id
        self.created_at = session.wall(now)
        self.started_at: int | None = None
        self.completed_at: int | None = None
        self.error: dict[str, str] | None = None
        self.usage: dict[str, Any] | None = None
        self.status = ""
        self.actions: list[Action] = []
        self.cancel_at: float | None = None
        self.answered_at = now
        self.log: list[dict[str, Any]] = []
        """The requests addressed to the turn (or, for the session's paths, to its newest)."""
        self.script = session.script
        self.faults: list[FaultCounter[Fault]] = [FaultCounter(f) for f in self.script.faults]
        self._next = 0
        self._step = AgentStep(status="queued", ms=0)
        self._since = now
        self._enter(self._take(), now)

    @property
    def terminal(self) -> bool:
        return self.status in TURN_TERMINAL

    def _take(self) -> AgentStep:
        steps = self.session.script.steps
        if self._next < len(steps):
            self._next += 1
            return steps[self._next - 1]
        return AgentStep(status="completed")

    def advance(self, now: float) -> None:
        while not self.terminal:
            if self.cancel_at is not None and now >= self.cancel_at:
                self._enter(AgentStep(status="cancelled"), self.cancel_at)
                return
            step = self._step
            if step.status == "waiting":
                if any(action.answer is None for action in self.actions):
                    return
                self._enter(self._take(), max(self.answered_at, self._since))
                continue
            if step.ms is None:
                return
            end = self._since + step.ms / 1000.0
            if now + 1e-9 < end:
                return
            self._enter(self._take(), end)

    def _enter(self, step: AgentStep, t: float) -> None:
        at = self.session.wall(t)
        self._step, self._since = step, t
        self.session.stepped(self)
        if step.status == "session_failed":
            self.session.failed = str(step.error or "The session failed.")
            self.session.changed(self, t)
            return  # the turn stays as it was
        self.status = step.status
        if step.status == "in_progress" and self.started_at is None:
            self.started_at = at
        elif step.status == "waiting":
            self.actions = [Action(self._action(spec)) for spec in step.actions or ()]
            for action in self.actions:
                if action.body["type"] == "function_call":
                    self.session.add_item(self, dict(action.body, status="completed"))
        if step.status in TURN_TERMINAL:
            self.completed_at = at
            self.actions = []
            if step.status == "failed":
                error = step.error if isinstance(step.error, TurnError) else TurnError()
                self.error = error.model_dump()
            self.usage = _usage(step.usage)
            if step.status == "completed":
                for text in step.messages if step.messages is not None else [DEFAULT_MESSAGE]:
                    self.session.add_item(
                        self,
                        {
                            "type": "message",
                            "role": "assistant",
                            "status": "completed",
                            "phase": "final_answer",
                            "content": [{"type": "output_text", "text": text}],
                        },
                    )
        self.session.changed(self, t)

    def next_change_at(self) -> float | None:
        """When the turn next moves if nothing else happens (None: only a request moves it)."""
        if self.terminal:
            return None
        step = self._step
        end = None
        if step.status != "waiting" and step.ms is not None:
            end = self._since + step.ms / 1000.0
        if self.cancel_at is not None:
            end = self.cancel_at if end is None else min(end, self.cancel_at)
        return end

    def _action(self, spec: ActionSpec) -> dict[str, Any]:
        if spec.type == "function_call":
            return {
                "type": "function_call",
                "call_id": spec.call_id or new_id("call_"),
                "name": spec.name,
                "arguments": spec.arguments if spec.arguments is not None else {},
                "turn_id": self.id,
            }
        if spec.type == "mcp_approval_request":
            return {
                "type": "mcp_approval_request",
                "request_id": new_id("mcpr_"),
                "turn_id": self.id,
                "request": {
                    "type": "mcp_tool_call",
                    "server_label": spec.server_label,
                    "name": spec.name,
                    "arguments": spec.arguments,
                    "message": spec.message,
                },
            }
        if spec.type == "computer_use_approval_request":
            request = dict(spec.request or {})
            if request.get("type") == "browser_authentication":
                request.setdefault("fields", [])
                request.setdefault("options", [])
            return {
                "type": "computer_use_approval_request",
                "request_id": new_id("cuar_"),
                "turn_id": self.id,
                "request": request,
            }
        return {
            "type": "environment_connection",
            "environment_id": spec.environment_id or self.session.environment_id,
        }

    def cancel(self, now: float) -> None:
        self.advance(now)
        if self.terminal:
            return
        self.cancel_at = now + self.session.script.cancel_ms / 1000.0
        self.advance(now)
        self.session.stepped(self)

    def answer(self, now: float, key: str, kind: str, event: dict[str, Any]) -> None:
        """Record one event's answer to a pending action of this turn (400 when none)."""
        self.advance(now)
        for action in self.actions:
            if action.key == key and action.answer is None:
                expected = {
                    "function_call": "agent.session.input.tool_result",
                    "mcp_approval_request": "agent.session.input.mcp_approval_request_result",
                    "computer_use_approval_request": (
                        "agent.session.input.computer_use_approval_request_result"
                    ),
                }.get(action.body["type"])
                if expected != kind:
                    raise ApiError(
                        400,
                        f"Action '{key}' is a {action.body['type']}; it cannot be answered "
                        f"with {kind}.",
                        param="events",
                    )
                action.answer = event
                self.answered_at = now
                self.session.changed(self, now)
                if kind == "agent.session.input.tool_result":
                    self.session.add_item(
                        self,
                        {
                            "type": "function_call_output",
                            "call_id": key,
                            "status": "completed" if event.get("success") else "failed",
                            "output": event.get("output"),
                            "error": event.get("error"),
                        },
                    )
                return
        raise ApiError(
            400, f"No pending action '{key}' in session '{self.session.id}'.", param="events"
        )


class Session:
    def __init__(
        self,
        *,
        agent: Agent,
        script: AgentScript,
        metadata: dict[str, str],
        wall0: float,
        mono0: float,
        on_turn: Callable[[Turn], None] | None = None,
        on_step: Callable[[Turn], None] | None = None,
        on_status: Callable[[Session, str, float, str | None], None] | None = None,
    ) -> None:
        """``on_turn``: a turn started; ``on_step``: a turn moved (the webhook ticker watches
        when it moves next); ``on_status``: the session's status changed at monotonic ``t``
        (its webhook)."""
        self.id = new_id("sess_")
        self.on_turn = on_turn
        self.on_step = on_step
        self.on_status = on_status
        self.announced = ""
        self.agent = agent
        self.script = script
        self.metadata = metadata
        self._wall0, self._mono0 = wall0, mono0
        self.created_at = int(wall0)
        self.environment_id = new_id("env_")
        self.failed: str | None = None
        self.turns: list[Turn] = []
        self.items: list[Item] = []
        self.log: list[dict[str, Any]] = []
        """Every accepted ``POST …/events`` body's events, in order (``/_fake`` reads it)."""

    def wall(self, t: float) -> int:
        return int(self._wall0 + (t - self._mono0))

    def stepped(self, turn: Turn) -> None:
        if self.on_step is not None:
            self.on_step(turn)

    def changed(self, turn: Turn, t: float) -> None:
        """Announce the session's status if ``turn`` (the active one) changed it."""
        pending = [a for a in turn.actions if a.answer is None]
        status = "in_progress"
        if self.failed is not None:
            status = "failed"
        elif turn.terminal:
            status = "idle"
        elif pending:
            status = "requires_action"
        if status != self.announced:
            self.announced = status
            if self.on_status is not None:
                kind = str(pending[0].body["type"]) if status == "requires_action" else None
                self.on_status(self, status, t, kind)

    def add_item(self, turn: Turn, body: dict[str, Any]) -> None:
        prefix = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_"}
        self.items.append(Item(new_id(prefix.get(body["type"], "item_")), turn.id, body))

    def active_turn(self, now: float) -> Turn | None:
        for turn in self.turns:
            turn.advance(now)
        live = [turn for turn in self.turns if not turn.terminal]
        return live[-1] if live else None

    def turn(self, turn_id: str) -> Turn:
        for turn in self.turns:
            if turn.id == turn_id:
                return turn
        raise ApiError(404, f"No turn found with id '{turn_id}'.")

    def start_turn(self, now: float, messages: list[dict[str, Any]]) -> Turn:
        if self.failed is not None:
            raise ApiError(400, f"Session '{self.id}' has failed and accepts no input.")
        active = self.active_turn(now)
        if active is not None:
            raise ApiError(
                409,
                f"Session '{self.id}' already has an active turn '{active.id}'.",
                code="active_turn_not_steerable",
            )
        turn = Turn(self, new_id("turn_"), now)
        self.turns.append(turn)
        if self.on_turn is not None:
            self.on_turn(turn)
        self.stepped(turn)
        for message in messages:
            self.add_item(
                turn,
                {
                    "type": "message",
                    "role": "user",
                    "status": "completed",
                    "content": list(message.get("content") or []),
                },
            )
        return turn

    def status(self, now: float) -> str:
        active = self.active_turn(now)
        if self.failed is not None:
            return "failed"
        if active is None:
            return "idle"
        if any(action.answer is None for action in active.actions):
            return "requires_action"
        return "in_progress"


@dataclass(slots=True)
class Item:
    id: str
    turn_id: str
    body: dict[str, Any]


# ------------------------------------------------------------------------- rendering


def agent_object(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.id,
        "object": "agent",
        "created_at": agent.created_at,
        "updated_at": agent.created_at,
        "model": agent.model,
        "name": agent.name,
        "instructions": agent.instructions,
        "metadata": dict(agent.metadata),
        "multi_agent": {"enabled": False},
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "auto",
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tools": list(agent.tools),
    }


def session_object(session: Session, now: float) -> dict[str, Any]:
    status = session.status(now)
    active = session.active_turn(now)
    actions = (
        [a.body for a in active.actions if a.answer is None]
        if active is not None and session.failed is None
        else []
    )
    agent = session.agent
    used = [turn.usage for turn in session.turns if turn.usage is not None]
    usage = None
    if used:
        totals = {k: sum(u[k] for u in used) for k in ("input_tokens", "output_tokens")}
        usage = _usage(UsageSpec(**totals))
    return {
        "id": session.id,
        "object": "agent.session",
        "created_at": session.created_at,
        "last_active_at": session.wall(now),
        "status": status,
        "required_actions": actions,
        "error": session.failed,
        "usage": usage,
        "metadata": dict(session.metadata),
        "vault_ids": [],
        "environment": {"type": "none"},
        "agent": {
            "id": agent.id,
            "model": agent.model,
            "name": agent.name,
            "instructions": agent.instructions,
            "multi_agent": {"enabled": False},
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "auto",
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tools": list(agent.tools),
        },
    }


def turn_object(turn: Turn) -> dict[str, Any]:
    return {
        "id": turn.id,
        "object": "agent.session.turn",
        "agent_id": turn.session.agent.id,
        "session_id": turn.session.id,
        "created_at": turn.created_at,
        "started_at": turn.started_at,
        "completed_at": turn.completed_at,
        "status": turn.status,
        "error": turn.error,
        "usage": turn.usage,
    }


def item_object(item: Item) -> dict[str, Any]:
    return {"id": item.id, "turn_id": item.turn_id, **item.body}


# ------------------------------------------------------------------------- session events

_EVENT_TYPES = frozenset(
    {
        "agent.session.input.message",
        "agent.session.input.cancel",
        "agent.session.input.tool_result",
        "agent.session.input.mcp_approval_request_result",
        "agent.session.input.computer_use_approval_request_result",
    }
)


def _require(event: dict[str, Any], index: int, key: str, kind: type | tuple[type, ...]) -> Any:
    value = event.get(key)
    if not isinstance(value, kind):
        raise ApiError(
            400, f"Missing or invalid 'events[{index}].{key}'.", param=f"events.{index}.{key}"
        )
    return value


def apply_events(session: Session, now: float, body: dict[str, Any]) -> None:
    """Check every event first (a bad one rejects the request, nothing applied), then apply."""
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise ApiError(400, "'events' must be a non-empty array.", param="events")
    for index, event in enumerate(events):
        if not isinstance(event, dict) or event.get("type") not in _EVENT_TYPES:
            raise ApiError(
                400,
                f"Invalid 'events[{index}].type': expected one of {sorted(_EVENT_TYPES)}.",
                param=f"events.{index}.type",
            )
        kind = event["type"]
        if kind == "agent.session.input.message":
            for message in _require(event, index, "input", list):
                if not isinstance(message, dict) or message.get("role") != "user":
                    raise ApiError(400, f"'events[{index}].input' holds user messages only.")
        elif kind == "agent.session.input.tool_result":
            _require(event, index, "call_id", str)
            _require(event, index, "turn_id", str)
            _require(event, index, "success", bool)
        elif kind != "agent.session.input.cancel":
            _require(event, index, "request_id", str)
            response = _require(event, index, "response", dict)
            if response.get("decision") not in ("approve", "deny", "cancel"):
                raise ApiError(
                    400,
                    f"Invalid 'events[{index}].response.decision'.",
                    param=f"events.{index}.response.decision",
                )
    for event in events:
        kind = event["type"]
        if kind == "agent.session.input.message":
            session.start_turn(now, event["input"])
            continue
        active = session.active_turn(now)
        if kind == "agent.session.input.cancel":
            if active is not None:
                active.cancel(now)
            continue
        if active is None:
            raise ApiError(400, f"Session '{session.id}' has no active turn.", param="events")
        if kind == "agent.session.input.tool_result" and event["turn_id"] != active.id:
            raise ApiError(400, f"Turn '{event['turn_id']}' is not the session's active turn.")
        key = event.get("call_id") or event.get("request_id")
        active.answer(now, str(key), kind, event)
