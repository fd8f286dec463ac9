"""arq glue: our three functions, the worker's options, and the arq worker class we run.

arq claims, loads and finishes one job at a time and exits when Redis fails under it; the
:class:`ResilientWorker` hands each queue read to the batch intake (intake.py) and survives an
outage. arq's own CLI (``arq module.WorkerSettings``) always builds arq's plain ``Worker``,
with neither, so runpoller's entry point is ``runpoller worker`` (see runpoller/main.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable
from typing import Any

from arq.worker import Function, Worker, func
from redis.exceptions import ResponseError

from runpoller.config import ConfigError, Settings
from runpoller.logs import configure_logging
from runpoller.protocol import FN_DEAD_LETTER, FN_RESUME, FN_RUN
from runpoller.protocol.serde import deserialize_job, serialize_job
from runpoller.redis.connection import (
    REDIS_ERRORS,
    OutageMonitor,
    arq_redis,
    monitor_for,
    redis_settings,
)
from runpoller.redis.url import mask, parse
from runpoller.worker.app import WorkerApp

# arq calls these only where our batch intake does not (plain arq beside us, tests).


async def _run_job(ctx: dict[str, Any], job: Any) -> str:
    app: WorkerApp = ctx["app"]
    return await app.admission.intake(job, ctx["enqueue_time"].timestamp(), ctx.get("job_try", 1))


async def _resume_job(ctx: dict[str, Any], run_id: Any) -> str:
    app: WorkerApp = ctx["app"]
    return await app.admission.resume(run_id, ctx.get("job_try", 1))


async def _dead_letter_job(ctx: dict[str, Any], raw: str, reason: str) -> str:
    app: WorkerApp = ctx["app"]
    return await app.admission.dead_letter(raw, reason)


FUNCTIONS: list[Function] = [
    func(_run_job, name=FN_RUN, timeout=30, max_tries=100_000, keep_result=0),
    func(_resume_job, name=FN_RESUME, timeout=30, max_tries=100_000, keep_result=0),
    func(_dead_letter_job, name=FN_DEAD_LETTER, timeout=30, max_tries=3, keep_result=0),
]


def arq_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :class:`ResilientWorker` (arq's ``Worker`` parameters)."""
    outage = monitor_for(settings.redis_url)

    async def on_connecting(ctx: dict[str, Any]) -> None:
        # Before the first Redis command: the probes answer (readiness "redis unreachable")
        # and the outage is logged while Redis does not answer yet.
        configure_logging(settings)
        app = WorkerApp(settings, ctx["redis"], outage=outage)
        ctx["app_starting"] = app
        await app.begin()

    async def on_startup(ctx: dict[str, Any]) -> None:
        app = ctx.get("app_starting")
        if not isinstance(app, WorkerApp):  # started without on_connecting (plain arq)
            configure_logging(settings)
            app = WorkerApp(settings, ctx["redis"], outage=outage)
        await app.start()
        ctx["app"] = app
        # Start-up objects never die: keep the collector from rescanning them (gen-2 pauses
        # of 35 to 50 ms were the main source of poll-lateness tails in the benchmark).
        gc.collect()
        gc.freeze()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        app: WorkerApp | None = ctx.get("app")
        if app is not None:
            await app.close()

    return {
        "functions": FUNCTIONS,
        "redis_settings": redis_settings(settings.redis_url, outage),
        "queue_name": settings.queue_name,
        "poll_delay": settings.arq_poll_delay_s,
        "max_jobs": 20,
        # Ids read per queue poll: one intake batch (intake.py) takes them all at once.
        # (The settle script unpacks up to 3 keys per id: Lua's limit is ~8,000 values.)
        "queue_read_limit": 500,
        "job_timeout": 30,
        "keep_result": 0,
        "max_tries": 100_000,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "on_connecting": on_connecting,
        "redis_url": settings.redis_url,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "health_check_interval": 60,
        "ctx": {"outage": outage},
    }


