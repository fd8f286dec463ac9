"""Helpers for tests that drive the fake: a manual clock and a spec check for every reply.

``check_reply`` is an httpx response hook: install it on the client that talks to the fake and
every ``/v1`` reply is validated against the OpenAPI schema its endpoint documents (errors
against ``ErrorResponse``), so each test is also a contract test. ``stream_problems`` checks a
streamed reply (SSE) event by event against ``ResponseStreamEvent``.
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from runpoller_fake.params import function_tool
from runpoller_fake.spec import validate

_RUN = r"/v1/threads/[^/]+/runs/[^/]+"
REPLY_SCHEMAS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v1/threads"), "ThreadObject"),
    ("POST", re.compile(r"/v1/threads/runs"), "RunObject"),
    ("POST", re.compile(r"/v1/threads/[^/]+/runs"), "RunObject"),
    ("GET", re.compile(_RUN), "RunObject"),
    ("POST", re.compile(_RUN + "/(cancel|submit_tool_outputs)"), "RunObject"),
    ("GET", re.compile(_RUN + "/steps"), "ListRunStepsResponse"),
    ("GET", re.compile(r"/v1/threads/[^/]+/messages"), "ListMessagesResponse"),
    ("POST", re.compile(r"/v1/responses"), "Response"),
    ("GET", re.compile(r"/v1/responses/[^/]+"), "Response"),
    ("POST", re.compile(r"/v1/responses/[^/]+/cancel"), "Response"),
)


def function_tools(*names: str) -> list[dict[str, Any]]:
    """``tools`` for a ``CreateResponse`` declaring these functions, as an app sends them.

    A response may call only what its own request declares: a continuation that should be able
    to call functions must send them again (they do not carry over ``previous_response_id``).
    """
    return [function_tool(name) for name in names]


class FakeClock:
    """Seconds that move only when the test says so.

    Use as ``FakeState(clock=clock, wall_clock=clock.wall)``: the clock is monotonic time and
    ``wall`` the matching Unix time, so API timestamps are exact (``wall_start`` + elapsed).
    """

    def __init__(self, start: float = 500.0, wall_start: float = 1_800_000_000.0) -> None:
        self.start = start
        self.now = start
        self.wall_start = wall_start

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.wall_start + (self.now - self.start)

    def advance(self, seconds: float) -> None:
        self.now += seconds


def reply_schema(method: str, path: str, status: int) -> str | None:
    """The schema a ``/v1`` reply must match; None for paths outside the OpenAI surface."""
    if not path.startswith("/v1/"):
        return None
    if status >= 400:
        return "ErrorResponse"
    for route_method, pattern, schema in REPLY_SCHEMAS:
        if route_method == method and pattern.fullmatch(path):
            return schema
    raise LookupError(f"no schema known for {method} {path}")


def reply_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    """Spec problems of one reply. The one tolerated deviation: null ids on an empty page."""
    schema = reply_schema(method, path, status)
    if schema is None:
        return []
    if schema.startswith("List") and isinstance(body, dict) and body.get("data") == []:
        # The real API sends null first_id/last_id for an empty page; the spec says string.
        if body.get("first_id") is not None or body.get("last_id") is not None:
            return ["/first_id: an empty page has null first_id and last_id"]
        body = {**body, "first_id": "", "last_id": ""}
    return validate(schema, body)


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """The ``(event, data)`` pairs of a server-sent-events body (``data`` parsed as JSON)."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), json.loads(fields["data"])))
    return events


def stream_problems(text: str) -> list[str]:
    """Spec problems of a streamed reply: each event a ``ResponseStreamEvent`` whose
    ``event:`` line names its type, sequence numbers one apart."""
    problems = []
    previous: int | None = None
    for name, data in sse_events(text):
        problems += [f"event {name}: {p}" for p in validate("ResponseStreamEvent", data)]
        if name != data.get("type"):
            problems.append(f"event line {name!r} but type {data.get('type')!r}")
        number = data.get("sequence_number")
        if previous is not None and number != previous + 1:
            problems.append(f"sequence_number {number} after {previous}")
        previous = number if isinstance(number, int) else previous
    return problems


async def check_reply(response: httpx.Response) -> None:
    """httpx response hook: fail the request if the reply breaks the spec. A stream is left
    to the test, which reads it as it comes (check it with :func:`stream_problems`)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        return
    await response.aread()
    request = response.request
    problems = reply_problems(
        request.method, request.url.path, response.status_code, response.json()
    )
    if problems:
        raise AssertionError(f"{request.method} {request.url.path}: {problems}")
