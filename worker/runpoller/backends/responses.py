"""Responses API background mode (``/responses/{id}``): what real OpenAI serves today.

Mapped onto the engine's neutral terms: ``queued``/``in_progress`` poll on; ``completed``,
``failed``, ``cancelled``, ``incomplete`` end the run. A response that completed with
``function_call`` items becomes ``requires_action``, with nothing left to cancel on the API
side (the engine then ends a cancel without a request): when the app answers, the "submit" is
a new background response (``previous_response_id`` + ``function_call_output`` items), whose
id the engine then follows under the same run and deadline. A job that carries a ``request``
instead of a response id has the worker create the response (the engine's CREATE). A status
this module does not know maps to the engine's ``unknown`` (the raw one kept): the run keeps
polling and the deadline cancels it. The answer's id is handed over as is (``""`` when it has
none): the engine checks it against the one requested.

A job with ``stream: true`` is created (and continued) with ``stream: true``: the create's
answer is the stream's first event (``response.created``), and the stream stays open in the
run's memo for the next read, which follows it, handing each text delta to ``progress``,
until an end event (``response.completed``/``failed``/``incomplete``) carries the response.
A stream that breaks is resumed at once after the last sequence number taken
(``starting_after``); one that cannot be opened, or ends without an end event (a cancelled
response has none), gives way to a plain GET, and the next read tries the stream again;
after ``MAX_STREAM_FAILURES`` streams in a row that brought nothing, the run is only polled.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runpoller.backends import Progress, RunResult, object_id_of
from runpoller.backends import output_text as answer_text
from runpoller.engine import Failure, Observation, Output, RunState, Status, ToolCallRequest
from runpoller.http.api import ApiClient, ApiFailure, ApiResponse, EventStream
from runpoller.protocol import ResponseJob

_STATUS = {
    "queued": Status.QUEUED,
    "in_progress": Status.IN_PROGRESS,
    "completed": Status.COMPLETED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
    "incomplete": Status.INCOMPLETE,
}
REQUIRES_ACTION = "requires_action"


def function_calls(data: Mapping[str, Any]) -> tuple[ToolCallRequest, ...]:
    calls = []
    for item in data.get("output") or []:
        if isinstance(item, Mapping) and item.get("type") == "function_call":
            calls.append(
                ToolCallRequest(
                    id=str(item.get("call_id")),
                    name=str(item.get("name", "")),
                    arguments=str(item.get("arguments", "")),
                )
            )
    return tuple(calls)


def observe(
    data: Mapping[str, Any], poll_after_s: float | None = None, *, follow_now: bool = False
) -> Observation:
    """Map a ``Response`` onto an :class:`Observation` (an unknown status is ``unknown``)."""
    raw_status = str(data.get("status"))
    status = _STATUS.get(raw_status, Status.UNKNOWN)
    calls: tuple[ToolCallRequest, ...] = ()
    api_status = raw_status
    if status is Status.COMPLETED:
        calls = function_calls(data)
        if calls:
            status, api_status = Status.REQUIRES_ACTION, REQUIRES_ACTION
    # A completed response runs no more: the function calls wait for a new one, not a cancel.
    cancellable = status is not Status.REQUIRES_ACTION
    error = data.get("error")
    incomplete = data.get("incomplete_details")
    usage = data.get("usage")
    model = data.get("model")
    return Observation(
        status=status,
        api_status=api_status,
        object_id=object_id_of(data),
        model=model if isinstance(model, str) else None,
        tool_calls=calls,
        error=(str(error.get("code") or "error"), str(error.get("message") or ""))
        if isinstance(error, Mapping)
        else None,
        incomplete_details=incomplete if isinstance(incomplete, Mapping) else None,
        usage=usage if isinstance(usage, Mapping) else None,
        poll_after_s=poll_after_s,
        cancellable=cancellable,
        answer_creates=True,  # a continuation is a new background response
        follow_now=follow_now,
        payload=data,
    )


def output_text(data: Mapping[str, Any]) -> str | None:
    """The text of every ``output_text`` part of the response's message items."""
    parts = []
    for item in data.get("output") or []:
        if isinstance(item, Mapping) and item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, Mapping) and part.get("type") == "output_text":
                    parts.append(str(part.get("text", "")))
    return "".join(parts) or None


def _observe(response: ApiResponse) -> Observation:
    return observe(response.data, response.poll_after_s)


CARRIED_FROM_REQUEST = ("model", "instructions", "tools", "tool_choice", "parallel_tool_calls")
"""What a continuation takes from the job's ``request`` unless its ``continuation`` says
otherwise: the API does not carry these over through ``previous_response_id``."""


_END_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})
_DELTA = "response.output_text.delta"
MAX_STREAM_FAILURES = 3
"""Streams in a row that brought no event before a run is only polled."""
MAX_RESUMES = 5
"""Breaks one read resumes at once before it gives way to a plain GET."""


class OpenStream:
    """A response's stream held open between two reads of the run (kept in its memo)."""

    def __init__(self, object_id: str, events: EventStream) -> None:
        self.object_id = object_id
        self.events = events

    async def aclose(self) -> None:
        await self.events.aclose()


