"""``/_fake/...``: endpoints tests and benchmarks use to script and observe the fake.

Not part of the OpenAI surface: no auth, no fault injection, no OpenAI headers.

- ``POST /_fake/scenarios {name, script}`` registers a named script; ``GET`` lists names.
- ``POST /_fake/runs {script, assistant_id?, model?, thread_id?, metadata?}`` → RunObject.
- ``POST /_fake/responses {script, model?, metadata?, tools?}`` → background Response, as if
  the app had created it with ``tools`` (default: a function tool for every function the
  script calls). Its continuations, made through ``/v1``, have only the tools they send.
- ``POST /_fake/faults`` (a fault, a list, or ``{"faults": [...]}``) sets server-wide faults;
  ``GET`` shows them with their counters; ``DELETE`` clears them.
- ``GET /_fake/stats``; ``GET /_fake/runs/{id}/log`` (also ``/_fake/responses/{id}/log``).
- ``GET /_fake/responses/{id}/stream``: a streamed response's events so far, each with
  ``sequence_number``, ``type`` and ``time`` (the Unix instant the fake emitted it), and
  ``ended`` (no event will follow).
- ``GET /_fake/log?since=N``: every ``/v1`` request from sequence number ``N`` on (default 0),
  as ``{"requests": [...], "next": M}``. Each entry: ``seq``, ``time`` (arrival, Unix s),
  ``done`` (answer sent, or null while in flight), ``method``, ``path``, ``query`` (the query
  string, or null), ``endpoint``,
  ``object_id`` (the run or response addressed, or the one a create made), ``thread_id``,
  ``status`` (HTTP status, ``"dropped"``, ``"aborted"`` when the client went away, or null
  while in flight), ``peer_port``, and for side effects what identifies them:
  ``previous_response_id`` and ``call_ids`` (function_call_output items) on
  ``create_response``, ``tool_call_ids`` on ``submit_tool_outputs``. The log only observes.
- ``POST /_fake/webhooks {url, secret, max_attempts?, retry_backoff_ms?, timeout_ms?}``
  configures the webhooks of ended responses (``url: null`` stops them; a field left out
  keeps its value); ``GET`` shows the configuration, never the secret.
- ``POST /_fake/webhooks/faults`` (a ``WebhookFault``, a list, or ``{"faults": [...]}``),
  ``GET``, ``DELETE``: faults of the next deliveries, as ``/_fake/faults`` for requests.
- ``GET /_fake/webhooks/log?since=N``: ``{"deliveries": [...], "next": M}``, one entry per
  delivery (a duplicate is a second entry, ``duplicate: true``): ``seq``, ``event_id``,
  ``webhook_id``, ``type``, ``response_id``, ``created_at``, ``faults`` applied, ``status``
  (the last HTTP status answered, ``"connection_error"``, ``"timeout"``, ``"dropped"``,
  ``"held"``, ``"unconfigured"`` when the URL was removed meanwhile, or ``"pending"`` before
  the first answer), ``attempts``, ``answers`` (one per
  attempt), ``sent_at`` (the last attempt, Unix s), ``done`` (answered 2xx, given up after
  ``max_attempts``, or dropped; a held one is not done).
- ``POST /_fake/reset`` (also forgets the webhook log and faults); ``GET /_fake/health``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from runpoller_fake import agents, objects
from runpoller_fake.errors import ApiError
from runpoller_fake.ops import (
    STATE_KEY,
    read_json,
    script_for,
    start_response,
    start_run,
    start_session,
)
from runpoller_fake.params import script_function_tools
from runpoller_fake.script import (
    BUILTIN_SCENARIOS,
    Fault,
    FaultCounter,
    ScriptError,
    describe_validation_error,
    parse_script,
)
from runpoller_fake.sse import STREAMED_OBJECT
from runpoller_fake.state import FakeState
from runpoller_fake.webhooks import WebhookFault

_F = TypeVar("_F")
ControlHandler = Callable[[FakeState, web.Request], Awaitable[Any]]

# (method, route) -> the endpoint name faults and stats use (runpoller_fake.app).
_RUN = "/v1/threads/{thread_id}/runs/{run_id}"
_SESSION = "/v1/agents/sessions/{session_id}"
_ENDPOINT_NAMES = {
    ("POST", "/v1/threads"): "create_thread",
    ("POST", "/v1/threads/runs"): "create_thread_and_run",
    ("POST", "/v1/threads/{thread_id}/runs"): "create_run",
    ("GET", _RUN): "get_run",
    ("POST", _RUN + "/cancel"): "cancel_run",
    ("POST", _RUN + "/submit_tool_outputs"): "submit_tool_outputs",
    ("GET", _RUN + "/steps"): "list_steps",
    ("GET", "/v1/threads/{thread_id}/messages"): "list_messages",
    ("POST", "/v1/responses"): "create_response",
    ("GET", "/v1/responses/{response_id}"): "get_response",
    ("POST", "/v1/responses/{response_id}/cancel"): "cancel_response",
    ("POST", "/v1/agents"): "create_agent",
    ("GET", "/v1/agents/{agent_id}"): "get_agent",
    ("POST", "/v1/agents/sessions"): "create_agent_session",
    ("GET", _SESSION): "get_agent_session",
    ("GET", _SESSION + "/turns"): "list_agent_turns",
    ("GET", _SESSION + "/turns/{turn_id}"): "get_agent_turn",
    ("GET", _SESSION + "/turns/{turn_id}/items"): "list_agent_turn_items",
    ("GET", _SESSION + "/items"): "list_agent_session_items",
    ("POST", _SESSION + "/events"): "create_agent_events",
}


def _control(handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def serve(request: web.Request) -> web.Response:
        try:
            status, body = 200, await handler(request.app[STATE_KEY], request)
        except ApiError as exc:
            status, body = exc.status, exc.body()
        return web.json_response(body, status=status, dumps=json.dumps)

    return serve


async def _register_scenario(state: FakeState, request: web.Request) -> Any:
    body = await read_json(request)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or name.lstrip().startswith("{"):
        raise ApiError(
            400, "'name' must be a non-empty string not starting with '{'.", param="name"
        )
    try:
        script = parse_script(body.get("script"))
    except ScriptError as exc:
        raise ApiError(400, f"Invalid fake script in 'script': {exc}", param="script") from None
    state.scenarios[name.strip()] = script
    return {"name": name.strip(), "script": script.model_dump(mode="json", exclude_none=True)}


async def _list_scenarios(state: FakeState, request: web.Request) -> Any:
    return {
        "registered": sorted(state.scenarios),
        "builtin": {kind: sorted(names) for kind, names in BUILTIN_SCENARIOS.items()},
    }


async def _create_run(state: FakeState, request: web.Request) -> Any:
    body = await read_json(request, allow_empty=True)
    script = script_for(state, body.get("script"), "run", param="script")
    thread_id = body.get("thread_id")
    if thread_id is None or thread_id not in state.threads:
        thread_id = state.create_thread(thread_id=thread_id).id
    run_body = {
        "assistant_id": body.get("assistant_id") or "asst_fake",
        "model": body.get("model"),
        "metadata": body.get("metadata"),
    }
    return objects.run_object(start_run(state, run_body, thread_id, script=script))


async def _create_response(state: FakeState, request: web.Request) -> Any:
    body = await read_json(request, allow_empty=True)
    script = script_for(state, body.get("script"), "response", param="script")
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise ApiError(400, "'tools' must be a list of tool definitions.", param="tools")
    response_body = {
        "model": body.get("model"),
        "metadata": body.get("metadata"),
        "input": body.get("input", "Hello"),
        "background": True,
        "tools": script_function_tools(script) if tools is None else tools,
    }
    return objects.response_object(start_response(state, response_body, script))


async def _create_agent_session(state: FakeState, request: web.Request) -> Any:
    """A session (and its agent, and with ``input`` its first turn) playing ``script``."""
    body = await read_json(request, allow_empty=True)
    agent_body = {"model": body.get("model") or "gpt-5", "tools": body.get("tools") or []}
    if body.get("agent_id") and body["agent_id"] in state.agents:
        session_body: dict[str, Any] = {"agent_id": body["agent_id"]}
    else:
        agent = state.create_agent(agent_body, agent_id=body.get("agent_id"))
        session_body = {"agent_id": agent.id}
    session_body |= {
        "environment": {"type": "none"},
        "metadata": body.get("metadata"),
        "input": body.get("input"),
    }
    session = start_session(state, session_body, script=body.get("script") or "complete")
    now = state.now()
    turn = session.turns[-1] if session.turns else None
    return {
        "session": agents.session_object(session, now),
        "turn": agents.turn_object(turn) if turn is not None else None,
    }


async def _agent_session_log(state: FakeState, request: web.Request) -> Any:
    return state.session(request.match_info["session_id"]).log


async def _set_faults(state: FakeState, request: web.Request) -> Any:
    raw = await _read_any_json(request, b"[]")
    state.set_faults(_parse_faults(raw, Fault.model_validate))
    return await _get_faults(state, request)


async def _get_faults(state: FakeState, request: web.Request) -> Any:
    return {"faults": _counters(state.faults)}


async def _clear_faults(state: FakeState, request: web.Request) -> Any:
    state.set_faults([])
    return {"faults": []}


def _parse_faults(raw: Any, model: Callable[[Any], _F]) -> list[_F]:
    """A fault, a list of them, or ``{"faults": [...]}``; a 400 naming the bad one."""
    if isinstance(raw, dict):
        raw = raw.get("faults", [raw])
    if not isinstance(raw, list):
        raise ApiError(400, "Send a fault object, a list of them, or {'faults': [...]}.")
    faults = []
    for index, item in enumerate(raw):
        try:
            faults.append(model(item))
        except ValidationError as exc:
            problem = describe_validation_error(exc)
            raise ApiError(400, f"faults.{index}: {problem}", param=f"faults.{index}") from None
    return faults


async def _read_any_json(request: web.Request, default: bytes) -> Any:
    try:
        return json.loads(await request.read() or default)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON.") from None


def _counters(counters: list[FaultCounter[Any]]) -> list[dict[str, Any]]:
    return [
        {**c.fault.model_dump(mode="json", exclude_none=True), "seen": c.seen, "fired": c.fired}
        for c in counters
    ]


_WEBHOOK_NUMBERS = {
    "max_attempts": (1, 20),
    "retry_backoff_ms": (0, 600_000),
    "timeout_ms": (1, 600_000),
}


async def _set_webhooks(state: FakeState, request: web.Request) -> Any:
    body = await read_json(request)
    sender = state.webhooks
    unknown = sorted(set(body) - {"url", "secret", *_WEBHOOK_NUMBERS})
    if unknown:
        raise ApiError(400, f"Unknown webhook settings: {unknown}.", param=unknown[0])
    url = body.get("url", sender.url)
    secret = body.get("secret", sender.secret)
    for name, value in (("url", url), ("secret", secret)):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"'{name}' must be a string or null.", param=name)
    numbers = {}
    for name, (low, high) in _WEBHOOK_NUMBERS.items():
        value = body.get(name, getattr(sender, name))
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise ApiError(400, f"'{name}' must be a number from {low} to {high}.", param=name)
        numbers[name] = value
    try:
        sender.configure(url=url, secret=secret)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="url" if "URL" in str(exc) else "secret") from None
    sender.max_attempts = int(numbers["max_attempts"])
    sender.retry_backoff_ms = float(numbers["retry_backoff_ms"])
    sender.timeout_ms = float(numbers["timeout_ms"])
    return sender.describe()


async def _get_webhooks(state: FakeState, request: web.Request) -> Any:
    return state.webhooks.describe()


async def _set_webhook_faults(state: FakeState, request: web.Request) -> Any:
    raw = await _read_any_json(request, b"[]")
    state.webhooks.set_faults(_parse_faults(raw, WebhookFault.model_validate))
    return await _get_webhook_faults(state, request)


async def _get_webhook_faults(state: FakeState, request: web.Request) -> Any:
    return {"faults": _counters(state.webhooks.faults)}


async def _clear_webhook_faults(state: FakeState, request: web.Request) -> Any:
    state.webhooks.set_faults([])
    return {"faults": []}


async def _webhook_log(state: FakeState, request: web.Request) -> Any:
    log = state.webhooks.log
    return {"deliveries": log[_since(request) :], "next": len(log)}


def _since(request: web.Request) -> int:
    try:
        return max(int(request.query.get("since", "0")), 0)
    except ValueError:
        raise ApiError(400, "'since' must be an integer.", param="since") from None


async def _stats(state: FakeState, request: web.Request) -> Any:
    return state.stats.as_dict()


async def _log(state: FakeState, request: web.Request) -> Any:
    object_id = request.match_info["object_id"]
    obj = state.lookup(object_id)
    if obj is None:
        raise ApiError(404, f"No run, response or turn found with id '{object_id}'.")
    return obj.log


async def _stream_log(state: FakeState, request: web.Request) -> Any:
    response = state.response(request.match_info["object_id"])
    now = state.now()
    response.advance(now)
    stream = response.stream
    if stream is None:
        raise ApiError(404, f"Response '{response.id}' was not created with stream: true.")
    stream.release(now)
    return {
        "events": [
            {"sequence_number": i, "type": event["type"], "time": response.unix(t)}
            for i, (event, t) in enumerate(zip(stream.events, stream.times, strict=True))
        ],
        "ended": stream.ended,
    }


async def _request_log(state: FakeState, request: web.Request) -> Any:
    log = state.request_log
    return {"requests": log[_since(request) :], "next": len(log)}


def _side_effect_fields(endpoint: str, raw: bytes) -> dict[str, Any]:
    """What identifies a non-idempotent request: the continued response, the outputs sent."""
    if endpoint not in ("create_response", "submit_tool_outputs"):
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(body, dict):
        return {}
    if endpoint == "submit_tool_outputs":
        outputs = body.get("tool_outputs")
        items = outputs if isinstance(outputs, list) else []
        return {
            "tool_call_ids": [i.get("tool_call_id") for i in items if isinstance(i, dict)],
        }
    raw_input = body.get("input")
    inputs = raw_input if isinstance(raw_input, list) else []
    return {
        "previous_response_id": body.get("previous_response_id"),
        "call_ids": [
            i.get("call_id")
            for i in inputs
            if isinstance(i, dict) and i.get("type") == "function_call_output"
        ],
    }


@web.middleware
async def _record_request(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Append every ``/v1`` request to ``state.request_log`` (see the module docstring)."""
    if not request.path.startswith("/v1/"):
        return await handler(request)
    state: FakeState = request.app[STATE_KEY]
    info = request.match_info
    resource = info.route.resource
    route = resource.canonical if resource is not None else request.path
    endpoint = _ENDPOINT_NAMES.get((request.method, route), "unknown")
    peer = request.transport.get_extra_info("peername") if request.transport else None
    entry: dict[str, Any] = {
        "seq": len(state.request_log),
        "time": state.wall(state.now()),
        "done": None,
        "method": request.method,
        "path": request.path,
        "query": request.query_string or None,
        "endpoint": endpoint,
        "object_id": info.get("run_id") or info.get("response_id") or info.get("turn_id"),
        "thread_id": info.get("thread_id"),
        "status": None,
        "peer_port": peer[1] if isinstance(peer, tuple) and len(peer) >= 2 else None,
    }
    state.request_log.append(entry)
    if request.method == "POST":
        entry.update(_side_effect_fields(endpoint, await request.read()))
    try:
        response = await handler(request)
    except BaseException:
        entry["status"], entry["done"] = "aborted", state.wall(state.now())
        raise
    transport = request.transport
    dropped = transport is None or transport.is_closing()
    entry["status"] = "dropped" if dropped else response.status
    entry["done"] = state.wall(state.now())
    if entry["object_id"] is None:
        entry["object_id"] = request.get(STREAMED_OBJECT)
    if entry["object_id"] is None and response.status == 200 and isinstance(response, web.Response):
        try:
            created = json.loads(response.body or b"{}")  # type: ignore[arg-type]
        except (TypeError, ValueError):
            created = None
        if isinstance(created, dict) and isinstance(created.get("id"), str):
            entry["object_id"] = created["id"]
            entry["thread_id"] = entry["thread_id"] or created.get("thread_id")
    return response


