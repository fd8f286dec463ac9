"""Streamed replies: a streamed background response's events as server-sent events.

``POST /v1/responses`` with ``stream: true`` answers with the new response's events from
the first; ``GET /v1/responses/{id}?stream=true&starting_after=N`` with those after
sequence number ``N`` (all of them without it), as the real API resumes a dropped stream.
Each event goes out when its instant comes (``data:`` is the event's JSON, ``event:`` its
type), and the reply ends after the response's last event. A response created without
``stream: true`` cannot be streamed: the real API refuses, and so does this one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from runpoller_fake.errors import ApiError
from runpoller_fake.lifecycle import Response
from runpoller_fake.state import FakeState

# The response a streamed reply is about (what the request log records for a create).
STREAMED_OBJECT = web.RequestKey("fake_openai_streamed_object", str)
# How long the writer sleeps at most between looks at the response (a cancel, a new delta).
_IDLE_S = 0.05


@dataclass(frozen=True, slots=True)
class Streamed:
    """A handler's answer that is a stream: ``response``'s events after ``after``."""

    response: Response
    after: int


def streamed_get(response: Response, query: Mapping[str, str]) -> Streamed | None:
    """What ``GET /v1/responses/{id}`` asks for: a stream, or (None) the object."""
    stream = query.get("stream")
    if stream is None or stream == "false":
        return None
    if stream != "true":
        raise ApiError(
            400,
            f"Invalid value for 'stream': expected a boolean, but got {stream!r} instead.",
            param="stream",
            code="invalid_type",
        )
    if response.stream is None:
        raise ApiError(
            400,
            "This response was not created with 'stream': true, so it cannot be streamed. "
            "Poll it instead.",
            param="stream",
        )
    raw = query.get("starting_after")
    after = -1
    if raw is not None:
        try:
            after = int(raw)
        except ValueError:
            raise ApiError(
                400,
                f"Invalid 'starting_after': expected an integer, but got {raw!r} instead.",
                param="starting_after",
                code="invalid_type",
            ) from None
    return Streamed(response, after=max(after, -1))


async def stream_reply(
    state: FakeState,
    request: web.Request,
    streamed: Streamed,
    headers: dict[str, str],
    cut: int | None,
) -> web.StreamResponse:
    """Write the events as they happen; ``cut``: close the connection after that many."""
    response, log = streamed.response, streamed.response.stream
    assert log is not None
    request[STREAMED_OBJECT] = response.id
    reply = web.StreamResponse(
        status=200,
        headers={
            **headers,
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
        },
    )
    await reply.prepare(request)
    cursor, sent = streamed.after, 0
    try:
        while True:
            now = state.now()
            response.advance(now)
            log.release(now)
            while cursor < log.last_sequence:
                cursor += 1
                event = log.events[cursor]
                data = json.dumps(event, separators=(",", ":"))
                await reply.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
                sent += 1
                if cut is not None and sent >= cut:
                    if request.transport is not None:
                        request.transport.close()
                    return reply
            if log.ended:
                break
            due = [t for t in (log.next_due(), response.terminal_at()) if t is not None]
            wait = min([*(t - now for t in due), _IDLE_S])
            await state.sleep(max(wait, 0.001))
        await reply.write_eof()
    except (ConnectionResetError, ConnectionError):
        pass  # the client went away: nothing to send it
    return reply
