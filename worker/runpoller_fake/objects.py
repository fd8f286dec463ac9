"""The JSON the fake returns, shaped like the real API (every required field of the spec).

Pure functions from lifecycle state to dicts; the tests validate each shape against the
OpenAPI schemas (``RunObject``, ``MessageObject``, ``RunStepObject``, ``Response`` ...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from runpoller_fake.errors import ApiError
from runpoller_fake.lifecycle import (
    Message,
    OutputMessage,
    Response,
    Run,
    RunStep,
    Thread,
    ToolCall,
)

T = TypeVar("T", bound="_HasId")


def thread_object(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "object": "thread",
        "created_at": thread.created_at,
        "metadata": thread.metadata,
        "tool_resources": {},
    }


def run_object(run: Run) -> dict[str, Any]:
    status = run.status
    required_action = None
    if status == "requires_action":
        required_action = {
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    _function_call(call, with_output=False) for call in run.pending_calls
                ]
            },
        }
    params = run.params
    return {
        "id": run.id,
        "object": "thread.run",
        "created_at": run.created_at,
        "assistant_id": run.assistant_id,
        "thread_id": run.thread.id,
        "status": status,
        "started_at": run.started_at,
        # Fixed at creation; null once terminal, as in the spec's examples of a finished run.
        "expires_at": None if run.terminal else run.expires_at,
        "cancelled_at": run.cancelled_at,
        "failed_at": run.failed_at,
        "completed_at": run.completed_at,
        "required_action": required_action,
        "last_error": run.last_error if status == "failed" else None,
        "model": params["model"],
        "instructions": params["instructions"],
        "tools": params["tools"],
        "tool_resources": {},
        "metadata": params["metadata"],
        "temperature": params["temperature"],
        "top_p": params["top_p"],
        "max_completion_tokens": params["max_completion_tokens"],
        "max_prompt_tokens": params["max_prompt_tokens"],
        "truncation_strategy": params["truncation_strategy"],
        "incomplete_details": (
            {"reason": run.incomplete_reason} if status == "incomplete" else None
        ),
        "usage": run.usage if run.terminal else None,
        "response_format": params["response_format"],
        "tool_choice": params["tool_choice"],
        "parallel_tool_calls": params["parallel_tool_calls"],
    }


def _function_call(call: ToolCall, *, with_output: bool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": call.name, "arguments": call.arguments}
    if with_output:
        function["output"] = call.output
    return {"id": call.id, "type": "function", "function": function}


def message_object(message: Message) -> dict[str, Any]:
    incomplete = message.status == "incomplete"
    return {
        "id": message.id,
        "object": "thread.message",
        "created_at": message.created_at,
        "assistant_id": message.assistant_id,
        "thread_id": message.thread_id,
        "run_id": message.run_id,
        "role": message.role,
        "content": [{"type": "text", "text": {"value": message.text, "annotations": []}}],
        "attachments": [],
        "metadata": message.metadata,
        "status": message.status,
        "incomplete_details": {"reason": message.incomplete_reason} if incomplete else None,
        "completed_at": None if incomplete else message.created_at,
        "incomplete_at": message.created_at if incomplete else None,
    }


def run_step_object(run: Run, step: RunStep) -> dict[str, Any]:
    if step.type == "message_creation":
        details: dict[str, Any] = {
            "type": "message_creation",
            "message_creation": {"message_id": step.message_id},
        }
    else:
        details = {
            "type": "tool_calls",
            "tool_calls": [
                _function_call(call, with_output=True) for call in step.tool_calls or ()
            ],
        }
    return {
        "id": step.id,
        "object": "thread.run.step",
        "created_at": step.created_at,
        "run_id": run.id,
        "assistant_id": run.assistant_id,
        "thread_id": run.thread.id,
        "type": step.type,
        "status": step.status,
        "cancelled_at": step.cancelled_at,
        "completed_at": step.completed_at,
        "expired_at": step.expired_at,
        "failed_at": step.failed_at,
        "last_error": run.last_error if step.status == "failed" else None,
        "step_details": details,
        "usage": step.usage,
        "metadata": {},
    }


def _output_item(item: OutputMessage | ToolCall) -> dict[str, Any]:
    if isinstance(item, ToolCall):
        return {
            "id": item.item_id,
            "type": "function_call",
            "status": "completed",
            "call_id": item.id,
            "name": item.name,
            "arguments": item.arguments,
        }
    return {
        "id": item.id,
        "type": "message",
        "status": item.status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": item.text, "annotations": [], "logprobs": []}],
    }


def response_object(response: Response) -> dict[str, Any]:
    body: dict[str, Any]
    params = response.params
    status = response.status
    body = {
        "id": response.id,
        "object": "response",
        "created_at": response.created_at,
        "status": status,
        "background": True,
        "completed_at": response.completed_at,
        "error": response.error if status == "failed" else None,
        "incomplete_details": (
            {"reason": response.incomplete_reason} if status == "incomplete" else None
        ),
        "instructions": params["instructions"],
        "max_output_tokens": params["max_output_tokens"],
        "max_tool_calls": params["max_tool_calls"],
        "model": params["model"],
        "output": [_output_item(item) for item in response.output],
        "parallel_tool_calls": params["parallel_tool_calls"],
        "previous_response_id": params["previous_response_id"],
        "prompt_cache_key": params["prompt_cache_key"],
        "reasoning": params["reasoning"],
        "safety_identifier": params["safety_identifier"],
        "service_tier": params["service_tier"],
        "store": params["store"],
        "temperature": params["temperature"],
        "text": params["text"],
        "tool_choice": params["tool_choice"],
        "tools": params["tools"],
        "top_logprobs": params["top_logprobs"],
        "top_p": params["top_p"],
        "truncation": params["truncation"],
        "metadata": params["metadata"],
    }
    # The real API sends `"usage": null` until the end; the spec's `usage` is not nullable, and
    # to clients an absent key reads the same as null.
    if response.usage is not None:
        body["usage"] = response.usage
    return body


class _HasId(Protocol):
    id: str


def page(
    items: Sequence[T],
    render: Callable[[T], dict[str, Any]],
    query: Mapping[str, str],
) -> dict[str, Any]:
    """One page of a cursor-paginated list, like ``GET /threads/{id}/messages``.

    ``items`` are in creation order; ``order`` (default desc), ``limit`` (1..100, default 20),
    ``after`` and ``before`` (exclusive object ids) follow the real API. An unknown cursor gives
    an empty page.
    """
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ApiError(
            400,
            f"Invalid value for 'order': expected one of 'asc' or 'desc', got '{order}'.",
            param="order",
            code="invalid_value",
        )
    limit = _limit(query.get("limit"))
    ordered = list(items) if order == "asc" else list(reversed(items))
    ids = [item.id for item in ordered]
    start, stop = 0, len(ordered)
    after, before = query.get("after"), query.get("before")
    if after is not None:
        start = ids.index(after) + 1 if after in ids else stop
    if before is not None:
        stop = ids.index(before) if before in ids else start
    window = ordered[start : max(start, stop)]
    # With only `before`, the page is the `limit` items just before the cursor.
    chosen = window[-limit:] if before is not None and after is None else window[:limit]
    data = [render(item) for item in chosen]
    return {
        "object": "list",
        "data": data,
        # The spec says string; the real API sends null for an empty page.
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(window) > limit,
    }


def _limit(raw: str | None) -> int:
    if raw is None:
        return 20
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(
            400,
            f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < 1:
        raise ApiError(
            400,
            f"Invalid 'limit': integer below minimum value. Expected a value >= 1, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_below_min_value",
        )
    if limit > 100:
        raise ApiError(
            400,
            f"Invalid 'limit': integer above maximum value. Expected a value <= 100, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_above_max_value",
        )
    return limit
