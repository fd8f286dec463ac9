"""The fake's Agents API bodies, checked against openai-python's generated pydantic models.

The beta Agents API is not in the OpenAPI spec the fake is checked against, so its bodies are
validated with the official SDK's types (a dev dependency, ``openai>=3.51``): every reply a
client gets from an agents path, and every events body the worker sends. Extra fields are
refused too (the SDK's models allow them, the real API sends none the types do not name).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from openai.types.beta.agent import Agent
from openai.types.beta.agent_function_call_item import AgentFunctionCallItem
from openai.types.beta.agent_session import AgentSession
from openai.types.beta.agent_session_item import FunctionCallOutputItemResource
from openai.types.beta.agent_session_message import AgentSessionMessage
from openai.types.beta.agents.sessions.event_create_params import EventCreateParams
from openai.types.beta.agents.sessions.turn import Turn
from pydantic import BaseModel, TypeAdapter

_SESSION = r"/v1/agents/sessions/[^/]+"
# AgentSessionItem's union is discriminated by ``type`` through the SDK's own metadata, which
# pydantic does not read: pick the member by ``type`` here (the items the fake writes).
_ITEM_MODELS: dict[str, type[BaseModel]] = {
    "message": AgentSessionMessage,
    "function_call": AgentFunctionCallItem,
    "function_call_output": FunctionCallOutputItemResource,
}
_EVENTS = TypeAdapter(EventCreateParams)


def no_extra(model: Any, where: str = "") -> None:
    """Fail when a model (or any model inside it) kept fields its type does not declare."""
    if isinstance(model, BaseModel):
        extra = model.model_extra or {}
        assert not extra, f"{where or type(model).__name__}: undeclared fields {sorted(extra)}"
        for name in type(model).model_fields:
            no_extra(getattr(model, name), f"{where}.{name}")
    elif isinstance(model, list):
        for index, value in enumerate(model):
            no_extra(value, f"{where}[{index}]")


def validate_agent_body(method: str, path: str, body: Any) -> None:
    """Validate one reply body of an agents endpoint with the SDK's model for it."""
    if re.fullmatch(r"/v1/agents(/(?!sessions)[^/]+)?", path):
        no_extra(Agent.model_validate(body))
    elif re.fullmatch(r"/v1/agents/sessions", path) or re.fullmatch(_SESSION, path):
        no_extra(AgentSession.model_validate(body))
    elif re.fullmatch(_SESSION + "/turns/[^/]+", path):
        no_extra(Turn.model_validate(body))
    elif re.fullmatch(_SESSION + "/turns", path):
        for turn in body["data"]:
            no_extra(Turn.model_validate(turn))
    elif re.fullmatch(_SESSION + "(/turns/[^/]+)?/items", path):
        for item in body["data"]:
            no_extra(_ITEM_MODELS[item["type"]].model_validate(item))


def validate_events_body(body: Any) -> None:
    """An events body as the SDK's ``EventCreateParams`` types it (strict: no other keys)."""
    _EVENTS.validate_python(body, strict=True)
    for event in body["events"]:
        allowed = {
            "agent.session.input.tool_result": {"type", "call_id", "turn_id", "success", "output"}
            | {"error"},
            "agent.session.input.cancel": {"type"},
            "agent.session.input.message": {"type", "input"},
            "agent.session.input.mcp_approval_request_result": {"type", "request_id", "response"},
            "agent.session.input.computer_use_approval_request_result": {
                "type",
                "request_id",
                "response",
            },
        }[event["type"]]
        assert set(event) <= allowed, f"{event['type']}: unexpected {set(event) - allowed}"


async def check_agent_reply(response: httpx.Response) -> None:
    """httpx response hook: every 2xx agents reply validated against the SDK's models."""
    path = response.request.url.path
    if not path.startswith("/v1/agents") or response.status_code >= 300:
        return
    await response.aread()
    if response.status_code == 202:
        assert response.content == b"", "a 202 carries no body"
        return
    validate_agent_body(response.request.method, path, response.json())
