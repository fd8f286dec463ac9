"""Helpers for tests that run real worker processes (tests/chaos, tests/scaling)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import httpx
from redis.asyncio import Redis

from runpoller_fake import FakeServer
from tests.conftest import test_redis_url


def worker_env(fake: FakeServer, namespace: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m runpoller worker`` process on this test's namespace.

    The caller's own RUNPOLLER_* and ASSISTANTS_* variables are dropped, so a developer's
    shell settings never leak into a test. ``extra`` adds or overrides variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env.update(
        {
            "REDIS_URL": test_redis_url(),
            "ASSISTANTS_BASE_URL": fake.base_url,
            "ASSISTANTS_API_KEY": api_key,
            "RUNPOLLER_KEY_PREFIX": namespace,
            "RUNPOLLER_QUEUE_NAME": f"{namespace}:queue",
            "RUNPOLLER_TIMEOUT_MS": "60000",
            "RUNPOLLER_HEARTBEAT_INTERVAL_MS": "250",
            "RUNPOLLER_DEAD_WORKER_AFTER_MS": "1500",
            "RUNPOLLER_ARQ_POLL_DELAY_S": "0.05",
            "RUNPOLLER_LOG_LEVEL": "WARNING",
            "RUNPOLLER_LOG_FORMAT": "json",
            "RUNPOLLER_METRICS_PORT": "0",
            **extra,
        }
    )
    return env


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def create_runs(fake: FakeServer, n: int, work_ms: int) -> list[tuple[str, str]]:
    """``n`` runs on the fake server that complete after ``work_ms``: (thread id, run id)."""
    script = {
        "steps": [
            {"status": "queued", "ms": 100},
            {"status": "in_progress", "ms": work_ms},
            {"status": "completed", "messages": ["done"]},
        ]
    }
    async with httpx.AsyncClient(base_url=fake.root_url) as http:

        async def one() -> tuple[str, str]:
            body = (await http.post("/_fake/runs", json={"script": script})).json()
            return body["thread_id"], body["id"]

        out: list[tuple[str, str]] = []
        for start in range(0, n, 50):
            out += await asyncio.gather(*(one() for _ in range(min(50, n - start))))
        return out


async def owners(redis: Redis, namespace: str) -> dict[str, set[str]]:
    """The runs each worker holds now (workers holding none are left out)."""
    snapshot: dict[str, set[str]] = {}
    async for key in redis.scan_iter(match=f"{namespace}:owned:*"):
        worker_id = key.decode().split(":owned:", 1)[1]
        members = {m.decode() for m in await redis.smembers(key)}
        if members:
            snapshot[worker_id] = members
    return snapshot


async def final_counts(redis: Redis, namespace: str, run_ids: list[str]) -> dict[str, int]:
    """How many final events each run's stream holds (exactly one is right)."""
    async with redis.pipeline(transaction=False) as pipe:
        for rid in run_ids:
            pipe.xrange(f"{namespace}:events:{rid}")
        streams = await pipe.execute()
    return {
        rid: sum(1 for _, fields in entries if fields[b"type"] == b"final")
        for rid, entries in zip(run_ids, streams, strict=True)
    }
