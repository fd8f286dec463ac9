"""The shared per-key request budget and the 429 pause, on fakeredis."""

from __future__ import annotations

import asyncio
import json

import fakeredis

from runpoller.protocol import Keys
from runpoller.worker.ratelimit import RateLimiter, key_id


async def test_budget_is_shared_between_workers_and_per_key() -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("rl")
    a = RateLimiter(redis, keys, requests=10, window_s=3600)
    b = RateLimiter(redis, keys, requests=10, window_s=3600)
    slots = await asyncio.gather(
        *(limiter.acquire("sk-one", max_wait=0.05) for limiter in [a, b] * 12)
    )
    assert sum(slot.granted for slot in slots) == 10
    refused = [slot for slot in slots if not slot.granted]
    assert all("budget of 10 requests per 3600 s is spent" in s.why for s in refused)
    assert all(s.retry_after > 0 for s in refused)
    other = await a.acquire("sk-two", max_wait=0.05)
    assert other.granted, "each key has its own budget"


async def test_zero_budget_means_unlimited_and_costs_no_redis_call() -> None:
    redis = fakeredis.FakeAsyncRedis()
    limiter = RateLimiter(redis, Keys("rl"), requests=0, window_s=60)
    slots = [await limiter.acquire("sk-x", max_wait=0) for _ in range(100)]
    assert all(s.granted for s in slots)
    assert await redis.keys("rl:ratelimit:*") == []


async def test_a_429_pause_reaches_the_other_workers() -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("rl")
    a = RateLimiter(redis, keys, requests=0, window_s=60)
    b = RateLimiter(redis, keys, requests=0, window_s=60)
    await a.pause("sk-shared", 30)
    ((_, entries),) = await redis.xread({keys.control: "0-0"})
    message = json.loads(entries[0][1][b"data"])
    assert message["kid"] == key_id("sk-shared") and "sk-shared" not in json.dumps(message)
    b.on_control(entries[0][1][b"data"].decode())
    slot = await b.acquire("sk-shared", max_wait=0.05)
    assert not slot.granted and "429 pause" in slot.why and slot.retry_after > 25
    assert (await b.acquire("sk-other", max_wait=0.05)).granted


def test_malformed_control_messages_are_ignored() -> None:
    limiter = RateLimiter(fakeredis.FakeAsyncRedis(), Keys("rl"), requests=0, window_s=60)
    for data in (
        "not json",
        "{}",
        '{"type": "pause"}',
        '{"type": "pause", "kid": 1, "until": "x"}',
    ):
        limiter.on_control(data)
