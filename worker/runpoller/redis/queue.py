"""The arq queue as the worker's intake and housekeeping use it: take, load, settle, enqueue.

Taking and settling keep arq's own claim protocol (``SET arq:in-progress:<id> NX PX``), so
they run safely beside plain arq workers on the same queue; each is one script for a whole
queue read (``intake_take.lua``, ``intake_settle.lua``). See runpoller/worker/intake.py for
why the worker takes jobs in batches.
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


class JobQueue:
    def __init__(self, redis: Redis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self._take = scripts.register(redis, "intake_take")
        self._settle = scripts.register(redis, "intake_settle")

    async def take(self, job_ids: Sequence[str], now_ms: int, lease_ms: int) -> list[str]:
        """Claim the due jobs among ``job_ids`` for ``lease_ms``: the ids of those taken."""
        if not job_ids:
            return []
        reply = await self._take(
            keys=[self.queue_name, *(in_progress_key_prefix + job_id for job_id in job_ids)],
            args=[now_ms, lease_ms, *job_ids],
        )
        return [_text(r) for r in reply]

    async def bodies(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The serialized jobs, in order (None where a job's body is gone)."""
        result: list[bytes | None] = await self.redis.mget(
            [job_key_prefix + job_id for job_id in job_ids]
        )
        return result

    async def settle(self, done: Sequence[str], deferred: Sequence[tuple[str, int]]) -> None:
        """Delete finished jobs; put deferred ones back in the queue at their new score."""
        if not done and not deferred:
            return
        keys = [self.queue_name]
        for job_id in done:
            keys.extend(prefix + job_id for prefix in _FINISHED_KEY_PREFIXES)
        keys.extend(in_progress_key_prefix + job_id for job_id, _ in deferred)
        args: list[Any] = [len(done), *done]
        for job_id, score in deferred:
            args.extend((job_id, score))
        await self._settle(keys=keys, args=args)


async def enqueue_resume(redis: ArqRedis, queue_name: str, run_id: str, job_id: str) -> None:
    """A ``runpoller.resume`` job for a released run (arq's own enqueue, JSON-serialized)."""
    await redis.enqueue_job(FN_RESUME, run_id, _job_id=job_id, _queue_name=queue_name)
