"""The RunStore cases of tests/unit/redis/test_store.py, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.unit.redis.test_store import StoreCases

pytestmark = pytest.mark.integration


class TestStoreOnRedis(StoreCases):
    """The same cases, on the test Redis (its DB, this test's key prefix)."""

    @pytest.fixture
    def client(self, redis: Redis) -> Redis:
        return redis
