"""Batched intake (worker/runpoller/worker/intake.py) on a real Redis, and through a real worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx
import pytest
from arq import Retry
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from runpoller.client import RunpollerClient
from runpoller.protocol import FN_DEAD_LETTER, FN_RESUME, FN_RUN
from runpoller.protocol.serde import serialize_job
from runpoller.worker.intake import BatchIntake, BatchResult
from tests.conftest import test_redis_url
from tests.integration.conftest import WorkerHandle
from tests.integration.test_end_to_end import fake_run, job

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


class Calls:
    """Handlers that record what they were given; ``behaviour`` decides what they do."""

    def __init__(self) -> None:
        self.runs: list[Any] = []
        self.dead: list[tuple[str, str]] = []
        self.behaviour: Callable[[Any], Awaitable[Any]] | None = None

    def handlers(self) -> dict[str, Any]:
        async def run(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            self.runs.append(args[0])
            if self.behaviour is not None:
                return await self.behaviour(args[0])
            return "ok"

        async def dead(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            self.dead.append((args[0], args[1]))
            return "dead_letter"

        return {FN_RUN: run, FN_RESUME: run, FN_DEAD_LETTER: dead}


async def put(redis: Redis, queue: str, job_id: str, arg: Any, *, due_in_ms: int = 0) -> None:
    now = int(time.time() * 1000)
    body = serialize_job({"f": FN_RUN, "a": [arg], "k": {}, "t": None, "et": now})
    await redis.set(job_key_prefix + job_id, body, px=600_000)
    await redis.zadd(queue, {job_id: now + due_in_ms})


async def ready_ids(redis: Redis, queue: str) -> list[bytes]:
    return list(await redis.zrangebyscore(queue, "-inf", "+inf"))


@pytest.fixture
def queue(namespace: str) -> str:
    return f"{namespace}:queue"


def batch(redis: Redis, queue: str, calls: Calls, worker_id: str = "w1") -> BatchIntake:
    return BatchIntake(redis, queue, calls.handlers(), worker_id=worker_id, lease_ms=40_000)


async def test_a_batch_runs_every_due_job_once_and_removes_it(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    for i in range(5):
        await put(redis, queue, f"{namespace}-j{i}", {"n": i})
    await put(redis, queue, f"{namespace}-later", {"n": "later"}, due_in_ms=60_000)
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert sorted(c["n"] for c in calls.runs) == [0, 1, 2, 3, 4]
    assert sorted(result.done) == sorted(f"{namespace}-j{i}" for i in range(5))
    assert await ready_ids(redis, queue) == [f"{namespace}-later".encode()]
    for i in range(5):
        assert not await redis.exists(job_key_prefix + f"{namespace}-j{i}")
        assert not await redis.exists(in_progress_key_prefix + f"{namespace}-j{i}")
    assert await redis.exists(job_key_prefix + f"{namespace}-later")


async def test_a_job_another_worker_has_started_is_left_alone(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    await put(redis, queue, f"{namespace}-busy", {"n": 1})
    # arq's own claim marks a started job so (SET in-progress key): ours must respect it.
    await redis.set(in_progress_key_prefix + f"{namespace}-busy", "1", px=40_000)
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert calls.runs == [] and result.done == []
    assert await ready_ids(redis, queue) == [f"{namespace}-busy".encode()]


async def test_retry_puts_the_job_back_at_its_new_time(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()

    async def full(_: Any) -> Any:
        raise Retry(defer=30)

    calls.behaviour = full
    await put(redis, queue, f"{namespace}-full", {"n": 1})
    before = time.time() * 1000
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert [job_id for job_id, _ in result.deferred] == [f"{namespace}-full"]
    score = await redis.zscore(queue, f"{namespace}-full")
    assert score is not None and score >= before + 29_000
    assert await redis.exists(job_key_prefix + f"{namespace}-full")
    assert not await redis.exists(in_progress_key_prefix + f"{namespace}-full")


async def test_a_crashing_handler_dead_letters_the_job_and_spares_the_rest(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()

    async def crash_on_two(arg: Any) -> Any:
        if arg["n"] == 2:
            raise RuntimeError("boom")
        return "ok"

    calls.behaviour = crash_on_two
    for i in range(4):
        await put(redis, queue, f"{namespace}-c{i}", {"n": i})
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert result.failed == 1 and len(result.done) == 4
    assert len(calls.dead) == 1
    raw, reason = calls.dead[0]
    assert '"n":2' in raw and reason == f"{FN_RUN} raised RuntimeError: boom"
    assert await ready_ids(redis, queue) == []


async def test_a_redis_failure_leaves_the_job_to_be_taken_again(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    failing = True

    async def flaky(_: Any) -> Any:
        if failing:
            raise RedisConnectionError("connection reset")
        return "ok"

    calls.behaviour = flaky
    job_id = f"{namespace}-flaky"
    await put(redis, queue, job_id, {"n": 1})
    intake = batch(redis, queue, calls)
    result = await intake.run(await ready_ids(redis, queue))
    assert result.left == [job_id] and result.done == []
    assert await ready_ids(redis, queue) == [job_id.encode()]
    ttl = await redis.pttl(in_progress_key_prefix + job_id)
    assert 0 < ttl <= 40_000, "reserved until the lease ends"
    # While reserved it is not due: no reader sees it, nobody takes it.
    score = await redis.zscore(queue, job_id)
    assert score is not None and score > time.time() * 1000 + 30_000
    assert await redis.zrangebyscore(queue, "-inf", time.time() * 1000) == []
    assert (await intake.run(await ready_ids(redis, queue))).done == []
    # When the lease ends (key gone, score due), it runs.
    await redis.delete(in_progress_key_prefix + job_id)
    await redis.zadd(queue, {job_id: 1})
    failing = False
    assert (await intake.run(await ready_ids(redis, queue))).done == [job_id]
    assert len(calls.runs) == 2


async def test_a_job_whose_body_expired_is_dropped(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    await redis.zadd(queue, {f"{namespace}-gone": 1})
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert result.done == [f"{namespace}-gone"] and calls.runs == []
    assert await ready_ids(redis, queue) == []


async def test_an_undecodable_body_is_dead_lettered(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    await redis.set(job_key_prefix + f"{namespace}-bad", b"\x80not json", px=60_000)
    await redis.zadd(queue, {f"{namespace}-bad": 1})
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert result.done == [f"{namespace}-bad"] and calls.runs == []
    assert len(calls.dead) == 1 and "not JSON" in calls.dead[0][1]


async def test_two_workers_racing_for_one_read_run_each_job_once(
    redis: Redis, queue: str, namespace: str
) -> None:
    for i in range(300):
        await put(redis, queue, f"{namespace}-r{i}", {"n": i})
    ids = await ready_ids(redis, queue)
    calls_a, calls_b = Calls(), Calls()
    other = Redis.from_url(test_redis_url())
    try:
        await asyncio.gather(
            batch(redis, queue, calls_a, "wa").run(ids), batch(other, queue, calls_b, "wb").run(ids)
        )
    finally:
        await other.aclose()
    seen = [c["n"] for c in calls_a.runs + calls_b.runs]
    assert sorted(seen) == list(range(300))
    assert await ready_ids(redis, queue) == []


async def test_a_batch_takes_no_more_than_the_headroom_and_leaves_the_rest_due(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    for i in range(5):
        await put(redis, queue, f"{namespace}-h{i}", {"n": i})
    ids = await ready_ids(redis, queue)
    asked: list[int] = []

    def headroom(n: int) -> int:
        asked.append(n)
        return 2

    intake = BatchIntake(
        redis, queue, calls.handlers(), worker_id="w1", lease_ms=40_000, headroom=headroom
    )
    result = await intake.run(ids)
    assert asked == [5]
    assert len(result.done) == 2 and [c["n"] for c in calls.runs] == [0, 1]
    # The other three were never taken: due now, no lease, for any worker.
    assert sorted(await redis.zrangebyscore(queue, "-inf", time.time() * 1000)) == sorted(ids[2:])
    for job_id in ids[2:]:
        assert not await redis.exists(in_progress_key_prefix + job_id.decode())


async def test_a_worker_above_the_average_leaves_the_freshest_jobs_to_the_others(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    await put(redis, queue, f"{namespace}-old", {"n": "old"})
    await redis.zadd(queue, {f"{namespace}-old": int(time.time() * 1000) - 1_000})
    await put(redis, queue, f"{namespace}-fresh", {"n": "fresh"})
    intake = BatchIntake(
        redis, queue, calls.handlers(), worker_id="w1", lease_ms=40_000, wait_s=lambda: 0.5
    )
    result = await intake.run(await ready_ids(redis, queue))
    assert result.done == [f"{namespace}-old"] and [c["n"] for c in calls.runs] == ["old"]
    assert await redis.zrangebyscore(queue, "-inf", time.time() * 1000) == [
        f"{namespace}-fresh".encode()
    ]


async def test_a_worker_without_headroom_takes_nothing(
    redis: Redis, queue: str, namespace: str
) -> None:
    calls = Calls()
    await put(redis, queue, f"{namespace}-full", {"n": 1})
    ids = await ready_ids(redis, queue)
    intake = BatchIntake(
        redis, queue, calls.handlers(), worker_id="w1", lease_ms=40_000, headroom=lambda n: 0
    )
    result = await intake.run(ids)
    assert result == BatchResult() and calls.runs == []
    assert await redis.zscore(queue, ids[0].decode()) is not None
    assert not await redis.exists(in_progress_key_prefix + ids[0].decode())
    assert await redis.zrangebyscore(queue, "-inf", time.time() * 1000) == ids


async def test_stale_loads_never_stall_intake_jobs_left_overdue_go_to_a_worker_with_room(
    redis: Redis, queue: str, namespace: str
) -> None:
    # Two workers that each see the other lighter (loads are a heartbeat old) both refuse
    # by the spreading rule; a job no one took for overdue_s is taken by whoever has room.
    calls = Calls()
    await put(redis, queue, f"{namespace}-overdue", {"n": "overdue"})
    await redis.zadd(queue, {f"{namespace}-overdue": int(time.time() * 1000) - 2_000})
    await put(redis, queue, f"{namespace}-fresh", {"n": "fresh"})
    ids = await ready_ids(redis, queue)
    intake = BatchIntake(
        redis,
        queue,
        calls.handlers(),
        worker_id="w1",
        lease_ms=40_000,
        headroom=lambda n: 0,
        spare=lambda n: n,
        overdue_s=1.0,
    )
    result = await intake.run(ids)
    assert [c["n"] for c in calls.runs] == ["overdue"]
    assert result.done == [f"{namespace}-overdue"]
    assert await redis.zscore(queue, f"{namespace}-fresh") is not None, "left to the others"


async def test_a_deferral_of_0_is_due_again_at_once(
    redis: Redis, queue: str, namespace: str
) -> None:
    # What the spreading rule raises (Retry(defer=0)): back in the queue, due, no lease.
    calls = Calls()

    async def spread(_: Any) -> Any:
        raise Retry(defer=0)

    calls.behaviour = spread
    job_id = f"{namespace}-spread"
    await put(redis, queue, job_id, {"n": 1})
    result = await batch(redis, queue, calls).run(await ready_ids(redis, queue))
    assert [j for j, _ in result.deferred] == [job_id]
    assert await redis.zrangebyscore(queue, "-inf", time.time() * 1000) == [job_id.encode()]
    assert not await redis.exists(in_progress_key_prefix + job_id)
    assert await redis.zcard(f"{queue}:taken:w1") == 0, "settled: no longer recorded as taken"


# ---------------------------------------------------------------------------- a real worker

LONG = {"steps": [{"status": "in_progress", "ms": 60_000}, {"status": "completed"}]}


async def test_a_burst_is_taken_in_batches_and_capacity_holds_within_a_batch(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    batches: list[int] = []
    original = BatchIntake.run

    async def counting(self: BatchIntake, job_ids: Sequence[bytes | str]) -> Any:
        result = await original(self, job_ids)
        if result.done or result.deferred:
            batches.append(len(result.done))
        return result

    monkeypatch.setattr(BatchIntake, "run", counting)
    # Enqueue the burst before the worker starts, so its first read sees all of it.
    ids = []
    for _ in range(30):
        thread_id, run_id = await fake_run(fake_http, LONG)
        ids.append(await client.enqueue(job(thread_id, run_id, namespace)))
    handle = await start_worker(max_runs_per_worker=10, timeout_ms=120_000)
    owned = handle.app.keys.owned(handle.app.worker_id)
    for _ in range(200):
        if await redis.scard(owned) >= 10:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    # 30 jobs in the first read, run concurrently: exactly the capacity is adopted, the rest
    # go back to the queue for another worker (none here), none is lost.
    assert await redis.scard(owned) == 10
    assert len(handle.app.runner.runs) == 10
    assert batches and batches[0] == 10
    assert await redis.zcard(f"{namespace}:queue") == 20
    # Left due, for another worker: never taken and put off (the livelock of issue 14).
    now_ms = time.time() * 1000
    assert await redis.zcount(f"{namespace}:queue", "-inf", now_ms) == 20


async def test_a_large_batch_runs_a_bounded_number_of_jobs_at_once(
    redis: Redis, queue: str, namespace: str
) -> None:
    # Each job in flight holds a Redis connection of its own: a read of 500 jobs must not
    # open 500 connections.
    calls = Calls()
    running, peak = 0, 0

    async def slow(_: Any) -> Any:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.005)
        running -= 1
        return "ok"

    calls.behaviour = slow
    for i in range(100):
        await put(redis, queue, f"{namespace}-b{i}", {"n": i})
    intake = BatchIntake(
        redis, queue, calls.handlers(), worker_id="w1", lease_ms=40_000, concurrency=8
    )
    ids = await ready_ids(redis, queue)
    result = await intake.run(ids)
    assert len(result.done) == 100 and peak == 8
    in_queue_order = [int(i.decode().rsplit("-b", 1)[1]) for i in ids]
    assert [c["n"] for c in calls.runs] == in_queue_order, "started in queue order"


async def test_a_handler_past_its_timeout_finishes_in_the_background_and_the_job_stays(
    redis: Redis, queue: str, namespace: str
) -> None:
    # Cancelling a handler half-way (after it claimed a run, before it adopted it) would
    # strand the run: a slow one is left to finish, and its job is taken again later.
    calls = Calls()
    finished = asyncio.Event()

    async def slow(_: Any) -> Any:
        await asyncio.sleep(0.3)
        finished.set()
        return "ok"

    calls.behaviour = slow
    job_id = f"{namespace}-slow"
    await put(redis, queue, job_id, {"n": 1})
    intake = BatchIntake(
        redis, queue, calls.handlers(), worker_id="w1", lease_ms=40_000, job_timeout_s=0.05
    )
    result = await intake.run(await ready_ids(redis, queue))
    assert result.left == [job_id] and not finished.is_set()
    await asyncio.wait_for(finished.wait(), 5)
    assert await redis.exists(job_key_prefix + job_id), "left in the queue, leased"
    assert await redis.exists(in_progress_key_prefix + job_id)


async def test_jobs_a_slow_batch_cannot_start_in_time_go_back_at_once(
    redis: Redis, queue: str, namespace: str
) -> None:
    # The whole batch must be settled within the lease: what cannot start early enough is
    # given back (due now, lease released) for any worker to take.
    calls = Calls()

    async def slow(_: Any) -> Any:
        await asyncio.sleep(1.3)
        return "ok"

    calls.behaviour = slow
    for i in range(3):
        await put(redis, queue, f"{namespace}-s{i}", {"n": i})
    ids = await ready_ids(redis, queue)
    # Lease 8 s, 2 s per job: jobs must start within max(8 - 2 - 5, 1) = 1 s of the take.
    intake = BatchIntake(
        redis,
        queue,
        calls.handlers(),
        worker_id="w1",
        lease_ms=8_000,
        job_timeout_s=2,
        concurrency=1,
    )
    result = await intake.run(ids)
    first = ids[0].decode()
    assert result.done == [first] and len(calls.runs) == 1
    assert sorted(job_id for job_id, _ in result.deferred) == sorted(i.decode() for i in ids[1:])
    due_now = await redis.zrangebyscore(queue, "-inf", time.time() * 1000)
    assert sorted(due_now) == sorted(ids[1:])
    for job_id in ids[1:]:
        assert not await redis.exists(in_progress_key_prefix + job_id.decode())


async def test_an_error_reply_from_redis_does_not_end_the_workers_poll_loop(
    make_settings: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # READONLY after a failover, OOM, BUSY: the poll iteration says so and tries again.
    from arq.worker import Worker
    from redis.exceptions import ResponseError

    from runpoller.worker.arqworker import build_worker

    async def failing(self: Worker) -> None:
        raise ResponseError("READONLY You can't write against a read only replica.")

    monkeypatch.setattr(Worker, "_poll_iteration", failing)
    worker = build_worker(make_settings(), handle_signals=False)
    await worker._poll_iteration()  # must not raise (no pool: arq connects in main())


async def test_a_resume_job_for_a_run_still_driven_here_takes_its_ownership_back(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
) -> None:
    # Our lease lapsed, another worker released our runs (owner '') and queued resume jobs;
    # the resume job reaches us, still driving the run. Returning without claiming it would
    # leave the run with no owner and no job: it would never finish.
    handle = await start_worker(timeout_ms=120_000)
    thread_id, run_id = await fake_run(fake_http, LONG)
    rid = await client.enqueue(job(thread_id, run_id, namespace))
    app = handle.app
    run_key = app.keys.run(rid)
    for _ in range(200):
        if rid in app.runner.runs and await redis.hget(run_key, "owner"):
            break
        await asyncio.sleep(0.02)
    await redis.hset(run_key, "owner", "")  # what the other worker's release did
    await redis.srem(app.keys.owned(app.worker_id), rid)
    assert await app.admission.resume(rid) == "already_here"
    assert (await redis.hget(run_key, "owner")) == app.worker_id.encode()
    assert await redis.sismember(app.keys.owned(app.worker_id), rid)


async def test_a_dead_workers_taken_jobs_are_given_back_when_it_is_reaped(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
) -> None:
    # A worker took three jobs (arq lease: 40 s) and died before settling them. Reaping it
    # (its heartbeat gone for dead_worker_after_ms, 1 s here) gives them back at once.
    queue = f"{namespace}:queue"
    ids = []
    for _ in range(3):
        thread_id, run_id = await fake_run(fake_http, LONG)
        ids.append(await client.enqueue(job(thread_id, run_id, namespace)))
    dead = BatchIntake(redis, queue, Calls().handlers(), worker_id="dead-1", lease_ms=40_000)
    taken = await dead.take(await ready_ids(redis, queue))
    assert len(taken) == 3
    await redis.zadd(f"{namespace}:workers", {"dead-1": int(time.time() * 1000) - 60_000})
    hidden_until = await redis.zscore(queue, taken[0])
    assert hidden_until is not None and hidden_until > time.time() * 1000 + 30_000
    started = time.monotonic()
    handle = await start_worker(timeout_ms=120_000)
    owned = handle.app.keys.owned(handle.app.worker_id)
    for _ in range(200):
        if await redis.scard(owned) == 3:
            break
        await asyncio.sleep(0.05)
    assert await redis.scard(owned) == 3, "the live worker took the dead one's jobs"
    assert time.monotonic() - started < 20, "given back by reaping, not after the 40 s lease"
    assert await redis.zcard(queue) == 0
    assert not await redis.exists(f"{queue}:taken:dead-1")
    assert await redis.zscore(f"{namespace}:workers", "dead-1") is None, "and reaped"


# ---------------------------------------------------------------------------- poison (issue 14, 8)


async def test_a_real_worker_refuses_oversized_metadata_and_dead_letters_kwargs_jobs(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
) -> None:
    await start_worker()
    thread_id, run_id = await fake_run(fake_http, LONG)
    big = job(thread_id, run_id, namespace, metadata={"blob": "x" * 5_000_000})
    big_id = await client.enqueue(big)
    # A job with arq keyword arguments ("k"), as another producer might write it.
    now = int(time.time() * 1000)
    body = serialize_job(
        {"f": FN_RUN, "a": [job("t", "r", namespace)], "k": {"x": 1}, "t": None, "et": now}
    )
    await redis.set(job_key_prefix + f"{namespace}-kw", body, px=60_000)
    await redis.zadd(f"{namespace}:queue", {f"{namespace}-kw": now})
    result = await client.wait(big_id, timeout=10)
    assert result is not None and result.status == "error" and result.error is not None
    assert result.error.code == "invalid_job"
    assert result.error.message.startswith("metadata is 5000011 bytes as JSON; the maximum")
    for _ in range(100):
        if await redis.xlen(f"{namespace}:dead-letters"):
            break
        await asyncio.sleep(0.05)
    letters = [json.loads(f[b"data"]) for _, f in await redis.xrange(f"{namespace}:dead-letters")]
    assert [letter["reason"] for letter in letters] == [
        "runpoller.run takes no keyword arguments, got 1: x"
    ]
    assert await redis.zcard(f"{namespace}:queue") == 0
