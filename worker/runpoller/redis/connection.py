"""Connections that ride out a Redis outage, and the one place that notices the outage.

Every command retries with capped exponential backoff until Redis answers (redis-py's
``Retry``). The :class:`OutageMonitor` is told of each first failure (by the backoff) and of
each failed arq poll (by the worker), logs once per outage, and answers "is Redis being
waited on right now?" for the liveness probe. It is an instance, owned by the worker that
created the connection settings: two workers in one process keep separate records.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from arq.connections import RedisSettings
from redis.asyncio.retry import Retry as RedisRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

log = structlog.get_logger("runpoller.worker")

# What a dropped or unreachable Redis raises (WatchError: arq's claim on a dropped connection).
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, WatchError, ConnectionError, OSError)


class OutageMonitor:
    """Remembers the last Redis failure and says so in the log, once per ``quiet_s``."""

    def __init__(self, *, quiet_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.quiet_s = quiet_s
        self.clock = clock
        self.last_failure = float("-inf")
        self._last_warning = float("-inf")

    def __deepcopy__(self, memo: dict[int, object]) -> OutageMonitor:
        # redis-py deep-copies its Retry (backoff included) into every connection: the copies
        # must share this one record, or each pooled connection logs an outage of its own.
        return self

    def note_failure(self, error: str) -> None:
        now = self.clock()
        self.last_failure = now
        if now - self._last_warning > self.quiet_s:
            self._last_warning = now
            log.warning("redis.unavailable", retrying="with backoff until it answers", error=error)

    def waiting(self, within_s: float = 10.0) -> bool:
        """Whether a Redis command failed within ``within_s`` (an outage in progress)."""
        return self.clock() - self.last_failure < within_s


class _OutageBackoff(ExponentialBackoff):
    """redis-py backoff that tells the monitor when a command starts retrying."""

    def __init__(self, monitor: OutageMonitor, *, cap: float, base: float) -> None:
        super().__init__(cap=cap, base=base)
        self.monitor = monitor

    def compute(self, failures: int) -> float:
        if failures == 1:
            self.monitor.note_failure("")
        return float(super().compute(failures))


def redis_settings(url: str, monitor: OutageMonitor) -> RedisSettings:
    """arq's Redis settings from a URL, made to wait out an outage instead of failing."""
    settings = RedisSettings.from_dsn(url)
    settings.retry = RedisRetry(_OutageBackoff(monitor, cap=5.0, base=0.05), retries=-1)
    settings.retry_on_error = [RedisConnectionError, RedisTimeoutError, ConnectionError, OSError]
    settings.retry_on_timeout = True
    settings.conn_retries = 1_000_000
    return settings
