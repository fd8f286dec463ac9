"""Housekeeping: the cluster's upkeep, once per heartbeat interval on every worker.

Release the runs of workers whose heartbeat lapsed (atomically, in the Redis room) and give
back the intake jobs they took and never settled (due at once, not when arq's lease ends),
re-enqueue orphaned runs as ``runpoller.resume`` jobs (one worker at a time, under a fenced
lock), sample the queue for the metrics, and refresh the other workers' loads for the
spreading rule. When this worker's own heartbeat lapsed, stop driving every run another worker
may have taken.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog
from arq.connections import ArqRedis

from runpoller.config import Settings
from runpoller.redis.queue import JobQueue, enqueue_resume
from runpoller.redis.store import RunStore
from runpoller.worker.capacity import Capacity
from runpoller.worker.driver import Runner, suppress_cancel
from runpoller.worker.metrics import Metrics

log = structlog.get_logger("runpoller.worker")

TRIM_ENDED_EVERY_S = 60.0
"""How often a worker trims the ended index of expired runs (a finalize no longer does)."""


class Housekeeping:
    def __init__(
        self,
        settings: Settings,
        redis: ArqRedis,
        store: RunStore,
        runner: Runner,
        capacity: Capacity,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.store = store
        self.runner = runner
        self.capacity = capacity
        self.metrics = metrics
        self.worker_id = store.worker_id
        self.queue = JobQueue(redis, settings.queue_name, store.worker_id)
        self.last_run = 0.0
        """When the last round finished (epoch s): the liveness probe judges its age."""
        self.trimmed_at = 0.0  # monotonic s of the last trim of the ended index

    async def loop(self) -> None:
        interval = self.settings.heartbeat_interval_ms / 1000
        while True:
            try:
                await self.once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping.failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def once(self) -> None:
        for worker_id in await self.store.stale_workers(self.settings.dead_worker_after_ms):
            if worker_id == self.worker_id:
                continue
            # Its intake jobs first: both are refused while its heartbeat lives, and if this
            # round fails half-way the worker is still listed, so the next round does both.
            jobs = await self.queue.release(
                worker_id, self.store.keys.heartbeat(worker_id), int(time.time() * 1000)
            )
            released = await self.store.release(worker_id)
            if released >= 0:
                self.metrics.workers_reaped.inc()
                log.warning(
                    "worker.dead",
                    dead_worker=worker_id,
                    runs_released=released,
                    intake_jobs_released=max(jobs, 0),
                )
                await self.store.worker_event(
                    "dead_worker", worker_id=worker_id, runs=released, by=self.worker_id
                )
        await self.requeue_orphans()
        await self._sample_queue()
        await self.refresh_loads()
        if time.monotonic() - self.trimmed_at >= TRIM_ENDED_EVERY_S:
            await self.store.trim_ended()
            self.trimmed_at = time.monotonic()
        self.last_run = time.time()
        self.metrics.last_activity.set(self.last_run)

    async def refresh_loads(self) -> None:
        """Read every live worker's load (from the heartbeats) for the spreading rule."""
        self.capacity.set_loads(await self.store.worker_loads(), time.monotonic())

    async def refresh_loads_for(self, ready: int) -> None:
        """Before a batch of ``ready`` jobs is sized: fresh loads when a burst could pile onto
        this worker and the view is older than one intake poll (two Redis commands)."""
        max_age = self.settings.arq_poll_delay_s
        if self.capacity.loads_stale(ready, time.monotonic(), max_age):
            try:
                await self.refresh_loads()
            except Exception as exc:  # Redis trouble: size the batch with what is known
                log.warning("intake.loads_unavailable", error=type(exc).__name__)

    async def _sample_queue(self) -> None:
        ready, deferred, age = await self.store.queue_sample(
            self.settings.queue_name, time.time() * 1000
        )
        self.metrics.queue_depth.labels("ready").set(ready)
        self.metrics.queue_depth.labels("deferred").set(deferred)
        self.metrics.oldest_ready_age.set(age)

    async def requeue_orphans(self) -> None:
        """Re-enqueue released runs; one worker at a time, so each gets one resume job."""
        async with self.store.orphan_lock() as held:
            if not held:
                return
            orphans = await self.store.orphans()
            for run_id in orphans:
                job_id = f"resume:{run_id}:{uuid.uuid4().hex[:8]}"
                await enqueue_resume(self.redis, self.settings.queue_name, run_id, job_id)
            if orphans:
                await self.store.forget_orphans(orphans)
                log.info("runs.requeued", count=len(orphans))

    async def drop_lost_runs(self) -> None:
        """Our heartbeat lapsed: stop driving every run another worker may have taken.

        A run with no record at all was taken by nobody: Redis lost its data (our heartbeat
        was forgotten with it). Those stay here and get their records back from memory.
        """
        run_ids = list(self.runner.runs)
        owners = await self.store.owners(run_ids) if run_ids else []
        # Taken out of the runner at once, with no await in between: a resume job for one of
        # them that runs later adopts it afresh instead of finding a driver about to stop.
        lost = [
            run
            for run_id, owner in zip(run_ids, owners, strict=True)
            if owner is not None
            and owner != self.worker_id
            and (run := self.runner.runs.pop(run_id, None)) is not None
        ]
        missing = [run_id for run_id, owner in zip(run_ids, owners, strict=True) if owner is None]
        self.runner.restore_missing(missing)
        for run in lost:
            await suppress_cancel(run.task)
        log.warning("worker.lease_lapsed", dropped=len(lost), restoring=len(missing))
