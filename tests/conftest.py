"""Shared fixtures: an isolated Redis namespace per test (own DB number and key prefix)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlparse, urlunparse

import pytest
import structlog
from redis.asyncio import Redis

# Tests use their own DB number so they never see (or touch) an app's keys on DB 0.
TEST_DB = int(os.environ.get("RUNPOLLER_TEST_REDIS_DB", "13"))


def test_redis_url() -> str:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{TEST_DB}"))


test_redis_url.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(autouse=True, scope="session")
def _uncached_loggers() -> Iterator[None]:
    """Workers started in-process configure logging with cached loggers, after which
    structlog's ``capture_logs`` would see nothing: in tests, loggers are never cached."""
    configure = structlog.configure

    def uncached(*args: Any, **kwargs: Any) -> None:
        configure(*args, **{**kwargs, "cache_logger_on_first_use": False})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(structlog, "configure", uncached)
        yield


@pytest.fixture
def namespace() -> str:
    """A unique prefix for every key (and queue) a test creates."""
    return f"rptest-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def redis(namespace: str) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(test_redis_url())
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - environment problem, said plainly
        pytest.fail(f"integration tests need a Redis at {test_redis_url()}: {exc}")
    yield client
    # Delete only what this test created: our prefix, and arq keys naming our run ids.
    for pattern in (f"{namespace}*", f"arq:*{namespace}*"):
        keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    await client.aclose()
