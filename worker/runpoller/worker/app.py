"""The worker process: arq intake jobs, the run driver and housekeeping.

arq delivers each run once, as a short intake job (``runpoller.run``); the job validates it,
claims the run record in Redis and hands it to the in-process
:class:`~runpoller.worker.driver.Runner`, then returns in milliseconds. Runs released by dead
or stopping workers come back through arq as ``runpoller.resume`` jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import random
import re
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx
import structlog
from aiohttp import web
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Function, Worker, func
from pydantic import ValidationError
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError, WatchError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runpoller import engine
from runpoller.backends import Backend
from runpoller.backends.assistants import AssistantsBackend
from runpoller.backends.responses import ResponsesBackend
from runpoller.config import Settings
from runpoller.http.api import ApiClient, make_http_client
from runpoller.logs import configure_logging
from runpoller.protocol import (
    FN_DEAD_LETTER,
    FN_RESUME,
    FN_RUN,
    RUN_ID_PATTERN,
    ErrorInfo,
    FinalEvent,
    Keys,
    parse_reply,
)
from runpoller.protocol.serde import deserialize_job, serialize_job
from runpoller.redis.store import RunStore
from runpoller.secrets import SecretError, decrypt, is_encrypted
from runpoller.worker.driver import (
    AnyJob,
    Runner,
    accepted_event,
    describe_validation_error,
    parse_job,
    suppress_cancel,
)
from runpoller.worker.intake import BatchIntake, Handler
from runpoller.worker.liveness import LoopHeartbeat
from runpoller.worker.metrics import Metrics, start_http
from runpoller.worker.ratelimit import RateLimiter

log = structlog.get_logger("runpoller.worker")

_RUN_ID_CHARS = re.compile(RUN_ID_PATTERN)

# How long a taken intake job stays reserved (arq's in-progress key) when the worker that
# took it never settles it: arq's own in_progress_timeout for our 30 s job timeout.
INTAKE_LEASE_MS = 40_000


class RunRefused(Exception):
    """A job that is well-formed but cannot be run (missing key, bounds exceeded)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def policy_from(settings: Settings) -> engine.Policy:
    return engine.Policy(
        cancel_grace_s=settings.cancel_grace_ms / 1000,
        max_retry_after_s=settings.max_retry_after_s,
        supported_ids=frozenset(settings.supported_ids) if settings.supported_ids else None,
        excluded_ids=frozenset(settings.excluded_ids) if settings.excluded_ids else None,
        allowed_models=frozenset(settings.assistants_models)
        if settings.assistants_models
        else None,
        max_reply_bytes=settings.max_reply_bytes,
    )


