"""The replies listener's read positions, on fakeredis (issue 14, item 2).

The read starts from positions recorded once, before the first read, and then only moves
past entries it has read: never ``$``, which would skip an entry written between two reads
(while the worker was stalled, busy or reconnecting).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, cast

import fakeredis
import pytest
from redis.asyncio import Redis

from runpoller import engine
from runpoller.protocol import Keys, ParsedReply
from runpoller.redis.store import RunStore
from runpoller.worker.replies import RepliesListener

Hook = Callable[[], Awaitable[None]]


class Store(RunStore):
    """A RunStore that records each read and runs a hook after it returns, before the next.

    A hook's writes land while the listener is not blocked in a read, as during a stall.
    """

    def __init__(self, redis: Redis, keys: Keys) -> None:
        super().__init__(redis, keys, worker_id="w1", maxlen=100, ttl_s=60)
        self.reads: list[dict[str, str]] = []
        self.after_read: list[Hook] = []
        self.failing_reads = 0
        self.failing_positions = 0
        self.position_calls = 0

    async def stream_positions(self, streams: Sequence[str]) -> dict[str, str]:
        self.position_calls += 1
        if self.failing_positions:
            self.failing_positions -= 1
            raise ConnectionError("Redis is down")
        return await super().stream_positions(streams)

    async def read_inbox(
        self, cursors: Mapping[str, str], block_ms: int = 1000, count: int = 500
    ) -> list[tuple[str, list[tuple[str, dict[Any, Any]]]]]:
        self.reads.append(dict(cursors))
        if self.failing_reads:
            self.failing_reads -= 1
            raise ConnectionError("Redis is down")
        reply = await super().read_inbox(cursors, block_ms=5, count=count)
        if self.after_read:
            await self.after_read.pop(0)()
        return reply


class Sink:
    """Stands in for the runner (replies) and the rate limiter (control messages)."""

    def __init__(self) -> None:
        self.replies: list[ParsedReply] = []
        self.controls: list[str] = []

    def deliver_reply(self, reply: ParsedReply) -> bool:
        self.replies.append(reply)
        return True

    def on_control(self, data: str) -> None:
        if data == "boom":
            raise AttributeError("a control message the limiter chokes on")
        self.controls.append(data)

    @property
    def run_ids(self) -> list[str]:
        return [reply.run_id for reply in self.replies]


KEYS = Keys("t")


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await client.aclose()


def listener_for(store: Store, sink: Sink) -> RepliesListener:
    listener = RepliesListener(store, KEYS, cast(Any, sink), cast(Any, sink))
    listener.retry_s = 0.01
    return listener


async def reply(redis: Redis, run_id: str, **fields: str) -> str:
    body = json.dumps([{"tool_call_id": "call_1", "output": "sunny"}])
    entry = await redis.xadd(
        KEYS.replies, {"run_id": run_id, "round": "1", "outputs": body, **fields}
    )
    return entry.decode() if isinstance(entry, bytes) else str(entry)


async def listen_until(listener: RepliesListener, done: Callable[[], bool]) -> None:
    task = asyncio.create_task(listener.listen())
    try:
        deadline = time.monotonic() + 3
        while not done():
            assert not task.done(), "the listener ended"
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def no_dollar(store: Store) -> None:
    assert store.reads, "the listener read"
    assert all("$" not in cursors.values() for cursors in store.reads), store.reads


async def test_a_reply_written_between_two_reads_before_any_was_read_is_delivered(
    redis: Redis,
) -> None:
    """The defect: no entry read yet, the first read returns empty, a reply lands, then the
    next read starts; from ``$`` it would never see that reply."""
    store, sink = Store(redis, KEYS), Sink()

    async def stall() -> None:
        await reply(redis, "r1")

    store.after_read.append(stall)
    await listen_until(listener_for(store, sink), lambda: bool(sink.replies))
    assert sink.run_ids == ["r1"]
    assert store.reads[0] == {
        KEYS.replies: "0-0",
        KEYS.control: "0-0",
        KEYS.cancels: "0-0",
        KEYS.wakes: "0-0",
    }
    no_dollar(store)


async def test_old_entries_are_not_replayed_and_the_next_one_is_read(redis: Redis) -> None:
    store, sink = Store(redis, KEYS), Sink()
    async with redis.pipeline(transaction=False) as pipe:
        for n in range(5000):
            pipe.xadd(KEYS.replies, {"run_id": f"old{n}", "round": "1", "outputs": "[]"})
        ids = await pipe.execute()
    last = ids[-1].decode()
    await redis.xadd(KEYS.control, {"data": "old"}, id="5-0")

    async def stall() -> None:
        await reply(redis, "new")

    store.after_read.append(stall)
    await listen_until(listener_for(store, sink), lambda: bool(sink.replies))
    assert sink.run_ids == ["new"]
    assert sink.controls == []
    assert store.reads[0] == {
        KEYS.replies: last,
        KEYS.control: "5-0",
        KEYS.cancels: "0-0",
        KEYS.wakes: "0-0",
    }
    no_dollar(store)


async def test_streams_created_later_are_read_from_their_first_entry(redis: Redis) -> None:
    store, sink = Store(redis, KEYS), Sink()

    async def created() -> None:
        for n in range(3):
            await reply(redis, f"r{n}")
        await redis.xadd(KEYS.control, {"data": '{"type": "pause"}'})

    store.after_read.append(created)
    await listen_until(listener_for(store, sink), lambda: len(sink.replies) == 3)
    assert sink.run_ids == ["r0", "r1", "r2"]
    assert sink.controls == ['{"type": "pause"}']
    no_dollar(store)


async def test_read_errors_keep_the_position(redis: Redis) -> None:
    store, sink = Store(redis, KEYS), Sink()
    await reply(redis, "before")
    listener = listener_for(store, sink)

    async def outage() -> None:
        await reply(redis, "during")  # written just before Redis "goes away"
        store.failing_reads = 3

    store.after_read.append(outage)
    await listen_until(listener, lambda: bool(sink.replies))
    assert sink.run_ids == ["during"]
    first = store.reads[0]
    assert store.reads[1:5] == [first] * 4, "each retry and the recovery read from the same id"
    no_dollar(store)


async def test_positions_unavailable_at_start_are_retried_never_guessed(redis: Redis) -> None:
    store, sink = Store(redis, KEYS), Sink()
    store.failing_positions = 3
    await reply(redis, "old")

    async def after() -> None:
        await reply(redis, "r1")

    store.after_read.append(after)
    listener = listener_for(store, sink)
    await listen_until(listener, lambda: bool(sink.replies))
    assert store.position_calls == 4
    assert sink.run_ids == ["r1"]
    assert store.reads[0][KEYS.replies] != "0-0", "recorded once Redis answered"
    no_dollar(store)


async def test_a_bad_entry_does_not_end_the_listener(redis: Redis) -> None:
    store, sink = Store(redis, KEYS), Sink()

    async def bad_then_good() -> None:
        await redis.xadd(KEYS.control, {"data": "boom"})
        await redis.xadd(KEYS.replies, {"run_id": "r0", "round": "x"})  # unparseable round
        await reply(redis, "r1")

    store.after_read.append(bad_then_good)
    await listen_until(listener_for(store, sink), lambda: bool(sink.replies))
    assert sink.run_ids == ["r1"]


async def test_a_decoding_client_is_read_alike() -> None:
    redis = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer(), decode_responses=True)
    store, sink = Store(redis, KEYS), Sink()
    await reply(redis, "old")

    async def after() -> None:
        await reply(redis, "r1")

    store.after_read.append(after)
    await listen_until(listener_for(store, sink), lambda: bool(sink.replies))
    assert sink.run_ids == ["r1"]
    no_dollar(store)
    await redis.aclose()


def awaiting(since: float) -> engine.RunState:
    return engine.RunState(
        deadline=since + 600,
        interval=1.0,
        object_id="run_x",
        phase=engine.Phase.AWAITING_OUTPUTS,
        phase_since=since,
        round=1,
        pending_calls=("call_1",),
    )


async def test_replay_after_a_takeover_delivers_the_rounds_replies_then_live_ones(
    redis: Redis,
) -> None:
    store, sink = Store(redis, KEYS), Sink()
    listener = listener_for(store, sink)
    outputs = json.dumps([{"tool_call_id": "call_1", "output": "sunny"}])
    for entry_id, run_id in (("1000-0", "r1"), ("2000-0", "other"), ("3000-0", "r1")):
        fields = {"run_id": run_id, "round": "1", "outputs": outputs}
        await redis.xadd(KEYS.replies, fields, id=entry_id)

    await listener.replay("r1", engine.RunState(deadline=0, interval=1, object_id="x"))
    assert sink.replies == [] and listener.cursors is None, "not awaiting outputs: nothing"

    # The round was asked at 1.5 s: the reply at 3000-0 answers it, the one at 1000-0 not.
    await listener.replay("r1", awaiting(1.5))
    assert [(r.run_id, r.round) for r in sink.replies] == [("r1", 1)]
    assert listener.cursors == {
        KEYS.replies: "3000-0",
        KEYS.control: "0-0",
        KEYS.cancels: "0-0",
        KEYS.wakes: "0-0",
    }, "the live read starts where the replay's read ended (or before), never after"
    sink.replies.clear()

    async def live() -> None:
        await reply(redis, "r1")

    store.after_read.append(live)
    await listen_until(listener, lambda: bool(sink.replies))
    assert sink.run_ids == ["r1"]
    assert store.position_calls == 1, "recorded once, shared by replay and the live read"
