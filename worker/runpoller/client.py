"""The client library for calling apps: enqueue runs, follow their events, answer tool calls;
see and steer runs (status, list, cancel, dead letters).

Works with the app's own ``redis.asyncio`` connection; speaks exactly the protocol in
docs/protocol.md (an app in another language does the same with plain Redis commands).
Loads redis, pydantic and cryptography: none of the worker's runtime (arq, aiohttp,
uvloop, httpx, prometheus_client); tests/unit/test_client.py keeps it so.

The reads never scan the keyspace: runs are found through the indexes the worker's scripts
keep (``runs:active``, ``runs:ended``) and the arq queue, a page at a time, with pipelined
reads of the page's records. An index entry whose record has expired (an unfinished run
whose hash reached its TTL) is skipped, and removed unless its record came back meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from redis.asyncio import Redis
from redis.exceptions import WatchError

from runpoller.protocol import (
    FN_RUN,
    RUN_ID_PATTERN,
    DeadLetter,
    Event,
    FinalEvent,
    Keys,
    parse_job,
)
from runpoller.protocol.serde import serialize_job
from runpoller.redis.url import connect
from runpoller.secrets import encrypt, is_encrypted, parse_key_ring

_EVENT = TypeAdapter(Event)
ARQ_JOB_PREFIX = "arq:job:"
JOB_EXPIRES_MS = 24 * 3600 * 1000

CANCEL_TTL_S = 7 * 24 * 3600
"""How long a run's cancel request (``cancel:<id>``) is kept for whoever owns the run later."""
CANCELS_MAXLEN = 100_000
MAX_PAGE = 1000
"""The most items one :meth:`RunpollerClient.list_runs` or dead-letter page holds."""
_MAX_WINDOWS = 10
"""How many index windows (of ``limit`` entries) one page reads at most while filtering."""
_QUEUE_MEMBER = "run:"
_RUN_ID = re.compile(RUN_ID_PATTERN)
_RAW_LIMIT = 4096  # a dead letter's raw job is cut at this size (DeadLetter.raw)

RunStatus = Literal["queued", "in_flight", "requires_action", "ended"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)


class RunSummary(BaseModel):
    """One run of a :class:`RunPage`."""

    run_id: str
    status: RunStatus
    ts: int = Field(
        description="Epoch ms: when a queued job is due (its queue score), when an in-flight "
        "run was accepted, when an ended run ended. Pages are ordered by it."
    )
    phase: str | None = Field(None, description="The run's engine phase (in flight only).")
    owner: str | None = Field(None, description="The worker that drives it (in flight only).")
    round: int | None = Field(None, description="Its tool round (in flight only).")
    final_status: str | None = Field(None, description="The final event's status (ended only).")


class RunPage(BaseModel):
    """A page of runs, oldest first; ``next_cursor`` continues after its last one (None: the
    end). A page filtered by status may hold fewer than ``limit`` runs while more follow."""

    items: list[RunSummary]
    next_cursor: str | None


class CancelRequest(BaseModel):
    """The app's cancel request, as kept in ``cancel:<id>``."""

    reason: str
    requested_at: int | None = Field(description="Epoch ms of the (latest) request.")
    outcome: str | None = Field(
        None, description="Set by the worker when the run had already ended: `already_ended`."
    )
    final_status: str | None = Field(None, description="Set with `outcome`: how the run ended.")