async def _reset(state: FakeState, request: web.Request) -> Any:
    state.reset()
    return {"reset": True}


async def _health(state: FakeState, request: web.Request) -> Any:
    return {"status": "ok"}


def add_control_routes(app: web.Application) -> None:
    """The ``/_fake`` routes, and the middleware keeping ``GET /_fake/log``."""
    app.middlewares.append(_record_request)
    app.router.add_routes(
        [
            web.post("/_fake/scenarios", _control(_register_scenario)),
            web.get("/_fake/scenarios", _control(_list_scenarios)),
            web.post("/_fake/runs", _control(_create_run)),
            web.post("/_fake/responses", _control(_create_response)),
            web.post("/_fake/agents/sessions", _control(_create_agent_session)),
            web.get("/_fake/agents/sessions/{session_id}/log", _control(_agent_session_log)),
            web.get("/_fake/agents/turns/{object_id}/log", _control(_log)),
            web.post("/_fake/faults", _control(_set_faults)),
            web.get("/_fake/faults", _control(_get_faults)),
            web.delete("/_fake/faults", _control(_clear_faults)),
            web.get("/_fake/stats", _control(_stats)),
            web.get("/_fake/log", _control(_request_log)),
            web.get("/_fake/runs/{object_id}/log", _control(_log)),
            web.get("/_fake/responses/{object_id}/log", _control(_log)),
            web.get("/_fake/responses/{object_id}/stream", _control(_stream_log)),
            web.post("/_fake/webhooks", _control(_set_webhooks)),
            web.get("/_fake/webhooks", _control(_get_webhooks)),
            web.post("/_fake/webhooks/faults", _control(_set_webhook_faults)),
            web.get("/_fake/webhooks/faults", _control(_get_webhook_faults)),
            web.delete("/_fake/webhooks/faults", _control(_clear_webhook_faults)),
            web.get("/_fake/webhooks/log", _control(_webhook_log)),
            web.post("/_fake/reset", _control(_reset)),
            web.get("/_fake/health", _control(_health)),
        ]
    )
