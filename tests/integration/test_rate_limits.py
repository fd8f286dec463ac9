"""Rate limits across workers: one budget per key, and a 429 felt by every worker."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def new_run(http: httpx.AsyncClient, script: object) -> dict[str, str]:
    body = (await http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


async def test_two_workers_share_one_budget(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    fake: FakeServer,
) -> None:
    budget = dict(rate_limit_requests=12, rate_limit_window_s=3600, cancel_grace_ms=1000)
    await start_worker(**budget)
    await start_worker(**budget)
    jobs = [await new_run(fake_http, "never_ends") for _ in range(6)]
    rids = [await client.enqueue({**job, "timeout_ms": 1500}) for job in jobs]
    finals = [await client.wait(rid, 20) for rid in rids]
    total = 0
    for job in jobs:
        log = (await fake_http.get(f"/_fake/runs/{job['run_id']}/log")).json()
        total += sum(1 for entry in log if entry["endpoint"] != "create_run")
    assert total <= 12, f"{total} requests went out on a budget of 12"
    assert {f.status for f in finals} == {"timed_out"}
    starved = [f for f in finals if "could not be confirmed" in f.reason]
    assert starved and all("budget of 12 requests" in f.reason for f in starved)


async def test_a_429_pauses_the_key_on_every_worker(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    await start_worker()
    slow = {"steps": [{"status": "in_progress", "ms": 2500}, {"status": "completed"}]}
    limited = {
        "steps": [{"status": "in_progress", "ms": 2500}, {"status": "completed"}],
        "faults": [{"on": "get_run", "status": 429, "retry_after": 1.5, "skip": 3, "times": 1}],
    }
    jobs = [await new_run(fake_http, slow) for _ in range(6)]
    trigger = await new_run(fake_http, limited)
    rids = [await client.enqueue(job) for job in [*jobs, trigger]]
    finals = [await client.wait(rid, 20) for rid in rids]
    assert {f.status for f in finals} == {"completed"}
    log = (await fake_http.get(f"/_fake/runs/{trigger['run_id']}/log")).json()
    (hit,) = [e["time"] for e in log if e["status"] == 429]
    # After the 429 (retry-after 1.5 s) no worker sent anything for this key for a while.
    everything = [
        entry["time"]
        for job in [*jobs, trigger]
        for entry in (await fake_http.get(f"/_fake/runs/{job['run_id']}/log")).json()
    ]
    quiet = [t for t in everything if hit + 0.05 < t < hit + 1.4]
    assert quiet == [], f"{len(quiet)} requests during the pause"
