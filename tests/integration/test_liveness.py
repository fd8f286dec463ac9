"""LoopHeartbeat against a real Redis: a busy loop keeps its lease, a stuck one loses it.

The event loop is blocked with synchronous sleeps (as a saturated or wedged loop would be);
while it is blocked, Redis is observed with a synchronous client from the same thread.
Assertions are on Redis state, log events and callbacks, never on how long the code took.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.exceptions

from runpoller.protocol import Keys
from runpoller.redis.store import RunStore
from runpoller.worker import liveness
from runpoller.worker.liveness import LoopHeartbeat
from runpoller_dev.devredis import free_port
from tests.conftest import test_redis_url

pytestmark = pytest.mark.integration

WORKER = "w-liveness"


class LogRecorder:
    """Stands in for the module's structlog logger (works across threads, no global config)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, level: str, event: str, **fields: Any) -> None:
        with self._lock:
            self.lines.append((level, event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def count(self, event: str) -> int:
        with self._lock:
            return sum(line[1] == event for line in self.lines)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(liveness, "log", recorder)
    return recorder


@pytest.fixture
def sync_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(test_redis_url())
    yield client
    client.close()


@pytest.fixture
def make_heartbeat(namespace: str) -> Iterator[Callable[..., LoopHeartbeat]]:
    made: list[LoopHeartbeat] = []

    def make(**overrides: Any) -> LoopHeartbeat:
        options: dict[str, Any] = {
            "interval_ms": 1000,
            "ttl_ms": 2500,
            "stall_limit_ms": 5000,
            "in_flight": lambda: 0,
            "on_lapse": lambda: None,
        }
        options.update(overrides)
        url = options.pop("redis_url", test_redis_url())
        hb = LoopHeartbeat(url, Keys(namespace), WORKER, **options)
        made.append(hb)
        return hb

    yield make
    for hb in made:
        hb.stop()


async def until(condition: Callable[[], object], timeout: float = 5.0) -> bool:
    """Wait (yielding to the loop) until the condition holds; False if it never did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(0.02)
    return bool(condition())


def block_until(condition: Callable[[], object], timeout: float) -> bool:
    """Block the event loop (a synchronous wait) until the condition holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def beat_value(client: redis.Redis, key: str) -> dict[str, Any] | None:
    raw = client.get(key)
    return None if raw is None else dict(json.loads(raw))


async def test_saturated_loop_keeps_its_lease(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    namespace: str,
    logs: LogRecorder,
) -> None:
    lapses: list[int] = []
    hb = make_heartbeat(
        interval_ms=1000, ttl_ms=2500, stall_limit_ms=5000, on_lapse=lambda: lapses.append(1)
    )
    key = Keys(namespace).heartbeat(WORKER)
    hb.start()
    assert await until(lambda: sync_redis.exists(key))
    first = beat_value(sync_redis, key)
    assert first is not None

    # Block the loop for 3 s (longer than the 2.5 s TTL, shorter than the 5 s stall limit),
    # sampling the key every 0.5 s from this very thread.
    samples = []
    lags = []
    for _ in range(6):
        time.sleep(0.5)
        samples.append(bool(sync_redis.exists(key)))
        lags.append(hb.lag_s)
    assert all(samples), samples
    last = beat_value(sync_redis, key)
    assert last is not None and last["ts"] > first["ts"]  # renewed while the loop was blocked
    assert max(lags) > 1.0  # the loop really did not tick meanwhile
    assert logs.count("heartbeat.loop_stalled") == 0
    assert not hb.stalled

    assert await until(lambda: hb.lag_s < 0.5)  # ticks again
    await asyncio.sleep(0.1)
    assert lapses == []
    assert hb.last_beat is not None and hb.last_beat >= last["ts"] / 1000


async def test_stuck_loop_loses_its_lease_then_recovers(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    namespace: str,
    logs: LogRecorder,
) -> None:
    main_thread = threading.get_ident()
    lapses: list[tuple[int, bool]] = []
    in_flight = [0]

    async def on_lapse() -> None:  # an async callback, as WorkerApp._drop_lost_runs
        await asyncio.sleep(0)
        lapses.append((threading.get_ident(), asyncio.get_running_loop() is loop))

    loop = asyncio.get_running_loop()
    keys = Keys(namespace)
    key = keys.heartbeat(WORKER)
    hb = make_heartbeat(
        interval_ms=200,
        ttl_ms=600,
        stall_limit_ms=800,
        in_flight=lambda: in_flight[0],
        on_lapse=on_lapse,
    )
    hb.start()
    assert await until(lambda: sync_redis.exists(key))
    in_flight[0] = 3
    assert await until(lambda: (beat_value(sync_redis, key) or {}).get("in_flight") == 3)

    # Block the loop beyond the stall limit: beats stop and the key expires.
    assert block_until(lambda: not sync_redis.exists(key), timeout=8)
    assert block_until(lambda: logs.count("heartbeat.loop_stalled") == 1, timeout=2)
    time.sleep(0.6)  # still stuck, a few more heartbeat periods: no beat, no second warning
    assert not sync_redis.exists(key)
    assert hb.stalled
    assert logs.count("heartbeat.loop_stalled") == 1
    assert lapses == []

    # The loop runs again: beats resume, and the owner hears that its lease had lapsed.
    assert await until(lambda: sync_redis.exists(key))
    assert await until(lambda: len(lapses) == 1)
    assert lapses == [(main_thread, True)]
    assert logs.count("heartbeat.loop_resumed") == 1
    assert not hb.stalled
    await asyncio.sleep(0.5)  # later beats find the key: no second notification
    assert len(lapses) == 1
    assert sync_redis.zscore(keys.workers, WORKER) is not None
    warnings = [line for line in logs.lines if line[0] != "info"]
    assert [line[1] for line in warnings] == ["heartbeat.loop_stalled"]


async def test_lapsed_key_calls_back_on_the_loop(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    namespace: str,
) -> None:
    calls: list[int] = []
    hb = make_heartbeat(
        interval_ms=100,
        ttl_ms=1000,
        stall_limit_ms=2000,
        on_lapse=lambda: calls.append(threading.get_ident()),
    )
    key = Keys(namespace).heartbeat(WORKER)
    hb.start()
    assert await until(lambda: sync_redis.exists(key))
    await asyncio.sleep(0.3)
    assert calls == []  # the first beat created the key: not a lapse

    sync_redis.delete(key)  # as if it had expired
    assert await until(lambda: calls)
    assert calls == [threading.get_ident()]
    assert sync_redis.exists(key)
    await asyncio.sleep(0.3)
    assert len(calls) == 1


async def test_beat_is_the_store_beat(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    redis: Any,
    namespace: str,
) -> None:
    keys = Keys(namespace)
    hb = make_heartbeat(interval_ms=100, ttl_ms=1500, stall_limit_ms=2000, in_flight=lambda: 7)
    hb.start()
    assert await until(lambda: sync_redis.exists(keys.heartbeat(WORKER)))
    value = beat_value(sync_redis, keys.heartbeat(WORKER))
    assert value is not None and set(value) == {"ts", "in_flight", "version"}
    assert value["in_flight"] == 7
    assert 0 < sync_redis.pttl(keys.heartbeat(WORKER)) <= 1500
    assert sync_redis.zscore(keys.workers, WORKER) is not None
    # The loop-side store sees the same lease (and its loads).
    store = RunStore(redis, keys, worker_id=WORKER, maxlen=10, ttl_s=60)
    assert await store.worker_loads() == {WORKER: 7}
    assert await store.heartbeat(1500, 7) is True


async def test_stop_stops_beats(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    namespace: str,
) -> None:
    keys = Keys(namespace)
    key = keys.heartbeat(WORKER)
    hb = make_heartbeat(interval_ms=100, ttl_ms=1000, stall_limit_ms=2000)
    hb.start()
    assert await until(lambda: hb.last_beat is not None)
    assert hb.running
    hb.stop()
    assert not hb.running
    last_beat = hb.last_beat
    sync_redis.delete(key, keys.workers)  # as the hand-off does
    await asyncio.sleep(0.5)  # five heartbeat intervals
    assert not sync_redis.exists(key)
    assert not sync_redis.exists(keys.workers)
    assert hb.last_beat == last_beat
    hb.stop()  # idempotent
    with pytest.raises(RuntimeError):
        hb.start()


async def test_redis_outage_is_logged_once_and_survived(
    make_heartbeat: Callable[..., LoopHeartbeat],
    sync_redis: redis.Redis,
    namespace: str,
    logs: LogRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lapses: list[int] = []
    in_flight = [0]
    key = Keys(namespace).heartbeat(WORKER)
    hb = make_heartbeat(
        interval_ms=100,
        ttl_ms=300,
        stall_limit_ms=2000,
        in_flight=lambda: in_flight[0],
        on_lapse=lambda: lapses.append(1),
    )
    script = hb._script
    down = threading.Event()

    def flaky(**kwargs: Any) -> Any:
        if down.is_set():
            raise redis.exceptions.ConnectionError("Error 111 connecting. Connection refused.")
        return script(**kwargs)

    monkeypatch.setattr(hb, "_script", flaky)
    hb.start()
    assert await until(lambda: sync_redis.exists(key))
    in_flight[0] = 1
    await asyncio.sleep(0.2)
    down.set()
    assert await until(lambda: not sync_redis.exists(key))  # expired during the outage
    await asyncio.sleep(0.3)  # several failed beats
    assert logs.count("heartbeat.redis_unavailable") == 1
    assert hb.running
    down.clear()
    assert await until(lambda: sync_redis.exists(key))
    assert await until(lambda: lapses)  # the lease had lapsed meanwhile
    assert lapses == [1]
    assert logs.count("heartbeat.redis_back") == 1


async def test_unreachable_redis_never_logs_the_password(
    make_heartbeat: Callable[..., LoopHeartbeat],
    logs: LogRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = "hunter2-liveness-pw"  # matches no API-key pattern: only URL scrubbing hides it
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"
    hb = make_heartbeat(redis_url=url, interval_ms=100, ttl_ms=300, stall_limit_ms=2000)

    def failing(**kwargs: Any) -> Any:
        # An error that names the URL, as some client errors do.
        raise redis.exceptions.ConnectionError(f"Error connecting to {url}: refused")

    monkeypatch.setattr(hb, "_script", failing)
    hb.start()
    assert await until(lambda: logs.count("heartbeat.redis_unavailable") == 1)
    await asyncio.sleep(0.3)
    assert logs.count("heartbeat.redis_unavailable") == 1
    assert hb.running and hb.last_beat is None
    hb.stop()
    assert not hb.running
    text = repr(logs.lines)
    assert "Error connecting to" in text, "the error itself is logged"
    assert password not in text
