"""The composition root: one worker process's parts, wired together, started and stopped.

Nothing here decides anything. The parts: the API client and backends (http/, backends/),
the Redis room (redis/), the run driver (driver.py), admission of arq jobs (admission.py) and
its batch intake (intake.py), housekeeping (housekeeping.py), the replies listener
(replies.py), the heartbeat thread (liveness.py), the rate limiter (ratelimit.py), probes and
metrics. arq's glue (arqworker.py) creates a :class:`WorkerApp` in its start-up hook.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid

import httpx
import structlog
from aiohttp import web
from arq.connections import ArqRedis

from runpoller import engine
from runpoller.backends import Backend
from runpoller.backends.agents import AgentsBackend
from runpoller.backends.assistants import AssistantsBackend
from runpoller.backends.responses import ResponsesBackend
from runpoller.config import Settings
from runpoller.http.api import ApiClient, make_http_client
from runpoller.protocol import Keys
from runpoller.redis.connection import OutageMonitor
from runpoller.redis.control import RunControl
from runpoller.redis.store import RunStore
from runpoller.worker.admission import Admission
from runpoller.worker.capacity import Capacity
from runpoller.worker.driver import Runner
from runpoller.worker.housekeeping import Housekeeping
from runpoller.worker.intake import BatchIntake
from runpoller.worker.liveness import LoopHeartbeat
from runpoller.worker.metrics import Metrics, start_http
from runpoller.worker.probes import Probes
from runpoller.worker.ratelimit import RateLimiter
from runpoller.worker.replies import RepliesListener
from runpoller.worker.tasks import TaskSet

log = structlog.get_logger("runpoller.worker")

# How long a taken intake job stays reserved (arq's in-progress key) when the worker that
# took it never settles it: arq's own in_progress_timeout for our 30 s job timeout. A worker
# that dies holding some is reaped sooner (dead-worker TTL), and reaping gives them back.
INTAKE_LEASE_MS = 40_000


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
        adaptive_after_s=settings.adaptive_poll_after_ms / 1000,
        adaptive_max_s=settings.adaptive_poll_max_ms / 1000,
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
        outage: OutageMonitor | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.keys = Keys(settings.key_prefix)
        self.outage = outage or OutageMonitor()
        transport: httpx.AsyncBaseTransport | None = None
        if http is None:
            http, transport = make_http_client(
                settings.http_transport,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                max_connections=settings.http_concurrency,
            )
        self.http = http
        # Streams get a pool of their own (see ApiClient): "httpx" is the transport whose
        # streamed bodies the tests exercise; a stream's CPU is per event, not per poll.
        self.stream_http, _ = make_http_client(
            "httpx",
            connect_timeout_s=settings.connect_timeout_s,
            read_timeout_s=settings.read_timeout_s,
            max_connections=settings.max_streams,
        )
        api = ApiClient(
            http,
            settings.assistants_base_url,
            assistants_version=settings.assistants_version,
            transport=transport,
            stream_http=self.stream_http,
        )
        backends: dict[str, Backend] = {
            "assistants_run": AssistantsBackend(api),
            "response": ResponsesBackend(api),
            "agent_turn": AgentsBackend(api),
        }
        self.store = RunStore(
            redis,
            self.keys,
            worker_id=self.worker_id,
            maxlen=settings.event_stream_maxlen,
            ttl_s=settings.record_ttl_s,
        )
        self.metrics = Metrics()
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
            max_streams=settings.max_streams,
            metrics=self.metrics,
            limiter=self.limiter,
            max_result_bytes=settings.max_result_bytes,
            outage=self.outage,
        )
        self.metrics.runs_in_flight.set_function(lambda: len(self.runner.runs))
        in_flight = self.runner.runs.__len__
        self.capacity = Capacity(
            self.worker_id,
            settings.max_runs_per_worker,
            in_flight,
            head_start_s=2 * settings.arq_poll_delay_s,
        )
        self.control = RunControl(redis, self.keys)
        self.replies = RepliesListener(
            self.store, self.keys, self.runner, self.limiter, self.control
        )
        self.admission = Admission(
            settings,
            self.store,
            self.runner,
            self.capacity,
            self.metrics,
            self.replies.replay,
            self.control,
        )
        self.housekeeping = Housekeeping(
            settings, redis, self.store, self.runner, self.capacity, self.metrics
        )
        # The heartbeat beats from a thread while the loop makes progress (liveness.py):
        # a loop saturated by thousands of runs is late, not dead, and keeps its runs.
        self.liveness = LoopHeartbeat.from_settings(
            settings, self.worker_id, in_flight=in_flight, on_lapse=self.housekeeping.drop_lost_runs
        )
        self.batch = BatchIntake(
            redis,
            settings.queue_name,
            self.admission.handlers(),
            worker_id=self.worker_id,
            lease_ms=INTAKE_LEASE_MS,
            headroom=self.capacity.headroom,
            wait_s=self.capacity.wait_s,
            spare=self.capacity.spare,
            refresh=self.housekeeping.refresh_loads_for,
            fair_share=self.capacity.fair_share,
            overdue_s=settings.heartbeat_interval_ms / 1000,
        )
        self.tasks = TaskSet()
        self.probes = Probes(
            settings,
            self.runner,
            self.housekeeping,
            self.liveness,
            self.outage,
            housekeeping_alive=lambda: self.tasks.alive("housekeeping"),
            ping=self.store.ping,
        )
        self._http_runner: web.AppRunner | None = None
        self.http_port: int | None = None

    async def start(self) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self.worker_id)
        await self.store.heartbeat(self.settings.dead_worker_after_ms, 0)
        # Where the replies and cancels streams stand, before any run is adopted: an entry
        # written after this is read, whichever run it is for.
        await self.replies.positions()
        self.liveness.start()
        self.tasks.spawn(self.housekeeping.loop(), name="housekeeping")
        self.tasks.spawn(self.replies.listen(), name="replies")
        if self.settings.metrics_port >= 0:
            self._http_runner, self.http_port = await start_http(
                self.metrics,
                self.settings.metrics_host,
                self.settings.metrics_port,
                self.probes.healthz,
                self.probes.readyz,
            )
        log.info(
            "worker.started",
            worker_id=self.worker_id,
            queue=self.settings.queue_name,
            metrics_port=self.http_port,
        )

    async def close(self, *, handoff: bool = True) -> None:
        """Stop driving runs and hand them to the other workers (they resume at once)."""
        self.probes.stopping = True
        self.liveness.stop()
        await self.tasks.aclose()
        in_flight = len(self.runner.runs)
        await self.runner.stop_runs()
        if handoff:
            with contextlib.suppress(Exception):
                released = await self.store.release(self.worker_id, force=True)
                await self.housekeeping.requeue_orphans()
                await self.store.worker_event("handed_off", worker_id=self.worker_id, runs=released)
                log.info("worker.handed_off", runs=released, in_flight=in_flight)
        await self.http.aclose()
        await self.stream_http.aclose()
        if self._http_runner is not None:
            await self._http_runner.cleanup()
