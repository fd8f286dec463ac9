"""Connections that wait out an outage, and the monitor that logs each outage: at its start
(where, which error), once a minute while it lasts, at its end (how long, how many)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from arq.connections import ArqRedis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError

from runpoller.redis import connection
from runpoller.redis.connection import OutageMonitor, arq_redis, monitor_for, redis_settings


class Recorder:
    """Stands in for the module's logger (structlog's capture_logs misses a logger that an
    earlier test's configure_logging cached)."""

    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    info = warning


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    monkeypatch.setattr(connection, "log", recorder)
    return recorder


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_outage_is_one_line_at_start_one_a_minute_and_one_at_the_end(logged: Recorder) -> None:
    clock = Clock()
    monitor = OutageMonitor(where="cache:6379", clock=clock)
    assert not monitor.waiting()
    monitor.note_success()  # nothing to end
    monitor.note_failure(RedisConnectionError("Error 111 connecting to cache:6379."))
    for _ in range(10):
        clock.now += 5
        monitor.note_failure("ConnectionError")
    assert monitor.waiting(within_s=10)
    clock.now += 15  # 65 s after the start
    monitor.note_failure(TimeoutError("timed out"))
    clock.now += 1
    monitor.note_success()
    monitor.note_success()
    assert logged.lines == [
        {
            "event": "redis.unavailable",
            "where": "cache:6379",
            "error": "ConnectionError: Error 111 connecting to cache:6379.",
            "retrying": "with backoff until it answers",
        },
        {
            "event": "redis.still_unavailable",
            "where": "cache:6379",
            "for_s": 65.0,
            "failures": 12,
            "error": "TimeoutError: timed out",
        },
        {
            "event": "redis.available",
            "where": "cache:6379",
            "down_s": 66.0,
            "failures": 12,
            "outages": 1,
        },
    ]
    clock.now += 11
    assert not monitor.waiting(within_s=10)
    monitor.note_failure("x")
    assert logged.lines[-1]["event"] == "redis.unavailable" and monitor.outages == 2


def test_errors_in_the_log_carry_no_password(logged: Recorder) -> None:
    monitor = OutageMonitor()
    monitor.note_failure(RedisConnectionError("AUTH failed for redis://:hunter2@cache:6379/0"))
    assert "hunter2" not in str(logged.lines)


def test_two_monitors_keep_separate_records() -> None:
    a, b = OutageMonitor(), OutageMonitor()
    a.note_failure("x")
    assert a.waiting() and not b.waiting()


def test_the_monitor_names_where_without_the_password() -> None:
    assert monitor_for("redis://:pw@cache:6390/3").where == "cache:6390"
    assert monitor_for("redis+sentinel://:pw@s1,s2:26380/m/0").where == (
        "sentinel s1:26379,s2:26380 master m"
    )


async def test_every_attempt_that_fails_is_told_to_the_monitor_with_its_error() -> None:
    monitor = OutageMonitor()
    settings = redis_settings("redis://:pw@127.0.0.1:6390/3", monitor)
    assert (settings.host, settings.port, settings.database) == ("127.0.0.1", 6390, 3)
    assert settings.retry is not None and settings.retry_on_timeout
    attempts = 0

    async def do() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RedisConnectionError("refused")
        return "PONG"

    async def fail(error: Exception) -> None:
        return None

    settings.retry._backoff = connection.ExponentialBackoff(cap=0.001, base=0.0001)
    assert await settings.retry.call_with_retry(do, fail) == "PONG"
    assert monitor.failures == 2 and monitor.last_error == "ConnectionError: refused"


def test_every_connection_shares_the_one_monitor_redis_py_deep_copies_its_retry() -> None:
    monitor = OutageMonitor()
    settings = redis_settings("redis://127.0.0.1:6390/0", monitor)
    copied = copy.deepcopy(settings.retry)
    assert copied is not None and copied.monitor is monitor


async def test_the_worker_pool_follows_every_url_form() -> None:
    monitor = OutageMonitor()
    pool = arq_redis(
        "redis+sentinel://s1:26379/mymaster/2",
        monitor,
        queue_name="q",
        serializer=None,
        deserializer=None,
    )
    assert isinstance(pool, ArqRedis) and pool.default_queue_name == "q"
    assert isinstance(pool.connection_pool, SentinelConnectionPool)
    kwargs = pool.connection_pool.connection_kwargs
    assert kwargs["db"] == 2 and kwargs["retry"].monitor is monitor
    await pool.aclose()
    sentinel = redis_settings("redis+sentinel://s1:26379,s2/mymaster/2", monitor)
    assert sentinel.sentinel and sentinel.host == [("s1", 26379), ("s2", 26379)]
