"""Request bodies → the settings a run or response echoes back, with the real API's defaults.

The real API returns every request parameter on the object (``model``, ``tools``,
``temperature`` ...), filled with defaults when not sent; clients and the spec expect them.
When a request names no tools, the functions the script calls are listed so the object looks
like one that could have made those calls.
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


def response_params(body: dict[str, Any], script: Script) -> dict[str, Any]:
    """What a background ``Response`` echoes from a ``CreateResponse`` body."""
    tools = body.get("tools")
    if tools is None:
        tools = [
            {
                "type": "function",
                "name": name,
                "description": None,
                "parameters": _PARAMETERS,
                "strict": False,
            }
            for name in _function_names(script)
        ]
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
        "tools": tools,
        "top_logprobs": _given(body, "top_logprobs", 0),
        "top_p": _given(body, "top_p", 1.0),
        "truncation": _given(body, "truncation", "disabled"),
    }
