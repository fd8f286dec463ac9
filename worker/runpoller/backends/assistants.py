"""Assistants API runs (``/threads/{thread_id}/runs/{run_id}``) for compatible servers.

A status this module does not know maps to the engine's ``unknown`` (the raw one kept): the run
keeps polling and the deadline cancels it. Only ``function`` tool calls are asked of the app: a
``requires_action`` without any is no tool round for the engine. The answer's id is handed
over as is (``""`` when it has none): the engine checks it against the run requested.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runpoller.backends import Progress, RunResult, object_id_of, output_text
from runpoller.engine import Observation, Output, RunState, Status, ToolCallRequest
from runpoller.http.api import ApiClient, ApiResponse
from runpoller.protocol import AssistantsRunJob

_STATUS = {status.value: status for status in Status if status is not Status.UNKNOWN}
MAX_MESSAGE_PAGES = 20


def observe(data: Mapping[str, Any], poll_after_s: float | None = None) -> Observation:
    """Map a ``RunObject`` onto an :class:`Observation` (an unknown status is ``unknown``)."""
    raw_status = str(data.get("status"))
    status = _STATUS.get(raw_status, Status.UNKNOWN)
    calls: tuple[ToolCallRequest, ...] = ()
    expires_at: float | None = None
    if status is Status.REQUIRES_ACTION:
        action = data.get("required_action") or {}
        raw_calls = (action.get("submit_tool_outputs") or {}).get("tool_calls") or []
        calls = tuple(
            ToolCallRequest(
                id=str(call.get("id")),
                name=str((call.get("function") or {}).get("name", "")),
                arguments=str((call.get("function") or {}).get("arguments", "")),
            )
            for call in raw_calls
            if isinstance(call, Mapping) and call.get("type", "function") == "function"
        )
        if isinstance(data.get("expires_at"), int | float):
            expires_at = float(data["expires_at"])
    last_error = data.get("last_error")
    error = None
    if isinstance(last_error, Mapping):
        error = (str(last_error.get("code") or "error"), str(last_error.get("message") or ""))
    incomplete = data.get("incomplete_details")
    usage = data.get("usage")
    return Observation(
        status=status,
        api_status=raw_status,
        object_id=object_id_of(data),
        model=_str_or_none(data.get("model")),
        assistant_id=_str_or_none(data.get("assistant_id")),
        tool_calls=calls,
        action_expires_at=expires_at,
        error=error,
        incomplete_details=incomplete if isinstance(incomplete, Mapping) else None,
        usage=usage if isinstance(usage, Mapping) else None,
        poll_after_s=poll_after_s,
    )


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _observe(response: ApiResponse) -> Observation:
    return observe(response.data, response.poll_after_s)


def message_text(message: Mapping[str, Any]) -> str:
    """The text parts of a ``MessageObject``, joined."""
    parts = []
    for part in message.get("content") or []:
        if isinstance(part, Mapping) and part.get("type") == "text":
            text = part.get("text") or {}
            if isinstance(text, Mapping) and isinstance(text.get("value"), str):
                parts.append(text["value"])
    return "".join(parts)


class AssistantsBackend:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    def _run_path(self, job: AssistantsRunJob, *tail: str) -> tuple[str | tuple[str, str], ...]:
        return ("threads", ("thread_id", job.thread_id), "runs", ("run_id", job.run_id), *tail)

    async def create(
        self, job: AssistantsRunJob, api_key: str, memo: dict[str, Any] | None = None
    ) -> Observation:
        """Never asked for: an Assistants job always names the run the app created."""
        raise NotImplementedError("assistants runs are created by the app, not the worker")

    async def get(
        self,
        job: AssistantsRunJob,
        state: RunState,
        api_key: str,
        memo: dict[str, Any],
        progress: Progress | None = None,
    ) -> Observation:
        target = memo.get("get")
        if target is None:  # the same URL for the whole run: built at its first poll
            target = memo["get"] = self.api.endpoint(
                "GET", self._run_path(job), api_key=api_key, assistants=True
            )
        return _observe(await self.api.send(target))

    async def cancel(self, job: AssistantsRunJob, state: RunState, api_key: str) -> Observation:
        response = await self.api.request(
            "POST", self._run_path(job, "cancel"), api_key=api_key, assistants=True
        )
        return _observe(response)

    async def submit(
        self,
        job: AssistantsRunJob,
        state: RunState,
        api_key: str,
        outputs: tuple[tuple[str, Output], ...],
        memo: dict[str, Any] | None = None,
    ) -> Observation:
        body = {
            "tool_outputs": [
                {"tool_call_id": cid, "output": output_text(out)} for cid, out in outputs
            ]
        }
        response = await self.api.request(
            "POST",
            self._run_path(job, "submit_tool_outputs"),
            api_key=api_key,
            assistants=True,
            json_body=body,
        )
        return _observe(response)

    async def fetch_result(
        self, job: AssistantsRunJob, state: RunState, api_key: str, last: Observation | None
    ) -> RunResult:
        detail: dict[str, Any] = {"thread_id": job.thread_id, "run_id": job.run_id}
        if last is None or last.status not in (Status.COMPLETED, Status.INCOMPLETE):
            return RunResult(None, detail)
        messages: list[dict[str, Any]] = []
        after: str | None = None
        for _ in range(MAX_MESSAGE_PAGES):
            params = {"run_id": job.run_id, "order": "asc", "limit": "100"}
            if after:
                params["after"] = after
            page = await self.api.request(
                "GET",
                ("threads", ("thread_id", job.thread_id), "messages"),
                api_key=api_key,
                assistants=True,
                params=params,
            )
            for message in page.data.get("data") or []:
                if isinstance(message, Mapping):
                    messages.append(
                        {
                            "id": message.get("id"),
                            "role": message.get("role"),
                            "text": message_text(message),
                        }
                    )
            if not page.data.get("has_more") or not page.data.get("last_id"):
                break
            after = str(page.data["last_id"])
        detail["messages"] = messages
        texts = [m["text"] for m in messages if m["role"] == "assistant" and m["text"]]
        return RunResult("\n\n".join(texts) if texts else None, detail)
