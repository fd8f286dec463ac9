"""Intake across real worker processes: a steady stream spreads without livelock, and a killed
worker's intake batch is picked up once its heartbeat lapses, not when arq's lease ends.

Sizes are small in ``make test``; ``RUNPOLLER_CHAOS_RUNS`` raises them (``make chaos``). The
figures (intake lag p50/p99/max, resume p50/p95/max) are printed; what is asserted is
behaviour, with bounds far from the figures measured (shared machines are noisy).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.procs import create_runs, owners, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-chaos-key-0123456789"
CHAOS_RUNS = int(os.environ.get("RUNPOLLER_CHAOS_RUNS", "0"))
# A steady stream at 5 runs/s: 8 s of it in make test, 24 s in make chaos.
STREAM_RUNS = int(os.environ.get("RUNPOLLER_INTAKE_RUNS", "120" if CHAOS_RUNS else "40"))
RATE = 5.0
# The killed worker's batch: large enough to be mid-batch when killed.
BATCH_RUNS = max(CHAOS_RUNS, 300)
# Production timings for the stream (the livelock showed with them); short ones for the kill.
DEFAULT_TIMINGS = {
    "RUNPOLLER_HEARTBEAT_INTERVAL_MS": "1000",
    "RUNPOLLER_DEAD_WORKER_AFTER_MS": "5000",
    "RUNPOLLER_ARQ_POLL_DELAY_S": "0.1",
}
TTL_S = 1.5  # tests/procs.py's RUNPOLLER_DEAD_WORKER_AFTER_MS
LEASE_S = 40.0  # runpoller.worker.app.INTAKE_LEASE_MS


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Cluster:
    fake: FakeServer
    namespace: str
    redis: Redis
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    async def start_worker(self, **extra: str) -> asyncio.subprocess.Process:
        env = worker_env(self.fake, self.namespace, KEY, RUNPOLLER_POLL_INTERVAL_MS="500", **extra)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", "worker", env=env
        )
        self.procs.append(proc)
        return proc

    async def worker_ids(self) -> dict[int, str]:
        """pid -> worker id of every registered worker."""
        members = [m.decode() for m in await self.redis.zrange(f"{self.namespace}:workers", 0, -1)]
        return {int(m.split("-")[-2]): m for m in members}

    async def wait_registered(self, *procs: asyncio.subprocess.Process) -> None:
        async def up() -> bool:
            return {p.pid for p in procs} <= set(await self.worker_ids())

        await wait_for(up, 30, f"{len(procs)} workers to register")

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


@pytest.fixture
async def cluster(namespace: str, redis: Redis) -> AsyncIterator[Cluster]:
    fake = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    c = Cluster(fake, namespace, redis)
    try:
        yield c
    finally:
        await c.stop_all()
        await fake.close()


async def accepted_at(redis: Redis, namespace: str, run_ids: list[str]) -> dict[str, float]:
    """When each run's ``accepted`` event was written (epoch s), for the runs that have one."""
    async with redis.pipeline(transaction=False) as pipe:
        for rid in run_ids:
            pipe.xrange(f"{namespace}:events:{rid}", count=1)
        streams = await pipe.execute()
    out = {}
    for rid, entries in zip(run_ids, streams, strict=True):
        for _, fields in entries:
            if fields[b"type"] == b"accepted":
                out[rid] = json.loads(fields[b"data"])["ts"] / 1000
    return out


