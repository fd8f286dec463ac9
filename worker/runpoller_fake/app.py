"""The aiohttp application: OpenAI-compatible endpoints under ``/v1`` and controls under ``/_fake``.

Every ``/v1`` handler is wrapped by ``_endpoint``, which does what the real API's front door
does, in order: inject faults (latency, error status, dropped connection), authenticate, check
the Assistants beta header, then call the handler, and finally add the headers clients read
(``x-request-id``, ``openai-processing-ms``, ``x-ratelimit-*``, ``openai-poll-after-ms``). It
also keeps the stats: counts per endpoint and status, and polls that overlap on one object.
Handlers stay small: parse, call the lifecycle, render.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiohttp import web

from runpoller_fake import agents, objects
from runpoller_fake.control import add_control_routes
from runpoller_fake.errors import ApiError, error_body
from runpoller_fake.lifecycle import Lifecycle, Run
from runpoller_fake.ops import (
    STATE_KEY,
    check_schema,
    no_stream,
    read_json,
    start_response,
    start_run,
    start_session,
)
from runpoller_fake.script import Fault
from runpoller_fake.sse import Streamed, stream_reply, streamed_get
from runpoller_fake.state import POLL_ENDPOINTS, FakeState
from runpoller_fake.webhooks import webhook_context

Addressed = Lifecycle | agents.Turn
"""What a request may be addressed to (its faults, stats and log)."""


class Accepted:
    """A handler's answer of HTTP 202 with no body (the Agents API's session events)."""


ACCEPTED = Accepted()
Handler = Callable[[FakeState, web.Request], Awaitable[dict[str, Any] | Streamed | Accepted]]
# Extra fields a handler adds to the object's request log (the submitted tool outputs).
LOG_EXTRA = web.RequestKey("fake_openai_log_extra", dict[str, Any])

BETA_MESSAGE = (
    "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
    "Please try again by setting the header 'OpenAI-Beta: assistants=v2'."
)
MISSING_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username. You can obtain an API key from https://platform.openai.com/account/api-keys."
)
_STATIC_HEADERS = {
    "Content-Type": "application/json",
    "openai-version": "2020-10-01",
    "openai-organization": "user-fake-openai",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999000",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}
_FAULT_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    408: ("Request timed out.", "invalid_request_error", None),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    429: (
        "Rate limit reached for requests. Please try again in a moment.",
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


def _json_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(), status=status, headers=headers
    )


def _object_id(state: FakeState, request: web.Request, endpoint: str) -> str | None:
    info = request.match_info
    object_id = info.get("run_id") or info.get("response_id") or info.get("turn_id")
    if object_id is None and endpoint == "list_messages":
        object_id = request.query.get("run_id")
    if object_id is None and "session_id" in info:  # the session's paths: its newest turn
        session = state.sessions.get(info["session_id"])
        if session is not None and session.turns:
            object_id = session.turns[-1].id
    return object_id


async def _inject_faults(
    state: FakeState, endpoint: str, obj: Addressed | None, *, streams: bool
) -> tuple[Fault | None, int | None]:
    """Apply matching latency faults; the fault that ends the request, if any, and the
    number of events after which a streamed reply is cut (``streams``: the reply is SSE)."""
    if not state.faults and (obj is None or not obj.faults):
        return None, None
    counters = state.faults + obj.faults if obj is not None else state.faults
    latency = 0.0
    ending: Fault | None = None
    cut: int | None = None
    for counter in counters:
        fault = counter.fault
        if fault.on != endpoint and fault.on != "any":
            continue
        if fault.cut_after is not None and (not streams or cut is not None):
            continue
        if not counter.fires():
            continue
        if fault.latency_ms:
            latency += fault.latency_ms / 1000.0
            state.stats.faults["latency"] += 1
        if fault.cut_after is not None:
            cut = fault.cut_after
            state.stats.faults["cut"] += 1
        if fault.ends_request:
            ending = fault
            break
    if latency:
        await state.sleep(latency)
    return ending, cut


async def _wants_stream(request: web.Request, endpoint: str) -> bool:
    """Whether the reply will be a stream (what a ``cut_after`` fault needs to know)."""
    if endpoint == "get_response":
        return request.query.get("stream") == "true"
    if endpoint == "create_response":
        try:
            body = json.loads(await request.read())
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("stream") is True
    return False


def _fault_reply(fault: Fault) -> tuple[int, dict[str, Any], dict[str, str]]:
    status = fault.status or 500
    default_message, default_type, default_code = _FAULT_DEFAULTS.get(
        status,
        (
            f"Injected fault: HTTP {status}.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    headers: dict[str, str] = {}
    if fault.retry_after is not None:
        seconds = fault.retry_after
        headers["retry-after"] = str(int(seconds)) if seconds == int(seconds) else str(seconds)
    if fault.retry_after_ms is not None:
        headers["retry-after-ms"] = str(fault.retry_after_ms)
    if fault.should_retry is not None:
        headers["x-should-retry"] = "true" if fault.should_retry else "false"
    body = error_body(
        fault.message or default_message,
        type=fault.type or default_type,
        code=fault.code if fault.code is not None else default_code,
    )
    return status, body, headers


def _authorize(state: FakeState, request: web.Request) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key:
        raise ApiError(401, MISSING_KEY_MESSAGE)
    if state.api_keys is not None and key not in state.api_keys:
        masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else "***"
        raise ApiError(
            401,
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )


def _check_beta(request: web.Request) -> None:
    betas = {part.strip() for part in request.headers.get("OpenAI-Beta", "").split(",")}
    if "assistants=v2" not in betas:
        raise ApiError(400, BETA_MESSAGE, code="invalid_beta")


def _drop(request: web.Request) -> web.Response:
    """Close the connection without answering (the client sees a disconnect)."""
    if request.transport is not None:
        request.transport.close()
    return web.Response(status=500)


def _endpoint(name: str, *, beta: bool) -> Callable[[Handler], Callable[..., Any]]:
    """Wrap a handler with faults, auth, headers and stats (see the module docstring)."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def serve(request: web.Request) -> web.StreamResponse:
            state = request.app[STATE_KEY]
            arrived = state.wall(state.now())
            obj = state.lookup(_object_id(state, request, name))
            object_stats = state.stats.begin(obj.id if obj else None, name)
            try:
                status, reply, obj = await _answer(state, request, name, handler, obj, beta=beta)
            finally:
                if object_stats is not None:
                    object_stats.in_flight -= 1
            state.stats.finish(name, status)
            if obj is not None:
                if object_stats is None:  # just created by this request
                    state.stats.count(obj.id, name)
                entry = {"endpoint": name, "time": arrived, "status": status}
                entry.update(request.get(LOG_EXTRA, {}))
                obj.log.append(entry)
            return reply

        return serve

    return wrap


