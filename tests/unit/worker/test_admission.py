"""Admission of arq jobs: refusals go where the app looks for them, or to the dead letters."""

from __future__ import annotations

import json
from typing import Any

import fakeredis
import httpx
import pytest
import structlog

from runpoller.config import ConfigError, load_settings
from runpoller.protocol import FN_RESUME, FN_RUN, DeadLetter, FinalEvent
from runpoller.protocol.serde import serialize_job
from runpoller.worker.app import WorkerApp

PREFIX = "adm"


def app_with(**overrides: Any) -> WorkerApp:
    """A worker app on fakeredis, with an API that answers 500 to anything."""
    settings, _ = load_settings(
        assistants_api_key="sk-admission-test",
        assistants_base_url="http://api.test/v1",
        key_prefix=PREFIX,
        metrics_port=-1,
        **overrides,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return WorkerApp(settings, fakeredis.FakeAsyncRedis(), http=http, worker_id="w1")  # type: ignore[arg-type]


@pytest.fixture
def app() -> WorkerApp:
    return app_with(max_timeout_ms=600_000)


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


# ---------------------------------------------------------------------------- metadata size


def small_metadata_app(limit: int) -> WorkerApp:
    settings, _ = load_settings(
        assistants_api_key="sk-admission-test",
        assistants_base_url="http://api.test/v1",
        key_prefix=PREFIX,
        max_metadata_bytes=limit,
        metrics_port=-1,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return WorkerApp(settings, fakeredis.FakeAsyncRedis(), http=http, worker_id="w1")  # type: ignore[arg-type]


async def test_metadata_larger_than_the_setting_is_refused_as_an_invalid_job(
    app: WorkerApp,
) -> None:
    # The 5 MB value: it would have been kept in the result and every event.
    job = {
        "kind": "assistants_run",
        "thread_id": "t1",
        "run_id": "big",
        "metadata": {"blob": "x" * 5_000_000},
    }
    assert await app.admission.intake(job, 0.0) == "refused"
    final = await final_of(app, "big")
    assert final is not None and final.status == "error" and final.error is not None
    assert final.error.code == "invalid_job"
    assert final.error.message == (
        "metadata is 5000011 bytes as JSON; the maximum is 16384 (RUNPOLLER_MAX_METADATA_BYTES)"
    )
    assert final.metadata is None, "not echoed back"
    raw_final = await app.redis.get(f"{PREFIX}:result:big")
    assert raw_final is not None and len(raw_final) < 2000
    assert not await app.redis.hexists(f"{PREFIX}:run:big", "job"), "no run record kept it"
    assert "big" not in app.runner.runs


async def test_metadata_up_to_the_setting_is_accepted() -> None:
    app = small_metadata_app(limit=21)
    fits = {"kind": "assistants_run", "thread_id": "t1", "run_id": "r1", "metadata": {"k": "v"}}
    assert await app.admission.intake(fits, 0.0) == "new"
    await app.runner.stop_runs()
    # Measured in UTF-8 bytes of compact JSON: {"ab":"€€€€"} is 9 + 4 x 3 = 21, then 24.
    ok = {"kind": "assistants_run", "thread_id": "t2", "run_id": "r2", "metadata": {"ab": "€" * 4}}
    assert await app.admission.intake(ok, 0.0) == "new"
    await app.runner.stop_runs()
    over = {
        "kind": "assistants_run",
        "thread_id": "t3",
        "run_id": "r3",
        "metadata": {"ab": "€" * 5},
    }
    assert await app.admission.intake(over, 0.0) == "refused"
    final = await final_of(app, "r3")
    assert final is not None and final.error is not None
    assert final.error.message.startswith("metadata is 24 bytes as JSON; the maximum is 21")


def test_the_metadata_bound_must_be_at_least_one_byte() -> None:
    with pytest.raises(ConfigError, match=r"RUNPOLLER_MAX_METADATA_BYTES .*must be at least 1"):
        load_settings(max_metadata_bytes=0, assistants_api_key="sk-x")


# ---------------------------------------------------------------------------- arq arguments


async def test_a_job_with_keyword_arguments_is_a_dead_letter_with_a_one_line_reason(
    app: WorkerApp,
) -> None:
    # Through the batch intake, as a worker runs it: no crash, no traceback, no retry.
    queue = app.settings.queue_name
    job = {"kind": "assistants_run", "thread_id": "t1", "run_id": "kw", "api_key": "sk-secret"}
    body = serialize_job(
        {"f": FN_RUN, "a": [job], "k": {"extra": 1, "more": 2}, "t": None, "et": 0}
    )
    await app.redis.set("arq:job:kw-job", body)
    await app.redis.zadd(queue, {"kw-job": 0})
    with structlog.testing.capture_logs() as logs:
        result = await app.batch.run([b"kw-job"])
    assert result.done == ["kw-job"] and result.failed == 0 and not result.deferred
    assert [e["event"] for e in logs if e["log_level"] in ("error", "critical")] == []
    letters = await app.redis.xrange(f"{PREFIX}:dead-letters")
    assert len(letters) == 1
    letter = DeadLetter.model_validate_json(letters[0][1][b"data"])
    assert letter.reason == "runpoller.run takes no keyword arguments, got 2: extra, more"
    assert "\n" not in letter.reason
    assert "sk-secret" not in letter.raw and '"extra": 1' in letter.raw
    assert await final_of(app, "kw") is None and "kw" not in app.runner.runs
    assert await app.redis.zcard(queue) == 0


@pytest.mark.parametrize(
    ("function", "args", "reason"),
    [
        (FN_RUN, [], "runpoller.run takes exactly one positional argument, got 0"),
        (FN_RUN, [{}, {}], "runpoller.run takes exactly one positional argument, got 2"),
        (FN_RESUME, ["r1", "r2"], "runpoller.resume takes exactly one positional argument, got 2"),
    ],
)
async def test_a_job_with_the_wrong_number_of_arguments_is_a_dead_letter(
    app: WorkerApp, function: str, args: list[Any], reason: str
) -> None:
    outcome = await app.admission.handlers()[function](args, {}, 0.0, 1)
    assert outcome == "dead_letter"
    letters = await app.redis.xrange(f"{PREFIX}:dead-letters")
    assert [DeadLetter.model_validate_json(f[b"data"]).reason for _, f in letters] == [reason]


async def test_a_resume_job_with_keyword_arguments_is_a_dead_letter(app: WorkerApp) -> None:
    outcome = await app.admission.handlers()[FN_RESUME](["r1"], {"job_try": 2}, 0.0, 1)
    assert outcome == "dead_letter"
    letters = await app.redis.xrange(f"{PREFIX}:dead-letters")
    assert DeadLetter.model_validate_json(letters[0][1][b"data"]).reason == (
        "runpoller.resume takes no keyword arguments, got 1: job_try"
    )


# ---------------------------------------------------------------------------- re-enqueue


async def orphaned_run(app: WorkerApp, job: dict[str, Any]) -> None:
    """A run record its first job created, whose owner has just stopped (owner gone)."""
    assert await app.admission.intake(job, 0.0) == "new"
    await app.runner.stop_runs()
    await app.redis.hset(f"{PREFIX}:run:{job['run_id']}", "owner", "")


async def dead_letters(app: WorkerApp) -> list[DeadLetter]:
    letters = await app.redis.xrange(f"{PREFIX}:dead-letters")
    return [DeadLetter.model_validate_json(fields[b"data"]) for _, fields in letters]


def plaintext_app() -> WorkerApp:
    settings, _ = load_settings(
        assistants_api_key="sk-admission-test",
        assistants_base_url="http://api.test/v1",
        key_prefix=PREFIX,
        max_timeout_ms=600_000,
        allow_plaintext_keys=True,
        metrics_port=-1,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    return WorkerApp(settings, fakeredis.FakeAsyncRedis(), http=http, worker_id="w1")  # type: ignore[arg-type]


async def test_a_conflicting_reenqueue_of_an_orphaned_run_is_refused_not_applied() -> None:
    first = {"kind": "assistants_run", "thread_id": "thread_a", "run_id": "r1", "timeout_ms": 9000}
    app = plaintext_app()
    await orphaned_run(app, first)
    events_before = await app.redis.xlen(f"{PREFIX}:events:r1")
    second = {
        **first,
        "thread_id": "thread_b",
        "timeout_ms": 600_000,
        "metadata": {"m": 1},
        "api_key": "sk-not-shown",
    }
    with structlog.testing.capture_logs() as logs:
        outcome = await app.admission.intake(second, 5.0)
    try:
        run = app.runner.runs["r1"]
        assert run.job.thread_id == "thread_a", "the first job's identity wins"
        assert run.job.timeout_ms == 9000 and run.job.metadata is None, "nothing of it applied"
        assert run.api_key == "sk-admission-test" and run.job.api_key is None
        assert run.state.deadline == pytest.approx(9.0), "the deadline did not move"
    finally:
        await app.runner.stop_runs()
    letters = await dead_letters(app)
    assert len(letters) == 1, letters
    assert letters[0].reason == (
        "conflicting_job: a second job for run r1 was refused: thread_id differs from the "
        "run's first job, which the run keeps"
    )
    assert "sk-not-shown" not in letters[0].reason + letters[0].raw
    assert '"thread_b"' in letters[0].raw
    assert outcome == "dead_letter"
    assert app.metrics.dead_letters._value.get() == 1
    assert await final_of(app, "r1") is None, "no final event for the run"
    assert await app.redis.xlen(f"{PREFIX}:events:r1") == events_before
    job_json = await app.redis.hget(f"{PREFIX}:run:r1", "job")
    assert job_json is not None and b"thread_a" in job_json and b"thread_b" not in job_json
    assert [e for e in logs if e["event"] == "job.conflict"] == [
        {"event": "job.conflict", "log_level": "warning", "run_id": "r1", "fields": ["thread_id"]}
    ]


async def test_a_same_identity_reenqueue_of_an_orphaned_run_resumes_it_silently() -> None:
    app = plaintext_app()
    first = {"kind": "assistants_run", "thread_id": "thread_a", "run_id": "r1"}
    await orphaned_run(app, first)
    # Same identity, other per-job fields (a key is not identity): the documented idempotent
    # re-enqueue. It resumes the run as its first job asked, applying nothing of its own.
    again = {
        **first,
        "id": "r1",
        "poll_interval_ms": 5000,
        "metadata": {"m": 2},
        "api_key": "sk-other",
    }
    assert await app.admission.intake(again, 5.0) == "resumed"
    try:
        run = app.runner.runs["r1"]
        assert run.job.thread_id == "thread_a"
        assert run.job.poll_interval_ms is None and run.job.metadata is None
        assert run.api_key == "sk-admission-test"
    finally:
        await app.runner.stop_runs()
    assert await dead_letters(app) == []
    assert app.metrics.dead_letters._value.get() == 0


@pytest.mark.parametrize(
    ("second", "fields"),
    [
        ({"kind": "assistants_run", "thread_id": "t1", "run_id": "r2", "id": "r1"}, "run_id"),
        (
            {"kind": "assistants_run", "thread_id": "t2", "run_id": "r2", "id": "r1"},
            "thread_id, run_id",
        ),
        ({"kind": "response", "response_id": "resp_1", "id": "r1"}, "kind"),
    ],
)
async def test_a_conflicting_job_for_a_run_a_live_worker_owns_is_a_dead_letter(
    app: WorkerApp, second: dict[str, Any], fields: str
) -> None:
    first = {"kind": "assistants_run", "thread_id": "t1", "run_id": "r1"}
    assert await app.admission.intake(first, 0.0) == "new"
    await app.runner.stop_runs()
    # Owned by another worker whose heartbeat lives.
    await app.redis.hset(f"{PREFIX}:run:r1", "owner", "w2")
    await app.redis.set(f"{PREFIX}:worker:w2", "{}")
    assert await app.admission.intake(second, 0.0) == "dead_letter"
    assert await app.admission.intake(first, 0.0) == "owned", "same identity: silent"
    assert "r1" not in app.runner.runs
    job_json = await app.redis.hget(f"{PREFIX}:run:r1", "job")
    assert job_json is not None and json.loads(job_json)["run_id"] == "r1"
    letters = await dead_letters(app)
    assert [letter.reason.split(": ")[2] for letter in letters] == [
        f"{fields} {'differs' if ',' not in fields else 'differ'} from the run's first job, "
        "which the run keeps"
    ]


async def test_a_conflicting_job_for_an_ended_run_is_a_dead_letter(app: WorkerApp) -> None:
    first = {"kind": "assistants_run", "thread_id": "t1", "run_id": "r1"}
    assert await app.admission.intake(first, 0.0) == "new"
    await app.runner.stop_runs()
    await app.redis.hset(f"{PREFIX}:run:r1", "final", "1")
    assert await app.admission.intake(first, 0.0) == "done"
    assert await dead_letters(app) == []
    assert await app.admission.intake({**first, "thread_id": "t9"}, 0.0) == "dead_letter"
    assert [letter.reason for letter in await dead_letters(app)] == [
        "conflicting_job: a second job for run r1 was refused: thread_id differs from the "
        "run's first job, which the run keeps"
    ]
    assert "r1" not in app.runner.runs


async def test_with_webhooks_responses_poll_at_the_fallback_interval_and_runs_do_not() -> None:
    app = app_with(poll_interval_ms=1000, webhook_fallback_interval_ms=15_000)
    response = {"kind": "response", "response_id": "resp_1"}
    run = {"kind": "assistants_run", "thread_id": "t1", "run_id": "r1"}
    assert await app.admission.intake(response, 0.0) == "new"
    assert await app.admission.intake(run, 0.0) == "new"
    intervals = {rid: r.state.interval for rid, r in app.runner.runs.items()}
    await app.runner.stop_runs()
    assert intervals == {"resp_1": 15.0, "r1": 1.0}, "webhooks wake responses, not runs"
