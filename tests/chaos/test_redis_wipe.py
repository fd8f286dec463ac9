"""Redis loses every key while runs are in flight: a restart without persistence, a FLUSHALL.

Two workers drive runs on a Redis of the test's own (the shared test Redis is never wiped);
when every run is claimed and in flight, the Redis comes back empty. The workers still hold
each run's job and state in memory, so every run can still end once, where the app reads
(the run's events stream).

Issue 14, item 4: the workers re-registered, dropped every run (``worker.lease_lapsed``) and
wrote nothing more: 20 of 20 runs lost before 6bfedce. Asserted: no run lost (a final event
within the bound: the run's own end at the API plus a generous margin), none finished twice.
Sizes: ``RUNPOLLER_CHAOS_RUNS`` (``make chaos`` also wipes with FLUSHALL), small otherwise.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.chaos.figures import measure, read_events, record, request_log
from tests.procs import (
    RedisServer,
    create_runs,
    kill_all,
    owners,
    start_worker,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-wipe-key-0123456789"
CHAOS_RUNS = int(os.environ.get("RUNPOLLER_CHAOS_RUNS") or 0)
RUNS = CHAOS_RUNS or 20
WORK_MS = 4000 + RUNS * 40  # every run still in flight at the API when Redis is wiped
MARGIN_S = 8.0  # after a run's end at the API, its final is there by then (or it is lost)
POLL_MS = 250 if RUNS <= 100 else 1000  # two workers carry RUNS runs on a shared machine
WIPES = ["restart-empty", "flushall"] if CHAOS_RUNS else ["restart-empty"]


@pytest.fixture
async def own_redis() -> AsyncIterator[RedisServer]:
    server = RedisServer(persist=False)
    if server.binary is None:
        pytest.skip("needs the redis-server binary to wipe a Redis of its own")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    yield server
    await server.close()


@pytest.mark.parametrize("wipe", WIPES)
async def test_a_redis_wipe_loses_no_run(
    wipe: str, own_redis: RedisServer, fake: FakeServer, namespace: str
) -> None:
    redis = Redis.from_url(own_redis.url)
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    env = worker_env(
        fake, namespace, KEY, REDIS_URL=own_redis.url, RUNPOLLER_POLL_INTERVAL_MS=str(POLL_MS)
    )
    procs = [await start_worker(env), await start_worker(env)]
    try:

        async def both_up() -> bool:
            return int(await redis.zcard(f"{namespace}:workers")) == 2

        await wait_for(both_up, 20, "two workers to start")
        runs = await create_runs(fake, RUNS, work_ms=WORK_MS)
        created_at = time.time()
        enqueued_at: dict[str, float] = {}
        for thread_id, api_run_id in runs:
            at = time.time()
            rid = await client.enqueue(
                {"kind": "assistants_run", "thread_id": thread_id, "run_id": api_run_id}
            )
            enqueued_at[rid] = at
        run_ids = list(enqueued_at)

        async def all_accepted() -> bool:
            events = await read_events(redis, namespace, run_ids)
            return all(any(e["type"] == "accepted" for e in ev) for ev in events.values())

        await wait_for(all_accepted, 20 + RUNS / 10, "every run to be accepted")
        in_flight = sum(len(v) for v in (await owners(redis, namespace)).values())
        before = await read_events(redis, namespace, run_ids)
        wiped_at = time.time()
        if wipe == "flushall":
            await redis.flushall()
        else:
            own_redis.kill()
            own_redis.start()
            await redis.aclose()
            redis = Redis.from_url(own_redis.url)
        # The runs end at the API WORK_MS after their creation; the finals follow by then.
        final_by = created_at + WORK_MS / 1000 + MARGIN_S

        async def all_final() -> bool:
            events = await read_events(redis, namespace, run_ids)
            return all(any(e["type"] == "final" for e in ev) for ev in events.values())

        with contextlib.suppress(AssertionError):  # a run still without a final is lost
            await wait_for(all_final, max(1.0, final_by - time.time()), "every run's final")
        after = await read_events(redis, namespace, run_ids)
        log = await request_log(fake.root_url)
    finally:
        await kill_all(procs)
        await redis.aclose()

    # The accepted events from before the wipe (gone from Redis) give the intake lag.
    events = {rid: [*before[rid], *after[rid]] for rid in run_ids}
    figures = record(
        f"redis wipe ({wipe})",
        measure(
            events,
            log,
            final_by=final_by,
            side_effects=("submits", "cancels"),
            enqueued_at=enqueued_at,
            extra={
                "wiped_after_s": round(wiped_at - min(enqueued_at.values()), 2),
                "in_flight_at_wipe": in_flight,
                "requests_after_wipe": sum(1 for r in log if r["time"] > wiped_at),
            },
        ),
    )
    assert figures.lost == 0, f"{figures.lost} of {len(run_ids)} runs never ended"
    assert figures.duplicate_finals == 0, "exactly one final event per run"
