"""Prometheus metrics of one worker process, and its HTTP endpoints (/metrics, /healthz, /readyz).

Names carry the ``runpoller_`` prefix and their unit; labels are low-cardinality (backend,
operation, HTTP code, final status) and never a run id. Each worker owns its registry, so
several workers can live in one process (tests) without sharing counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)


class Children(Generic[M]):
    """A labelled metric's children, cached by label values: ``children(a, b)`` is
    ``metric.labels(a, b)`` without prometheus' per-call checks and lock (the hot path
    counts every API request)."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
WAIT_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.runs_accepted = Counter(
            "runpoller_runs_accepted_total",
            "Runs this worker took (new or resumed).",
            ["backend", "how"],
            registry=r,
        )
        self.runs_finished = Counter(
            "runpoller_runs_finished_total",
            "Final events written, by final status.",
            ["backend", "status"],
            registry=r,
        )
        self.runs_in_flight = Gauge(
            "runpoller_runs_in_flight", "Runs this worker is driving now.", registry=r
        )
        self.queue_depth = Gauge(
            "runpoller_queue_depth", "Jobs waiting in the arq queue.", ["state"], registry=r
        )
        self.oldest_ready_age = Gauge(
            "runpoller_oldest_ready_age_seconds",
            "Age of the oldest job ready to run but not yet taken.",
            registry=r,
        )
        self.api_requests = Counter(
            "runpoller_api_requests_total",
            "API requests by operation and HTTP status code.",
            ["backend", "op", "code"],
            registry=r,
        )
        self.api_latency = Histogram(
            "runpoller_api_request_duration_seconds",
            "API request latency.",
            ["backend", "op"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.poll_lateness = Histogram(
            "runpoller_poll_lateness_seconds",
            "How late each request fired versus its schedule.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "runpoller_final_event_latency_seconds",
            "From the API's terminal status seen to the final event written.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_wait = Histogram(
            "runpoller_tool_outputs_wait_seconds",
            "From a requires_action event to the app's accepted reply.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "runpoller_api_retries_total",
            "Requests retried after a retryable failure.",
            ["backend", "op"],
            registry=r,
        )
        self.progress_events = Counter(
            "runpoller_progress_events_total",
            "progress events written for streamed runs (coalesced text deltas).",
            registry=r,
        )
        self.rate_limited = Counter(
            "runpoller_rate_limited_total", "429 responses from the API.", ["backend"], registry=r
        )
        self.rate_limit_wait = Histogram(
            "runpoller_rate_limit_wait_seconds",
            "Time requests waited for the shared per-key budget or a 429 pause.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cancels = Counter(
            "runpoller_cancels_total", "Cancels decided, by reason.", ["reason"], registry=r
        )
        self.unknown_statuses = Counter(
            "runpoller_unknown_statuses_total",
            "Runs whose API reported a status runpoller does not know (once per run).",
            ["backend"],
            registry=r,
        )
        self.wakes = Counter(
            "runpoller_wakes_total",
            "Webhook wake-ups read: woken (a run here polled at once), not_here (no run here "
            "follows that object, yet: kept a while), woken_late (a run here came to follow "
            "an object named before, and polled at once), not_waiting (its run was busy: its "
            "next request is not a poll).",
            ["result"],
            registry=r,
        )
        self.replies_rejected = Counter(
            "runpoller_replies_rejected_total", "App replies that failed validation.", registry=r
        )
        self.workers_reaped = Counter(
            "runpoller_dead_workers_detected_total",
            "Dead workers whose runs this worker released.",
            registry=r,
        )
        self.runs_recovered = Counter(
            "runpoller_runs_recovered_total",
            "Runs taken over from dead or stopping workers.",
            registry=r,
        )
        self.redis_outages = Counter(
            "runpoller_redis_outages_total", "Times Redis became unreachable.", registry=r
        )
        self.dead_letters = Counter(
            "runpoller_dead_letters_total", "Jobs recorded as dead letters.", registry=r
        )
        self.last_activity = Gauge(
            "runpoller_worker_last_activity_timestamp_seconds",
            "Unix time of the worker's last completed housekeeping.",
            registry=r,
        )
        # Children of the metrics the driver touches on every request.
        self.api_requests_of = Children(self.api_requests)
        self.api_latency_of = Children(self.api_latency)
        self.retries_of = Children(self.retries)

    def render(self) -> bytes:
        return generate_latest(self.registry)


Probe = Callable[[], Awaitable[tuple[bool, str]]]


async def start_http(
    metrics: Metrics, host: str, port: int, healthz: Probe, readyz: Probe
) -> tuple[web.AppRunner, int]:
    """Serve /metrics, /healthz and /readyz; returns the runner and the bound port."""

    async def metrics_handler(_request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    def probe_handler(probe: Probe) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_request: web.Request) -> web.Response:
            started = time.monotonic()
            ok, reason = await probe()
            body = {"ok": ok, "reason": reason, "ms": round((time.monotonic() - started) * 1000)}
            return web.json_response(body, status=200 if ok else 503)

        return handler

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", probe_handler(healthz))
    app.router.add_get("/readyz", probe_handler(readyz))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
