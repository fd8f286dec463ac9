"""The composition root: one worker process's parts, wired together, started and stopped.

Nothing here decides anything. The parts: the API client and backends (http/, backends/),
the Redis room (redis/), the run driver (driver.py), admission of arq jobs (admission.py) and
its batch intake (intake.py), housekeeping (housekeeping.py), the replies listener
(replies.py), the heartbeat thread (liveness.py), the rate limiter (ratelimit.py), probes and
metrics. arq's glue (arqworker.py) creates a :class:`WorkerApp` in its start-up hook.
"""

from __future__ import annotations

import asyncio
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
from runpoller.config import ConfigError, Settings, startup_problems
from runpoller.http.api import ApiClient, make_http_client
from runpoller.http.direct import DirectPath
from runpoller.protocol import Keys
from runpoller.redis.connection import OutageMonitor
from runpoller.redis.control import RunControl
from runpoller.redis.store import RunStore
from runpoller.redis.url import mask as mask_url
from runpoller.worker.admission import Admission
from runpoller.worker.apiwatch import WatchedTransport
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
        direct: DirectPath | None = None
        if http is None:
            http, transport, direct = make_http_client(
                settings.http_transport,
                connect_timeout_s=settings.connect_timeout_s,
                read_timeout_s=settings.read_timeout_s,
                max_connections=settings.http_concurrency,
                wrap=WatchedTransport,
            )
        self.http = http
        # Streams get a pool of their own (see ApiClient): "httpx" is the transport whose
        # streamed bodies the tests exercise; a stream's CPU is per event, not per poll.
        self.stream_http, _, _ = make_http_client(
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
            direct=direct,
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
        self.probes.started = False
        self._http_runner: web.AppRunner | None = None
        self.http_port: int | None = None
        self._api_check: asyncio.Task[None] | None = None
        self._begun = False

    async def begin(self) -> None:
        """What needs no Redis, done once before the first command: say what will fail
        (startup_problems), ask the API once (check_api, in the background), serve /metrics
        and the probes, so that readiness says "redis unreachable" instead of nothing
        listening. A port in use is one line."""
        if self._begun:
            return
        self._begun = True
        for problem in startup_problems(self.settings):
            log.warning("config.problem", problem=problem)
        self._api_check = asyncio.create_task(self.check_api(), name="api-check")
        s = self.settings
        if s.metrics_port < 0:
            return
        try:
            self._http_runner, self.http_port = await start_http(
                self.metrics,
                s.metrics_host,
                s.metrics_port,
                self.probes.healthz,
                self.probes.readyz,
            )
        except OSError as exc:
            raise ConfigError(
                f"RUNPOLLER_METRICS_PORT={s.metrics_port}: cannot listen on "
                f"{s.metrics_host}:{s.metrics_port} ({exc.strerror or exc}); another process "
                "(a second worker on this host?) holds it: give each worker its own port, 0 for "
                "any free port, or -1 for none"
            ) from None

    async def start(self) -> None:
        structlog.contextvars.bind_contextvars(worker_id=self.worker_id)
        await self.begin()
        await self.store.heartbeat(self.settings.dead_worker_after_ms, 0)
        # Where the replies and cancels streams stand, before any run is adopted: an entry
        # written after this is read, whichever run it is for.
        await self.replies.positions()
        self.liveness.start()
        self.tasks.spawn(self.housekeeping.loop(), name="housekeeping")
        self.tasks.spawn(self.replies.listen(), name="replies")
        self.probes.started = True
        log.info(
            "worker.started",
            worker_id=self.worker_id,
            queue=self.settings.queue_name,
            metrics_port=self.http_port,
        )

    async def check_api(self) -> None:
        """One request at start (``GET <base>/models``): the API not answering is one warning
        naming the URL (the transport's outage line), a refused key one more."""
        s = self.settings
        url = s.assistants_base_url.rstrip("/") + "/models"
        headers = {}
        if s.assistants_api_key is not None and not s.user_provided_key:
            headers["Authorization"] = f"Bearer {s.assistants_api_key.get_secret_value()}"
        try:
            response = await self.http.get(url, headers=headers)
        except httpx.HTTPError:
            return  # WatchedTransport said so (api.unavailable, with the host and the error)
        if response.status_code in (401, 403) and headers:
            log.warning(
                "api.key_refused",
                url=mask_url(url),
                status=response.status_code,
                hint="ASSISTANTS_API_KEY is not accepted there: runs without their own key fail",
            )

    async def close(self, *, handoff: bool = True) -> None:
        """Stop driving runs and hand them to the other workers (they resume at once)."""
        if self._api_check is not None:
            self._api_check.cancel()
            await asyncio.gather(self._api_check, return_exceptions=True)
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
