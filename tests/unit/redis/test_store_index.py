"""RunStore keeps the run indexes (``runs:active``, ``runs:ended``) at claim, finalize, reject
and restore, scored by the worker's clock; a poll's publish never touches them.

On fakeredis; the scripts' own cases (tests/unit/redis/test_scripts.py) cover every return.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis import store as store_module
from runpoller.redis.store import RunStore

NOW_MS = 1_764_115_230_500
TTL_S = 60


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield redis
    await redis.aclose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The store's clock, pinned: set ``clock[0]`` to move it."""
    now = [NOW_MS]
    monkeypatch.setattr(store_module, "_now_ms", lambda: now[0])
    return now


def store_for(client: Redis, worker_id: str = "w1") -> RunStore:
    return RunStore(client, Keys("rp"), worker_id=worker_id, maxlen=100, ttl_s=TTL_S)


async def index(client: Redis, key: str) -> list[tuple[str, int]]:
    return [(m.decode(), int(s)) for m, s in await client.zrange(key, 0, -1, withscores=True)]


async def test_a_run_is_active_from_its_claim_and_ended_from_its_finalize(
    client: Redis, clock: list[int]
) -> None:
    store, keys = store_for(client), Keys("rp")
    assert (await store.claim("run_1", "{}", "{}", "{}")).outcome == "new"
    assert await index(client, keys.runs_active) == [("run_1", NOW_MS)]
    assert await store.publish("run_1", "{}", [("status", "{}")]) == 1
    assert await index(client, keys.runs_active) == [("run_1", NOW_MS)], "publish: untouched"
    assert not await client.exists(keys.runs_ended)

    clock[0] = NOW_MS + 5_000
    assert await store.finalize("run_1", "{}", "{}", "completed") == 1
    assert await index(client, keys.runs_active) == []
    assert await index(client, keys.runs_ended) == [("run_1", NOW_MS + 5_000)]


async def test_trim_ended_drops_runs_older_than_the_record_ttl_and_finalize_does_not(
    client: Redis, clock: list[int]
) -> None:
    store, keys = store_for(client), Keys("rp")
    old = {"old": NOW_MS - TTL_S * 1000 - 1, "edge": NOW_MS - TTL_S * 1000, "recent": NOW_MS - 1}
    await client.zadd(keys.runs_ended, old)
    await store.claim("run_1", "{}", "{}", "{}")
    await store.finalize("run_1", "{}", "{}", "failed")
    assert len(await index(client, keys.runs_ended)) == 4, (
        "finalize leaves the trim to housekeeping"
    )
    assert await store.trim_ended() == 1
    assert [m for m, _ in await index(client, keys.runs_ended)] == ["edge", "recent", "run_1"]


async def test_a_rejected_job_is_listed_as_ended(client: Redis, clock: list[int]) -> None:
    store, keys = store_for(client), Keys("rp")
    assert await store.reject("bad_1", '{"status": "error"}')
    assert await index(client, keys.runs_ended) == [("bad_1", NOW_MS)]
    assert not await client.exists(keys.runs_active)


async def test_a_restored_record_is_active_again(client: Redis, clock: list[int]) -> None:
    store, keys = store_for(client), Keys("rp")
    assert await store.restore("run_1", "{}", "{}")
    assert await index(client, keys.runs_active) == [("run_1", NOW_MS)]


async def test_a_takeover_keeps_the_accepted_time(client: Redis, clock: list[int]) -> None:
    keys = Keys("rp")
    await store_for(client, "w1").claim("run_1", "{}", "{}", "{}")
    await client.hset(keys.run("run_1"), "owner", "")  # released by a dead worker
    clock[0] = NOW_MS + 9_000
    assert (await store_for(client, "w2").claim("run_1", "", "", "")).outcome == "resumed"
    assert await index(client, keys.runs_active) == [("run_1", NOW_MS)]
