"""Connections that ride out a Redis outage, and the one place that notices the outage.

Every command retries with capped exponential backoff until Redis answers (redis-py's
``Retry``). The :class:`OutageMonitor` is told of each failed attempt (by the retry, with its
error, and by the worker's poll loop) and of success (the poll loop), and logs an outage
three ways: one warning when it starts (where, which error), one line a minute while it
lasts (for how long, how many failures), one when it ends (how long, how many). It also
answers "is Redis being waited on right now?" for the liveness probe. It is an instance,
owned by the worker that created the connections: two workers in one process keep separate
records. The API's outages are logged by the same class (``what="api"``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from arq.connections import ArqRedis, RedisSettings
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from runpoller.redis.url import FailoverRetry, connect, parse
from runpoller.secrets import scrub

log = structlog.get_logger("runpoller.worker")

# What a dropped or unreachable Redis raises (WatchError: arq's claim on a dropped connection).
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, ConnectionError, OSError)
RETRIED = [RedisConnectionError, RedisTimeoutError, ConnectionError, OSError]


def error_text(error: str | BaseException) -> str:
    """``Type: first line of the message``, secrets scrubbed, for a log line."""
    if isinstance(error, str):
        return error
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return scrub(f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__)


class OutageMonitor:
    """Remembers failures of one dependency (Redis, the API) and logs each outage: at its
    start, once per ``report_s`` while it lasts, and at its end, with counts."""

    def __init__(
        self,
        *,
        where: str = "",
        what: str = "redis",
        report_s: float = 60.0,
        retrying: str | None = "with backoff until it answers",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.where = where
        self.retrying = retrying
        self.what = what
        self.report_s = report_s
        self.clock = clock
        self.last_failure = float("-inf")
        self.since: float | None = None
        """When the current outage started (None: none now)."""
        self.failures = 0
        """Failed attempts in the current outage."""
        self.outages = 0
        """Outages seen since start."""
        self._last_report = float("-inf")
        self.last_error = ""

    def __deepcopy__(self, memo: dict[int, object]) -> OutageMonitor:
        # redis-py deep-copies its Retry (backoff included) into every connection: the copies
        # must share this one record, or each pooled connection logs an outage of its own.
        return self

    def note_failure(self, error: str | BaseException) -> None:
        now = self.clock()
        self.last_failure = now
        self.last_error = error_text(error)
        self.failures += 1
        if self.since is None:
            self.since = now
            self.outages += 1
            self._last_report = now
            extra = {} if self.retrying is None else {"retrying": self.retrying}
            log.warning(
                f"{self.what}.unavailable", where=self.where, error=self.last_error, **extra
            )
        elif now - self._last_report >= self.report_s:
            self._last_report = now
            log.warning(
                f"{self.what}.still_unavailable",
                where=self.where,
                for_s=round(now - self.since, 1),
                failures=self.failures,
                error=self.last_error,
            )

    def note_success(self) -> None:
        """It answered: ends the outage in progress, if any, with one line."""
        if self.since is None:
            return
        now = self.clock()
        log.info(
            f"{self.what}.available",
            where=self.where,
            down_s=round(now - self.since, 1),
            failures=self.failures,
            outages=self.outages,
        )
        self.since = None
        self.failures = 0

    def waiting(self, within_s: float = 10.0) -> bool:
        """Whether a command failed within ``within_s`` (an outage in progress)."""
        return self.clock() - self.last_failure < within_s


class _OutageRetry(FailoverRetry):
    """Retries forever (with backoff, following a failover), telling the monitor of each
    failed attempt."""

    __slots__ = ("monitor",)

    def __init__(self, monitor: OutageMonitor) -> None:
        super().__init__(ExponentialBackoff(cap=5.0, base=0.05), retries=-1)
        self.monitor = monitor

    def noted(self, error: BaseException) -> None:
        self.monitor.note_failure(error)


def monitor_for(url: str) -> OutageMonitor:
    """A Redis outage monitor naming the URL's host:port (or sentinels), never its password."""
    return OutageMonitor(where=parse(url).where)


def redis_settings(url: str, monitor: OutageMonitor) -> RedisSettings:
    """arq's Redis settings from a URL (what arq's own tools read; the worker's connections
    come from :func:`arq_redis`)."""
    target = parse(url)
    host, port = target.hosts[0] if target.hosts else ("localhost", 6379)
    settings = RedisSettings(
        host=list(target.hosts) if target.sentinel else host,
        port=port,
        database=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        unix_socket_path=target.unix_path,
        sentinel=target.sentinel,
        sentinel_master=target.service or "mymaster",
    )
    settings.retry = _OutageRetry(monitor)
    settings.retry_on_error = list(RETRIED)
    settings.retry_on_timeout = True
    settings.conn_retries = 1_000_000
    return settings


def arq_redis(
    url: str, monitor: OutageMonitor, *, queue_name: str, serializer: Any, deserializer: Any
) -> ArqRedis:
    """The worker's connection pool (any REDIS_URL form), made to wait out an outage: every
    command retries until Redis answers, each failure told to ``monitor``."""
    pool: ArqRedis = connect(
        url,
        redis_class=ArqRedis,
        retry=_OutageRetry(monitor),
        retry_on_error=list(RETRIED),
        retry_on_timeout=True,
        socket_connect_timeout=5,
    )
    pool.job_serializer = serializer
    pool.job_deserializer = deserializer
    pool.default_queue_name = queue_name
    return pool
