"""Connections that wait out an outage, and the monitor that says so once per outage."""

from __future__ import annotations

from typing import Any

import pytest

from runpoller.redis import connection
from runpoller.redis.connection import OutageMonitor, redis_settings


class Recorder:
    """Stands in for the module's logger (structlog's capture_logs misses a logger that an
    earlier test's configure_logging cached)."""

    def __init__(self) -> None:
        self.warnings: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append({"event": event, **fields})


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


def test_an_outage_is_logged_once_per_quiet_period_and_remembered(logged: Recorder) -> None:
    clock = Clock()
    monitor = OutageMonitor(quiet_s=30, clock=clock)
    assert not monitor.waiting()
    monitor.note_failure("ConnectionError")
    clock.now += 5
    monitor.note_failure("ConnectionError")
    assert monitor.waiting(within_s=10)
    clock.now += 31
    monitor.note_failure("TimeoutError")
    warnings = [e for e in logged.warnings if e["event"] == "redis.unavailable"]
    assert [w["error"] for w in warnings] == ["ConnectionError", "TimeoutError"]
    clock.now += 11
    assert not monitor.waiting(within_s=10)


def test_two_monitors_keep_separate_records() -> None:
    a, b = OutageMonitor(), OutageMonitor()
    a.note_failure("x")
    assert a.waiting() and not b.waiting()


def test_settings_retry_forever_and_tell_their_monitor_on_the_first_failure() -> None:
    clock = Clock()
    monitor = OutageMonitor(clock=clock)
    settings = redis_settings("redis://:pw@127.0.0.1:6390/3", monitor)
    assert (settings.host, settings.port, settings.database) == ("127.0.0.1", 6390, 3)
    assert settings.retry is not None and settings.retry_on_timeout
    backoff = settings.retry._backoff
    assert not monitor.waiting()
    assert 0 <= backoff.compute(1) <= 5.0
    assert monitor.waiting()
    assert backoff.compute(30) <= 5.0  # capped


def test_every_connection_shares_the_one_monitor_redis_py_deep_copies_its_retry() -> None:
    import copy

    monitor = OutageMonitor()
    settings = redis_settings("redis://127.0.0.1:6390/0", monitor)
    copied = copy.deepcopy(settings.retry)
    assert copied is not None and copied._backoff.monitor is monitor