async def test_a_steady_stream_spreads_over_three_workers_without_livelock(
    cluster: Cluster, redis: Redis, namespace: str
) -> None:
    """3 workers, runs enqueued at 5/s, no faults: every run is taken at once by a worker
    with room, no job is put off into the future (a worker that cannot hold a job leaves it
    due for the others), none waits while a worker below the average sits idle. Then the
    busiest worker is killed: its runs resume elsewhere once its heartbeat lapses."""
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    queue = f"{namespace}:queue"
    await cluster.wait_registered(
        *[await cluster.start_worker(**DEFAULT_TIMINGS) for _ in range(3)]
    )
    # The runs outlive the test: loads only grow, as in a real stream of long runs.
    runs = await create_runs(cluster.fake, STREAM_RUNS, work_ms=300_000)
    enqueued: dict[str, float] = {}
    loads: list[tuple[float, int, list[int]]] = []  # (t, runs waiting, loads of the workers)
    put_off: dict[str, float] = {}  # job id -> how far in the future it was seen due (s)

    async def sample() -> None:
        while True:
            now = time.time()
            for job_id, score in await redis.zrange(queue, 0, -1, withscores=True):
                ahead = score / 1000 - now
                # Due later, but not taken (a taken job's score is the end of its 40 s lease).
                if 0.005 < ahead < LEASE_S / 2:
                    put_off[job_id.decode()] = max(put_off.get(job_id.decode(), 0.0), ahead)
            held = await owners(redis, namespace)
            taken = set().union(*held.values()) if held else set()
            # Runs enqueued a second ago or more that no worker has taken yet.
            waiting = sum(1 for rid, t in enqueued.items() if now - t >= 1.0 and rid not in taken)
            loads.append((now, waiting, sorted(len(v) for v in held.values())))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        start = time.time()
        for i, (thread_id, run_id) in enumerate(runs):
            await asyncio.sleep(max(0.0, start + i / RATE - time.time()))
            enqueued[run_id] = time.time()
            await client.enqueue(
                {"kind": "assistants_run", "thread_id": thread_id, "run_id": run_id}
            )

        async def all_accepted() -> bool:
            return len(await accepted_at(redis, namespace, list(enqueued))) == len(enqueued)

        # Far beyond the figures (lag p99 well under 2 s): the livelock reached 21 s.
        await wait_for(all_accepted, 60, "every run to be accepted")
    finally:
        sampler.cancel()
    accepted = await accepted_at(redis, namespace, list(enqueued))
    lags = [accepted[rid] - enqueued[rid] for rid in enqueued]
    held = await owners(redis, namespace)
    shares = sorted(len(v) for v in held.values())
    # The longest stretch during which runs waited (a second or more since their enqueue)
    # while some worker held fewer runs than the average of the three (what the livelock
    # looked like: 14 s with 23-34 jobs waiting).
    longest, since = 0.0, None
    for t, waiting, ls in loads:
        idle_below = len(ls) < 3 or ls[0] < sum(ls) / 3
        if waiting and idle_below:
            since = t if since is None else since
            longest = max(longest, t - since)
        else:
            since = None
    print(
        f"\nintake stream: runs={len(lags)} rate={RATE}/s workers=3 shares={shares} "
        f"lag_p50={quantile(lags, 0.5):.2f}s lag_p99={quantile(lags, 0.99):.2f}s "
        f"lag_max={max(lags):.2f}s longest_wait_beside_an_idle_worker={longest:.2f}s "
        f"jobs_put_off={len(put_off)}"
    )
    assert not put_off, f"jobs put off instead of left due for another worker: {put_off}"
    assert len(shares) == 3 and shares[0] >= len(runs) // 6, "every worker takes its share"
    # Jobs may wait a poll or two (and one heartbeat for the loads to be seen); not seconds
    # on end while a worker below the average could take them.
    assert longest < 5.0, f"jobs waited {longest:.1f} s while a worker below average was idle"

    # Kill -9 the busiest worker: its runs resume on the others after the TTL (5 s here).
    pids = {wid: pid for pid, wid in (await cluster.worker_ids()).items()}
    victim_id, victim_runs = max(held.items(), key=lambda kv: len(kv[1]))
    victim = next(p for p in cluster.procs if p.pid == pids[victim_id])
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await victim.wait()

    async def resumed() -> bool:
        now_held = await owners(redis, namespace)
        return victim_id not in now_held and sum(len(v) for v in now_held.values()) == len(runs)

    await wait_for(resumed, LEASE_S / 2, "the victim's runs to be taken over")
    await asyncio.sleep(1.0)  # their first polls by the new owners
    resume = []
    for rid in victim_runs:
        obj = cluster.fake.state.lookup(rid)
        assert obj is not None
        after = [e["time"] for e in obj.log if e["time"] > killed_at]
        assert after, f"{rid} was never polled again after the kill"
        resume.append(min(after) - killed_at)
    print(
        f"intake stream kill -9: victim_held={len(victim_runs)} ttl=5.0s "
        f"resume_p50={quantile(resume, 0.5):.2f}s resume_p95={quantile(resume, 0.95):.2f}s "
        f"resume_max={max(resume):.2f}s"
    )