class RunView(BaseModel):
    """Everything Redis knows of one run, for a person or a dashboard (no secret in it)."""

    run_id: str
    status: RunStatus
    job: dict[str, Any] | None = Field(
        description="The stored job (None once the run ended: finalize drops it), `api_key` "
        "replaced by `encrypted`, `plaintext (hidden)` or `none`."
    )
    phase: str | None
    owner: str | None = Field(description="The worker that drives the run, if any.")
    owner_alive: bool | None = Field(description="Whether that worker's heartbeat lives.")
    deadline_ms: int | None
    object_id: str | None
    object_ids: list[str]
    round: int
    pending_calls: list[str] = Field(description="Tool call ids the run waits answers for.")
    outputs_deadline_ms: int | None
    last_status: str | None = Field(description="The last status the API reported.")
    cancelling: str | None = Field(description="Why the worker is cancelling it, if it is.")
    cancel_request: CancelRequest | None
    queued_at: int | None = Field(description="The queue score of its pending job (epoch ms).")
    accepted_at: int | None = Field(description="Its score in the active index (epoch ms).")
    ended_at: int | None = Field(description="Its score in the ended index (epoch ms).")
    events: int = Field(description="Entries on its event stream.")
    final_status: str | None
    result: dict[str, Any] | None = Field(description="The final event, once it ended.")


class CancelOutcome(BaseModel):
    """What :meth:`RunpollerClient.cancel` did: ``requested``, or nothing (``already_ended``)."""

    run_id: str
    outcome: Literal["requested", "already_ended"]
    final_status: str | None = Field(None, description="The status it ended with.")
    entry_id: str | None = Field(None, description="The request's entry on the cancels stream.")


class DeadLetterEntry(BaseModel):
    id: str = Field(description="The entry id on the dead-letters stream.")
    letter: DeadLetter | None = Field(description="None when the entry is unreadable.")
    problem: str = Field("", description="Why the entry could not be read.")


class DeadLetterPage(BaseModel):
    """Dead letters oldest first; ``next_after`` continues after the last (None: the end)."""

    items: list[DeadLetterEntry]
    next_after: str | None


class DeadLetterNotFound(LookupError):
    """No dead letter has this entry id (any more)."""


class RequeueRefused(ValueError):
    """A dead letter that cannot be enqueued as it is; the message says why and what to do."""


@dataclass(frozen=True, slots=True, order=True)
class _Entry:
    """An index entry: its place in the listing order (score, then member) and its index."""

    score: float
    member: str
    index: str


@dataclass(frozen=True, slots=True)
class _Position:
    """Where a page starts: after (score, member), or from ``score`` on when member is None."""

    score: float
    member: str | None = None

    def precedes(self, entry: _Entry) -> bool:
        if entry.score != self.score:
            return entry.score > self.score
        return self.member is None or entry.member > self.member

    def cursor(self) -> str:
        return f"{_number(self.score)}:{self.member or ''}"

    @classmethod
    def parse(cls, cursor: str) -> _Position:
        score, sep, member = cursor.partition(":")
        try:
            value = float(score)
        except ValueError:
            value = math.nan
        if not sep or not member or not math.isfinite(value):
            raise ValueError(f"invalid cursor {cursor!r}: pass a next_cursor as given")
        return cls(value, member)


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event read from a run's stream, with its stream id (to resume from)."""

    id: str
    event: Event