class ResilientWorker(Worker):
    """arq's worker, made to survive a Redis outage instead of exiting.

    arq lets a connection error escape from its claim (WATCH → WatchError), from a job's
    start and from its health record, and the worker process dies. Here a failed poll
    iteration is logged (once per outage) and retried after a pause, and a claim that fails
    half-way gives back the slot it took.
    """

    _batch_task: asyncio.Future[Any] | None = None

    def __init__(
        self,
        *args: Any,
        redis_url: str | None = None,
        on_connecting: Callable[[dict[str, Any]], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> None:
        """``redis_url``: the pool is made by :func:`arq_redis` (every URL form, Sentinel
        included, waits out outages) instead of arq's ``create_pool``, whose start retries
        log every second and give up. ``on_connecting`` runs before the first command."""
        super().__init__(*args, **kwargs)
        self._redis_url = redis_url
        self._on_connecting = on_connecting

    async def main(self) -> None:
        if self._pool is None and self._redis_url is not None:
            self._pool = arq_redis(
                self._redis_url,
                self.outage,
                queue_name=self.queue_name,
                serializer=self.job_serializer,
                deserializer=self.job_deserializer,
            )
            self.ctx["redis"] = self._pool
        try:
            if self._on_connecting is not None:
                await self._on_connecting(self.ctx)
            await super().main()
        except ResponseError as exc:
            if "DB index is out of range" not in str(exc) or self._redis_url is None:
                raise
            await self._drop_pool()
            target = parse(self._redis_url)
            raise ConfigError(
                f"REDIS_URL ({mask(self._redis_url)}): Redis at {target.where} has no DB "
                f"{target.db} (it answered: {exc}); a Redis has DBs 0 to 15 unless its "
                "`databases` setting says more"
            ) from None
        except ConfigError:
            await self._drop_pool()
            raise

    async def _drop_pool(self) -> None:
        """A start that cannot go on: close the pool now, so that arq's close (which would
        send commands, waiting out any outage) has nothing left to do."""
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await pool.aclose()

    @property
    def outage(self) -> OutageMonitor:
        monitor = self.ctx.get("outage")
        if not isinstance(monitor, OutageMonitor):
            monitor = self.ctx["outage"] = OutageMonitor()
        return monitor

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """Take and run the whole read in one batch (see intake.py), arq's way before start."""
        app: WorkerApp | None = self.ctx.get("app")
        if app is None:
            return await self._start_jobs_one_by_one(job_ids)
        # Shielded: a SIGTERM (arq cancels its poll loop) lets the batch settle; close()
        # waits for it before the hand-off.
        task = asyncio.ensure_future(app.batch.run(job_ids))
        self._batch_task = task
        result = await asyncio.shield(task)
        self.jobs_complete += len(result.done) - result.failed
        self.jobs_failed += result.failed
        self.jobs_retried += len(result.deferred)

    async def _start_jobs_one_by_one(self, job_ids: list[bytes]) -> None:
        for job_id in job_ids:
            if self.job_counter >= self.max_jobs:
                return
            before = self.job_counter
            try:
                await super().start_jobs([job_id])
            except REDIS_ERRORS:
                if self.job_counter > before and job_id.decode() not in self.tasks:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def close(self) -> None:
        if self.ctx.get("app") is None:
            # Stopped before it started (Redis never answered): nothing to hand off, and
            # arq's close would wait for Redis to delete its health key.
            starting: WorkerApp | None = self.ctx.pop("app_starting", None)
            if starting is not None:
                await starting.close(handoff=False)
            await self._drop_pool()
        # arq awaits its job tasks without return_exceptions: after SIGTERM cancelled an
        # intake job, that gather raises and on_shutdown (our hand-off) never runs. Settle
        # the tasks here first, so the hand-off always happens.
        if self._batch_task is not None:
            await asyncio.gather(self._batch_task, return_exceptions=True)
        tasks = list(self.tasks.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
            self.tasks.clear()
        await super().close()

    async def _poll_iteration(self) -> None:
        try:
            await super()._poll_iteration()
        except REDIS_ERRORS as exc:
            self.outage.note_failure(exc)
            await asyncio.sleep(0.5)
        except ResponseError as exc:
            # An error reply (READONLY after a failover, OOM, BUSY, NOPERM) must not end the
            # worker: say what Redis answered (as an outage: at its start, once a minute,
            # at its end) and try again.
            self.outage.note_failure(exc)
            await asyncio.sleep(1.0)
        else:
            self.outage.note_success()


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    return ResilientWorker(**{**arq_options(settings), **overrides})
