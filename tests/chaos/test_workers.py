"""Real worker processes killed and stopped mid-flight: no run lost, none finished twice.

Sizes are small in ``make test``; ``RUNPOLLER_CHAOS_RUNS`` raises them (``make chaos``).
The figures (runs, lost, duplicate finals, kill-to-resume) are printed, not asserted as
wall-clock thresholds: shared machines are noisy.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.chaos.figures import measure, read_events, record, request_log
from tests.procs import create_runs, final_counts, owners, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-chaos-key-0123456789"
RUNS = int(os.environ.get("RUNPOLLER_CHAOS_RUNS", "60"))
TTL_S = 1.5  # RUNPOLLER_DEAD_WORKER_AFTER_MS in tests/procs.py's worker_env
# Runs must outlive their own creation and claim, which take longer with more of them.
WORK_MS = 5000 + RUNS * 20
SLACK_S = 20 + RUNS / 20


class Cluster:
    def __init__(self, fake: FakeServer, namespace: str) -> None:
        self.fake = fake
        self.namespace = namespace
        self.procs: list[asyncio.subprocess.Process] = []

    def env(self) -> dict[str, str]:
        return worker_env(self.fake, self.namespace, KEY, RUNPOLLER_POLL_INTERVAL_MS="200")

    async def start_worker(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", "worker", env=self.env()
        )
        self.procs.append(proc)
        return proc

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def cluster(namespace: str, redis: Redis) -> AsyncIterator[Cluster]:
    fake = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    c = Cluster(fake, namespace)
    yield c
    await c.stop_all()
    await fake.close()


async def live_workers(redis: Redis, namespace: str) -> int:
    return int(await redis.zcard(f"{namespace}:workers"))


async def test_kill_9_loses_no_run(cluster: Cluster, redis: Redis, namespace: str) -> None:
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    await cluster.start_worker()
    await cluster.start_worker()

    async def both_up() -> bool:
        return await live_workers(redis, namespace) == 2

    await wait_for(both_up, 20, "two workers to start")
    runs = await create_runs(cluster.fake, RUNS, work_ms=WORK_MS)
    enqueued_at: dict[str, float] = {}
    run_ids = []
    for t, r in runs:
        at = time.time()
        run_ids.append(
            await client.enqueue({"kind": "assistants_run", "thread_id": t, "run_id": r})
        )
        enqueued_at[run_ids[-1]] = at

    async def all_claimed() -> bool:
        held = await owners(redis, namespace)
        return sum(len(v) for v in held.values()) == RUNS and len(held) == 2

    await wait_for(all_claimed, SLACK_S, "both workers to claim all runs")
    held = await owners(redis, namespace)
    victim_id, victim_runs = max(held.items(), key=lambda kv: len(kv[1]))
    deadlines_before = {
        rid: json.loads((await redis.hget(f"{namespace}:run:{rid}", "state")) or b"{}")["deadline"]
        for rid in victim_runs
    }
    victim = next(p for p in cluster.procs if victim_id.split("-")[-2] == str(p.pid))
    killed_at = time.time()
    victim.send_signal(signal.SIGKILL)
    await victim.wait()

    async def all_final() -> bool:
        return all(v >= 1 for v in (await final_counts(redis, namespace, run_ids)).values())

    await wait_for(all_final, SLACK_S + WORK_MS / 1000 + 20, "every run to reach its final event")
    counts = await final_counts(redis, namespace, run_ids)
    results = [await client.result(rid) for rid in run_ids]
    statuses = {r.status for r in results if r is not None}

    for rid in victim_runs:
        assert cluster.fake.state.lookup(rid) is not None  # the logical id is the API run id
    deadlines_after = {
        rid: json.loads((await redis.hget(f"{namespace}:run:{rid}", "state")) or b"{}")["deadline"]
        for rid in victim_runs
    }
    # How long after the kill did someone poll the victim's runs again? (tests/chaos/figures:
    # the first API request for each run after the kill; runs that had ended before it are
    # left out.)
    figures = record(
        "kill -9 (1 of 2 workers)",
        measure(
            await read_events(redis, namespace, run_ids),
            await request_log(cluster.fake.root_url),
            side_effects=("submits", "cancels"),
            killed_at=killed_at,
            victim_runs=victim_runs,
            ttl_s=TTL_S,
            enqueued_at=enqueued_at,
            extra={"victim_held": len(victim_runs)},
        ),
    )
    print(
        f"\nchaos kill -9: runs={RUNS} victim_held={len(victim_runs)} "
        f"lost={sum(1 for v in counts.values() if v == 0)} "
        f"duplicate_finals={sum(1 for v in counts.values() if v > 1)} "
        f"kill_to_resume_max={figures.resume_max_s or 0:.2f}s"
    )
    assert statuses == {"completed"}
    assert all(v == 1 for v in counts.values()), "exactly one final event per run"
    assert deadlines_after == deadlines_before, "the deadline never moves"
    assert cluster.fake.state.stats.overlapping_polls == 0


async def test_sigterm_hands_runs_over(cluster: Cluster, redis: Redis, namespace: str) -> None:
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    first = await cluster.start_worker()
    runs = await create_runs(cluster.fake, RUNS // 2, work_ms=WORK_MS)
    enqueued_at: dict[str, float] = {}
    run_ids = []
    for t, r in runs:
        at = time.time()
        run_ids.append(
            await client.enqueue({"kind": "assistants_run", "thread_id": t, "run_id": r})
        )
        enqueued_at[run_ids[-1]] = at

    async def all_claimed() -> bool:
        held = await owners(redis, namespace)
        return sum(len(v) for v in held.values()) == len(run_ids)

    await wait_for(all_claimed, SLACK_S, "the first worker to claim all runs")
    await cluster.start_worker()
    stopped_at = time.monotonic()
    first.send_signal(signal.SIGTERM)
    await asyncio.wait_for(first.wait(), 15)
    exit_s = time.monotonic() - stopped_at
    exited_at = time.time()  # from here on, every request comes from the second worker

    async def handed_over() -> bool:
        held = await owners(redis, namespace)
        return sum(len(v) for v in held.values()) == len(run_ids) and len(held) == 1

    await wait_for(handed_over, 15, "the second worker to take every run")
    handover_s = time.monotonic() - stopped_at

    async def all_final() -> bool:
        return all(v >= 1 for v in (await final_counts(redis, namespace, run_ids)).values())

    await wait_for(all_final, SLACK_S + WORK_MS / 1000 + 20, "every run to reach its final event")
    counts = await final_counts(redis, namespace, run_ids)
    record(
        "SIGTERM hand-over",
        measure(
            await read_events(redis, namespace, run_ids),
            await request_log(cluster.fake.root_url),
            side_effects=("submits", "cancels"),
            killed_at=exited_at,
            victim_runs=run_ids,  # the first worker held them all
            ttl_s=TTL_S,
            enqueued_at=enqueued_at,
            extra={"exit_s": round(exit_s, 2), "handover_s": round(handover_s, 2)},
        ),
    )
    print(f"\nchaos SIGTERM: runs={len(run_ids)} exit={exit_s:.2f}s handover={handover_s:.2f}s")
    assert first.returncode == 0
    assert all(v == 1 for v in counts.values())
    assert {(await client.result(rid)).status for rid in run_ids} == {"completed"}  # type: ignore[union-attr]


async def test_sigterm_during_intake_still_hands_off(
    cluster: Cluster, redis: Redis, namespace: str
) -> None:
    """arq's close() used to raise on the cancelled intake jobs and skip the hand-off."""
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    worker = await cluster.start_worker()

    async def up() -> bool:
        return await live_workers(redis, namespace) == 1

    await wait_for(up, 20, "the worker to start")
    runs = await create_runs(cluster.fake, 300, work_ms=60_000)
    for t, r in runs:
        await client.enqueue({"kind": "assistants_run", "thread_id": t, "run_id": r})

    async def some_claimed() -> bool:
        return sum(len(v) for v in (await owners(redis, namespace)).values()) >= 20

    await wait_for(some_claimed, 20, "intake to be under way")
    worker.send_signal(signal.SIGTERM)
    await asyncio.wait_for(worker.wait(), 15)
    assert worker.returncode == 0
    held = await owners(redis, namespace)
    assert sum(len(v) for v in held.values()) == 0, "every claimed run was handed off"
    events = [json.loads(f[b"data"]) for _, f in await redis.xrange(f"{namespace}:worker-events")]
    assert [e["type"] for e in events] == ["handed_off"]
