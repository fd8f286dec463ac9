"""Redis I/O for runs: durable run records, ownership, event streams, results, liveness.

Each operation that must be atomic is one Lua script, so it costs one round trip and one
command. Ownership is fenced: every write checks that the run's ``owner`` is still this
worker, so a worker that was presumed dead (and whose runs were handed to others) can never
publish for a run it lost.

Keys (prefix ``runpoller`` by default; see ``runpoller.protocol.Keys`` and docs/protocol.md):

- ``run:<id>`` hash: ``job`` (JSON), ``state`` (engine state JSON), ``owner`` (worker id or
  empty), ``final`` (set once the final event is written).
- ``events:<id>`` stream of events (fields ``type`` and ``data``), capped and expiring.
- ``result:<id>`` the final event JSON, expiring.
- ``worker:<wid>`` heartbeat (PX TTL); ``workers`` zset of worker ids by last beat;
  ``owned:<wid>`` set of run ids a worker holds; ``orphans`` set of run ids to re-enqueue.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from runpoller.protocol import DeadLetter, Keys
from runpoller.secrets import scrub

_CLAIM = """
-- KEYS: run, owned(me), events
-- ARGV: me, heartbeat prefix, job json, state json, ttl s, run id, accepted data, maxlen
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return {'done'} end
  local owner = redis.call('HGET', KEYS[1], 'owner')
  if owner and owner ~= '' and owner ~= ARGV[1]
     and redis.call('EXISTS', ARGV[2] .. owner) == 1 then
    return {'owned', owner}
  end
  redis.call('HSET', KEYS[1], 'owner', ARGV[1])
  redis.call('SADD', KEYS[2], ARGV[6])
  return {'resumed', redis.call('HGET', KEYS[1], 'job'), redis.call('HGET', KEYS[1], 'state')}
end
redis.call('HSET', KEYS[1], 'job', ARGV[3], 'state', ARGV[4], 'owner', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SADD', KEYS[2], ARGV[6])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', 'type', 'accepted', 'data', ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[5])
return {'new'}
"""

_PUBLISH = """
-- KEYS: run, events ; ARGV: me, state json, maxlen, then pairs of (type, data)
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2])
for i = 4, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
end
return 1
"""

_FINALIZE = """
-- KEYS: run, events, result, owned(me), outcomes(this minute)
-- ARGV: me, state json, maxlen, final data, ttl, run id, final status, then pairs of
--       (type, data): events held back while the results were fetched, written first
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 0 end
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return -1 end
-- 1 means this field was just created (and the hash with it, if it is the first): set the
-- TTL then, not on every run.
if redis.call('HINCRBY', KEYS[5], ARGV[7], 1) == 1 then
  redis.call('EXPIRE', KEYS[5], 7200)
end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'final', '1', 'owner', '')
redis.call('HDEL', KEYS[1], 'job')
for i = 8, #ARGV, 2 do
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', ARGV[i], 'data', ARGV[i + 1])
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'type', 'final', 'data', ARGV[4])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SREM', KEYS[4], ARGV[6])
return 1
"""

_REJECT = """
-- A job that names a run but is invalid: record a final error unless the run exists.
-- KEYS: run, events, result ; ARGV: maxlen, final data, ttl
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'final', '1', 'owner', '')
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'type', 'final', 'data', ARGV[2])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""

_HEARTBEAT = """
-- KEYS: heartbeat, workers ; ARGV: me, now ms, ttl ms, value
local alive = redis.call('EXISTS', KEYS[1])
redis.call('SET', KEYS[1], ARGV[4], 'PX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return alive
"""

_RELEASE = """
-- Hand a worker's runs to the orphan set. Refuses (-1) while its heartbeat lives, unless forced.
-- KEYS: workers, orphans ; ARGV: wid, heartbeat key, owned key, run key prefix, force
if ARGV[5] ~= '1' and redis.call('EXISTS', ARGV[2]) == 1 then return -1 end
-- Already released by another worker's housekeeping: nothing to do, nothing to report.
if ARGV[5] ~= '1' and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return -1 end
local ids = redis.call('SMEMBERS', ARGV[3])
local n = 0
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  if redis.call('HGET', key, 'owner') == ARGV[1] then
    redis.call('HSET', key, 'owner', '')
    redis.call('SADD', KEYS[2], id)
    n = n + 1
  end
end
redis.call('DEL', ARGV[3])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[5] == '1' then redis.call('DEL', ARGV[2]) end
return n
"""


