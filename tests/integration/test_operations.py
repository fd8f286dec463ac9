"""Metrics and probes of a worker that processed known runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from runpoller.client import RunpollerClient
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_count_known_runs_and_probes_answer(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    handle = await start_worker()
    jobs = []
    for scenario in ("complete", "complete", "fail"):
        body = (await fake_http.post("/_fake/runs", json={"script": scenario})).json()
        jobs.append(
            {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}
        )
    for job in jobs:
        await client.wait(await client.enqueue(job), 15)
    base = f"http://127.0.0.1:{handle.app.http_port}"
    async with httpx.AsyncClient(base_url=base) as http:
        metrics = samples((await http.get("/metrics")).text)
        healthz = await http.get("/healthz")
        readyz = await http.get("/readyz")
    done = "runpoller_runs_finished_total"
    assert metrics[(done, (("backend", "assistants_run"), ("status", "completed")))] == 2
    assert metrics[(done, (("backend", "assistants_run"), ("status", "failed")))] == 1
    accepted = ("runpoller_runs_accepted_total", (("backend", "assistants_run"), ("how", "new")))
    assert metrics[accepted] == 3
    get_200 = metrics[
        (
            "runpoller_api_requests_total",
            (("backend", "assistants_run"), ("code", "200"), ("op", "get")),
        )
    ]
    assert get_200 >= 3
    assert metrics[("runpoller_runs_in_flight", ())] == 0
    assert metrics[("runpoller_final_event_latency_seconds_count", ())] == 3
    assert healthz.status_code == 200 and healthz.json()["ok"]
    assert readyz.status_code == 200 and readyz.json()["ok"]


async def test_readyz_fails_when_shutting_down(start_worker: StartWorker) -> None:
    handle = await start_worker()
    handle.app.probes.stopping = True
    ok, reason = await handle.app.probes.readyz()
    assert not ok and reason == "shutting down"