async def test_a_killed_workers_intake_batch_is_released_by_reaping_not_the_lease(
    cluster: Cluster, redis: Redis, namespace: str
) -> None:
    """Jobs a worker took (arq lease: 40 s) and died before settling go back to the queue
    when its heartbeat lapses (1.5 s here), and another worker takes them."""
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    victim = await cluster.start_worker()
    await cluster.wait_registered(victim)
    victim_id = (await cluster.worker_ids())[victim.pid]
    runs = await create_runs(cluster.fake, BATCH_RUNS, work_ms=300_000)

    async def mid_batch() -> bool:
        # Jobs taken and not settled yet (hidden: scored at the end of the lease), and some
        # of their runs claimed.
        hidden = await redis.zcount(f"{namespace}:queue", time.time() * 1000 + 20_000, "+inf")
        held = sum(len(v) for v in (await owners(redis, namespace)).values())
        return hidden >= 1 and held >= 1

    # The victim is run a few milliseconds at a time (SIGCONT, SIGSTOP) and looked at while
    # frozen, once what it had sent has landed: a batch takes, claims and settles within a
    # few loop turns, too fast to catch by looking while it runs (a batch settling between
    # the look and the kill left the test proving nothing). Frozen before the jobs arrive,
    # so its first reads hold most of them.
    victim.send_signal(signal.SIGSTOP)
    run_ids = await asyncio.gather(
        *(client.enqueue({"kind": "assistants_run", "thread_id": t, "run_id": r}) for t, r in runs)
    )
    deadline = time.monotonic() + 30
    while True:
        victim.send_signal(signal.SIGCONT)
        await asyncio.sleep(0.003)
        victim.send_signal(signal.SIGSTOP)
        await asyncio.sleep(0.03)
        if await mid_batch():
            break
        assert time.monotonic() < deadline, "no batch of the victim's was caught part-way"
    victim.send_signal(signal.SIGKILL)
    killed_at = time.time()
    await victim.wait()
    held_by_victim = (await owners(redis, namespace)).get(victim_id, set())
    # Taken by the victim and never settled: hidden (score at the end of the lease).
    hidden = await redis.zcount(f"{namespace}:queue", killed_at * 1000 + 20_000, "+inf")
    assert hidden > 0, "the kill must catch taken, unsettled jobs (or the test proves nothing)"
    await cluster.wait_registered(await cluster.start_worker())
    survivor_up_s = time.time() - killed_at

    async def all_taken_over() -> bool:
        held = await owners(redis, namespace)
        return sum(len(v) for k, v in held.items() if k != victim_id) == len(run_ids)

    # Decisive: the lease is 40 s, the TTL 1.5 s. Half the lease is far beyond reaping.
    await wait_for(all_taken_over, LEASE_S / 2, "the survivor to take every run")
    taken_over_s = time.time() - killed_at
    resumed_after = []
    for rid in run_ids:
        obj = cluster.fake.state.lookup(rid)
        assert obj is not None
        after = [e["time"] for e in obj.log if e["time"] > killed_at]
        if after:
            resumed_after.append(min(after) - killed_at)
    print(
        f"\nintake kill -9: runs={len(run_ids)} victim_held={len(held_by_victim)} "
        f"taken_unsettled={hidden} ttl={TTL_S}s survivor_up={survivor_up_s:.2f}s "
        f"all_taken_over={taken_over_s:.2f}s "
        f"resume_p50={quantile(resumed_after, 0.5):.2f}s "
        f"resume_p95={quantile(resumed_after, 0.95):.2f}s resume_max={max(resumed_after):.2f}s"
    )

    async def queue_empty() -> bool:
        return int(await redis.zcard(f"{namespace}:queue")) == 0

    await wait_for(queue_empty, 10, "the queue to be empty")
