"""Streamed responses in the Responses backend, against httpx.MockTransport: what is read
from a stream, and what a server that does not stream (or streams badly) gets instead."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from runpoller.backends.responses import MAX_STREAM_FAILURES, ResponsesBackend
from runpoller.engine import RunState, Status
from runpoller.http.api import ApiClient, no_cookies
from runpoller.protocol import ResponseJob

KEY = "sk-test-canary-0123456789"
JOB = ResponseJob(kind="response", id="r1", request={"model": "gpt-4o", "input": "hi"}, stream=True)


class Taken:
    """A Progress that records what it is handed."""

    def __init__(self) -> None:
        self.deltas: list[tuple[str, int, str]] = []

    def after(self, object_id: str) -> int:
        mine = [n for o, n, _ in self.deltas if o == object_id]
        return max(mine, default=-1)

    def text(self, object_id: str, sequence_number: int, delta: str) -> None:
        self.deltas.append((object_id, sequence_number, delta))


def backend(handler: Callable[[httpx.Request], httpx.Response]) -> ResponsesBackend:
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler), cookies=no_cookies())
    return ResponsesBackend(ApiClient(http, "http://api.test/v1"))


def response(status: str, text: str = "") -> dict[str, Any]:
    output = []
    if text:
        content = [{"type": "output_text", "text": text, "annotations": []}]
        output = [{"type": "message", "id": "msg_1", "role": "assistant", "content": content}]
    return {"id": "resp_1", "object": "response", "status": status, "output": output}


def sse(*events: dict[str, Any], start: int = 0) -> httpx.Response:
    body = "".join(
        f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': i})}\n\n"
        for i, e in enumerate(events, start)
    )
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, text=body)


def delta(text: str) -> dict[str, Any]:
    return {"type": "response.output_text.delta", "item_id": "msg_1", "delta": text}


def state() -> RunState:
    return RunState(deadline=1e12, interval=1.0, object_id="resp_1")


async def test_a_stream_is_read_to_its_end_event() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return sse(
            {"type": "response.created", "response": response("queued")},
            delta("Hello "),
            delta("world"),
            {"type": "response.completed", "response": response("completed", "Hello world")},
        )

    memo: dict[str, Any] = {}
    created = await backend(handler).create(JOB, KEY, memo)
    assert created.status is Status.QUEUED and created.follow_now
    progress = Taken()
    done = await backend(handler).get(JOB, state(), KEY, memo, progress)
    assert done.status is Status.COMPLETED
    assert progress.deltas == [("resp_1", 1, "Hello "), ("resp_1", 2, "world")]
    assert len(seen) == 1, "the create's stream was followed, not reopened"
    body = json.loads(seen[0].content)
    assert (body["stream"], body["background"], body["store"]) == (True, True, True)
    assert seen[0].headers["accept"] == "text/event-stream"


async def test_a_server_that_does_not_stream_is_polled() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json=response("in_progress"))

    memo: dict[str, Any] = {}
    api = backend(handler)
    created = await api.create(JOB, KEY, memo)
    assert created.status is Status.IN_PROGRESS and not created.follow_now
    assert (await api.get(JOB, state(), KEY, memo, Taken())).status is Status.IN_PROGRESS
    assert memo["stream_failures"] == MAX_STREAM_FAILURES
    await api.get(JOB, state(), KEY, memo, Taken())
    assert seen[-1] == "http://api.test/v1/responses/resp_1", "no stream asked for again"


async def test_a_refused_stream_and_a_garbled_one_give_way_to_a_poll() -> None:
    answers = iter(
        [
            httpx.Response(400, json={"error": {"message": "not created with stream"}}),
            httpx.Response(200, json=response("in_progress")),
        ]
    )
    api = backend(lambda request: next(answers))
    memo: dict[str, Any] = {}
    assert (await api.get(JOB, state(), KEY, memo, Taken())).status is Status.IN_PROGRESS
    assert memo["stream_failures"] == MAX_STREAM_FAILURES  # a 400 is not retried

    garbled = httpx.Response(200, headers={"content-type": "text/event-stream"}, text="data: {\n\n")
    answers = iter([garbled, httpx.Response(200, json=response("in_progress"))])
    api = backend(lambda request: next(answers))
    memo = {}
    assert (await api.get(JOB, state(), KEY, memo, Taken())).status is Status.IN_PROGRESS
    assert memo["stream_failures"] == 1  # tried again at the next read


async def test_a_stream_that_ends_early_is_resumed_after_the_last_number_taken() -> None:
    urls: list[httpx.URL] = []
    answers = iter(
        [
            sse({"type": "response.in_progress", "response": response("in_progress")}, delta("a")),
            sse(
                delta("b"),
                {"type": "response.completed", "response": response("completed", "ab")},
                start=2,
            ),
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        urls.append(request.url)
        return next(answers)

    progress = Taken()
    obs = await backend(handler).get(JOB, state(), KEY, {}, progress)
    assert obs.status is Status.COMPLETED
    assert urls[0].params.get("starting_after") is None
    assert urls[1].params["starting_after"] == "1"
    assert progress.deltas == [("resp_1", 1, "a"), ("resp_1", 2, "b")]