class WorkerApp:
    """Everything one worker process holds; created in arq's ``on_startup``."""

    def __init__(
        self,
        settings: Settings,
        redis: ArqRedis,
        *,
        http: httpx.AsyncClient | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(settings.key_prefix)
        transport: httpx.AsyncBaseTransport | None = None
        if http is None:
            http, transport = make_http_client(
                settings.http_transport,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                max_connections=settings.http_concurrency,
            )
        self.http = http
        self.api = ApiClient(
            self.http,
            settings.assistants_base_url,
            assistants_version=settings.assistants_version,
            transport=transport,
        )
        backends: dict[str, Backend] = {
            "assistants_run": AssistantsBackend(self.api),
            "response": ResponsesBackend(self.api),
        }
        self.store = RunStore(
            redis,
            self.keys,
            worker_id=self.worker_id,
            maxlen=settings.event_stream_maxlen,
            ttl_s=settings.record_ttl_s,
        )
        self.metrics = Metrics()
        self.metrics.runs_in_flight.set_function(lambda: len(self.runner.runs))
        self.limiter = RateLimiter(
            redis,
            self.keys,
            requests=settings.rate_limit_requests,
            window_s=settings.rate_limit_window_s,
        )
        self.runner = Runner(
            self.store,
            backends,
            policy_from(settings),
            http_concurrency=settings.http_concurrency,
            metrics=self.metrics,
            limiter=self.limiter,
            max_result_bytes=settings.max_result_bytes,
        )
        self._http_runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self._key_ring = settings.key_ring
        self.cluster_loads: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._reserved = 0  # intake jobs past the capacity check, not yet adopted
        # The heartbeat beats from a thread while the loop makes progress (liveness.py):
        # a loop saturated by thousands of runs is late, not dead, and keeps its runs.
        self.liveness = LoopHeartbeat.from_settings(
            settings,
            self.worker_id,
            in_flight=lambda: len(self.runner.runs),
            on_lapse=self._drop_lost_runs,
        )
        self.batch = BatchIntake(
            redis, settings.queue_name, self.intake_handlers(), lease_ms=INTAKE_LEASE_MS
        )
        self.stopping = False
        self.last_housekeeping = 0.0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self.worker_id)
        await self.store.heartbeat(self.settings.dead_worker_after_ms, 0)
        self.liveness.start()
        self._tasks = [
            asyncio.create_task(self._housekeeping(), name="housekeeping"),
            asyncio.create_task(self._listen_replies(), name="replies"),
        ]
        if self.settings.metrics_port >= 0:
            self._http_runner, self.http_port = await start_http(
                self.metrics,
                self.settings.metrics_host,
                self.settings.metrics_port,
                self.healthz,
                self.readyz,
            )
        log.info(
            "worker.started",
            worker_id=self.worker_id,
            queue=self.settings.queue_name,
            metrics_port=self.http_port,
        )

    async def close(self, *, handoff: bool = True) -> None:
        """Stop driving runs and hand them to the other workers (they resume at once)."""
        self.stopping = True
        self.liveness.stop()
        for task in self._tasks:
            await suppress_cancel(task)
        in_flight = len(self.runner.runs)
        await self.runner.stop_runs()
        if handoff:
            with contextlib.suppress(Exception):
                released = await self.store.release(self.worker_id, force=True)
                await self._enqueue_orphans()
                await self.store.worker_event("handed_off", worker_id=self.worker_id, runs=released)
                log.info("worker.handed_off", runs=released, in_flight=in_flight)
        await self.http.aclose()
        if self._http_runner is not None:
            await self._http_runner.cleanup()

    async def healthz(self) -> tuple[bool, str]:
        """Alive: the event loop answers (this handler runs), the heartbeat thread runs and
        housekeeping is still going.

        A Redis outage is not a liveness failure (restarting would not help; readiness says
        it): housekeeping then waits on Redis, and its age is reported, not judged. A loop
        saturated by its runs is late, not dead: housekeeping may lag up to the stall limit.
        """
        task = self._tasks[0] if self._tasks else None
        if task is None or task.done():
            return False, "housekeeping has stopped"
        if not self.liveness.running:
            return False, "the heartbeat thread has stopped"
        age = time.time() - self.last_housekeeping
        s = self.settings
        limit = max(3 * s.heartbeat_interval_ms / 1000 + 1, s.loop_stall_limit_ms / 1000)
        if age > limit and self.runner.redis_down_since is None and not self._redis_waiting():
            return False, f"no housekeeping for {age:.1f}s (limit {limit:.1f}s)"
        return True, f"housekeeping {age:.1f}s ago"

    def _redis_waiting(self) -> bool:
        """Whether redis-py is retrying a command right now (an outage in progress)."""
        return time.monotonic() - _OutageBackoff.last_failure < 10

    async def readyz(self) -> tuple[bool, str]:
        """Ready for new runs: Redis answers, not shutting down, under capacity."""
        if self.stopping:
            return False, "shutting down"
        try:
            await asyncio.wait_for(self.redis.ping(), 1)
        except Exception as exc:
            return False, f"redis unreachable ({type(exc).__name__})"
        in_flight, cap = len(self.runner.runs), self.settings.max_runs_per_worker
        if in_flight >= cap:
            return False, f"at capacity ({in_flight}/{cap} runs)"
        return True, f"{in_flight}/{cap} runs"

    # ------------------------------------------------------------------ intake

    async def intake(self, raw: Any, enqueue_time: float, job_try: int = 1) -> str:
        """Validate a job, claim its run and start driving it. Never raises for bad input."""
        try:
            job = parse_job(raw)
        except ValidationError as exc:
            return await self._refuse_raw(raw, "invalid_job", describe_validation_error(exc))
        run_id = job.run_key
        try:
            api_key, timeout_s, interval_s = self._job_parameters(job)
        except RunRefused as exc:
            return await self._refuse(run_id, job.kind, exc.code, str(exc))
        self._check_capacity()
        state = engine.new_state(
            job.object_id, now=enqueue_time, timeout_s=timeout_s, interval_s=interval_s
        )
        stored = job.model_dump(mode="python", exclude_none=True)
        if job.api_key is not None:
            stored["api_key"] = job.api_key.get_secret_value()
        with self._reservation():
            claim = await self.store.claim(
                run_id,
                json.dumps(stored),
                state.to_json(),
                accepted_event(run_id, job, state, time.time),
            )
            if claim.outcome in ("owned", "done"):
                log.info("run.duplicate", run_id=run_id, outcome=claim.outcome, owner=claim.owner)
                return claim.outcome
            if claim.outcome == "resumed" and claim.state_json:
                state = engine.RunState.from_json(claim.state_json)
            if not self.runner.adopt(run_id, job, state, api_key):
                return "already_here"
        self.metrics.runs_accepted.labels(job.kind, claim.outcome).inc()
        await self._replay_replies(run_id, state)
        log.info("run.accepted", run_id=run_id, outcome=claim.outcome, job_try=job_try)
        return claim.outcome

    async def resume(self, run_id: str, job_try: int = 1) -> str:
        """Take over a run released by a dead or stopping worker."""
        if not isinstance(run_id, str) or not _RUN_ID_CHARS.fullmatch(run_id):
            await self.store.dead_letter("resume job with an invalid run id", repr(run_id))
            return "invalid"
        # Claim even a run this worker still drives: after our lease lapsed, another worker
        # may have released it (owner '') and queued this job; returning without claiming
        # would leave it with no owner at all.
        if run_id not in self.runner.runs:
            self._check_capacity()
        with self._reservation():
            if not await self.redis.exists(self.keys.run(run_id)):
                # The record expired (or never existed) before anyone resumed it.
                await self.store.dead_letter("resume of a run that has no record", run_id)
                self.metrics.dead_letters.inc()
                return "expired"
            claim = await self.store.claim(run_id, "", "", "")
            if claim.outcome != "resumed" or not claim.job_json or not claim.state_json:
                return claim.outcome
            if run_id in self.runner.runs:
                return "already_here"  # driven here, and owned by us again
            job = parse_job(json.loads(claim.job_json))
            state = engine.RunState.from_json(claim.state_json)
            try:
                api_key, _, _ = self._job_parameters(job)
            except RunRefused as exc:
                return await self._refuse(run_id, job.kind, exc.code, str(exc))
            if not self.runner.adopt(run_id, job, state, api_key):
                return "already_here"
        self.metrics.runs_accepted.labels(job.kind, "resumed").inc()
        self.metrics.runs_recovered.inc()
        await self._replay_replies(run_id, state)
        log.info("run.resumed", run_id=run_id, phase=state.phase.value, job_try=job_try)
        return "resumed"

    @contextlib.contextmanager
    def _reservation(self) -> Iterator[None]:
        """Count a job past the capacity check until its run is adopted (or not): the jobs
        of one intake batch run concurrently and must see each other's reservations."""
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1

    def _check_capacity(self) -> None:
        """Leave the job to another worker when this one is full, or well above the average.

        arq hands a job to whichever worker polls first; without this, bursts pile onto one
        worker. Loads of the others come from their heartbeats (refreshed every beat).
        """
        mine = len(self.runner.runs) + self._reserved
        if mine >= self.settings.max_runs_per_worker:
            raise Retry(defer=1)
        others = [n for wid, n in self.cluster_loads.items() if wid != self.worker_id]
        if others:
            average = (sum(others) + mine) / (len(others) + 1)
            if mine > average * 1.15 + 2:
                raise Retry(defer=0.05 + random.random() * 0.05)

    def _job_parameters(self, job: AnyJob) -> tuple[str, float, float]:
        s = self.settings
        if job.api_key is not None:
            api_key = self._job_key(job.api_key.get_secret_value())
        elif s.assistants_api_key is None:
            raise RunRefused(
                "missing_api_key", "no API key: set ASSISTANTS_API_KEY or give api_key in the job"
            )
        elif s.user_provided_key:
            raise RunRefused(
                "missing_api_key",
                "ASSISTANTS_API_KEY is user_provided: the job must carry its own api_key",
            )
        else:
            api_key = s.assistants_api_key.get_secret_value()
        interval_ms = job.poll_interval_ms or s.poll_interval_ms
        timeout_ms = job.timeout_ms or s.timeout_ms
        if interval_ms > s.max_poll_interval_ms:
            raise RunRefused(
                "invalid_job",
                f"poll_interval_ms {interval_ms} exceeds the maximum {s.max_poll_interval_ms}",
            )
        if timeout_ms > s.max_timeout_ms:
            raise RunRefused(
                "invalid_job", f"timeout_ms {timeout_ms} exceeds the maximum {s.max_timeout_ms}"
            )
        if timeout_ms <= interval_ms:
            raise RunRefused(
                "invalid_job",
                f"timeout_ms {timeout_ms} must be larger than poll_interval_ms {interval_ms}",
            )
        return api_key, timeout_ms / 1000, interval_ms / 1000

    def _job_key(self, value: str) -> str:
        if is_encrypted(value):
            try:
                return decrypt(value, self._key_ring)
            except SecretError as exc:
                raise RunRefused("undecryptable_api_key", f"api_key: {exc}") from None
        if not self.settings.allow_plaintext_keys:
            raise RunRefused(
                "plaintext_api_key",
                "api_key must be encrypted (enc:v1:...): give workers and clients "
                "RUNPOLLER_SECRET_KEYS (RUNPOLLER_ALLOW_PLAINTEXT_KEYS=true allows plaintext "
                "for development only)",
            )
        return value

    async def _refuse_raw(self, raw: Any, code: str, message: str) -> str:
        run_id = _identifiable_run_id(raw)
        if run_id is not None:
            kind = raw.get("kind") if raw.get("kind") in ("assistants_run", "response") else None
            return await self._refuse(run_id, kind, code, message)
        await self.store.dead_letter(f"{code}: {message}", _safe_dump(raw))
        self.metrics.dead_letters.inc()
        log.warning("job.dead_letter", reason=message)
        return "dead_letter"

    async def _refuse(self, run_id: str, kind: str | None, code: str, message: str) -> str:
        final = FinalEvent(
            run_id=run_id,
            ts=int(time.time() * 1000),
            kind=kind,
            status="error",
            reason=f"the job was refused: {message}",
            error=ErrorInfo(code=code, message=message),
        ).model_dump_json()
        if await self.store.reject(run_id, final):
            log.warning("job.refused", run_id=run_id, code=code, reason=message)
            return "refused"
        await self.store.dead_letter(
            f"{code}: {message} (run {run_id} already exists; left untouched)", run_id
        )
        return "dead_letter"

    async def dead_letter(self, raw: str, reason: str) -> str:
        await self.store.dead_letter(reason, raw)
        self.metrics.dead_letters.inc()
        log.warning("job.dead_letter", reason=reason)
        return "dead_letter"

    def intake_handlers(self) -> dict[str, Handler]:
        """The arq functions, as :class:`~runpoller.worker.intake.BatchIntake` calls them."""

        def one(function: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
            if len(args) != 1 or kwargs:
                raise ValueError(f"{function} takes exactly one argument, got {len(args)}")
            return args[0]

        async def run(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            return await self.intake(one(FN_RUN, args, kwargs), et, t)

        async def resume(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            return await self.resume(one(FN_RESUME, args, kwargs), t)

        async def dead(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            raw = str(args[0]) if args else ""
            reason = str(args[1]) if len(args) > 1 else "dead-letter job without a reason"
            return await self.dead_letter(raw, reason)

        return {FN_RUN: run, FN_RESUME: resume, FN_DEAD_LETTER: dead}

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        interval = self.settings.heartbeat_interval_ms / 1000
        while True:
            try:
                await self._housekeep_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("housekeeping.failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(interval)

    async def _housekeep_once(self) -> None:
        for worker_id in await self.store.stale_workers(self.settings.dead_worker_after_ms):
            if worker_id == self.worker_id:
                continue
            released = await self.store.release(worker_id)
            if released >= 0:
                self.metrics.workers_reaped.inc()
                log.warning("worker.dead", dead_worker=worker_id, runs_released=released)
                await self.store.worker_event(
                    "dead_worker", worker_id=worker_id, runs=released, by=self.worker_id
                )
        await self._enqueue_orphans()
        await self._sample_queue()
        self.cluster_loads = await self.store.worker_loads()
        self.last_housekeeping = time.time()
        self.metrics.last_activity.set(self.last_housekeeping)

    async def _sample_queue(self) -> None:
        now_ms = time.time() * 1000
        queue = self.settings.queue_name
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcount(queue, "-inf", now_ms)
            pipe.zcount(queue, f"({now_ms}", "+inf")
            pipe.zrange(queue, 0, 0, withscores=True)
            ready, deferred, head = await pipe.execute()
        self.metrics.queue_depth.labels("ready").set(ready)
        self.metrics.queue_depth.labels("deferred").set(deferred)
        age = (now_ms - head[0][1]) / 1000 if head and head[0][1] <= now_ms else 0.0
        self.metrics.oldest_ready_age.set(age)

    async def _drop_lost_runs(self) -> None:
        """Our heartbeat lapsed: stop driving every run another worker may have taken."""
        run_ids = list(self.runner.runs)
        owners = await self.store.owners(run_ids) if run_ids else []
        # Taken out of the runner at once, with no await in between: a resume job for one of
        # them that runs later adopts it afresh instead of finding a driver about to stop.
        lost = [
            run
            for run_id, owner in zip(run_ids, owners, strict=True)
            if owner != self.worker_id and (run := self.runner.runs.pop(run_id, None)) is not None
        ]
        for run in lost:
            await suppress_cancel(run.task)
        log.warning("worker.lease_lapsed", dropped=len(lost))

    async def _enqueue_orphans(self) -> None:
        """Re-enqueue released runs; one worker at a time, so each gets one resume job."""
        lock = f"{self.keys.orphans}:lock"
        if not await self.redis.set(lock, self.worker_id, nx=True, px=10_000):
            return
        try:
            await self._enqueue_orphans_locked()
        finally:
            await self.redis.delete(lock)

    async def _enqueue_orphans_locked(self) -> None:
        orphans = await self.store.orphans()
        for run_id in orphans:
            await self.redis.enqueue_job(
                FN_RESUME,
                run_id,
                _job_id=f"resume:{run_id}:{uuid.uuid4().hex[:8]}",
                _queue_name=self.settings.queue_name,
            )
        if orphans:
            await self.store.forget_orphans(orphans)
            log.info("runs.requeued", count=len(orphans))

    async def _listen_replies(self) -> None:
        """Wake runs waiting for tool outputs the moment the app's reply lands."""
        cursors: dict[Any, Any] = {self.keys.replies: "$", self.keys.control: "$"}
        while True:
            try:
                reply = await self.redis.xread(dict(cursors), block=1000, count=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replies.read_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for stream, entries in reply or []:
                name = stream.decode() if isinstance(stream, bytes) else stream
                for entry_id, fields in entries:
                    cursors[name] = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    if name == self.keys.control:
                        data = fields.get(b"data", fields.get("data"))
                        if data is not None:
                            self.limiter.on_control(
                                data.decode() if isinstance(data, bytes) else data
                            )
                    else:
                        self._deliver(fields)

    def _deliver(self, fields: dict[Any, Any]) -> None:
        reply = parse_reply(fields)
        if reply is not None:
            self.runner.deliver_reply(reply)

    async def _replay_replies(self, run_id: str, state: engine.RunState) -> None:
        """After a takeover mid-round, deliver replies that arrived since the round was asked."""
        if state.phase is not engine.Phase.AWAITING_OUTPUTS:
            return
        since = f"{int(state.phase_since * 1000)}-0"
        entries = await self.redis.xrange(self.keys.replies, min=since, max="+", count=10_000)
        for _entry_id, fields in entries:
            reply = parse_reply(fields)
            if reply is not None and reply.run_id == run_id and reply.round == state.round:
                self.runner.deliver_reply(reply)


def _identifiable_run_id(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    for name in ("id", "run_id", "response_id"):
        value = raw.get(name)
        if isinstance(value, str) and _RUN_ID_CHARS.fullmatch(value):
            return value
    return None


def _safe_dump(raw: Any) -> str:
    """The raw job for a dead letter, with any api_key blanked."""
    if isinstance(raw, dict) and "api_key" in raw:
        raw = {**raw, "api_key": "**********"}
    try:
        return json.dumps(raw, default=str)[:4096]
    except (TypeError, ValueError):
        return repr(raw)[:4096]


# ---------------------------------------------------------------------------- arq glue


async def _run_job(ctx: dict[str, Any], job: Any) -> str:
    app: WorkerApp = ctx["app"]
    return await app.intake(job, ctx["enqueue_time"].timestamp(), ctx.get("job_try", 1))


async def _resume_job(ctx: dict[str, Any], run_id: Any) -> str:
    app: WorkerApp = ctx["app"]
    return await app.resume(run_id, ctx.get("job_try", 1))


async def _dead_letter_job(ctx: dict[str, Any], raw: str, reason: str) -> str:
    app: WorkerApp = ctx["app"]
    return await app.dead_letter(raw, reason)


FUNCTIONS: list[Function] = [
    func(_run_job, name=FN_RUN, timeout=30, max_tries=100_000, keep_result=0),
    func(_resume_job, name=FN_RESUME, timeout=30, max_tries=100_000, keep_result=0),
    func(_dead_letter_job, name=FN_DEAD_LETTER, timeout=30, max_tries=3, keep_result=0),
]


def worker_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker` (also the WorkerSettings attributes)."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        configure_logging(settings)
        app = WorkerApp(settings, ctx["redis"])
        ctx["app"] = app
        await app.start()
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
        "redis_settings": redis_settings(settings.redis_url),
        "queue_name": settings.queue_name,
        "poll_delay": settings.arq_poll_delay_s,
        "max_jobs": 20,
        # Ids read per queue poll: one intake batch (worker/intake.py) takes them all at once.
        # (The settle script unpacks up to 3 keys per id: Lua's limit is ~8,000 values.)
        "queue_read_limit": 500,
        "job_timeout": 30,
        "keep_result": 0,
        "max_tries": 100_000,
        "job_serializer": serialize_job,
        "job_deserializer": deserialize_job,
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "health_check_interval": 60,
    }


class _OutageBackoff(ExponentialBackoff):
    """redis-py backoff that also says, once per outage, that Redis is unreachable."""

    _last_warning = 0.0
    last_failure = 0.0

    def compute(self, failures: int) -> float:
        if failures == 1:
            _OutageBackoff.note_failure("")
        return float(super().compute(failures))

    @staticmethod
    def note_failure(error: str) -> None:
        now = time.monotonic()
        _OutageBackoff.last_failure = now
        if now - _OutageBackoff._last_warning > 30:
            _OutageBackoff._last_warning = now
            log.warning("redis.unavailable", retrying="with backoff until it answers", error=error)


def redis_settings(url: str) -> RedisSettings:
    """Redis settings that ride out an outage: every command retries with capped backoff."""
    settings = RedisSettings.from_dsn(url)
    settings.retry = RedisRetry(_OutageBackoff(cap=5.0, base=0.05), retries=-1)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, ConnectionError, OSError]
    settings.retry_on_timeout = True
    settings.conn_retries = 1_000_000
    return settings


_REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, ConnectionError, OSError)


class ResilientWorker(Worker):
    """arq's worker, made to survive a Redis outage instead of exiting.

    arq lets a connection error escape from its claim (WATCH → WatchError), from a job's
    start and from its health record, and the worker process dies. Here a failed poll
    iteration is logged (once per outage) and retried after a pause, and a claim that fails
    half-way gives back the slot it took.
    """

    _batch_task: asyncio.Future[Any] | None = None

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
            except _REDIS_ERRORS:
                if self.job_counter > before and job_id.decode() not in self.tasks:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def close(self) -> None:
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
        except _REDIS_ERRORS as exc:
            _OutageBackoff.note_failure(type(exc).__name__)
            await asyncio.sleep(0.5)
        except ResponseError as exc:
            # An error reply (READONLY after a failover, OOM, BUSY, NOPERM) must not end the
            # worker: say what Redis answered (once per 30 s) and try again.
            _OutageBackoff.note_failure(f"{type(exc).__name__}: {str(exc)[:200]}")
            await asyncio.sleep(1.0)


def build_worker(settings: Settings, **overrides: Any) -> Worker:
    return ResilientWorker(**{**worker_options(settings), **overrides})
