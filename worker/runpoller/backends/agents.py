"""Agents API session turns (beta, ``/agents/sessions/{session_id}/turns/{turn_id}``).

The Assistants API's successor: agents (≈ assistants), sessions (≈ threads), turns (≈ runs).
The run's object is the turn. Its status maps onto the engine's terms: ``queued`` /
``in_progress`` poll on; ``completed``, ``failed``, ``cancelled`` end the run; ``waiting``
with required actions of this turn on the session is ``requires_action``. A session that
``failed`` fails the run whatever its turn says. A status this module does not know maps to
the engine's ``unknown``.

A poll of an unfinished turn is two GETs: the turn (status, usage, error) and its session
(required actions, the agent's id and model, which ``supportedIds`` / ``excludedIds`` and
``ASSISTANTS_MODELS`` check). A finished turn needs only the first.

Required actions: ``function_call`` is a tool call the app answers with the function's output
(one ``agent.session.input.tool_result`` event per call); ``mcp_approval_request`` and a
``computer_use_approval_request`` for ``browser_origin_access`` are tool calls of kind
``mcp_approval`` / ``computer_use_approval`` the app answers ``approve`` or ``deny`` (the
matching ``…_request_result`` event). A ``browser_authentication`` request (a sign-in form:
its answer is credentials, which must not travel through Redis) and ``environment_connection``
(no session event answers it) are unsupported: the engine cancels the turn at once and the run
ends ``refused`` / ``action_unsupported``, never left to wait for its deadline.

Inputs are ``POST …/events`` answered 202 with no body: a cancel (``agent.session.input.cancel``)
or an answer is followed by a GET of the turn, whose status confirms it. A job with ``input``
has the worker start the turn (``agent.session.input.message``) and find its id as the session's
newest turn (once the message is accepted, a failure to find it ends the run
``create_outcome_unknown``: the message is never posted twice). The required actions already
answered are remembered in the run's memo, so a session that still lists them for a moment
after the 202 is not taken for a new round, and a retried answer whose events went through is
not posted again; an answer refused with a 400 is checked against the session: actions no
longer pending mean the turn moved on (the run reads on), still pending a real refusal.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from runpoller.backends import Progress, RunResult, object_id_of
from runpoller.engine import (
    Failure,
    Observation,
    Output,
    RunState,
    Status,
    ToolCallRequest,
    ToolFailure,
)
from runpoller.http.api import ApiClient, ApiFailure
from runpoller.protocol import AgentTurnJob

BETA = "agents=v1"
_STATUS = {
    "queued": Status.QUEUED,
    "in_progress": Status.IN_PROGRESS,
    "waiting": Status.IN_PROGRESS,  # requires_action when this turn has actions to answer
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
}
APPROVAL_CHOICES = ("approve", "deny")
MAX_ITEM_PAGES = 20
TURN_LOOKUPS = 5
"""Reads of the session's newest turn after a message was accepted, before giving up."""
TURN_LOOKUP_DELAY_S = 0.2

Segments = tuple[str | tuple[str, str], ...]