class RunpollerClient:
    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str = "runpoller:queue",
        key_prefix: str = "runpoller",
        secret_keys: str | None = None,
    ) -> None:
        """``secret_keys`` is ``RUNPOLLER_SECRET_KEYS``: job API keys are encrypted with the
        first key before they reach Redis."""
        self.redis = redis
        self.queue_name = queue_name
        self.keys = Keys(key_prefix)
        self._ring = parse_key_ring(secret_keys) if secret_keys else {}

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        queue_name: str = "runpoller:queue",
        key_prefix: str = "runpoller",
        secret_keys: str | None = None,
        **redis_kwargs: Any,
    ) -> RunpollerClient:
        """A client on its own connection to ``url``: any ``REDIS_URL`` form the workers read
        (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``), made by the same
        factory (:func:`runpoller.redis.url.connect`). Close it with
        ``await client.redis.aclose()``."""
        return cls(
            connect(url, **redis_kwargs),
            queue_name=queue_name,
            key_prefix=key_prefix,
            secret_keys=secret_keys,
        )

    async def enqueue(self, job: Mapping[str, Any]) -> str:
        """Validate and enqueue a job; returns the logical run id. Idempotent per run id.

        ``job`` is the job object of docs/protocol.md, e.g.
        ``{"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_1"}``.
        """
        parsed = parse_job(dict(job))
        run_id = parsed.run_key
        now_ms = int(time.time() * 1000)
        payload = dict(job)
        key = payload.get("api_key")
        if isinstance(key, str) and not is_encrypted(key):
            if not self._ring:
                raise ValueError(
                    "api_key would be stored in plaintext: pass secret_keys "
                    "(RUNPOLLER_SECRET_KEYS) to encrypt it"
                )
            kid, secret = next(iter(self._ring.items()))
            payload["api_key"] = encrypt(key, kid, secret)
        body = serialize_job({"f": FN_RUN, "a": [payload], "k": {}, "t": None, "et": now_ms})
        job_key = ARQ_JOB_PREFIX + f"run:{run_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(job_key, body, px=JOB_EXPIRES_MS, nx=True)
            pipe.zadd(self.queue_name, {f"run:{run_id}": now_ms}, nx=True)
            await pipe.execute()
        return run_id

    async def events(
        self, run_id: str, *, after: str = "0-0", block_ms: int = 5000
    ) -> AsyncIterator[StreamEvent]:
        """Every event of the run from ``after`` on, until (and including) the final one."""
        key = self.keys.events(run_id)
        last = after
        while True:
            reply = await self.redis.xread({key: last}, block=block_ms, count=100)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    data = fields.get(b"data", fields.get("data"))
                    event = _EVENT.validate_json(data)
                    yield StreamEvent(last, event)
                    if isinstance(event, FinalEvent):
                        return

    async def history(self, run_id: str, *, count: int = 10_000) -> list[StreamEvent]:
        """The run's events as they stand now (the stream is capped, so this is bounded),
        oldest first, without waiting for more."""
        entries = await self.redis.xrange(self.keys.events(run_id), count=count)
        out = []
        for entry_id, fields in entries:
            data = fields.get(b"data", fields.get("data"))
            key = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            out.append(StreamEvent(key, _EVENT.validate_json(data)))
        return out

    async def result(self, run_id: str) -> FinalEvent | None:
        raw = await self.redis.get(self.keys.result(run_id))
        return None if raw is None else FinalEvent.model_validate_json(raw)

    async def wait(self, run_id: str, timeout: float | None = None) -> FinalEvent:
        """The final event, waiting up to ``timeout`` seconds (TimeoutError after)."""

        async def _follow() -> FinalEvent:
            async for item in self.events(run_id):
                if isinstance(item.event, FinalEvent):
                    return item.event
            raise RuntimeError("event stream ended without a final event")

        existing = await self.result(run_id)
        if existing is not None:
            return existing
        return await asyncio.wait_for(_follow(), timeout)

    async def submit_tool_outputs(
        self,
        run_id: str,
        round_: int,
        outputs: Mapping[str, str],
        errors: Mapping[str, str] | None = None,
    ) -> str:
        """Answer one round of tool calls (``{tool_call_id: output}``, and the calls that failed
        as ``errors``: ``{tool_call_id: message}``); returns the entry id."""
        items: list[dict[str, str]] = [
            {"tool_call_id": call_id, "output": output} for call_id, output in outputs.items()
        ]
        items += [
            {"tool_call_id": cid, "error": message} for cid, message in (errors or {}).items()
        ]
        body = json.dumps(items)
        entry: Any = await self.redis.xadd(
            self.keys.replies,
            {"run_id": run_id, "round": str(round_), "outputs": body},
            maxlen=100_000,
            approximate=True,
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)

    # ------------------------------------------------------------------ inspection

    async def status(self, run_id: str) -> RunView | None:
        """What Redis knows of the run now; None when it has no record, result or queued job.

        Two round trips (the second only to ask whether the owner's heartbeat lives).
        """
        _check_run_id(run_id)
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.run(run_id))
            pipe.get(k.result(run_id))
            pipe.hgetall(k.cancel(run_id))
            pipe.zscore(self.queue_name, _QUEUE_MEMBER + run_id)
            pipe.get(ARQ_JOB_PREFIX + _QUEUE_MEMBER + run_id)
            pipe.zscore(k.runs_active, run_id)
            pipe.zscore(k.runs_ended, run_id)
            pipe.xlen(k.events(run_id))
            record, raw_result, cancel, queued, body, accepted, ended, events = await pipe.execute()
        fields = {_str(name): _str(value) for name, value in (record or {}).items()}
        if not fields and raw_result is None and queued is None:
            if accepted is not None:
                await self._drop_stale(k.runs_active, [run_id], [k.run(run_id)])
            return None
        state = _json_object(fields.get("state"))
        owner = fields.get("owner") or None
        owner_alive = None if owner is None else bool(await self.redis.exists(k.heartbeat(owner)))
        result = _json_object(raw_result)
        phase = _opt_str(state.get("phase"))
        if raw_result is not None or "final" in fields:
            status: RunStatus = "ended"
        elif fields:
            status = _active_status(phase)
        else:
            status = "queued"
        job = _json_object(fields.get("job")) if "job" in fields else _queued_job(body)
        return RunView(
            run_id=run_id,
            status=status,
            job=_shown_job(job) if job else None,
            phase=phase,
            owner=owner,
            owner_alive=owner_alive,
            deadline_ms=_ms(state.get("deadline")),
            object_id=_opt_str(state.get("object_id")) or None,
            object_ids=_strings(state.get("object_ids")),
            round=_int(state.get("round")),
            pending_calls=_strings(state.get("pending_calls")),
            outputs_deadline_ms=_ms(state.get("outputs_deadline")),
            last_status=_opt_str(state.get("unknown_status")) or _opt_str(state.get("last_status")),
            cancelling=_opt_str(state.get("cancel_reason")) or None,
            cancel_request=_cancel_request(cancel),
            queued_at=_ms_score(queued),
            accepted_at=_ms_score(accepted),
            ended_at=_ms_score(ended),
            events=int(events or 0),
            final_status=_opt_str(result.get("status")),
            result=result or None,
        )

    async def list_runs(
        self,
        status: RunStatus | None = None,
        *,
        since_ms: int | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs by status (None: all), oldest first from ``since_ms``, ``limit`` at a time.

        ``queued``: jobs on the arq queue whose run has no record yet (scored by when they are
        due); ``in_flight`` / ``requires_action``: the active index, by the run's phase;
        ``ended``: the ended index. Pass the page's ``next_cursor`` to continue. A page reads
        at most ten windows of ``limit`` index entries, so filtering costs O(limit).
        """
        indexes = {
            None: [self.queue_name, self.keys.runs_active, self.keys.runs_ended],
            "queued": [self.queue_name],
            "in_flight": [self.keys.runs_active],
            "requires_action": [self.keys.runs_active],
            "ended": [self.keys.runs_ended],
        }.get(status)
        if indexes is None:
            raise ValueError(f"unknown status {status!r}: one of {', '.join(RUN_STATUSES)}")
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
        if cursor:
            position = _Position.parse(cursor)
        else:
            position = _Position(-math.inf if since_ms is None else float(since_ms))
        items: list[RunSummary] = []
        for _ in range(_MAX_WINDOWS):
            window, exhausted = await self._window(indexes, position, limit)
            summaries = await self._summaries(window)
            for n, (entry, summary) in enumerate(zip(window, summaries, strict=True), 1):
                position = _Position(entry.score, entry.member)
                if summary is not None and status in (None, summary.status):
                    items.append(summary)
                    if len(items) == limit:
                        last = exhausted and n == len(window)
                        return RunPage(items=items, next_cursor=None if last else position.cursor())
            if exhausted:
                return RunPage(items=items, next_cursor=None)
        return RunPage(items=items, next_cursor=position.cursor())

    async def _window(
        self, indexes: Sequence[str], position: _Position, count: int
    ) -> tuple[list[_Entry], bool]:
        """The first ``count`` entries after ``position`` over all ``indexes`` together, in
        (score, member) order, and whether none follow them."""
        low = "-inf" if position.score == -math.inf else _number(position.score)
        # One more than asked, to know whether any follow; and from the cursor's score on,
        # inclusive, so the cursor's own entry comes back first.
        num = count + 1 + (position.member is not None)
        offsets = dict.fromkeys(indexes, 0)
        kept: dict[str, list[_Entry]] = {}
        more: set[str] = set()  # indexes with entries beyond those kept
        while offsets:
            async with self.redis.pipeline(transaction=False) as pipe:
                for index, offset in offsets.items():
                    pipe.zrangebyscore(index, low, "+inf", start=offset, num=num, withscores=True)
                replies = await pipe.execute()
            ties: dict[str, int] = {}
            for (index, offset), rows in zip(offsets.items(), replies, strict=True):
                entries = [_Entry(float(score), _str(member), index) for member, score in rows]
                after = [e for e in entries if position.precedes(e)]
                if len(entries) == num and not after:
                    ties[index] = offset + num  # all at the cursor's score, up to its member
                    continue
                kept[index] = after
                if len(entries) == num:
                    more.add(index)
            offsets = ties
        merged = sorted(e for entries in kept.values() for e in entries)
        if more:  # an index with more entries is known only up to its last one kept
            bound = min(kept[index][-1] for index in more)
            merged = [e for e in merged if e <= bound]
        return merged[:count], not more and len(merged) <= count

    async def _summaries(self, window: Sequence[_Entry]) -> list[RunSummary | None]:
        """Each entry's run (None: not listed here), read in one pipelined round trip."""
        k = self.keys
        reads: list[_Entry] = []
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry in window:
                if entry.index == self.queue_name:
                    if not entry.member.startswith(_QUEUE_MEMBER):
                        continue  # a resume or dead-letter job, or another app's
                    pipe.exists(k.run(entry.member.removeprefix(_QUEUE_MEMBER)))
                elif entry.index == k.runs_active:
                    pipe.hmget(k.run(entry.member), ["state", "owner", "final"])
                else:
                    pipe.get(k.result(entry.member))
                reads.append(entry)
            replies = await pipe.execute() if reads else []
        found: dict[_Entry, RunSummary | None] = {}
        stale: dict[str, list[str]] = {}
        for entry, reply in zip(reads, replies, strict=True):
            ts = int(entry.score)
            if entry.index == self.queue_name:
                run_id = entry.member.removeprefix(_QUEUE_MEMBER)
                found[entry] = None if reply else RunSummary(run_id=run_id, status="queued", ts=ts)
            elif entry.index == k.runs_active:
                state_json, owner, final = reply
                if state_json is None and owner is None and final is None:
                    stale.setdefault(entry.index, []).append(entry.member)
                    found[entry] = None
                elif final is not None:
                    found[entry] = None  # ended: listed from the ended index
                else:
                    state = _json_object(state_json)
                    phase = _opt_str(state.get("phase"))
                    found[entry] = RunSummary(
                        run_id=entry.member,
                        status=_active_status(phase),
                        ts=ts,
                        phase=phase,
                        owner=_opt_str(owner) or None,
                        round=_int(state.get("round")),
                    )
            elif reply is None:
                stale.setdefault(entry.index, []).append(entry.member)
                found[entry] = None
            else:
                final_status = _opt_str(_json_object(reply).get("status"))
                found[entry] = RunSummary(
                    run_id=entry.member, status="ended", ts=ts, final_status=final_status
                )
        for index, members in stale.items():
            record = k.run if index == k.runs_active else k.result
            await self._drop_stale(index, members, [record(m) for m in members])
        return [found.get(entry) for entry in window]

    async def _drop_stale(self, index: str, members: list[str], records: list[str]) -> None:
        """Remove index entries whose records expired, unless a record came back meanwhile
        (a new run of the same id): watched, so a claim in between leaves them listed."""
        async with self.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(*records)
                if await pipe.exists(*records):
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.zrem(index, *members)
                await pipe.execute()
            except WatchError:
                return  # a record changed: the next reader decides

    # ------------------------------------------------------------------ control

    async def cancel(self, run_id: str, reason: str | None = None) -> CancelOutcome:
        """Ask the workers to cancel the run (docs/protocol.md, "Cancel a run").

        Nothing is written once the run has its result (``already_ended``). Otherwise one
        transaction records the request on ``cancel:<id>`` (kept 7 days, for a worker that
        takes the run later) and announces it on the cancels stream. Calling it again sends
        the request again; the worker treats it as the same request.
        """
        _check_run_id(run_id)
        text = reason or ""
        result_key, cancel_key = self.keys.result(run_id), self.keys.cancel(run_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(result_key)
                    raw = await pipe.get(result_key)
                    if raw is not None:  # leaving the pipeline unwatches
                        status = _opt_str(_json_object(raw).get("status"))
                        return CancelOutcome(
                            run_id=run_id, outcome="already_ended", final_status=status
                        )
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(
                        cancel_key,
                        mapping={"reason": text, "requested_at": int(time.time() * 1000)},
                    )
                    pipe.expire(cancel_key, CANCEL_TTL_S)
                    pipe.xadd(
                        self.keys.cancels,
                        {"run_id": run_id, "reason": text},
                        maxlen=CANCELS_MAXLEN,
                        approximate=True,
                    )
                    _, _, entry = await pipe.execute()
                    return CancelOutcome(run_id=run_id, outcome="requested", entry_id=_str(entry))
                except WatchError:
                    continue  # the result was written meanwhile: read it

    # ------------------------------------------------------------------ dead letters

    async def dead_letters(self, limit: int = 50, after: str | None = None) -> DeadLetterPage:
        """Dead letters oldest first, after the entry id ``after`` (exclusive)."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}, got {limit}")
        start = f"({after}" if after else "-"
        rows = await self.redis.xrange(self.keys.dead_letters, min=start, max="+", count=limit)
        items = [_dead_letter_entry(_str(entry_id), fields) for entry_id, fields in rows]
        return DeadLetterPage(items=items, next_after=items[-1].id if len(items) == limit else None)

    async def dead_letter(self, entry_id: str) -> DeadLetterEntry:
        """One dead letter by its entry id (DeadLetterNotFound when there is none)."""
        rows = await self.redis.xrange(self.keys.dead_letters, min=entry_id, max=entry_id)
        if not rows:
            raise DeadLetterNotFound(f"no dead letter {entry_id}")
        return _dead_letter_entry(_str(rows[0][0]), rows[0][1])

    async def requeue_dead_letter(self, entry_id: str) -> str:
        """Enqueue the job a dead letter kept, then delete the letter; returns the run id.

        Refused (RequeueRefused, saying why) when the letter holds no job object, was cut at
        4 KiB, carried an API key (dead letters blank it), names a run that already has a
        record, or the job is invalid.
        """
        entry = await self.dead_letter(entry_id)
        if entry.letter is None:
            raise RequeueRefused(f"dead letter {entry_id} is unreadable: {entry.problem}")
        job = _job_of_letter(entry.letter.raw)
        if "api_key" in job:
            raise RequeueRefused(
                f"dead letter {entry_id} carried an api_key, which dead letters blank: "
                "re-enqueue it with its key"
            )
        try:
            run_id = parse_job(job).run_key
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(p) for p in problem["loc"][1:]) or "job"
            raise RequeueRefused(f"dead letter {entry_id}: {where}: {problem['msg']}") from None
        existing = await self.status(run_id)
        if existing is not None:
            raise RequeueRefused(
                f"dead letter {entry_id}: run {run_id} is already {existing.status}; its job "
                "would be refused again (the run keeps its first job)"
            )
        await self.enqueue(job)
        await self.redis.xdel(self.keys.dead_letters, entry_id)
        return run_id

    async def purge_dead_letters(self, older_than_ms: int | None = None) -> int:
        """Delete every dead letter, or only those written more than ``older_than_ms`` ago;
        returns how many went."""
        key = self.keys.dead_letters
        if older_than_ms is None:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.xlen(key)
                pipe.delete(key)
                count, _ = await pipe.execute()
            return int(count)
        if older_than_ms < 0:
            raise ValueError(f"older_than_ms must not be negative, got {older_than_ms}")
        cutoff = int(time.time() * 1000) - older_than_ms
        removed: Any = await self.redis.xtrim(key, minid=f"{cutoff}-0", approximate=False)
        return int(removed)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _check_run_id(run_id: str) -> None:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id):
        raise ValueError(f"invalid run id {run_id!r}: it must match {RUN_ID_PATTERN}")


def _number(score: float) -> str:
    """A score as Redis takes it back: integers without a fraction."""
    return str(int(score)) if score.is_integer() else repr(score)


def _json_object(raw: Any) -> dict[str, Any]:
    """A JSON object from Redis ({} for nothing, or for anything that is not one)."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _active_status(phase: str | None) -> RunStatus:
    return "requires_action" if phase == "awaiting_outputs" else "in_flight"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _ms(seconds: Any) -> int | None:
    """An engine time (epoch s) as epoch ms."""
    if isinstance(seconds, int | float) and not isinstance(seconds, bool):
        return int(seconds * 1000)
    return None


def _ms_score(score: Any) -> int | None:
    return None if score is None else int(score)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _queued_job(body: Any) -> dict[str, Any]:
    """The job inside an arq job body (the first argument of ``runpoller.run``)."""
    args = _json_object(body).get("a")
    return args[0] if isinstance(args, list) and args and isinstance(args[0], dict) else {}


def _shown_job(job: Mapping[str, Any]) -> dict[str, Any]:
    key = job.get("api_key")
    if not key:
        shown = "none"
    elif isinstance(key, str) and is_encrypted(key):
        shown = "encrypted"
    else:
        shown = "plaintext (hidden)"
    return {**job, "api_key": shown}


def _cancel_request(fields: Mapping[Any, Any] | None) -> CancelRequest | None:
    if not fields:
        return None
    values = {_str(name): _str(value) for name, value in fields.items()}
    at = values.get("requested_at", "")
    return CancelRequest(
        reason=values.get("reason", ""),
        requested_at=int(at) if at.isdigit() else None,
        outcome=values.get("outcome") or None,
        final_status=values.get("final_status") or None,
    )


def _dead_letter_entry(entry_id: str, fields: Mapping[Any, Any]) -> DeadLetterEntry:
    data = fields.get(b"data", fields.get("data"))
    if data is None:
        return DeadLetterEntry(id=entry_id, letter=None, problem="the entry has no data field")
    try:
        return DeadLetterEntry(id=entry_id, letter=DeadLetter.model_validate_json(data))
    except ValidationError as exc:
        return DeadLetterEntry(id=entry_id, letter=None, problem=str(exc.errors()[0]["msg"]))


def _job_of_letter(raw: str) -> dict[str, Any]:
    """The job a dead letter kept: a job object, or the one argument of a ``runpoller.run``
    call; RequeueRefused saying why there is none."""
    try:
        value = json.loads(raw)
    except ValueError:
        if len(raw) >= _RAW_LIMIT:
            raise RequeueRefused(
                f"the job was cut at {_RAW_LIMIT} bytes when it was dead-lettered: "
                "re-enqueue it from its source"
            ) from None
        raise RequeueRefused("the dead letter's raw job is not JSON") from None
    if isinstance(value, dict) and "f" in value and "kind" not in value:
        args = value.get("a")
        if value.get("f") != FN_RUN or not isinstance(args, list) or len(args) != 1:
            raise RequeueRefused(
                f"the dead letter holds a call of {value.get('f')!r}, not one runpoller.run job"
            )
        value = args[0]
    if not isinstance(value, dict):
        raise RequeueRefused("the dead letter's raw job is not a JSON object")
    return value
