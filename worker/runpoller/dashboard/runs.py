"""The runs pages' data: a filtered list, and one run with its timeline.

Both sit on :class:`runpoller.client.RunpollerClient` (``list_runs``, ``status``,
``history``): the list reads the client's pages (each bounded) and adds, per page, one
pipelined read of each run's job or result for the filters a page of summaries cannot
answer (backend, metadata). A filtered list reads at most :data:`MAX_PAGES` client pages per
request and hands back a cursor to go on, so a rare match costs the operator a "more" click,
never an unbounded request.

The app's tool outputs are not on the run's stream: they are the app's entries on
``<prefix>:replies``. Each round's answer is looked for there from the round's
``requires_action`` event on (stream ids are times), at most :data:`REPLY_SCAN` entries.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from runpoller.client import RunpollerClient, RunStatus, RunSummary, RunView
from runpoller.protocol import Keys, RequiresActionEvent

MAX_PAGES = 5
REPLY_SCAN = 2000
"""Replies-stream entries read after a round's ``requires_action`` to find its answer."""
OUTPUT_LIMIT = 2000
"""Characters of a tool output shown (the rest is cut, and marked)."""


class RunRow(BaseModel):
    run_id: str
    status: RunStatus
    ts: int
    phase: str | None = None
    owner: str | None = None
    round: int | None = None
    final_status: str | None = None
    kind: str | None = Field(
        None, description="The backend: `assistants_run`, `response` or `agent_turn`."
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunList(BaseModel):
    items: list[RunRow]
    next_cursor: str | None
    pages_read: int


class Filters(BaseModel):
    status: RunStatus | None = None
    backend: str | None = None
    worker: str | None = None
    older_than_ms: int | None = Field(None, description="Only runs whose ts is this old.")
    since_ms: int | None = None
    meta_key: str | None = None
    meta_value: str | None = None


async def list_runs(
    client: RunpollerClient,
    filters: Filters,
    *,
    limit: int = 50,
    cursor: str | None = None,
    now_ms: int | None = None,
) -> RunList:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = None if filters.older_than_ms is None else now - filters.older_than_ms
    status = filters.status  # a worker filter matches runs in flight only: they have owners
    items: list[RunRow] = []
    pages = 0
    while pages < MAX_PAGES:
        page = await client.list_runs(status, since_ms=filters.since_ms, limit=limit, cursor=cursor)
        pages += 1
        rows = await _rows(client, page.items)
        for row in rows:
            if cutoff is not None and row.ts > cutoff:
                return RunList(items=items, next_cursor=None, pages_read=pages)
            if _matches(row, filters):
                items.append(row)
        cursor = page.next_cursor
        if cursor is None or len(items) >= limit:
            break
    return RunList(items=items[:limit], next_cursor=cursor, pages_read=pages)


def _matches(row: RunRow, f: Filters) -> bool:
    if f.worker and row.owner != f.worker:
        return False
    if f.backend and row.kind != f.backend:
        return False
    if f.meta_key:
        if f.meta_key not in row.metadata:
            return False
        if f.meta_value is not None and str(row.metadata[f.meta_key]) != f.meta_value:
            return False
    return True


async def _rows(client: RunpollerClient, summaries: list[RunSummary]) -> list[RunRow]:
    """The page's runs with their backend and metadata: one pipelined read."""
    keys, redis = client.keys, client.redis
    async with redis.pipeline(transaction=False) as pipe:
        for s in summaries:
            if s.status == "ended":
                pipe.get(keys.result(s.run_id))
            elif s.status == "queued":
                pipe.get(f"arq:job:run:{s.run_id}")
            else:
                pipe.hget(keys.run(s.run_id), "job")
        replies = await pipe.execute() if summaries else []
    rows = []
    for s, raw in zip(summaries, replies, strict=True):
        doc = _object(raw)
        if s.status == "queued":
            args = doc.get("a")
            doc = args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}
        metadata = doc.get("metadata")
        rows.append(
            RunRow(
                **s.model_dump(),
                kind=doc.get("kind") if isinstance(doc.get("kind"), str) else None,
                metadata=metadata if isinstance(metadata, dict) else {},
            )
        )
    return rows


class ToolOutput(BaseModel):
    tool_call_id: str
    output: str
    truncated: bool = False


class RoundAnswer(BaseModel):
    round: int
    entry_id: str = Field(description="The app's entry on the replies stream.")
    ts: int
    outputs: list[ToolOutput]


class TimelineEntry(BaseModel):
    id: str = Field(description="The event's stream id.")
    type: str
    ts: int
    event: dict[str, Any]


class RunDetail(BaseModel):
    view: RunView
    timeline: list[TimelineEntry]
    answers: list[RoundAnswer] = Field(description="The app's answer to each round, if found.")


async def run_detail(client: RunpollerClient, run_id: str) -> RunDetail | None:
    view = await client.status(run_id)
    if view is None:
        return None
    history = await client.history(run_id, count=2000)
    timeline = [
        TimelineEntry(
            id=item.id,
            type=item.event.type,
            ts=item.event.ts,
            event=item.event.model_dump(mode="json", exclude_none=True),
        )
        for item in history
    ]
    rounds = [e.event for e in history if isinstance(e.event, RequiresActionEvent)]
    answers = []
    for event in rounds:
        answer = await _answer(client.redis, client.keys, run_id, event)
        if answer is not None:
            answers.append(answer)
    return RunDetail(view=view, timeline=timeline, answers=answers)


async def _answer(
    redis: Redis, keys: Keys, run_id: str, event: RequiresActionEvent
) -> RoundAnswer | None:
    """The first reply on the stream for this run and round after the round was asked."""
    rows = await redis.xrange(keys.replies, min=f"{event.ts}-0", max="+", count=REPLY_SCAN)
    for entry_id, fields in rows:
        values = {_s(k): _s(v) for k, v in fields.items()}
        if values.get("run_id") != run_id or values.get("round") != str(event.round):
            continue
        try:
            parsed = json.loads(values.get("outputs", ""))
        except ValueError:
            parsed = None
        outputs = []
        for item in parsed if isinstance(parsed, list) else []:
            if not isinstance(item, dict):
                continue
            text = str(item.get("output", ""))
            outputs.append(
                ToolOutput(
                    tool_call_id=str(item.get("tool_call_id", "")),
                    output=text[:OUTPUT_LIMIT],
                    truncated=len(text) > OUTPUT_LIMIT,
                )
            )
        entry = _s(entry_id)
        return RoundAnswer(
            round=event.round, entry_id=entry, ts=int(entry.partition("-")[0]), outputs=outputs
        )
    return None


def _object(raw: bytes | str | None) -> dict[str, Any]:
    """A JSON object read from Redis; {} for nothing or for anything else."""
    try:
        value = json.loads(raw or "null")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
