"""Horizontal scaling with real processes: what ``deploy/`` promises, on one machine.

Three ``python -m runpoller worker`` processes share one Redis (a unique key prefix and queue
per test) and poll the fake OpenAI server, which runs in this process so its overlap counter
can be read directly. A few hundred runs go through; mid-test a fourth worker joins and one
of the first three is stopped with SIGTERM, as a rolling update or a scale-in would do.

Checked: every run ends with exactly one final event (all ``completed``); no run is polled by
two workers at once (``overlapping_polls == 0``); every worker takes a share of the work; the
fourth worker takes new runs; the stopped worker exits 0 and its runs finish elsewhere.

The split between workers is printed, not held to a tight band: arq workers pull batches of
jobs as they poll the queue, so the shares depend on scheduling. The worker processes' RSS and
CPU time are printed too (sizing hints for docs/deploy.md, not assertions).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.chaos.figures import measure, read_events, record, request_log
from tests.procs import create_runs, final_counts, owners, wait_for, worker_env

pytestmark = pytest.mark.integration

KEY = "sk-scaling-key-0123456789"
FIRST_WAVE = int(os.environ.get("RUNPOLLER_SCALING_RUNS", "240"))
SECOND_WAVE = FIRST_WAVE // 2
POLL_INTERVAL_MS = 1000


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class WorkerProc:
    name: str
    proc: asyncio.subprocess.Process
    metrics_port: int
    worker_id: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


@dataclass
class Ownership:
    """Who owned each run, sampled from the owned sets while the test runs."""

    first_owner: dict[str, str] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)
    current: dict[str, set[str]] = field(default_factory=dict)

    def record(self, snapshot: dict[str, set[str]]) -> None:
        self.current = snapshot
        for worker_id, run_ids in snapshot.items():
            for rid in run_ids:
                seen = self.owners.setdefault(rid, [])
                if not seen or seen[-1] != worker_id:
                    seen.append(worker_id)
                self.first_owner.setdefault(rid, worker_id)


class Cluster:
    def __init__(self, fake: FakeServer, namespace: str, redis: Redis) -> None:
        self.fake = fake
        self.namespace = namespace
        self.redis = redis
        self.workers: list[WorkerProc] = []
        self.ownership = Ownership()

    def env(self, metrics_port: int) -> dict[str, str]:
        return worker_env(
            self.fake,
            self.namespace,
            KEY,
            RUNPOLLER_POLL_INTERVAL_MS=str(POLL_INTERVAL_MS),
            RUNPOLLER_METRICS_HOST="127.0.0.1",
            RUNPOLLER_METRICS_PORT=str(metrics_port),
        )

    async def start_worker(self) -> WorkerProc:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", "worker", env=self.env(port)
        )
        worker = WorkerProc(f"w{len(self.workers) + 1}", proc, port)
        self.workers.append(worker)
        return worker

    async def wait_ready(self, worker: WorkerProc, timeout: float = 20) -> None:
        """The worker is registered in Redis and its /healthz and /readyz answer 200."""

        async def ready() -> bool:
            members = [m.decode() for m in await self.redis.zrange(self.workers_key, 0, -1)]
            ids = [m for m in members if m.split("-")[-2] == str(worker.proc.pid)]
            if not ids:
                return False
            worker.worker_id = ids[0]
            try:
                async with httpx.AsyncClient(base_url=worker.base, timeout=2) as http:
                    health = await http.get("/healthz")
                    readiness = await http.get("/readyz")
            except httpx.HTTPError:
                return False
            return health.status_code == 200 and readiness.status_code == 200

        await wait_for(ready, timeout, f"{worker.name} to be ready")

    @property
    def workers_key(self) -> str:
        return f"{self.namespace}:workers"

    def by_id(self) -> dict[str, str]:
        return {w.worker_id: w.name for w in self.workers}

    async def sampler(self) -> None:
        while True:
            self.ownership.record(await owners(self.redis, self.namespace))
            await asyncio.sleep(0.1)

    async def stop_all(self) -> None:
        for worker in self.workers:
            if worker.proc.returncode is None:
                worker.proc.kill()
                await worker.proc.wait()


@pytest.fixture
async def cluster(namespace: str, redis: Redis) -> AsyncIterator[Cluster]:
    fake = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    c = Cluster(fake, namespace, redis)
    try:
        yield c
    finally:
        await c.stop_all()
        await fake.close()


async def enqueue(client: RunpollerClient, runs: list[tuple[str, str]]) -> list[str]:
    return [
        await client.enqueue({"kind": "assistants_run", "thread_id": t, "run_id": r})
        for t, r in runs
    ]


async def scrape(worker: WorkerProc) -> dict[str, float]:
    """A few counters from the worker's own /metrics (what Prometheus would scrape)."""
    async with httpx.AsyncClient(base_url=worker.base, timeout=3) as http:
        text = (await http.get("/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "runpoller_runs_accepted_total":
                key = f"accepted_{sample.labels.get('how')}"
                out[key] = out.get(key, 0) + sample.value
            elif sample.name in ("runpoller_runs_in_flight", "runpoller_queue_depth"):
                out[sample.name] = out.get(sample.name, 0) + sample.value
    return out


async def worker_events(redis: Redis, namespace: str) -> list[dict[str, Any]]:
    """The cluster events workers record (hand-offs, dead workers detected)."""
    entries = await redis.xrange(f"{namespace}:worker-events")
    return [json.loads(fields[b"data"]) for _entry_id, fields in entries]


async def handed_off_runs(redis: Redis, namespace: str, worker_id: str) -> int:
    """Runs the stopping worker released, from its ``handed_off`` worker event."""
    for event in await worker_events(redis, namespace):
        if event.get("type") == "handed_off" and event.get("worker_id") == worker_id:
            return int(event["runs"])
    raise AssertionError(f"no handed_off event for {worker_id}")


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS in MiB, CPU seconds so far) of a live process, from /proc."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, StopIteration, IndexError, ValueError):
        return 0.0, 0.0


def split(owners: dict[str, str], run_ids: list[str], names: dict[str, str]) -> dict[str, int]:
    counts = {name: 0 for name in names.values()}
    for rid in run_ids:
        owner = owners.get(rid)
        if owner is not None:
            counts[names.get(owner, owner)] = counts.get(names.get(owner, owner), 0) + 1
    return counts


async def test_three_workers_share_scale_out_and_hand_over(
    cluster: Cluster, redis: Redis, namespace: str
) -> None:
    started = time.monotonic()
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    first_three = [await cluster.start_worker() for _ in range(3)]
    for worker in first_three:
        await cluster.wait_ready(worker)
    sampler = asyncio.create_task(cluster.sampler())
    try:
        # --- wave 1: three workers share the runs --------------------------------------
        wave1 = await enqueue(client, await create_runs(cluster.fake, FIRST_WAVE, work_ms=8000))

        async def wave1_claimed() -> bool:
            return all(rid in cluster.ownership.first_owner for rid in wave1)

        await wait_for(wave1_claimed, 20, "the first wave to be claimed")
        split1 = split(cluster.ownership.first_owner, wave1, cluster.by_id())

        # --- a fourth worker joins and takes new runs ----------------------------------
        fourth = await cluster.start_worker()
        await cluster.wait_ready(fourth)
        wave2 = await enqueue(client, await create_runs(cluster.fake, SECOND_WAVE, work_ms=5000))

        async def wave2_claimed() -> bool:
            return all(rid in cluster.ownership.first_owner for rid in wave2)

        await wait_for(wave2_claimed, 20, "the second wave to be claimed")
        split2 = split(cluster.ownership.first_owner, wave2, cluster.by_id())
        metrics = {w.name: await scrape(w) for w in cluster.workers}
        usage = {w.name: process_usage(w.proc.pid or 0) for w in cluster.workers}

        # --- SIGTERM one of the first three: its runs are handed over ------------------
        held = cluster.ownership.current
        victim = max(first_three, key=lambda w: len(held.get(w.worker_id, ())))
        victim_runs = set(held.get(victim.worker_id, ()))
        assert victim_runs, "the worker to stop should hold runs in flight"
        stopped_at = time.monotonic()
        victim.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(victim.proc.wait(), 15)
        exit_s = time.monotonic() - stopped_at
        exited_at = time.time()  # the chaos figures' resume is counted from here

        async def handed_over() -> bool:
            now = cluster.ownership.current
            if now.get(victim.worker_id):
                return False
            owned_elsewhere = set().union(*now.values()) if now else set()
            finished = await final_counts(redis, namespace, sorted(victim_runs))
            return all(rid in owned_elsewhere or finished[rid] for rid in victim_runs)

        await wait_for(handed_over, 15, "the stopped worker's runs to be taken over")
        handover_s = time.monotonic() - stopped_at
        handed_off = await handed_off_runs(redis, namespace, victim.worker_id)
        survivors = [w for w in cluster.workers if w is not victim]

        async def all_resumed() -> bool:
            resumed = [(await scrape(w)).get("accepted_resumed", 0) for w in survivors]
            return sum(resumed) >= handed_off

        await wait_for(all_resumed, 15, "the survivors to resume every handed-off run")
        resumed_after = {w.name: (await scrape(w)).get("accepted_resumed", 0) for w in survivors}

        # --- every run finishes once ---------------------------------------------------
        run_ids = wave1 + wave2

        async def all_final() -> bool:
            counts = await final_counts(redis, namespace, run_ids)
            return all(v >= 1 for v in counts.values())

        await wait_for(all_final, 40, "every run to reach its final event")
        await asyncio.sleep(POLL_INTERVAL_MS / 1000)  # a late duplicate final would show now
        counts = await final_counts(redis, namespace, run_ids)
        results = [await client.result(rid) for rid in run_ids]
        events = await worker_events(redis, namespace)
        run_events = await read_events(redis, namespace, run_ids)
        log = await request_log(cluster.fake.root_url)
    finally:
        sampler.cancel()

    names = cluster.by_id()
    resumed_by = {
        rid: [names.get(o, o) for o in cluster.ownership.owners.get(rid, [])] for rid in victim_runs
    }
    taken_over = sum(1 for chain in resumed_by.values() if len(chain) > 1)
    event_summary = [
        (e["type"], names.get(e.get("worker_id", ""), "?"), e.get("runs")) for e in events
    ]
    duplicate_adoptions = sum(resumed_after.values()) - handed_off
    print(
        f"\nscaling: runs={len(run_ids)} (wave1={len(wave1)}, wave2={len(wave2)}) "
        f"poll={POLL_INTERVAL_MS}ms elapsed={time.monotonic() - started:.1f}s"
        f"\n  wave1 split (3 workers): {split1}"
        f"\n  wave2 split (4 workers): {split2}"
        f"\n  metrics before SIGTERM: {metrics}"
        f"\n  rss MiB / cpu s before SIGTERM: "
        f"{ {k: (round(r, 1), round(c, 2)) for k, (r, c) in usage.items()} }"
        f"\n  SIGTERM {victim.name}: held={len(victim_runs)} exit={exit_s:.2f}s "
        f"handover={handover_s:.2f}s handed_off={handed_off} resumed_by={resumed_after} "
        f"duplicate_adoptions={duplicate_adoptions} sampled_new_owner={taken_over}"
        f"\n  overlapping_polls={cluster.fake.state.stats.overlapping_polls} "
        f"duplicate_finals={sum(1 for v in counts.values() if v > 1)}"
        f"\n  worker events: {event_summary}"
    )

    record(
        "scaling: SIGTERM 1 of 4 workers",
        measure(
            run_events,
            log,
            side_effects=("submits", "cancels"),
            killed_at=exited_at,
            victim_runs=victim_runs,
            ttl_s=1.5,  # RUNPOLLER_DEAD_WORKER_AFTER_MS in tests/procs.py's worker_env
            extra={"handed_off": handed_off, "duplicate_adoptions": duplicate_adoptions},
        ),
    )

    assert victim.proc.returncode == 0, "a SIGTERMed worker exits cleanly"
    assert all(v == 1 for v in counts.values()), "exactly one final event per run"
    assert {r.status for r in results if r is not None} == {"completed"}
    assert all(r is not None for r in results)
    assert cluster.fake.state.stats.overlapping_polls == 0, "no run polled by two workers at once"
    # Work spreads: each of the first three took a real share of wave 1 (an even share is
    # a third; the floor is loose on purpose, see the module docstring).
    floor = len(wave1) // 10
    assert all(n >= floor for n in split1.values()), f"uneven wave 1 split: {split1}"
    # The fourth worker, started after wave 1, took part of wave 2.
    assert split2[fourth.name] >= len(wave2) // 10, f"w4 took too little of wave 2: {split2}"
    # The stopped worker released its runs (all it still drove) and the survivors resumed
    # them: nothing before the stop, every handed-off run after it. `>=`, not `==`: two
    # resume jobs for one orphan can both be adopted by the same worker (a known worker bug,
    # printed above as duplicate_adoptions); tighten to `==` once it is fixed.
    assert all(m.get("accepted_resumed", 0) == 0 for m in metrics.values())
    assert handed_off >= 1
    assert sum(resumed_after.values()) >= handed_off
    assert not cluster.ownership.current.get(victim.worker_id)
