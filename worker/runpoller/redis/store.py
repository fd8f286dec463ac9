"""Redis I/O for runs: durable run records, ownership, event streams, results, liveness.

Each operation that must be atomic is one Lua script (``runpoller/redis/scripts/*.lua``,
their KEYS and ARGV in each file's header), so it costs one round trip and one command.
Ownership is fenced: every write checks that the run's ``owner`` is still this worker, so a
worker that was presumed dead (and whose runs were handed to others) can never publish for a
run it lost.

Keys (prefix ``runpoller`` by default; see ``runpoller.protocol.Keys`` and docs/protocol.md):

- ``run:<id>`` hash: ``job`` (JSON), ``state`` (engine state JSON), ``owner`` (worker id or
  empty), ``final`` (set once the final event is written).
- ``events:<id>`` stream of events (fields ``type`` and ``data``), capped and expiring.
- ``result:<id>`` the final event JSON, expiring.
- ``worker:<wid>`` heartbeat (PX TTL); ``workers`` zset of worker ids by last beat;
  ``owned:<wid>`` set of run ids a worker holds; ``orphans`` set of run ids to re-enqueue;
  ``orphans:lock`` the token of the one worker re-enqueueing them (PX TTL).
- ``runs:active`` / ``runs:ended`` zsets indexing runs by accepted / end time (epoch ms, the
  worker's clock), kept by claim, finalize, reject and restore, for listing without a scan;
  housekeeping trims ``runs:ended`` (:meth:`RunStore.trim_ended`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from runpoller.protocol import DeadLetter, Keys
from runpoller.redis import scripts
from runpoller.secrets import scrub

# Read by liveness.py's heartbeat thread too: both beats run this very text.
_HEARTBEAT = scripts.source("heartbeat")

ORPHAN_LOCK_TTL_MS = 10_000
"""How long the orphan re-enqueue lock lives if its holder never releases it."""


def _version() -> str:
    try:
        return importlib.metadata.version("runpoller")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


VERSION = _version()
"""This worker's runpoller version, in every heartbeat (what the dashboard shows)."""


def heartbeat_args(worker_id: str, ttl_ms: int, in_flight: int) -> list[Any]:
    """ARGV of the heartbeat script (shared with the heartbeat thread, worker/liveness.py);
    the second is the beat's time in epoch ms."""
    now_ms = int(time.time() * 1000)
    beat = {"ts": now_ms, "in_flight": in_flight, "version": VERSION}
    return [worker_id, now_ms, ttl_ms, json.dumps(beat)]


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Literal["new", "resumed", "owned", "done"]
    job_json: str | None = None
    state_json: str | None = None
    owner: str | None = None
    cancel: str | None = None
    """The app's cancel request for the run, read in the claim's own atomic step: its reason
    ("" if it gave none), or None when there is none (read for ``new`` and ``resumed``)."""


@dataclass(frozen=True, slots=True)
class _ClaimCall:
    run_id: str
    job_json: str
    state_json: str
    accepted: str


CLAIM_BATCH_MAX = 500
"""At most this many runs per claim script call (one queue read: see arqworker.py)."""


class _ClaimBatcher:
    """Gathers the claims made in one event-loop turn into one script call.

    An intake batch runs its jobs' handlers concurrently; each claims its run. Sent one by
    one, that is a round trip, a script call and a loop wake-up per run in a loop already
    busy polling thousands of runs; gathered, it is one of each per batch. Each caller still
    awaits its own claim (and gets its own error), so admission stays one job at a time.
    A caller alone waits one loop turn longer than it used to.

    (aiodataloader's ``DataLoader`` does this gathering for reads by key, with a per-key
    cache; a claim is a write, each call distinct, so the few lines here fit better.)
    """

    def __init__(self, send: Callable[[Sequence[_ClaimCall]], Awaitable[list[Claim]]]) -> None:
        self._send = send
        self._pending: list[tuple[_ClaimCall, asyncio.Future[Claim]]] = []
        self._flush: asyncio.Task[None] | None = None

    def claim(self, call: _ClaimCall) -> asyncio.Future[Claim]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Claim] = loop.create_future()
        self._pending.append((call, future))
        if self._flush is None:
            self._flush = loop.create_task(self._flush_soon())
        return future

    async def _flush_soon(self) -> None:
        # Let every handler started in this loop turn reach its claim first.
        await asyncio.sleep(0)
        batch, self._pending, self._flush = self._pending, [], None
        for start in range(0, len(batch), CLAIM_BATCH_MAX):
            part = batch[start : start + CLAIM_BATCH_MAX]
            try:
                claims = await self._send([call for call, _ in part])
            except Exception as exc:
                for _, future in part:
                    if not future.done():
                        future.set_exception(exc)
                continue
            except BaseException:  # cancelled: so is every claim not answered yet
                for _, future in batch[start:]:
                    future.cancel()
                raise
            for (_, future), claim in zip(part, claims, strict=True):
                if not future.done():
                    future.set_result(claim)


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _claim(outcome: Any, cancel: Any, a: Any, b: Any) -> Claim:
    """One run's four values of ``claim.lua``'s reply."""
    asked = _s(cancel)
    match _s(outcome):
        case "resumed":
            return Claim("resumed", _s(a), _s(b), cancel=asked)
        case "owned":
            return Claim("owned", owner=_s(a))
        case "done":
            return Claim("done")
        case _:
            return Claim("new", cancel=asked)


