"""Request bodies → the settings a run or response echoes back, with the real API's defaults.

The real API returns every request parameter on the object (``model``, ``tools``,
``temperature`` ...), filled with defaults when not sent; clients and the spec expect them.

Tools: a run that names none uses its assistant's, which the fake does not keep, so it lists the
functions its script calls. A response has exactly the ``tools`` its own request sent, and
nothing else: the real API carries no ``tools`` (nor ``instructions``, ``tool_choice`` ...) over
through ``previous_response_id``, each continuation that may call functions sends them again
(``callable_functions`` says which a response's model may call). Only the ``/_fake/responses``
control route, standing in for the app's first request, declares the script's functions for it
when not told otherwise (``script_function_tools``).
"""

from __future__ import annotations

from typing import Any

from runpoller_fake.script import Script

DEFAULT_MODEL = "gpt-4o"
DEFAULT_INSTRUCTIONS = "You are a helpful assistant."


def _given(body: dict[str, Any], key: str, default: Any) -> Any:
    value = body.get(key)
    return default if value is None else value


def _function_names(script: Script) -> list[str]:
    names: list[str] = []
    for step in script.steps:
        for call in (step.tool_calls or []) + (step.function_calls or []):
            if call.name not in names:
                names.append(call.name)
    return names


_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": True}


def function_tool(name: str) -> dict[str, Any]:
    """A Responses ``FunctionTool`` declaring ``name`` (every field the spec requires)."""
    return {
        "type": "function",
        "name": name,
        "description": None,
        "parameters": dict(_PARAMETERS, properties={}),
        "strict": False,
    }


def script_function_tools(script: Script) -> list[dict[str, Any]]:
    """A ``FunctionTool`` for every function the script calls."""
    return [function_tool(name) for name in _function_names(script)]


def callable_functions(params: dict[str, Any]) -> frozenset[str]:
    """The functions a response's model may call: its own ``tools``, as ``tool_choice`` allows.

    The model can only call a function its request declared; ``tool_choice`` ``"none"`` allows
    none, a ``function`` choice only that one, ``allowed_tools`` only the functions it lists.
    """
    names = frozenset(_function_tool_names(params.get("tools")))
    choice = params.get("tool_choice")
    if choice == "none":
        return frozenset()
    if isinstance(choice, dict) and choice.get("type") == "function":
        return names & {choice.get("name")}
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        return names & frozenset(_function_tool_names(choice.get("tools")))
    return names


def _function_tool_names(tools: Any) -> list[str]:
    items = tools if isinstance(tools, list) else []
    return [
        tool["name"]
        for tool in items
        if isinstance(tool, dict)
        and tool.get("type") == "function"
        and isinstance(tool.get("name"), str)
    ]


def run_params(body: dict[str, Any], script: Script) -> dict[str, Any]:
    """What a ``RunObject`` echoes from a ``CreateRunRequest``."""
    instructions = _given(body, "instructions", DEFAULT_INSTRUCTIONS)
    if body.get("additional_instructions"):
        instructions = f"{instructions}\n{body['additional_instructions']}"
    tools = body.get("tools")
    if tools is None:
        tools = [
            {
                "type": "function",
                "function": {"name": name, "description": "", "parameters": _PARAMETERS},
            }
            for name in _function_names(script)
        ]
    return {
        "model": _given(body, "model", DEFAULT_MODEL),
        "instructions": instructions,
        "tools": tools,
        "metadata": dict(body.get("metadata") or {}),
        "temperature": _given(body, "temperature", 1.0),
        "top_p": _given(body, "top_p", 1.0),
        "max_completion_tokens": body.get("max_completion_tokens"),
        "max_prompt_tokens": body.get("max_prompt_tokens"),
        "truncation_strategy": _given(
            body, "truncation_strategy", {"type": "auto", "last_messages": None}
        ),
        "response_format": _given(body, "response_format", "auto"),
        "tool_choice": _given(body, "tool_choice", "auto"),
        "parallel_tool_calls": _given(body, "parallel_tool_calls", True),
    }


def response_params(body: dict[str, Any]) -> dict[str, Any]:
    """What a background ``Response`` echoes from a ``CreateResponse`` body (its own only)."""
    return {
        "model": _given(body, "model", DEFAULT_MODEL),
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": dict(body.get("metadata") or {}),
        "parallel_tool_calls": _given(body, "parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": _given(body, "reasoning", {"effort": None, "summary": None}),
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": _given(body, "service_tier", "auto"),
        "store": _given(body, "store", True),
        "temperature": _given(body, "temperature", 1.0),
        "text": _given(body, "text", {"format": {"type": "text"}, "verbosity": "medium"}),
        "tool_choice": _given(body, "tool_choice", "auto"),
        "tools": _given(body, "tools", []),
        "top_logprobs": _given(body, "top_logprobs", 0),
        "top_p": _given(body, "top_p", 1.0),
        "truncation": _given(body, "truncation", "disabled"),
    }
