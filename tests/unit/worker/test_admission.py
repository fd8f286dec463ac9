"""Admission of arq jobs: refusals go where the app looks for them, or to the dead letters."""

from __future__ import annotations

import fakeredis
import httpx
import pytest

from runpoller.config import load_settings
from runpoller.protocol import FinalEvent
from runpoller.worker.app import WorkerApp

PREFIX = "adm"


@pytest.fixture
def app() -> WorkerApp:
    settings, _ = load_settings(
        assistants_api_key="sk-admission-test",
        assistants_base_url="http://api.test/v1",
        key_prefix=PREFIX,
        max_timeout_ms=600_000,
        metrics_port=-1,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return WorkerApp(settings, fakeredis.FakeAsyncRedis(), http=http, worker_id="w1")  # type: ignore[arg-type]


async def final_of(app: WorkerApp, run_id: str) -> FinalEvent | None:
    raw = await app.redis.get(f"{PREFIX}:result:{run_id}")
    return None if raw is None else FinalEvent.model_validate_json(raw)


async def test_an_out_of_bounds_job_is_refused_under_its_run_key(app: WorkerApp) -> None:
    job = {"kind": "assistants_run", "thread_id": "t1", "run_id": "r1", "timeout_ms": 10**9}
    assert await app.admission.intake(job, 0.0) == "refused"
    final = await final_of(app, "r1")
    assert final is not None and final.status == "error" and final.error is not None
    assert final.error.code == "invalid_job"
    assert final.reason == "the job was refused: timeout_ms 1000000000 exceeds the maximum 600000"


async def test_an_invalid_id_is_a_dead_letter_not_a_final_under_run_id(app: WorkerApp) -> None:
    job = {"kind": "assistants_run", "id": "has/slash", "thread_id": "t1", "run_id": "r1"}
    assert await app.admission.intake(job, 0.0) == "dead_letter"
    assert await final_of(app, "r1") is None
    assert await app.redis.xlen(f"{PREFIX}:dead-letters") == 1


async def test_a_valid_id_gets_the_refusal_even_when_run_id_is_bad(app: WorkerApp) -> None:
    job = {"kind": "assistants_run", "id": "mine", "thread_id": "t1", "run_id": "bad/id"}
    assert await app.admission.intake(job, 0.0) == "refused"
    final = await final_of(app, "mine")
    assert final is not None and final.error is not None and final.error.code == "invalid_job"