def heartbeat_args(worker_id: str, ttl_ms: int, in_flight: int) -> list[Any]:
    """ARGV of the heartbeat script (shared with the heartbeat thread, worker/liveness.py);
    the second is the beat's time in epoch ms."""
    now_ms = int(time.time() * 1000)
    return [worker_id, now_ms, ttl_ms, json.dumps({"ts": now_ms, "in_flight": in_flight})]


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: Literal["new", "resumed", "owned", "done"]
    job_json: str | None = None
    state_json: str | None = None
    owner: str | None = None


def _s(value: Any) -> str | None:
    if value is None:
        return None
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
        self._claim = redis.register_script(_CLAIM)
        self._publish = redis.register_script(_PUBLISH)
        self._finalize = redis.register_script(_FINALIZE)
        self._reject = redis.register_script(_REJECT)
        self._heartbeat = redis.register_script(_HEARTBEAT)
        self._release = redis.register_script(_RELEASE)

    async def claim(self, run_id: str, job_json: str, state_json: str, accepted: str) -> Claim:
        """Create the run record (first enqueue) or take over an unowned one."""
        reply = await self._claim(
            keys=[self.keys.run(run_id), self.keys.owned(self.worker_id), self.keys.events(run_id)],
            args=[
                self.worker_id,
                self.keys.heartbeat(""),
                job_json,
                state_json,
                self.ttl_s,
                run_id,
                accepted,
                self.maxlen,
            ],
        )
        outcome = _s(reply[0])
        if outcome == "resumed":
            return Claim("resumed", _s(reply[1]), _s(reply[2]))
        if outcome == "owned":
            return Claim("owned", owner=_s(reply[1]))
        if outcome == "done":
            return Claim("done")
        return Claim("new")

    async def publish(
        self, run_id: str, state_json: str, events: Sequence[tuple[str, str]]
    ) -> bool:
        """Persist the state and append events; False when this worker no longer owns the run."""
        args: list[Any] = [self.worker_id, state_json, self.maxlen]
        for kind, data in events:
            args.extend((kind, data))
        ok = await self._publish(keys=[self.keys.run(run_id), self.keys.events(run_id)], args=args)
        return bool(ok)

    async def finalize(
        self,
        run_id: str,
        state_json: str,
        final: str,
        status: str,
        events: Sequence[tuple[str, str]] = (),
    ) -> int:
        """Write the final event and result once: 1 written, 0 already final, -1 not owner.

        ``events`` (type, data) are appended just before the final event, in the same script
        (the terminal ``status`` event, held while the results were fetched). Also counts
        the outcome in a per-minute hash, for ``runpoller stats``.
        """
        minute = int(time.time() // 60)
        result = await self._finalize(
            keys=[
                self.keys.run(run_id),
                self.keys.events(run_id),
                self.keys.result(run_id),
                self.keys.owned(self.worker_id),
                self.keys.outcomes(minute),
            ],
            args=[
                self.worker_id,
                state_json,
                self.maxlen,
                final,
                self.ttl_s,
                run_id,
                status,
                *(part for event in events for part in event),
            ],
        )
        return int(result)

    async def reject(self, run_id: str, final: str) -> bool:
        """Record a final error for an invalid job naming a run that does not exist yet."""
        result = await self._reject(
            keys=[self.keys.run(run_id), self.keys.events(run_id), self.keys.result(run_id)],
            args=[self.maxlen, final, self.ttl_s],
        )
        return bool(result)

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
            keys=[self.keys.workers, self.keys.orphans],
            args=[
                worker_id,
                self.keys.heartbeat(worker_id),
                self.keys.owned(worker_id),
                self.keys.run(""),
                "1" if force else "0",
            ],
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
