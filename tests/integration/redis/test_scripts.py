"""The Lua script cases of tests/unit/redis/test_scripts.py, on a real Redis."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.unit.redis.test_scripts import ScriptCases

pytestmark = pytest.mark.integration


class TestScriptsOnRedis(ScriptCases):
    """The same cases, on the test Redis (its DB, this test's key prefix)."""

    @pytest.fixture
    def client(self, redis: Redis) -> Redis:
        return redis
