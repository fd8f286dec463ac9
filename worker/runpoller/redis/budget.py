"""The shared request budgets and 429 pauses of the rate limiter (runpoller/worker/ratelimit.py).

A budget is a counter per API key id and window, taken from in batches by one script
(``ratelimit_take.lua``); a pause is one entry on the control stream every worker reads.
"""

from __future__ import annotations

import json

from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis import scripts

CONTROL_MAXLEN = 1000


class Budgets:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._take = scripts.register(redis, "ratelimit_take")

    def key(self, kid: str, window: int) -> str:
        return f"{self.keys.prefix}:ratelimit:{kid}:{window}"

    async def take(self, kid: str, window: int, limit: int, batch: int, ttl_s: int) -> int:
        """Up to ``batch`` tokens of this window's ``limit`` for the key: how many were granted."""
        granted = await self._take(keys=[self.key(kid, window)], args=[limit, batch, ttl_s])
        return int(granted)

    async def broadcast_pause(self, kid: str, until: float) -> None:
        """Tell every worker (and ourselves) to hold this key's requests until ``until``."""
        await self.redis.xadd(
            self.keys.control,
            {"data": json.dumps({"type": "pause", "kid": kid, "until": until})},
            maxlen=CONTROL_MAXLEN,
            approximate=True,
        )
