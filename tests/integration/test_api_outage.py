"""Minutes of 500/503 from the API, compressed: backoff (no tight loop), deadlines still kept."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from runpoller.client import RunpollerClient
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def new_run(http: httpx.AsyncClient, script: object) -> dict[str, str]:
    body = (await http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


def requests_for(fake_log: list[dict[str, object]], since: float) -> int:
    return sum(1 for entry in fake_log if float(entry["time"]) >= since)  # type: ignore[arg-type]


async def test_outage_backs_off_then_runs_complete(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker()
    script = {"steps": [{"status": "in_progress", "ms": 500}, {"status": "completed"}]}
    jobs = [await new_run(fake_http, script) for _ in range(5)]
    await fake_http.post("/_fake/faults", json=[{"on": "any", "status": 503}])
    rids = [await client.enqueue(job) for job in jobs]
    await asyncio.sleep(3.0)
    logs = [(await fake_http.get(f"/_fake/runs/{j['run_id']}/log")).json() for j in jobs]
    during = [len(log) for log in logs]
    await fake_http.delete("/_fake/faults")
    finals = [await client.wait(rid, 20) for rid in rids]
    assert {f.status for f in finals} == {"completed"}
    # Interval 100 ms: a tight loop would have made ~30 requests per run in 3 s; backoff
    # (0.5, 1, 2 s, jittered) makes at most a handful.
    assert max(during) <= 6, during


async def test_outage_past_the_deadline_reports_an_unconfirmed_cancel(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    await start_worker(cancel_grace_ms=1500)
    job = await new_run(fake_http, "never_ends")
    rid = await client.enqueue({**job, "timeout_ms": 800})
    await asyncio.sleep(0.3)
    await fake_http.post("/_fake/faults", json=[{"on": "any", "status": 500}])
    try:
        final = await client.wait(rid, 20)
    finally:
        await fake_http.delete("/_fake/faults")
    assert final.status == "timed_out"
    assert "could not be confirmed" in final.reason and "HTTP 500" in final.reason
    log = (await fake_http.get(f"/_fake/runs/{job['run_id']}/log")).json()
    assert any(entry["endpoint"] == "cancel_run" for entry in log), "a cancel was attempted"