async def _answer(
    state: FakeState,
    request: web.Request,
    name: str,
    handler: Handler,
    obj: Addressed | None,
    *,
    beta: bool,
) -> tuple[int | str, web.StreamResponse, Addressed | None]:
    """The reply (or a dropped connection), its status, and the object it concerns."""
    started = time.perf_counter()
    streams = await _wants_stream(request, name)
    fault, cut = await _inject_faults(state, name, obj, streams=streams)
    if fault is not None and fault.drop:
        state.stats.faults["drop"] += 1
        return "dropped", _drop(request), obj
    headers = dict(_STATIC_HEADERS)
    body: dict[str, Any] | Streamed | Accepted
    if fault is not None:
        state.stats.faults["status"] += 1
        status, body, extra = _fault_reply(fault)
        headers.update(extra)
    else:
        status, body = await _call(state, request, handler, beta=beta)
        if isinstance(body, Streamed):
            obj = body.response
        elif obj is None and status == 200 and isinstance(body, dict):
            obj = state.lookup(body.get("id"))
    if (
        name in POLL_ENDPOINTS
        and status == 200
        and obj is not None
        and not obj.terminal
        and obj.script.poll_after_ms is not None
    ):
        headers["openai-poll-after-ms"] = str(obj.script.poll_after_ms)
    headers["x-request-id"] = "req_" + secrets.token_hex(16)
    headers["openai-processing-ms"] = str(int((time.perf_counter() - started) * 1000))
    if isinstance(body, Streamed):
        return status, await stream_reply(state, request, body, headers, cut), obj
    if isinstance(body, Accepted):
        del headers["Content-Type"]
        return 202, web.Response(status=202, headers=headers), obj
    return status, _json_response(status, body, headers), obj


async def _call(
    state: FakeState, request: web.Request, handler: Handler, *, beta: bool
) -> tuple[int, dict[str, Any] | Streamed | Accepted]:
    try:
        _authorize(state, request)
        if beta:
            _check_beta(request)
        return 200, await handler(state, request)
    except ApiError as exc:
        return exc.status, exc.body()


# --- Assistants endpoints -----------------------------------------------------------------


