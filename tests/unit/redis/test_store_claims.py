"""RunStore.claim gathers the claims of one event-loop turn into one script call, and each
caller still gets its own claim (or its own error); the cancel request comes with it.

On fakeredis; the script's own cases (tests/unit/redis/test_scripts.py) cover every return.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import fakeredis
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from runpoller.protocol import Keys
from runpoller.redis import store as store_module
from runpoller.redis.store import Claim, RunStore


@pytest.fixture
async def client() -> AsyncIterator[Redis]:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield redis
    await redis.aclose()


class CountingStore(RunStore):
    """A store that records the runs of each claim script call."""

    def __init__(self, client: Redis, worker_id: str = "w1") -> None:
        super().__init__(client, Keys("rp"), worker_id=worker_id, maxlen=100, ttl_s=60)
        self.calls: list[list[str]] = []

    async def claim_many(self, calls: Sequence[store_module._ClaimCall]) -> list[Claim]:
        self.calls.append([c.run_id for c in calls])
        return await super().claim_many(calls)


async def test_concurrent_claims_go_in_one_script_call(client: Redis) -> None:
    store = CountingStore(client)
    await client.hset("rp:run:old", mapping={"job": "j", "state": "s", "owner": ""})
    await client.hset("rp:cancel:old", mapping={"reason": "stop it", "requested_at": "1"})
    ids = [f"r{i}" for i in range(20)] + ["old"]
    claims = await asyncio.gather(*(store.claim(i, "{}", "{}", "{}") for i in ids))
    assert store.calls == [ids]
    assert [c.outcome for c in claims] == ["new"] * 20 + ["resumed"]
    assert claims[-1] == Claim("resumed", "j", "s", cancel="stop it")
    assert all(c.cancel is None for c in claims[:-1])
    assert await client.scard("rp:owned:w1") == 21


async def test_a_claim_alone_is_a_call_of_one(client: Redis) -> None:
    store = CountingStore(client)
    assert (await store.claim("r1", "{}", "{}", "{}")).outcome == "new"
    assert (await store.claim("r2", "{}", "{}", "{}")).outcome == "new"
    assert store.calls == [["r1"], ["r2"]]


async def test_claims_beyond_the_batch_limit_go_in_several_calls(
    client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "CLAIM_BATCH_MAX", 3)
    store = CountingStore(client)
    claims = await asyncio.gather(*(store.claim(f"r{i}", "{}", "{}", "{}") for i in range(7)))
    assert [len(c) for c in store.calls] == [3, 3, 1]
    assert {c.outcome for c in claims} == {"new"}


async def test_a_failed_call_fails_each_of_its_claims_and_the_next_ones_go_on(
    client: Redis,
) -> None:
    store = CountingStore(client)
    failing = [True]
    real = store.claim_many

    async def flaky(calls: Sequence[store_module._ClaimCall]) -> list[Claim]:
        if failing[0]:
            failing[0] = False
            raise RedisConnectionError("gone")
        return await real(calls)

    store._claims._send = flaky  # the batcher was built with the bound method
    results = await asyncio.gather(
        *(store.claim(f"r{i}", "{}", "{}", "{}") for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results)
    assert not await client.exists("rp:run:r0"), "nothing was claimed"
    assert (await store.claim("r0", "{}", "{}", "{}")).outcome == "new"


async def test_a_cancelled_caller_leaves_the_others_their_claims(client: Redis) -> None:
    store = CountingStore(client)
    first = asyncio.ensure_future(store.claim("r1", "{}", "{}", "{}"))
    second = asyncio.ensure_future(store.claim("r2", "{}", "{}", "{}"))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second).outcome == "new"
    assert first.cancelled()
