"""RunStore's fenced orphan lock and the reads the worker app makes, on fakeredis.

The cases are :class:`StoreCases`; tests/integration/redis/test_store.py runs them on a real
Redis too. (The store's script-backed operations are covered through the scripts'
own tests and by tests/integration/test_runner_redis.py.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import fakeredis
import pytest
from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis.store import ORPHAN_LOCK_TTL_MS, RunStore


def store_for(client: Redis, namespace: str, worker_id: str = "w1") -> RunStore:
    """A store as the worker builds one, under the test's key prefix."""
    return RunStore(client, Keys(namespace), worker_id=worker_id, maxlen=100, ttl_s=60)


class StoreCases:
    """The cases, for any ``client`` fixture (fakeredis here, a real Redis in integration)."""

    # ------------------------------------------------------------------ orphan_lock

    async def test_orphan_lock_is_held_with_a_token_and_released(
        self, client: Redis, namespace: str
    ) -> None:
        store = store_for(client, namespace)
        assert store.orphan_lock_key == f"{namespace}:orphans:lock"
        async with store.orphan_lock() as held:
            assert held is True
            token = await client.get(store.orphan_lock_key)
            assert token is not None and token.startswith(b"w1:")
            ttl_ms = await client.pttl(store.orphan_lock_key)
            assert ORPHAN_LOCK_TTL_MS - 1000 < ttl_ms <= ORPHAN_LOCK_TTL_MS
        assert not await client.exists(store.orphan_lock_key)

    async def test_orphan_lock_takes_its_ttl(self, client: Redis, namespace: str) -> None:
        store = store_for(client, namespace)
        async with store.orphan_lock(ttl_ms=3000) as held:
            assert held
            assert 2000 < await client.pttl(store.orphan_lock_key) <= 3000

    async def test_orphan_lock_is_one_holder_at_a_time(self, client: Redis, namespace: str) -> None:
        first, second = store_for(client, namespace, "w1"), store_for(client, namespace, "w2")
        async with first.orphan_lock() as held:
            assert held
            token = await client.get(first.orphan_lock_key)
            async with second.orphan_lock() as also:
                assert also is False
            assert await client.get(first.orphan_lock_key) == token, "not held: not released"
        async with second.orphan_lock() as held_later:
            assert held_later, "free again once the first holder left"

    async def test_a_slow_holder_does_not_release_the_next_holders_lock(
        self, client: Redis, namespace: str
    ) -> None:
        slow, next_ = store_for(client, namespace, "slow"), store_for(client, namespace, "next")
        slow_lock = slow.orphan_lock(ttl_ms=50)
        assert await slow_lock.__aenter__()
        await asyncio.sleep(0.2)  # the slow holder outlives its lock
        async with next_.orphan_lock() as next_held:
            assert next_held, "a lapsed lock is free for the next worker"
            token = await client.get(next_.orphan_lock_key)
            await slow_lock.__aexit__(None, None, None)  # the slow one finishes now
            assert await client.get(next_.orphan_lock_key) == token, "fenced: still the next's"
        assert not await client.exists(next_.orphan_lock_key)

    async def test_orphan_lock_is_released_when_the_body_raises(
        self, client: Redis, namespace: str
    ) -> None:
        store = store_for(client, namespace)
        with pytest.raises(RuntimeError, match="boom"):
            async with store.orphan_lock() as held:
                assert held
                raise RuntimeError("boom")
        assert not await client.exists(store.orphan_lock_key)

    # ------------------------------------------------------------------ reads

    async def test_run_exists(self, client: Redis, namespace: str) -> None:
        store = store_for(client, namespace)
        assert await store.run_exists("run_1") is False
        await client.hset(f"{namespace}:run:run_1", "owner", "")
        assert await store.run_exists("run_1") is True

    async def test_queue_sample_counts_ready_and_deferred_and_the_oldest_age(
        self, client: Redis, namespace: str
    ) -> None:
        store, queue = store_for(client, namespace), f"{namespace}:queue"
        now_ms = time.time() * 1000
        assert await store.queue_sample(queue, now_ms) == (0, 0, 0.0)
        await client.zadd(queue, {"later": now_ms + 5000})
        assert await store.queue_sample(queue, now_ms) == (0, 1, 0.0), "none due: age 0"
        await client.zadd(queue, {"old": now_ms - 4000, "new": now_ms - 1000, "now": now_ms})
        ready, deferred, age = await store.queue_sample(queue, now_ms)
        assert (ready, deferred) == (3, 1), "a job due right now is ready"
        assert age == pytest.approx(4.0)

    async def test_replies_since_reads_from_an_entry_id_on(
        self, client: Redis, namespace: str
    ) -> None:
        store, replies = store_for(client, namespace), f"{namespace}:replies"
        for ms in (1000, 2000, 3000):
            await client.xadd(replies, {"run_id": f"r{ms}", "round": "1"}, id=f"{ms}-0")
        entries = await store.replies_since("2000-0", 10)
        assert entries == [
            ("2000-0", {b"run_id": b"r2000", b"round": b"1"}),
            ("3000-0", {b"run_id": b"r3000", b"round": b"1"}),
        ]
        assert [entry_id for entry_id, _ in await store.replies_since("0-0", 2)] == [
            "1000-0",
            "2000-0",
        ]
        assert await store.replies_since("4000-0") == []

    async def test_read_inbox_reads_replies_and_control_after_the_cursors(
        self, client: Redis, namespace: str
    ) -> None:
        store, keys = store_for(client, namespace), Keys(namespace)
        await client.xadd(keys.replies, {"run_id": "r1"}, id="1-0")
        await client.xadd(keys.replies, {"run_id": "r2"}, id="2-0")
        await client.xadd(keys.control, {"data": "{}"}, id="5-0")
        cursors = {keys.replies: "1-0", keys.control: "0-0"}
        inbox = await store.read_inbox(cursors, block_ms=10, count=100)
        assert sorted(inbox) == sorted(
            [
                (keys.replies, [("2-0", {b"run_id": b"r2"})]),
                (keys.control, [("5-0", {b"data": b"{}"})]),
            ]
        )
        assert cursors == {keys.replies: "1-0", keys.control: "0-0"}, "the caller's to move"
        caught_up = {keys.replies: "2-0", keys.control: "5-0"}
        assert await store.read_inbox(caught_up, block_ms=10, count=100) == []

    async def test_read_inbox_honours_count(self, client: Redis, namespace: str) -> None:
        store, keys = store_for(client, namespace), Keys(namespace)
        for n in range(1, 4):
            await client.xadd(keys.replies, {"n": str(n)}, id=f"{n}-0")
        ((stream, entries),) = await store.read_inbox({keys.replies: "0-0"}, block_ms=10, count=2)
        assert stream == keys.replies
        assert [entry_id for entry_id, _ in entries] == ["1-0", "2-0"]

    async def test_stream_positions_are_last_ids_or_the_start(
        self, client: Redis, namespace: str
    ) -> None:
        store, keys = store_for(client, namespace), Keys(namespace)
        for ms in (1000, 2000, 3000):
            await client.xadd(keys.replies, {"n": str(ms)}, id=f"{ms}-0")
        await client.xadd(keys.control, {"data": "{}"}, id="7-3")
        await client.xadd(f"{namespace}:emptied", {"n": "1"}, id="9-0")
        await client.xdel(f"{namespace}:emptied", "9-0")
        streams = [keys.replies, keys.control, f"{namespace}:missing", f"{namespace}:emptied"]
        assert await store.stream_positions(streams) == {
            keys.replies: "3000-0",
            keys.control: "7-3",
            f"{namespace}:missing": "0-0",
            f"{namespace}:emptied": "0-0",
        }
        assert await store.stream_positions([]) == {}

    async def test_a_read_from_the_positions_gets_only_later_entries(
        self, client: Redis, namespace: str
    ) -> None:
        """Old entries are not replayed; one written after (even into a new stream) is read."""
        store, keys = store_for(client, namespace), Keys(namespace)
        for n in range(1, 51):
            await client.xadd(keys.replies, {"n": str(n)})
        cursors = await store.stream_positions([keys.replies, keys.control])
        later = await client.xadd(keys.replies, {"n": "later"})
        created = await client.xadd(keys.control, {"data": "first"})
        inbox = dict(await store.read_inbox(cursors, block_ms=10, count=100))
        assert [entry_id for entry_id, _ in inbox[keys.replies]] == [later.decode()]
        assert [entry_id for entry_id, _ in inbox[keys.control]] == [created.decode()]

    async def test_ping(self, client: Redis, namespace: str) -> None:
        assert await store_for(client, namespace).ping() is True


class TestStoreOnFakeredis(StoreCases):
    """The cases on fakeredis, each test with a server of its own."""

    @pytest.fixture
    async def client(self) -> AsyncIterator[Redis]:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield client
        await client.aclose()