@_endpoint("create_thread", beta=True)
async def create_thread(state: FakeState, request: web.Request) -> dict[str, Any]:
    body = await read_json(request, allow_empty=True)
    check_schema(state, "CreateThreadRequest", body)
    thread = state.create_thread(messages=body.get("messages"), metadata=body.get("metadata"))
    return objects.thread_object(thread)


@_endpoint("create_run", beta=True)
async def create_run(state: FakeState, request: web.Request) -> dict[str, Any]:
    thread_id = request.match_info["thread_id"]
    state.thread(thread_id)
    body = await read_json(request)
    check_schema(state, "CreateRunRequest", body)
    return objects.run_object(start_run(state, body, thread_id))


@_endpoint("create_thread_and_run", beta=True)
async def create_thread_and_run(state: FakeState, request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    check_schema(state, "CreateThreadAndRunRequest", body)
    return objects.run_object(start_run(state, body))


def _run_of(state: FakeState, request: web.Request) -> Run:
    return state.run(request.match_info["thread_id"], request.match_info["run_id"])


@_endpoint("get_run", beta=True)
async def get_run(state: FakeState, request: web.Request) -> dict[str, Any]:
    run = _run_of(state, request)
    run.advance(state.now())
    return objects.run_object(run)


@_endpoint("cancel_run", beta=True)
async def cancel_run(state: FakeState, request: web.Request) -> dict[str, Any]:
    run = _run_of(state, request)
    run.cancel(state.now())
    return objects.run_object(run)


@_endpoint("submit_tool_outputs", beta=True)
async def submit_tool_outputs(state: FakeState, request: web.Request) -> dict[str, Any]:
    run = _run_of(state, request)
    body = await read_json(request)
    outputs = body.get("tool_outputs")
    request[LOG_EXTRA] = {"tool_outputs": outputs}
    check_schema(state, "SubmitToolOutputsRunRequest", body)
    if not isinstance(outputs, list) or not all(isinstance(item, dict) for item in outputs):
        raise ApiError(400, "'tool_outputs' must be a list of objects.", param="tool_outputs")
    no_stream(body)
    run.submit_tool_outputs(state.now(), outputs)
    return objects.run_object(run)


@_endpoint("list_messages", beta=True)
async def list_messages(state: FakeState, request: web.Request) -> dict[str, Any]:
    thread = state.thread(request.match_info["thread_id"])
    thread.active_run(state.now())  # brings the newest run (and its messages) up to date
    messages = thread.messages
    run_id = request.query.get("run_id")
    if run_id is not None:
        messages = [message for message in messages if message.run_id == run_id]
    return objects.page(messages, objects.message_object, request.query)


@_endpoint("list_steps", beta=True)
async def list_steps(state: FakeState, request: web.Request) -> dict[str, Any]:
    run = _run_of(state, request)
    run.advance(state.now())
    return objects.page(run.steps, partial(objects.run_step_object, run), request.query)


# --- Responses endpoints ------------------------------------------------------------------


@_endpoint("create_response", beta=False)
async def create_response(state: FakeState, request: web.Request) -> dict[str, Any] | Streamed:
    body = await read_json(request)
    check_schema(state, "CreateResponse", body)
    response = start_response(state, body)
    if response.stream is not None:
        return Streamed(response, after=-1)
    return objects.response_object(response)


@_endpoint("get_response", beta=False)
async def get_response(state: FakeState, request: web.Request) -> dict[str, Any] | Streamed:
    response = state.response(request.match_info["response_id"])
    response.advance(state.now())
    streamed = streamed_get(response, request.query)
    return streamed if streamed is not None else objects.response_object(response)


@_endpoint("cancel_response", beta=False)
async def cancel_response(state: FakeState, request: web.Request) -> dict[str, Any]:
    response = state.response(request.match_info["response_id"])
    response.cancel(state.now())
    return objects.response_object(response)


# --- Agents endpoints (beta) -------------------------------------------------------------

AGENTS_BETA_MESSAGE = (
    "You must provide the 'OpenAI-Beta' header to access the Agents API. "
    "Please try again by setting the header 'OpenAI-Beta: agents=v1'."
)


def _check_agents_beta(request: web.Request) -> None:
    betas = {part.strip() for part in request.headers.get("OpenAI-Beta", "").split(",")}
    if "agents=v1" not in betas:
        raise ApiError(400, AGENTS_BETA_MESSAGE, code="invalid_beta")


def _session_of(state: FakeState, request: web.Request) -> agents.Session:
    _check_agents_beta(request)
    return state.session(request.match_info["session_id"])


@_endpoint("create_agent", beta=False)
async def create_agent(state: FakeState, request: web.Request) -> dict[str, Any]:
    _check_agents_beta(request)
    return agents.agent_object(state.create_agent(await read_json(request)))


@_endpoint("get_agent", beta=False)
async def get_agent(state: FakeState, request: web.Request) -> dict[str, Any]:
    _check_agents_beta(request)
    return agents.agent_object(state.agent(request.match_info["agent_id"]))


@_endpoint("create_agent_session", beta=False)
async def create_agent_session(state: FakeState, request: web.Request) -> dict[str, Any]:
    _check_agents_beta(request)
    session = start_session(state, await read_json(request))
    return agents.session_object(session, state.now())


@_endpoint("get_agent_session", beta=False)
async def get_agent_session(state: FakeState, request: web.Request) -> dict[str, Any]:
    return agents.session_object(_session_of(state, request), state.now())


@_endpoint("get_agent_turn", beta=False)
async def get_agent_turn(state: FakeState, request: web.Request) -> dict[str, Any]:
    session = _session_of(state, request)
    turn = session.turn(request.match_info["turn_id"])
    turn.advance(state.now())
    return agents.turn_object(turn)


@_endpoint("list_agent_turns", beta=False)
async def list_agent_turns(state: FakeState, request: web.Request) -> dict[str, Any]:
    session = _session_of(state, request)
    session.active_turn(state.now())  # brings every turn up to date
    return objects.page(session.turns, agents.turn_object, request.query)


@_endpoint("list_agent_turn_items", beta=False)
async def list_agent_turn_items(state: FakeState, request: web.Request) -> dict[str, Any]:
    session = _session_of(state, request)
    turn = session.turn(request.match_info["turn_id"])
    turn.advance(state.now())
    items = [item for item in session.items if item.turn_id == turn.id]
    return objects.page(items, agents.item_object, request.query)


@_endpoint("list_agent_session_items", beta=False)
async def list_agent_session_items(state: FakeState, request: web.Request) -> dict[str, Any]:
    session = _session_of(state, request)
    session.active_turn(state.now())
    return objects.page(session.items, agents.item_object, request.query)


@_endpoint("create_agent_events", beta=False)
async def create_agent_events(state: FakeState, request: web.Request) -> Accepted:
    session = _session_of(state, request)
    body = await read_json(request)
    agents.apply_events(session, state.now(), body)
    session.log.append({"time": state.wall(state.now()), "events": body.get("events")})
    return ACCEPTED


async def _unknown_url(request: web.Request) -> web.Response:
    body = error_body(f"Invalid URL ({request.method} {request.path})")
    headers = {**_STATIC_HEADERS, "x-request-id": "req_" + secrets.token_hex(16)}
    return _json_response(404, body, headers)


def make_app(state: FakeState | None = None) -> web.Application:
    """The fake OpenAI server as an aiohttp application (``state`` defaults to a fresh one)."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state if state is not None else FakeState()
    run = "/v1/threads/{thread_id}/runs/{run_id}"
    session = "/v1/agents/sessions/{session_id}"
    app.router.add_routes(
        [
            web.post("/v1/threads", create_thread),
            web.post("/v1/threads/runs", create_thread_and_run),
            web.post("/v1/threads/{thread_id}/runs", create_run),
            web.get(run, get_run),
            web.post(run + "/cancel", cancel_run),
            web.post(run + "/submit_tool_outputs", submit_tool_outputs),
            web.get(run + "/steps", list_steps),
            web.get("/v1/threads/{thread_id}/messages", list_messages),
            web.post("/v1/responses", create_response),
            web.get("/v1/responses/{response_id}", get_response),
            web.post("/v1/responses/{response_id}/cancel", cancel_response),
            web.post("/v1/agents", create_agent),
            web.get("/v1/agents/{agent_id}", get_agent),
            web.post("/v1/agents/sessions", create_agent_session),
            web.get(session, get_agent_session),
            web.get(session + "/turns", list_agent_turns),
            web.get(session + "/turns/{turn_id}", get_agent_turn),
            web.get(session + "/turns/{turn_id}/items", list_agent_turn_items),
            web.get(session + "/items", list_agent_session_items),
            web.post(session + "/events", create_agent_events),
        ]
    )
    add_control_routes(app)
    app.router.add_route("*", "/v1/{tail:.*}", _unknown_url)
    app.cleanup_ctx.append(webhook_context)
    return app