def _str(value: Any) -> str:
    """A stream name or entry id as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else str(value)


class RunStore:
    """All of a worker's Redis operations on runs."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        worker_id: str,
        maxlen: int,
        ttl_s: int,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.worker_id = worker_id
        self.maxlen = maxlen
        self.ttl_s = ttl_s
        self._claim = scripts.register(redis, "claim")
        self._publish = scripts.register(redis, "publish")
        self._finalize = scripts.register(redis, "finalize")
        self._reject = scripts.register(redis, "reject")
        self._heartbeat = scripts.register(redis, "heartbeat")
        self._release = scripts.register(redis, "release")
        self._unlock = scripts.register(redis, "unlock")
        self._restore = scripts.register(redis, "restore")
        self._claims = _ClaimBatcher(self.claim_many)

    async def claim(self, run_id: str, job_json: str, state_json: str, accepted: str) -> Claim:
        """Create the run record (first enqueue) or take over an unowned one; a new run is
        listed in the active index. The claims of one loop turn go in one script call
        (:class:`_ClaimBatcher`); the app's cancel request comes back with the claim."""
        return await self._claims.claim(_ClaimCall(run_id, job_json, state_json, accepted))

    async def claim_many(self, calls: Sequence[_ClaimCall]) -> list[Claim]:
        """:meth:`claim` for each of ``calls``, in one script call (``claim.lua``)."""
        if not calls:
            return []
        keys = [self.keys.owned(self.worker_id), self.keys.runs_active, self.keys.runs_ended]
        args: list[Any] = [self.worker_id, self.keys.heartbeat(""), self.ttl_s, self.maxlen]
        args.append(_now_ms())
        for call in calls:
            run_id = call.run_id
            keys += (self.keys.run(run_id), self.keys.events(run_id), self.keys.cancel(run_id))
            args += (run_id, call.job_json, call.state_json, call.accepted)
        reply = await self._claim(keys=keys, args=args)
        return [_claim(*reply[i : i + 4]) for i in range(0, len(reply), 4)]

    async def publish(
        self, run_id: str, state_json: str, events: Sequence[tuple[str, str]] = ()
    ) -> int:
        """Persist the state and append events, fenced by ownership.

        1 written; 0 this worker no longer owns the run; -2 the run has no record (Redis lost
        its data: :meth:`restore` it). With no events it is the fenced claim that comes before
        a request that must not be sent twice.
        """
        args: list[Any] = [self.worker_id, state_json, self.maxlen]
        for kind, data in events:
            args.extend((kind, data))
        ok = await self._publish(keys=[self.keys.run(run_id), self.keys.events(run_id)], args=args)
        return int(ok)

    async def restore(self, run_id: str, job_json: str, state_json: str) -> bool:
        """Re-create a run's record from the driver's memory after Redis lost it; False (and
        nothing written) when the run has a record again."""
        restored = await self._restore(
            keys=[self.keys.run(run_id), self.keys.owned(self.worker_id), self.keys.runs_active],
            args=[self.worker_id, job_json, state_json, self.ttl_s, run_id, _now_ms()],
        )
        return bool(restored)

    async def finalize(
        self,
        run_id: str,
        state_json: str,
        final: str,
        status: str,
        events: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Write the final event and result once: 1 written, 0 already final, -1 not owner,
        -2 no record (Redis lost its data: :meth:`restore` it first).

        ``events`` (type, data) are appended just before the final event, in the same script
        (the terminal ``status`` event, held while the results were fetched). Also counts
        the outcome in a per-minute hash, for ``runpoller stats``, and moves the run from the
        active index to the ended one.
        """
        now_ms = _now_ms()
        minute = now_ms // 60_000
        result = await self._finalize(
            keys=[
                self.keys.run(run_id),
                self.keys.events(run_id),
                self.keys.result(run_id),
                self.keys.owned(self.worker_id),
                self.keys.outcomes(minute),
                self.keys.runs_active,
                self.keys.runs_ended,
            ],
            args=[
                self.worker_id,
                state_json,
                self.maxlen,
                final,
                self.ttl_s,
                run_id,
                status,
                now_ms,
                *(part for event in events for part in event),
            ],
        )
        return int(result)

    async def reject(self, run_id: str, final: str, status: str = "error") -> bool:
        """Record a final error for an invalid job naming a run that does not exist yet (and
        list it in the ended index; counted in the minute's outcomes, as a finalize is)."""
        now_ms = _now_ms()
        result = await self._reject(
            keys=[
                self.keys.run(run_id),
                self.keys.events(run_id),
                self.keys.result(run_id),
                self.keys.runs_active,
                self.keys.runs_ended,
                self.keys.outcomes(now_ms // 60_000),
            ],
            args=[self.maxlen, final, self.ttl_s, run_id, now_ms, status],
        )
        return bool(result)

    async def trim_ended(self) -> int:
        """Drop from the ended index the runs whose records have expired (ended more than the
        record TTL ago); housekeeping's, once a minute, so a finalize does not pay for it."""
        cutoff = _now_ms() - 1000 * self.ttl_s
        return int(await self.redis.zremrangebyscore(self.keys.runs_ended, "-inf", f"({cutoff}"))

    async def dead_letter(self, reason: str, raw: str) -> None:
        letter = DeadLetter(
            reason=scrub(reason), raw=scrub(raw[:8192])[:4096], ts=int(time.time() * 1000)
        )
        await self.redis.xadd(
            self.keys.dead_letters,
            {"data": letter.model_dump_json()},
            maxlen=10_000,
            approximate=True,
        )

    async def heartbeat(self, ttl_ms: int, in_flight: int) -> bool:
        """Renew this worker's lease; False if it had lapsed (others may have taken our runs)."""
        alive = await self._heartbeat(
            keys=[self.keys.heartbeat(self.worker_id), self.keys.workers],
            args=heartbeat_args(self.worker_id, ttl_ms, in_flight),
        )
        return bool(alive)

    async def release(self, worker_id: str, *, force: bool = False) -> int:
        """Move a dead (or, forced, a stopping) worker's runs to the orphan set."""
        result = await self._release(
            keys=[
                self.keys.workers,
                self.keys.orphans,
                self.keys.heartbeat(worker_id),
                self.keys.owned(worker_id),
            ],
            args=[worker_id, self.keys.run(""), "1" if force else "0"],
        )
        return int(result)

    async def worker_event(self, kind: str, **fields: Any) -> None:
        """Note a cluster event (a dead worker detected, a worker handing off) for operators."""
        data = json.dumps({"type": kind, "ts": int(time.time() * 1000), **fields})
        await self.redis.xadd(
            self.keys.worker_events, {"data": data}, maxlen=1000, approximate=True
        )

    async def worker_loads(self) -> dict[str, int]:
        """In-flight runs of every live worker, from their heartbeats."""
        raw = await self.redis.zrange(self.keys.workers, 0, -1)
        ids = [w for w in (_s(x) for x in raw) if w]
        if not ids:
            return {}
        values = await self.redis.mget([self.keys.heartbeat(w) for w in ids])
        loads = {}
        for worker_id, value in zip(ids, values, strict=True):
            if value is not None:
                try:
                    loads[worker_id] = int(json.loads(value)["in_flight"])
                except (ValueError, KeyError, TypeError):
                    continue
        return loads

    async def stale_workers(self, older_than_ms: int) -> list[str]:
        cutoff = int(time.time() * 1000) - older_than_ms
        raw = await self.redis.zrangebyscore(self.keys.workers, "-inf", cutoff)
        return [w for w in (_s(x) for x in raw) if w]

    async def orphans(self, count: int = 500) -> list[str]:
        raw: Any = await self.redis.srandmember(self.keys.orphans, count)  # type: ignore[misc]
        return [r for r in (_s(x) for x in raw or []) if r]

    async def forget_orphans(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            await self.redis.srem(self.keys.orphans, *run_ids)  # type: ignore[misc]

    async def owners(self, run_ids: Sequence[str]) -> list[str | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(self.keys.run(run_id), "owner")
            return [_s(x) for x in await pipe.execute()]

    @contextlib.asynccontextmanager
    async def orphan_lock(self, ttl_ms: int = ORPHAN_LOCK_TTL_MS) -> AsyncIterator[bool]:
        """Hold the orphan re-enqueue lock (one worker at a time); yields whether it is held.

        Fenced: the lock's value is a token of this holding, and it is released by a
        compare-and-delete script, so a holder that outlived ``ttl_ms`` cannot delete the lock
        another worker has taken since. Not held: yields False and releases nothing.
        """
        key = self.orphan_lock_key
        token = f"{self.worker_id}:{secrets.token_hex(8)}"
        held = bool(await self.redis.set(key, token, nx=True, px=ttl_ms))
        try:
            yield held
        finally:
            if held:
                await self._unlock(keys=[key], args=[token])

    @property
    def orphan_lock_key(self) -> str:
        """The key of :meth:`orphan_lock` (a string holding the holder's token)."""
        return f"{self.keys.orphans}:lock"

    async def run_exists(self, run_id: str) -> bool:
        """Whether the run has a record (a resume job for an expired one is dead-lettered)."""
        return bool(await self.redis.exists(self.keys.run(run_id)))

    async def queue_sample(self, queue_name: str, now_ms: float) -> tuple[int, int, float]:
        """Ready and deferred job counts of an arq queue, and the oldest ready job's age in s.

        One pipelined round trip, for the queue-depth metrics; the age is 0.0 when no job is
        due.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(queue_name, "-inf", now_ms)
            pipe.zcount(queue_name, f"({now_ms}", "+inf")
            pipe.zrange(queue_name, 0, 0, withscores=True)
            ready, deferred, head = await pipe.execute()
        age = (now_ms - head[0][1]) / 1000 if head and head[0][1] <= now_ms else 0.0
        return int(ready), int(deferred), float(age)

    async def replies_since(
        self, entry_id_min: str, count: int = 10_000
    ) -> list[tuple[str, dict[Any, Any]]]:
        """Entries of the replies stream from ``entry_id_min`` on, to replay after a takeover.

        Fields are as the client returns them (bytes unless it decodes); ids are str.
        """
        entries = await self.redis.xrange(self.keys.replies, min=entry_id_min, max="+", count=count)
        return [(_str(entry_id), fields) for entry_id, fields in entries]

    async def read_inbox(
        self, cursors: Mapping[str, str], block_ms: int = 1000, count: int = 500
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        """Wait up to ``block_ms`` for entries after the ``cursors`` (stream -> last id seen).

        The worker's inbox is the replies and the control stream (``keys.replies``,
        ``keys.control``; ``$`` for "only new ones"). Returns (stream, entries) per stream
        with news, names and ids as str, fields as the client returns them; [] when none came.
        The caller advances its cursors.
        """
        streams: dict[Any, Any] = dict(cursors)  # a copy: the caller's cursors stay its own
        reply = await self.redis.xread(streams, block=block_ms, count=count)
        return [
            (_str(stream), [(_str(entry_id), fields) for entry_id, fields in entries])
            for stream, entries in reply or []
        ]

    async def ping(self) -> bool:
        """Whether Redis answers (a readiness probe); raises as the client does when it does not."""
        return bool(await self.redis.ping())

    async def stream_positions(self, streams: Sequence[str]) -> dict[str, str]:
        """Each stream's last entry id now, or ``0-0`` when it is empty or does not exist.

        A reader starts from these (never from ``$``, which means "after whatever is last when
        this very call arrives" and so skips entries written between two calls): an entry
        written after this call is read, one written before is not, and a stream created
        later is read from its first entry. One pipelined round trip.
        """
        async with self.redis.pipeline(transaction=False) as pipe:
            for stream in streams:
                pipe.xrevrange(stream, max="+", min="-", count=1)
            lasts = await pipe.execute()
        return {
            stream: _str(last[0][0]) if last else "0-0"
            for stream, last in zip(streams, lasts, strict=True)
        }


def _now_ms() -> int:
    """This process's clock in epoch ms, for the scripts' index scores (never Redis's clock)."""
    return int(time.time() * 1000)
