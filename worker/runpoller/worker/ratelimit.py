"""A request budget per API key shared by every worker, and 429 back-off felt by all of them.

Budget: a fixed window (``RUNPOLLER_RATE_LIMIT_WINDOW_S``, default 60 s) allows
``RUNPOLLER_RATE_LIMIT_REQUESTS`` requests per key, counted atomically in Redis. Workers take
tokens in small batches (one Lua call per batch, not per request) and drop unused tokens when
the window turns, so the cluster never exceeds the budget by more than one batch per worker
at a window edge. 0 disables the budget (and costs nothing).

Back-off: when the API answers 429 with a retry-after, the worker pauses that key locally and
broadcasts the pause on a control stream that every worker already reads (with the replies),
so all of them hold their requests for that key until the pause ends.

Keys are identified by a hash (``kid``), never by the key itself.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis.budget import Budgets


@functools.lru_cache(maxsize=4096)
def key_id(api_key: str) -> str:
    """A stable, non-reversible name for an API key (for Redis keys, logs and metrics).

    Cached: it is asked for on every request, and a worker sees few distinct keys.
    """
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Slot:
    granted: bool
    waited: float
    retry_after: float = 0.0
    why: str = ""


@dataclass
class _Bucket:
    window: int = -1
    tokens: int = 0
    paused_until: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        *,
        requests: int,
        window_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.requests = requests
        self.window_s = window_s
        self.clock = clock
        self.batch = max(1, min(10, requests // 20))
        self._buckets: dict[str, _Bucket] = {}
        self.budgets = Budgets(redis, keys)

    def _bucket(self, kid: str) -> _Bucket:
        bucket = self._buckets.get(kid)
        if bucket is None:
            bucket = self._buckets[kid] = _Bucket()
        return bucket

    async def acquire(self, api_key: str, max_wait: float) -> Slot:
        """Wait up to ``max_wait`` s for a request slot for this key.

        When none comes in time the slot says how long until one might: the caller turns
        that into a retryable failure, so the engine keeps deciding around the run's deadline.
        """
        kid = key_id(api_key)
        bucket = self._bucket(kid)
        started = self.clock()
        give_up = started + max_wait
        while True:
            now = self.clock()
            pause = bucket.paused_until - now
            if pause > 0:
                if bucket.paused_until > give_up:
                    return Slot(False, now - started, pause, "a 429 pause for this key")
                await asyncio.sleep(pause)
                continue
            if self.requests <= 0:
                return Slot(True, now - started)
            async with bucket.lock:
                window = int(self.clock() // self.window_s)
                if bucket.window != window:
                    bucket.window, bucket.tokens = window, 0
                if bucket.tokens == 0:
                    bucket.tokens = await self.budgets.take(
                        kid, window, self.requests, self.batch, int(self.window_s * 2) + 1
                    )
                if bucket.tokens > 0:
                    bucket.tokens -= 1
                    return Slot(True, self.clock() - started)
            # Budget spent for this window: wait for the next one (jittered, to spread out).
            next_window = (window + 1) * self.window_s + random.random() * 0.05
            now = self.clock()
            if next_window > give_up:
                why = f"the budget of {self.requests} requests per {self.window_s:g} s is spent"
                return Slot(False, now - started, next_window - now, why)
            await asyncio.sleep(max(next_window - now, 0))

    def pause_local(self, kid: str, until: float) -> None:
        bucket = self._bucket(kid)
        bucket.paused_until = max(bucket.paused_until, until)

    async def pause(self, api_key: str, seconds: float) -> None:
        """Hold every worker's requests for this key for ``seconds`` (a 429's retry-after)."""
        kid = key_id(api_key)
        until = self.clock() + seconds
        if until <= self._bucket(kid).paused_until:
            return
        self.pause_local(kid, until)
        await self.budgets.broadcast_pause(kid, until)

    def on_control(self, data: str) -> None:
        """A control message from another worker (or ourselves)."""
        try:
            message = json.loads(data)
            if message.get("type") == "pause":
                self.pause_local(str(message["kid"]), float(message["until"]))
        except (ValueError, KeyError, TypeError):
            return
