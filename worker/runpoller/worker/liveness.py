"""The worker's heartbeat, kept out of the event loop but tied to its progress.

A worker holding thousands of runs can saturate its event loop: every coroutine still runs,
only late. If the heartbeat were renewed by a coroutine it would be late too, its key would
expire and the other workers would take over runs this worker is still driving.

:class:`LoopHeartbeat` renews the heartbeat from a daemon thread with its own synchronous
Redis client, using the very script of :mod:`runpoller.redis.store` (same key, value and TTL), so
a saturated loop does not delay it. It still stops when the loop is really stuck: the loop
records a tick (``loop.call_later``, every ~0.25 s) and the thread beats only while the last
tick is younger than ``loop_stall_limit_ms``. A loop that is blocked or wedged stops ticking,
the beats stop, the key expires after the TTL and the other workers take the runs over. When
the ticks come back the beats resume; a beat that finds the key had lapsed calls the owner's
``on_lapse`` on the loop (the worker then drops the runs it may have lost).

The heartbeat key of a loop stalled for good expires at most ``loop_stall_limit_ms`` +
``dead_worker_after_ms`` after its last tick (the last beat may come just before the limit);
the other workers take its runs over at their next housekeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from redis.backoff import NoBackoff
from redis.retry import Retry

from runpoller.config import Settings
from runpoller.protocol import Keys
from runpoller.redis import scripts

# One script and one argument list for both beats (the loop-side RunStore.heartbeat and this
# thread): the same key, value and TTL.
from runpoller.redis.store import heartbeat_args
from runpoller.redis.url import connect_sync
from runpoller.secrets import scrub

HEARTBEAT_SCRIPT = scripts.source("heartbeat")

log = structlog.get_logger("runpoller.liveness")

TICK_S = 0.25
"""How often the event loop records that it is making progress."""


def _error_text(exc: BaseException) -> str:
    return scrub(f"{type(exc).__name__}: {exc}")


class LoopHeartbeat:
    """Renews ``<prefix>:worker:<id>`` from a thread while the event loop makes progress.

    ``in_flight`` is called from the heartbeat thread at every beat: it must be cheap and
    thread-safe (``len()`` of a dict is). ``on_lapse`` is called on the event loop (through
    ``call_soon_threadsafe``) when a beat finds the key had expired; if it returns an awaitable
    (e.g. an ``async def`` method), that is run as a task. :meth:`start` and :meth:`stop` are
    called on the event loop's thread.
    """

    def __init__(
        self,
        redis_url: str,
        keys: Keys,
        worker_id: str,
        *,
        interval_ms: int,
        ttl_ms: int,
        stall_limit_ms: int,
        in_flight: Callable[[], int],
        on_lapse: Callable[[], object],
        tick_s: float = TICK_S,
        socket_timeout_s: float | None = None,
    ) -> None:
        if interval_ms <= 0 or ttl_ms <= 0:
            raise ValueError("interval_ms and ttl_ms must be positive")
        if stall_limit_ms <= interval_ms:
            raise ValueError("stall_limit_ms must exceed interval_ms")
        self.worker_id = worker_id
        self.interval_s = interval_ms / 1000
        self.ttl_ms = ttl_ms
        self.stall_limit_s = stall_limit_ms / 1000
        self.in_flight = in_flight
        self._on_lapse = on_lapse
        self._tick_s = min(tick_s, self.stall_limit_s / 4)
        timeout = socket_timeout_s or min(2.0, max(0.2, self.interval_s))
        self._join_timeout_s = 4 * timeout + self.interval_s + 1
        self._heartbeat_key = keys.heartbeat(worker_id)
        self._workers_key = keys.workers
        self._client: redis.Redis = connect_sync(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )
        self._script = self._client.register_script(HEARTBEAT_SCRIPT)

        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._last_tick = time.monotonic()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._stopped = False
        self._lapse_tasks: set[asyncio.Future[Any]] = set()
        self._last_in_flight = 0
        self._beats = 0
        self.last_beat: float | None = None
        """Wall-clock time (``time.time()``) of the last successful beat, None before one."""
        self.stalled = False
        """Whether the thread holds back beats now because the loop is not ticking."""

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        worker_id: str,
        *,
        in_flight: Callable[[], int],
        on_lapse: Callable[[], object],
    ) -> LoopHeartbeat:
        return cls(
            settings.redis_url,
            Keys(settings.key_prefix),
            worker_id,
            interval_ms=settings.heartbeat_interval_ms,
            ttl_ms=settings.dead_worker_after_ms,
            stall_limit_ms=settings.loop_stall_limit_ms,
            in_flight=in_flight,
            on_lapse=on_lapse,
        )

    # ------------------------------------------------------------------ public

    @property
    def lag_s(self) -> float:
        """Age of the event loop's last tick: how far behind the loop is (or how long stuck)."""
        return max(0.0, time.monotonic() - self._last_tick)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start ticking on the running loop and beating from the thread (first beat at once)."""
        if self._stopped:
            raise RuntimeError("a stopped LoopHeartbeat cannot be started again")
        if self._thread is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._last_tick = time.monotonic()
        self._tick_handle = self._loop.call_later(self._tick_s, self._tick)
        # The thread logs with the caller's context (worker_id bound by the app).
        context = contextvars.copy_context()
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="runpoller-heartbeat", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and wait for the thread; no beat is sent after this returns.

        Blocks for at most one Redis call (bounded by the short socket timeout). Idempotent.
        """
        if self._stopped:
            return
        self._stopped = True
        self._stop.set()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        # A lapse being handled (dropping lost runs) must not race the owner's shutdown.
        for task in list(self._lapse_tasks):
            task.cancel()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(self._join_timeout_s)
            if thread.is_alive():  # pragma: no cover - a Redis call outlived its timeouts
                log.warning("heartbeat.stop_timeout", waited_s=self._join_timeout_s)
        # Typed here: redis-py before 5.3 leaves Redis.close unannotated (mypy --strict).
        close: Callable[[], None] = self._client.close
        close()

    # ------------------------------------------------------------------ event loop side

    def _tick(self) -> None:
        self._last_tick = time.monotonic()
        if not self._stopped and self._loop is not None:
            self._tick_handle = self._loop.call_later(self._tick_s, self._tick)

    def _fire_lapse(self) -> None:
        """Runs on the loop: tell the owner its lease had lapsed."""
        if self._stopped:
            return
        try:
            result = self._on_lapse()
        except Exception as exc:
            log.error("heartbeat.lapse_callback_failed", error=_error_text(exc))
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._lapse_tasks.add(task)
            task.add_done_callback(self._lapse_done)

    def _lapse_done(self, task: asyncio.Future[Any]) -> None:
        self._lapse_tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("heartbeat.lapse_callback_failed", error=_error_text(exc))

    # ------------------------------------------------------------------ thread side

    def _run(self) -> None:
        redis_down_since: float | None = None
        stalled_since = 0.0
        next_beat = time.monotonic()
        try:
            while not self._stop.is_set():
                lag = self.lag_s
                if lag > self.stall_limit_s:
                    if not self.stalled:
                        self.stalled = True
                        stalled_since = self._last_tick
                        log.warning(
                            "heartbeat.loop_stalled",
                            lag_s=round(lag, 3),
                            limit_s=self.stall_limit_s,
                            beating="no: other workers will take the runs over",
                        )
                else:
                    if self.stalled:
                        self.stalled = False
                        log.info(
                            "heartbeat.loop_resumed",
                            stalled_s=round(self._last_tick - stalled_since, 3),
                        )
                    try:
                        alive = self._beat()
                    except (redis.RedisError, OSError) as exc:
                        if redis_down_since is None:
                            redis_down_since = time.monotonic()
                            log.warning(
                                "heartbeat.redis_unavailable",
                                retrying=f"every {self.interval_s:g}s",
                                error=_error_text(exc),
                            )
                    else:
                        if alive is None:  # stop() came first: nothing was sent
                            break
                        if redis_down_since is not None:
                            log.info(
                                "heartbeat.redis_back",
                                down_s=round(time.monotonic() - redis_down_since, 3),
                            )
                            redis_down_since = None
                        self._after_beat(alive)
                next_beat = max(next_beat + self.interval_s, time.monotonic())
                self._stop.wait(max(0.0, next_beat - time.monotonic()))
        except Exception as exc:  # pragma: no cover - a bug; say so instead of dying silently
            log.error("heartbeat.thread_failed", error=_error_text(exc))
            raise

    def _beat(self) -> bool | None:
        """One renewal (store.py's script): whether the key still existed before it.

        None: :meth:`stop` was called meanwhile, and nothing was sent.
        """
        try:
            in_flight = int(self.in_flight())
            self._last_in_flight = in_flight
        except Exception:
            in_flight = self._last_in_flight
        args = heartbeat_args(self.worker_id, self.ttl_ms, in_flight)
        if self._stop.is_set():
            return None
        alive = self._script(keys=[self._heartbeat_key, self._workers_key], args=args)
        self.last_beat = args[1] / 1000
        return bool(alive)

    def _after_beat(self, alive: bool) -> None:
        first = self._beats == 0
        self._beats += 1
        # The first beat of a worker that holds nothing creates its key: not a lapse.
        if alive or (first and self._last_in_flight == 0):
            return
        loop = self._loop
        if loop is None or self._stop.is_set():
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody left to tell
            loop.call_soon_threadsafe(self._fire_lapse)
