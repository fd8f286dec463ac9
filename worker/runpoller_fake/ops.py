"""Operations shared by the OpenAI-style endpoints and the ``/_fake`` control endpoints.

Parsing and checking request bodies, choosing a script, and creating runs and responses with
the real API's rules (an active run locks its thread; a continuation must answer every
function call of the previous response, and only those).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from runpoller_fake import agents, spec
from runpoller_fake.errors import ApiError
from runpoller_fake.lifecycle import Response, Run
from runpoller_fake.params import response_params, run_params
from runpoller_fake.script import Kind, Script, ScriptError, resolve
from runpoller_fake.state import FakeState

STATE_KEY = web.AppKey("fake_openai_state", FakeState)


async def read_json(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The JSON object body, or the real API's 400 for a body that is not one."""
    raw = await request.read()
    if not raw.strip() and allow_empty:
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


def check_schema(state: FakeState, schema_name: str, body: dict[str, Any]) -> None:
    if not state.validate_requests:
        return
    problems = spec.problems(schema_name, body)
    if problems:
        raise ApiError(
            400,
            f"Invalid request body (OpenAPI schema {schema_name}): "
            + "; ".join(f"{pointer}: {message}" for pointer, message in problems),
            param=problems[0][0].strip("/").replace("/", ".") or None,
            code="invalid_request_body",
        )


def require_str(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value:
        raise ApiError(
            400,
            f"Missing required parameter: '{key}'.",
            param=key,
            code="missing_required_parameter",
        )
    return value


def no_stream(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise ApiError(
            400,
            "This fake OpenAI server does not stream Assistants runs; poll instead.",
            param="stream",
        )


def script_for(
    state: FakeState, source: Any, kind: Kind, *, param: str, default: Script | None = None
) -> Script:
    """Resolve a scenario name or JSON script into a script, or a 400 naming what is wrong."""
    if source is None and default is not None:
        return default
    try:
        return resolve(source, kind, state.scenarios)
    except ScriptError as exc:
        raise ApiError(400, f"Invalid fake script in '{param}': {exc}", param=param) from None


def scenario_of(body: dict[str, Any]) -> Any:
    metadata = body.get("metadata")
    return metadata.get("fake_scenario") if isinstance(metadata, dict) else None


def start_run(
    state: FakeState,
    body: dict[str, Any],
    thread_id: str | None = None,
    *,
    script: Script | None = None,
) -> Run:
    """Create a run from a ``CreateRunRequest``-shaped body (``thread`` for thread-and-run)."""
    assistant_id = require_str(body, "assistant_id")
    no_stream(body)
    if script is None:
        script = script_for(state, scenario_of(body), "run", param="metadata.fake_scenario")
    if thread_id is None:
        thread_body = body.get("thread") or {}
        thread = state.create_thread(
            messages=thread_body.get("messages"), metadata=thread_body.get("metadata")
        )
    else:
        thread = state.thread(thread_id)
    return state.create_run(
        thread,
        assistant_id,
        run_params(body, script),
        script,
        messages=body.get("additional_messages") or [],
    )


def _check_continuation(state: FakeState, body: dict[str, Any]) -> Script | None:
    """Check ``previous_response_id`` and function_call_output items; the carried-over script."""
    raw_input = body.get("input")
    items = (
        [item for item in raw_input if isinstance(item, dict)]
        if isinstance(raw_input, list)
        else []
    )
    known = {item.get("call_id") for item in items if item.get("type") == "function_call"}
    outputs = [item.get("call_id") for item in items if item.get("type") == "function_call_output"]
    previous_id = body.get("previous_response_id")
    carried: Script | None = None
    expected: list[str] = []
    if previous_id is not None:
        if body.get("conversation") is not None:
            raise ApiError(
                400,
                "Mutually exclusive parameters: 'previous_response_id' and 'conversation'.",
                param="previous_response_id",
            )
        previous = state.responses.get(previous_id)
        if previous is None:
            raise ApiError(
                404,
                f"Previous response with id '{previous_id}' not found.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        previous.advance(state.now())
        if previous.status != "completed":
            raise ApiError(
                400,
                f"Previous response with id '{previous_id}' has status '{previous.status}'; "
                "only completed responses can be continued.",
                param="previous_response_id",
            )
        expected = [call.id for call in previous.function_calls]
        carried = previous.continuation_script()
    unknown = [call_id for call_id in outputs if call_id not in known and call_id not in expected]
    if unknown:
        raise ApiError(
            400,
            "No tool call found for function call output with call_id "
            + ", ".join(str(call_id) for call_id in unknown)
            + ".",
            param="input",
        )
    missing = [call_id for call_id in expected if call_id not in outputs]
    if missing:
        raise ApiError(
            400,
            f"No tool output found for function call {', '.join(missing)}.",
            param="input",
        )
    return carried


def start_response(
    state: FakeState, body: dict[str, Any], script: Script | None = None
) -> Response:
    """Create a background response from a ``CreateResponse`` body (``script`` overrides)."""
    if body.get("background") is not True:
        raise ApiError(
            400,
            "This fake OpenAI server only implements background mode: "
            "set 'background': true and poll GET /v1/responses/{id}.",
            param="background",
        )
    carried = _check_continuation(state, body)
    if script is None:
        script = script_for(
            state, scenario_of(body), "response", param="metadata.fake_scenario", default=carried
        )
    streamed = body.get("stream") is True
    return state.create_response(response_params(body), script, streamed=streamed)


def start_session(state: FakeState, body: dict[str, Any], script: Any = None) -> agents.Session:
    """A session from a ``SessionCreateParams`` body (and its first turn, given ``input``)."""
    if not isinstance(body.get("environment"), dict):
        raise ApiError(400, "Missing required parameter: 'environment'.", param="environment")
    agent_id = body.get("agent_id")
    if isinstance(agent_id, str):
        agent = state.agent(agent_id)
    else:
        agent = state.create_agent(body.get("agent") or {})
    metadata = body.get("metadata") or {}
    if script is None:
        script = metadata.get("fake_scenario")
    session = state.create_session(agent, agents.parse_agent_script(script), metadata)
    given = body.get("input")
    if isinstance(given, str):
        given = [{"role": "user", "content": [{"type": "input_text", "text": given}]}]
    if given:
        session.start_turn(state.now(), given)
    return session
