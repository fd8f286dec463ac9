"""The arq queue as the worker's intake and housekeeping use it: take, load, settle, enqueue.

Taking and settling keep arq's own claim protocol (``SET arq:in-progress:<id> NX PX``), so
they run safely beside plain arq workers on the same queue; each is one script for a whole
queue read (``intake_take.lua``, ``intake_settle.lua``). See runpoller/worker/intake.py for
why the worker takes jobs in batches.

Each worker records the jobs it has taken and not yet settled in ``<queue>:taken:<worker>``
(a zset: job id -> end of its lease), and its in-progress keys hold its id (arq's own hold
``1``; arq only checks that they exist). So reaping a dead worker gives its taken jobs back
at once (``intake_release.lua``, run by housekeeping), instead of leaving them until arq's
lease ends, and settling is fenced: a job given back and taken by another worker meanwhile
is left to that worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix
from redis.asyncio import Redis

from runpoller.protocol import FN_RESUME
from runpoller.redis import scripts

# The arq keys of a finished job, deleted when it is settled.
_FINISHED_KEY_PREFIXES = (in_progress_key_prefix, job_key_prefix, retry_key_prefix)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def taken_key(queue_name: str, worker_id: str) -> str:
    """The zset of the jobs ``worker_id`` took from ``queue_name`` and has not settled."""
    return f"{queue_name}:taken:{worker_id}"


class JobQueue:
    def __init__(self, redis: Redis, queue_name: str, worker_id: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.worker_id = worker_id
        self.taken_key = taken_key(queue_name, worker_id)
        self._take = scripts.register(redis, "intake_take")
        self._settle = scripts.register(redis, "intake_settle")
        self._release = scripts.register(redis, "intake_release")

    async def take(
        self,
        job_ids: Sequence[str],
        now_ms: int,
        lease_ms: int,
        limit: int | None = None,
        *,
        due_by_ms: int | None = None,
    ) -> list[str]:
        """Claim up to ``limit`` (default: all) of the jobs among ``job_ids`` due by
        ``due_by_ms`` (default: now) for ``lease_ms``: the ids of those taken, in order."""
        limit = len(job_ids) if limit is None else min(limit, len(job_ids))
        if limit <= 0:
            return []
        reply = await self._take(
            keys=[
                self.queue_name,
                self.taken_key,
                *(in_progress_key_prefix + job_id for job_id in job_ids),
            ],
            args=[
                now_ms,
                lease_ms,
                self.worker_id,
                limit,
                now_ms if due_by_ms is None else min(due_by_ms, now_ms),
                *job_ids,
            ],
        )
        return [_text(r) for r in reply]

    async def bodies(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The serialized jobs, in order (None where a job's body is gone)."""
        result: list[bytes | None] = await self.redis.mget(
            [job_key_prefix + job_id for job_id in job_ids]
        )
        return result

    async def settle(self, done: Sequence[str], deferred: Sequence[tuple[str, int]]) -> int:
        """Delete finished jobs; put deferred ones back in the queue at their new score.

        Returns how many were still this worker's (the others were given back by reaping and
        taken by another worker meanwhile: left to it).
        """
        if not done and not deferred:
            return 0
        keys = [self.queue_name, self.taken_key]
        for job_id in done:
            keys.extend(prefix + job_id for prefix in _FINISHED_KEY_PREFIXES)
        keys.extend(in_progress_key_prefix + job_id for job_id, _ in deferred)
        args: list[Any] = [self.worker_id, len(done), *done]
        for job_id, score in deferred:
            args.extend((job_id, score))
        return int(await self._settle(keys=keys, args=args))

    async def release(self, worker_id: str, heartbeat_key: str, now_ms: int) -> int:
        """Give back, due at once, the jobs a dead worker took and never settled.

        Returns how many; -1 (nothing done) while ``heartbeat_key`` lives: the worker is late,
        not dead.
        """
        reply = await self._release(
            keys=[self.queue_name, taken_key(self.queue_name, worker_id), heartbeat_key],
            args=[worker_id, in_progress_key_prefix, now_ms],
        )
        return int(reply)


async def enqueue_resume(redis: ArqRedis, queue_name: str, run_id: str, job_id: str) -> None:
    """A ``runpoller.resume`` job for a released run (arq's own enqueue, JSON-serialized)."""
    await redis.enqueue_job(FN_RESUME, run_id, _job_id=job_id, _queue_name=queue_name)