def _arguments(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _action(action: Mapping[str, Any]) -> ToolCallRequest | str:
    """A required action as a tool call to ask the app, or why it cannot be asked."""
    kind = action.get("type")
    turn_id = str(action.get("turn_id") or "")
    raw = action.get("request")
    request: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if kind == "function_call":
        return ToolCallRequest(
            id=str(action.get("call_id")),
            name=str(action.get("name", "")),
            arguments=_arguments(action.get("arguments")),
            turn_id=turn_id,
        )
    request_id = str(action.get("request_id"))
    if kind == "mcp_approval_request":
        return ToolCallRequest(
            id=request_id,
            name=str(request.get("name") or request.get("server_label") or "mcp_tool_call"),
            arguments=_arguments(request.get("arguments")),
            kind="mcp_approval",
            choices=APPROVAL_CHOICES,
            turn_id=turn_id,
            request=dict(request),
        )
    if kind == "computer_use_approval_request" and request.get("type") == "browser_origin_access":
        return ToolCallRequest(
            id=request_id,
            name="browser_origin_access",
            arguments=json.dumps(
                {"origin": request.get("origin"), "reason": request.get("reason")}
            ),
            kind="computer_use_approval",
            choices=APPROVAL_CHOICES,
            turn_id=turn_id,
            request=dict(request),
        )
    if kind == "computer_use_approval_request":
        return (
            f"the turn asks for a browser sign-in ({request.get('type')}, request {request_id}): "
            "its answer is credentials, which runpoller does not carry"
        )
    if kind == "environment_connection":
        return (
            f"the session's environment {action.get('environment_id')} must be reconnected "
            "(environment_connection), which no session event answers"
        )
    return f"the session requires an action runpoller does not know ({kind})"


def observe(
    turn: Mapping[str, Any],
    session: Mapping[str, Any] | None,
    answered: frozenset[str] = frozenset(),
    poll_after_s: float | None = None,
    model: str | None = None,
) -> Observation:
    """Map a turn (and its session, when read) onto an :class:`Observation`. ``model``: the
    agent's, as an earlier read of the session said (a finished turn's is not re-read)."""
    raw_status = str(turn.get("status"))
    status = _STATUS.get(raw_status, Status.UNKNOWN)
    turn_id = object_id_of(turn)
    error = turn.get("error")
    err = (
        (str(error.get("code") or "error"), str(error.get("message") or ""))
        if isinstance(error, Mapping)
        else None
    )
    calls: list[ToolCallRequest] = []
    unsupported = ""
    agent: Mapping[str, Any] = {}
    api_status = raw_status
    if session is not None:
        raw_agent = session.get("agent")
        agent = raw_agent if isinstance(raw_agent, Mapping) else {}
        if not status.terminal and session.get("status") == "failed":
            status, api_status = Status.FAILED, "failed"
            err = ("session_failed", str(session.get("error") or "the session failed"))
        elif not status.terminal:
            for action in session.get("required_actions") or []:
                if not isinstance(action, Mapping):
                    continue
                if action.get("turn_id", turn_id) != turn_id:
                    continue  # another turn's
                asked = _action(action)
                if isinstance(asked, str):
                    unsupported = unsupported or asked
                elif asked.id not in answered:
                    calls.append(asked)
            if calls and not unsupported:
                status, api_status = Status.REQUIRES_ACTION, "requires_action"
    usage = turn.get("usage")
    agent_id = agent.get("id") or turn.get("agent_id")
    model = agent.get("model", model)
    return Observation(
        status=status,
        api_status=api_status,
        object_id=turn_id,
        model=model if isinstance(model, str) else None,
        assistant_id=agent_id if isinstance(agent_id, str) else None,
        tool_calls=tuple(calls) if not unsupported else (),
        error=err,
        usage=usage if isinstance(usage, Mapping) else None,
        poll_after_s=poll_after_s,
        unsupported_action=unsupported,
        payload=turn,
    )


def output_text(items: list[Mapping[str, Any]]) -> str | None:
    """The ``output_text`` parts of the turn's assistant messages, joined by blank lines."""
    texts = []
    for item in items:
        if item.get("type") == "message" and item.get("role") == "assistant":
            text = "".join(
                str(part.get("text", ""))
                for part in item.get("content") or []
                if isinstance(part, Mapping) and part.get("type") == "output_text"
            )
            if text:
                texts.append(text)
    return "\n\n".join(texts) or None


def _tool_result(call: ToolCallRequest, output: Output) -> dict[str, Any]:
    if call.kind == "mcp_approval":
        return {
            "type": "agent.session.input.mcp_approval_request_result",
            "request_id": call.id,
            "response": {"type": "mcp_tool_call", "decision": output},
        }
    if call.kind == "computer_use_approval":
        return {
            "type": "agent.session.input.computer_use_approval_request_result",
            "request_id": call.id,
            "response": {"type": "browser_origin_access", "decision": output},
        }
    result: dict[str, Any] = {
        "type": "agent.session.input.tool_result",
        "call_id": call.id,
        "turn_id": call.turn_id,
    }
    if isinstance(output, ToolFailure):
        return result | {"success": False, "error": output.message}
    return result | {"success": True, "output": output}


class AgentsBackend:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    @staticmethod
    def _session(job: AgentTurnJob, *tail: str | tuple[str, str]) -> Segments:
        return ("agents", "sessions", ("session_id", job.session_id), *tail)

    async def _events(self, job: AgentTurnJob, api_key: str, events: list[dict[str, Any]]) -> None:
        await self.api.request(
            "POST",
            self._session(job, "events"),
            api_key=api_key,
            beta=BETA,
            json_body={"events": events},
            accepted=True,
        )

    async def _read(
        self, job: AgentTurnJob, turn_id: str, api_key: str, memo: dict[str, Any]
    ) -> Observation:
        targets = memo.get("get")
        if targets is None or targets[0] != turn_id:
            turn = self.api.endpoint(
                "GET", self._session(job, "turns", ("turn_id", turn_id)), api_key=api_key, beta=BETA
            )
            session = self.api.endpoint("GET", self._session(job), api_key=api_key, beta=BETA)
            targets = memo["get"] = (turn_id, turn, session)
        turn_answer = await self.api.send(targets[1])
        session_data = None
        finished = str(turn_answer.data.get("status")) in ("completed", "failed", "cancelled")
        if not finished or "model" not in memo:  # the agent's model: read once at least
            session_data = (await self.api.send(targets[2])).data
        obs = observe(
            turn_answer.data,
            session_data,
            frozenset(memo.get("answered", set())),
            turn_answer.poll_after_s,
            model=memo.get("model"),
        )
        memo["model"] = obs.model
        asked = memo.setdefault("asked", {})
        for call in obs.tool_calls:
            asked[call.id] = call
        return obs

    async def create(
        self, job: AgentTurnJob, api_key: str, memo: dict[str, Any] | None = None
    ) -> Observation:
        """Start the turn: post the job's ``input`` as a message, follow the newest turn."""
        memo = memo if memo is not None else {}
        turns = self._session(job, "turns")
        params = {"order": "desc", "limit": "1"}
        before = await self.api.request("GET", turns, api_key=api_key, beta=BETA, params=params)
        newest_before = _newest(before.data)
        message = job.input
        if isinstance(message, str):
            message = [{"role": "user", "content": [{"type": "input_text", "text": message}]}]
        event = {"type": "agent.session.input.message", "input": message}
        await self._events(job, api_key, [event])
        # The message was accepted: from here on a failure must not let it be posted again.
        why = "no new turn appeared in the session"
        for attempt in range(TURN_LOOKUPS):
            if attempt:
                await asyncio.sleep(TURN_LOOKUP_DELAY_S)
            try:
                page = await self.api.request(
                    "GET", turns, api_key=api_key, beta=BETA, params=params
                )
                newest = _newest(page.data)
                if newest and newest != newest_before:
                    return await self._read(job, newest, api_key, memo)
            except ApiFailure as exc:
                why = exc.failure.message
        raise ApiFailure(
            Failure(
                f"the message was accepted but its turn could not be found ({why})",
                retryable=True,
                ambiguous=True,  # a turn may run under an id nobody learned
            )
        )

    async def get(
        self,
        job: AgentTurnJob,
        state: RunState,
        api_key: str,
        memo: dict[str, Any],
        progress: Progress | None = None,
    ) -> Observation:
        return await self._read(job, state.object_id, api_key, memo)

    async def cancel(self, job: AgentTurnJob, state: RunState, api_key: str) -> Observation:
        await self._events(job, api_key, [{"type": "agent.session.input.cancel"}])
        return await self._read(job, state.object_id, api_key, {})

    async def submit(
        self,
        job: AgentTurnJob,
        state: RunState,
        api_key: str,
        outputs: tuple[tuple[str, Output], ...],
        memo: dict[str, Any] | None = None,
    ) -> Observation:
        memo = memo if memo is not None else {}
        ids = {call_id for call_id, _ in outputs}
        answered: set[str] = memo.setdefault("answered", set())
        if ids <= answered:  # a retry whose events were accepted already: only read
            return await self._read(job, state.object_id, api_key, memo)
        asked: dict[str, ToolCallRequest] = memo.get("asked", {})
        if not ids <= set(asked):
            await self._read(job, state.object_id, api_key, memo)  # a new owner: ask again
            asked = memo.get("asked", {})
        events = []
        for call_id, output in outputs:
            call = asked.get(call_id) or ToolCallRequest(call_id, "", "", turn_id=state.object_id)
            events.append(_tool_result(call, output))
        try:
            await self._events(job, api_key, events)
        except ApiFailure as exc:
            if exc.failure.status_code != 400:
                raise
            # Refused: because the turn moved on (answered by a previous owner, cancelled,
            # ended), or truly. Only the session can say: still pending is a real refusal.
            obs = await self._read(job, state.object_id, api_key, memo)
            if any(call.id in ids for call in obs.tool_calls):
                raise
            return obs
        answered |= ids
        return await self._read(job, state.object_id, api_key, memo)

    async def fetch_result(
        self, job: AgentTurnJob, state: RunState, api_key: str, last: Observation | None
    ) -> RunResult:
        detail: dict[str, Any] = {"session_id": job.session_id, "turn_id": state.object_id}
        if last is not None and last.assistant_id:
            detail["agent_id"] = last.assistant_id
        if last is None or not state.object_id:
            return RunResult(None, detail)
        items: list[Mapping[str, Any]] = []
        after: str | None = None
        path = self._session(job, "turns", ("turn_id", state.object_id), "items")
        for _ in range(MAX_ITEM_PAGES):
            params = {"order": "asc", "limit": "100"}
            if after:
                params["after"] = after
            page = await self.api.request("GET", path, api_key=api_key, beta=BETA, params=params)
            items.extend(i for i in page.data.get("data") or [] if isinstance(i, Mapping))
            if not page.data.get("has_more") or not page.data.get("last_id"):
                break
            after = str(page.data["last_id"])
        detail["items"] = [dict(item) for item in items]
        return RunResult(output_text(items), detail)


def _newest(page: Mapping[str, Any]) -> str:
    data = page.get("data") or []
    return object_id_of(data[0]) if data and isinstance(data[0], Mapping) else ""