class ResponsesBackend:
    def __init__(self, api: ApiClient) -> None:
        self.api = api

    async def _create(
        self, body: Mapping[str, Any], api_key: str, memo: dict[str, Any] | None, stream: bool
    ) -> Observation:
        payload = {**body, "background": True, "store": True}
        if not stream or memo is None:
            response = await self.api.request(
                "POST", ("responses",), api_key=api_key, json_body=payload
            )
            return _observe(response)
        payload["stream"] = True
        events = await self.api.open_stream(
            "POST", ("responses",), api_key=api_key, json_body=payload
        )
        if isinstance(events, ApiResponse):
            return _observe(events)  # the server does not stream: the response is polled
        try:
            first = await events.next()
        except ApiFailure:
            await events.aclose()
            raise
        created = first.get("response") if first is not None else None
        if (
            first is None
            or first.get("type") != "response.created"
            or not isinstance(created, Mapping)
        ):
            await events.aclose()
            # The request was answered with a stream: the response may well exist.
            raise ApiFailure(
                Failure(
                    "the stream did not begin with response.created",
                    retryable=True,
                    ambiguous=True,
                )
            )
        await _drop_stream(memo)
        memo["stream"] = OpenStream(object_id_of(created), events)
        return observe(created, follow_now=True)

    async def create(
        self, job: ResponseJob, api_key: str, memo: dict[str, Any] | None = None
    ) -> Observation:
        """Create the response the job describes (its ``request``)."""
        return await self._create(job.request or {}, api_key, memo, job.stream)

    async def get(
        self,
        job: ResponseJob,
        state: RunState,
        api_key: str,
        memo: dict[str, Any],
        progress: Progress | None = None,
    ) -> Observation:
        if job.stream and progress is not None:
            followed = await self._follow(state, api_key, memo, progress)
            if followed is not None:
                return followed
        return await self._poll(state, api_key, memo)

    async def _follow(
        self, state: RunState, api_key: str, memo: dict[str, Any], progress: Progress
    ) -> Observation | None:
        """Read the response's stream to its end event; None: poll instead (the stream
        could not be had, or ended without saying how the response ended)."""
        object_id = state.object_id
        held = memo.pop("stream", None)
        if held is not None and held.object_id != object_id:
            await held.aclose()
            held = None
        if held is None and memo.get("stream_failures", 0) >= MAX_STREAM_FAILURES:
            return None
        events = held.events if held is not None else None
        for _ in range(MAX_RESUMES + 1):
            took = False
            try:
                if events is None:
                    after = progress.after(object_id)
                    params = {"stream": "true"}
                    if after >= 0:
                        params["starting_after"] = str(after)
                    opened = await self.api.open_stream(
                        "GET",
                        ("responses", ("response_id", object_id)),
                        api_key=api_key,
                        params=params,
                    )
                    if isinstance(opened, ApiResponse):
                        memo["stream_failures"] = MAX_STREAM_FAILURES  # it does not stream
                        return _observe(opened)
                    events = opened
                while (event := await events.next()) is not None:
                    took = True
                    memo["stream_failures"] = 0
                    kind = event.get("type")
                    number = event.get("sequence_number")
                    if kind == _DELTA and isinstance(number, int):
                        progress.text(object_id, number, str(event.get("delta", "")))
                    response = event.get("response")
                    if kind in _END_EVENTS and isinstance(response, Mapping):
                        return observe(response)
            except ApiFailure as exc:
                if not exc.failure.retryable:
                    memo["stream_failures"] = MAX_STREAM_FAILURES  # e.g. not created streaming
                    return None
            finally:
                if events is not None:
                    await events.aclose()
                events = None
            if not took:
                memo["stream_failures"] = memo.get("stream_failures", 0) + 1
                return None
        return None

    async def _poll(self, state: RunState, api_key: str, memo: dict[str, Any]) -> Observation:
        # Built once per response followed (a tool round continues under a new id).
        prepared = memo.get("get")
        if prepared is None or prepared[0] != state.object_id:
            target = self.api.endpoint(
                "GET", ("responses", ("response_id", state.object_id)), api_key=api_key
            )
            prepared = memo["get"] = (state.object_id, target)
        return _observe(await self.api.send(prepared[1]))

    async def cancel(self, job: ResponseJob, state: RunState, api_key: str) -> Observation:
        response = await self.api.request(
            "POST", ("responses", ("response_id", state.object_id), "cancel"), api_key=api_key
        )
        return _observe(response)

    async def submit(
        self,
        job: ResponseJob,
        state: RunState,
        api_key: str,
        outputs: tuple[tuple[str, Output], ...],
        memo: dict[str, Any] | None = None,
    ) -> Observation:
        body: dict[str, Any] = dict(job.continuation or {})
        # The API carries none of these over through previous_response_id: a continuation
        # without them could not call the job's functions (or follow its instructions).
        for name in CARRIED_FROM_REQUEST:
            if name not in body and job.request and name in job.request:
                body[name] = job.request[name]
        body["previous_response_id"] = state.object_id
        body["input"] = [
            {"type": "function_call_output", "call_id": call_id, "output": answer_text(output)}
            for call_id, output in outputs
        ]
        return await self._create(body, api_key, memo, job.stream)

    async def fetch_result(
        self, job: ResponseJob, state: RunState, api_key: str, last: Observation | None
    ) -> RunResult:
        detail: dict[str, Any] = {"response_ids": list(state.object_ids)}
        data = last.payload if last is not None else None
        if data is None:
            return RunResult(None, detail)
        detail["output"] = list(data.get("output") or [])
        return RunResult(output_text(data), detail)


async def _drop_stream(memo: dict[str, Any]) -> None:
    held = memo.pop("stream", None)
    if held is not None:
        await held.aclose()
