"""The dashboard benchmark (``python -m runpoller_bench.dashboard``) runs, small, on real
Redis, and leaves no key behind. Its numbers are reported, never asserted."""

from __future__ import annotations

import argparse

import pytest
from redis.asyncio import Redis

from runpoller_bench.dashboard import run
from tests.conftest import TEST_DB, test_redis_url

pytestmark = pytest.mark.integration


async def test_the_dashboard_bench_times_every_endpoint_and_cleans_up() -> None:
    args = argparse.Namespace(active=300, ended=2000, n=8, db=TEST_DB)
    out = await run(args)
    assert [r["path"].split("?")[0] for r in out["endpoints"]] == [
        "/api/overview", "/api/runs", "/api/runs", "/api/runs", "/api/runs/active-3",
    ]  # fmt: skip
    assert all(r["n"] >= 2 and r["bytes"] > 0 for r in out["endpoints"])
    redis: Redis = Redis.from_url(test_redis_url())
    try:
        left = [key async for key in redis.scan_iter(match="rpbench-dash-*", count=1000)]
    finally:
        await redis.aclose()
    assert left == []
