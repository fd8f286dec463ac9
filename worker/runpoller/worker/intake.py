"""Batched intake: take ready arq jobs a batch at a time, in two script calls.

arq's ``Worker.start_jobs`` claims one job at a time: WATCH/EXISTS/ZSCORE/MULTI/PSETEX/EXEC,
then MULTI/GET/INCR/EXPIRE/EXEC to load it, then MULTI/ZREM/ZREM/DEL/EXEC to finish it:
sixteen commands and four round trips per job, each round trip waiting its turn in an event
loop that is busy polling thousands of runs. Our jobs only hand a run to the in-process
runner and return within milliseconds, so this module claims every ready job of one queue
read in a single script, runs the batch concurrently, and settles the whole batch (delete the
finished, re-schedule the deferred) in a second script.

It keeps arq's claim protocol, so it runs safely beside arq's own workers on the same queue:
a job is taken by ``SET arq:in-progress:<id> <worker id> NX PX <lease>`` only while its score
in the queue is due, and while that key lives no other worker (ours or arq's) starts it.
Taking a job also moves its score to the end of the lease, so no worker reads it as due (and
tries it again) while the batch runs; arq's workers skip a job whose score is in the future
too. A job that is never settled because Redis went away mid-batch becomes due again when its
lease ends, and intake is idempotent (the run claim in ``runpoller.redis.store`` decides). One
whose worker died is given back sooner: each worker records what it took
(``<queue>:taken:<id>``), and the housekeeping that reaps it makes those jobs due again at
once (runpoller.redis.queue).

How much it takes: a batch takes no more jobs than the worker's capacity allows
(:meth:`~runpoller.worker.capacity.Capacity.headroom`; none at all when the spreading rule or
the cap refuses it), so it never hides from the other workers jobs it cannot hold. A job its
handler defers anyway goes back at the score the handler asked for: due at once, for the
spreading rule. A worker above the cluster average takes only jobs due for a moment already,
leaving the freshest to the workers below it.

What it does not keep: arq's per-job retry counter (``arq:retry:<id>``; our functions have
no try limit that matters: ``max_tries`` is 100,000) and arq's job results (``keep_result=0``
for all of them anyway). While a job is taken, the queue-depth metric counts it as deferred.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from arq import Retry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runpoller.protocol import FN_DEAD_LETTER
from runpoller.protocol.serde import deserialize_job
from runpoller.redis.queue import JobQueue

log = structlog.get_logger("runpoller.intake")

# A handler gets the job's positional and keyword arguments, its enqueue time (epoch s) and
# its try number, as arq's function would.
Handler = Callable[[Sequence[Any], Mapping[str, Any], float, int], Awaitable[Any]]

_LEAVE_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError, TimeoutError)


@dataclass
class BatchResult:
    """What happened to one batch (for metrics, logs and tests)."""

    done: list[str] = field(default_factory=list)
    deferred: list[tuple[str, int]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    """Taken but neither finished nor deferred (Redis failed): taken again when the lease ends."""
    failed: int = 0
    """Handlers that raised: their jobs were dead-lettered and finished."""


class BatchIntake:
    """Claims, runs and settles batches of arq jobs of one queue."""

    def __init__(
        self,
        redis: Redis,
        queue_name: str,
        handlers: Mapping[str, Handler],
        *,
        worker_id: str,
        lease_ms: int,
        headroom: Callable[[int], int] | None = None,
        wait_s: Callable[[], float] | None = None,
        spare: Callable[[int], int] | None = None,
        refresh: Callable[[int], Awaitable[None]] | None = None,
        fair_share: Callable[[int], int] | None = None,
        overdue_s: float = 1.0,
        job_timeout_s: float = 30.0,
        concurrency: int = 64,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.queue_name = queue_name
        self.handlers = dict(handlers)
        self.lease_ms = lease_ms
        self.headroom = headroom
        """How many of n ready jobs to take (None: all of them)."""
        self.wait_s = wait_s
        """How long a job must have been due before this worker takes it (None: 0)."""
        self.spare = spare
        """How many of n jobs fit under the cap, spreading aside (None: as ``headroom``)."""
        self.fair_share = fair_share or (lambda n: n)
        """How many of n overdue jobs one batch may take (None: all of them)."""
        self.refresh = refresh
        """Called with the number of ready jobs before a batch is sized: brings the view of
        the other workers' loads up to date when a burst could pile onto this worker."""
        self.overdue_s = overdue_s
        """A job due this long that no worker took is anyone's with room (see run())."""
        self.job_timeout_s = job_timeout_s
        self.concurrency = concurrency
        self._background: set[asyncio.Future[Any]] = set()
        self.clock = clock
        self.queue = JobQueue(redis, queue_name, worker_id)

    async def take(
        self, job_ids: Sequence[bytes | str], limit: int | None = None, wait_s: float = 0.0
    ) -> list[str]:
        """Claim up to ``limit`` of the jobs among ``job_ids`` due for ``wait_s`` at least: the
        ids of those taken."""
        ids = [j.decode() if isinstance(j, bytes) else j for j in job_ids]
        now_ms = int(self.clock() * 1000)
        return await self.queue.take(
            ids, now_ms, self.lease_ms, limit, due_by_ms=now_ms - int(wait_s * 1000)
        )

    async def settle(self, done: Sequence[str], deferred: Sequence[tuple[str, int]]) -> None:
        """Delete finished jobs; put deferred ones back in the queue at their new score."""
        settled = await self.queue.settle(done, deferred)
        if settled < len(done) + len(deferred):
            # Our lease lapsed, reaping gave these jobs back and another worker took them.
            log.warning("intake.taken_over", jobs=len(done) + len(deferred) - settled)

    async def run(self, job_ids: Sequence[bytes | str]) -> BatchResult:
        """Take what is due among ``job_ids`` (as many as the worker can hold), run each job's
        handler, settle the batch."""
        result = BatchResult()
        if not job_ids:
            return result
        if self.refresh is not None:
            await self.refresh(len(job_ids))
        room = None if self.headroom is None else self.headroom(len(job_ids))
        wait_s = 0.0 if self.wait_s is None else self.wait_s()
        taken = await self.take(job_ids, room, wait_s) if room != 0 else []
        if self.spare is not None and len(taken) < len(job_ids):
            # The spreading rule's view of the others' loads is up to one heartbeat old: two
            # workers that each think the other lighter would both leave a burst alone until
            # the next beat. Jobs no worker took for overdue_s are anyone's with room under
            # the cap, so intake never stalls on stale loads; a fair share per batch (the
            # ready jobs over the live workers), so the worker that polls first does not
            # take a whole burst once it is overdue while the others take their headroom.
            extra = min(self.spare(len(job_ids)) - len(taken), self.fair_share(len(job_ids)))
            if extra > 0:
                done = set(taken)
                rest = [j for j in job_ids if _text(j) not in done]
                taken += await self.take(rest, extra, max(wait_s, self.overdue_s))
        if not taken:
            return result
        bodies = await self.queue.bodies(taken)
        # At most ``concurrency`` at a time (each in-flight Redis command holds a connection of
        # its own; 500 at once would open 500), started in order (the semaphore is FIFO): a
        # handler that reserves capacity before its first await sees the reservations of the
        # jobs before it. The claims of the handlers started together go in one script call
        # (RunStore.claim gathers them), so the common path holds one connection for all of
        # them: the bound is for the rarer paths (refusals, duplicates, replays), each with
        # I/O of its own.
        limit = asyncio.Semaphore(self.concurrency)
        # Every job must be settled within its lease: one not started by this time (a slow
        # batch: Redis browning out) goes back to the queue at once instead, and one started
        # has job_timeout_s left before it is given up.
        start_by = self.clock() + max(self.lease_ms / 1000 - self.job_timeout_s - 5, 1.0)

        async def bounded(job_id: str, body: bytes | None) -> str | int:
            async with limit:
                if self.clock() > start_by:
                    return 0  # a deferral of 0 ms: due again now, for any worker
                return await self._one(job_id, body)

        outcomes = await asyncio.gather(
            *(bounded(job_id, body) for job_id, body in zip(taken, bodies, strict=True))
        )
        now_ms = int(self.clock() * 1000)
        for job_id, outcome in zip(taken, outcomes, strict=True):
            if outcome == "done":
                result.done.append(job_id)
            elif outcome == "failed":
                result.done.append(job_id)
                result.failed += 1
            elif isinstance(outcome, int):
                result.deferred.append((job_id, now_ms + outcome))
            else:
                result.left.append(job_id)
        await self.settle(result.done, result.deferred)
        return result

    def _background_done(self, task: asyncio.Future[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("job.slow_failed", error=type(task.exception()).__name__)

    async def _one(self, job_id: str, body: bytes | None) -> str | int:
        """``done``, ``failed`` (dead-lettered), ``left``, or a deferral in ms."""
        if body is None:
            log.warning("job.expired", job_id=job_id, why="the job body is gone")
            return "done"
        job = deserialize_job(body)
        handler = self.handlers.get(job["f"])
        if handler is None:  # the serializer only lets known functions through
            handler = self.handlers[FN_DEAD_LETTER]
            job = {**job, "f": FN_DEAD_LETTER, "a": [body.decode("utf-8", "replace"), "no handler"]}
        enqueue_s = job["et"] / 1000
        job_try = job["t"] if isinstance(job["t"], int) and job["t"] > 0 else 1
        # Shielded: a handler that outlives its timeout is not cancelled half-way (between
        # claiming a run and adopting it, say); it finishes in the background and the job,
        # left in the queue, is taken again when its lease ends (intake is idempotent).
        task = asyncio.ensure_future(handler(job["a"], job["k"], enqueue_s, job_try))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.job_timeout_s)
        except TimeoutError:
            self._background.add(task)
            task.add_done_callback(self._background_done)
            log.warning("job.slow", job_id=job_id, function=job["f"], timeout_s=self.job_timeout_s)
            return "left"
        except Retry as exc:
            return int(exc.defer_score or 0)
        except _LEAVE_ERRORS as exc:
            log.warning("job.left", job_id=job_id, function=job["f"], error=type(exc).__name__)
            return "left"
        except Exception as exc:
            log.exception("job.crashed", job_id=job_id, function=job["f"])
            reason = f"{job['f']} raised {type(exc).__name__}: {str(exc)[:300]}"
            try:
                await self.handlers[FN_DEAD_LETTER](
                    [body.decode("utf-8", "replace"), reason], {}, enqueue_s, job_try
                )
            except Exception:
                log.exception("job.dead_letter_failed", job_id=job_id)
                return "left"
            return "failed"
        return "done"


def _text(job_id: bytes | str) -> str:
    return job_id.decode() if isinstance(job_id, bytes) else job_id
