"""Redis loses its data (a restart without persistence, a failover to an empty replica, a
FLUSHALL) while runs are in flight: the workers still drive them from memory, restore each
run's record (same job, deadline, phase) and every run still ends once, where the app reads.
"""

from __future__ import annotations

import asyncio
import json

from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer
from tests.chaos.test_redis_outage import (
    OwnRedis,
    create_runs,
    fake,
    own_redis,
    start_workers,
    stop,
    wait_finals,
)

__all__ = ["fake", "own_redis"]  # the fixtures, used by name


async def test_a_wiped_redis_abandons_no_run(own_redis: OwnRedis, fake: FakeServer) -> None:
    redis = Redis.from_url(own_redis.url)
    client = RunpollerClient(redis)
    workers = await start_workers(2, own_redis.url, fake)
    try:
        script = {"steps": [{"status": "in_progress", "ms": 3500}, {"status": "completed"}]}
        jobs = await create_runs(fake, 12, script)
        run_ids = [await client.enqueue(job) for job in jobs]
        deadlines: dict[str, float] = {}
        for _ in range(600):  # until every run is accepted and in flight
            for rid in run_ids:
                state = await redis.hget(f"runpoller:run:{rid}", "state")
                if state is not None and json.loads(state)["last_status"] == "in_progress":
                    deadlines[rid] = json.loads(state)["deadline"]
            if len(deadlines) == len(run_ids):
                break
            await asyncio.sleep(0.05)
        if len(deadlines) != len(run_ids):
            logs = await stop(workers)  # what the workers said, for the failure's report
            tail = b"\n".join(log[-1500:] for log in logs).decode(errors="replace")
            raise AssertionError(
                f"{len(deadlines)} of {len(run_ids)} runs in flight before the wipe; "
                f"workers said:\n{tail}"
            )
        await redis.flushall()
        statuses = await wait_finals(client, run_ids, 30)
        assert statuses == ["completed"] * len(run_ids)
        for rid in run_ids:
            finals = [
                f
                for _, f in await redis.xrange(f"runpoller:events:{rid}")
                if f[b"type"] == b"final"
            ]
            assert len(finals) == 1
            state = json.loads(await redis.hget(f"runpoller:run:{rid}", "state"))
            assert state["deadline"] == deadlines[rid], "the deadline survived the wipe"
        assert all(w.returncode is None for w in workers)
    finally:
        logs = await stop(workers)
        await redis.aclose()
    restored = sum(log.count(b"run.restored") for log in logs)
    print(f"\nredis wipe: runs={len(run_ids)} records restored={restored}")
