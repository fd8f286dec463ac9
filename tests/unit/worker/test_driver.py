"""The run driver on fakeredis with a scripted backend: what reaches Redis, and when."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import fakeredis
import httpx
import pytest

from runpoller import engine
from runpoller.backends import RunResult
from runpoller.backends.assistants import AssistantsBackend
from runpoller.backends.responses import ResponsesBackend
from runpoller.engine import Failure, Observation, RunState, Status
from runpoller.http.api import ApiClient, ApiFailure
from runpoller.protocol import AssistantsRunJob, FinalEvent, Keys, ParsedReply, ResponseJob
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner


class ScriptedBackend:
    def __init__(self, statuses: list[Status], crash_at: int | None = None) -> None:
        self.statuses = statuses
        self.crash_at = crash_at
        self.gets = 0

    async def get(self, job: Any, state: RunState, *_: Any) -> Observation:
        self.gets += 1
        if self.crash_at is not None and self.gets >= self.crash_at:
            raise RuntimeError("a bug sk-should-not-appear-123456")
        status = self.statuses[min(self.gets - 1, len(self.statuses) - 1)]
        return Observation(status, status.value, "run_1")

    async def cancel(self, job: Any, state: RunState, api_key: str) -> Observation:
        return Observation(Status.CANCELLED, "cancelled", "run_1")

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, *args: Any) -> RunResult:
        return RunResult("done", {"run_id": "run_1"})


async def drive(backend: ScriptedBackend) -> tuple[fakeredis.FakeAsyncRedis, Runner]:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=600, interval_s=0.01)
    claim = await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    assert claim.outcome == "new"
    runner.adopt("run_1", job, state, "sk-test")
    for _ in range(200):
        if not runner.runs:
            break
        await asyncio.sleep(0.01)
    return redis, runner


async def test_steady_polls_touch_redis_only_on_status_changes() -> None:
    statuses = [Status.QUEUED] * 3 + [Status.IN_PROGRESS] * 5 + [Status.COMPLETED]
    backend = ScriptedBackend(statuses)
    redis, _ = await drive(backend)
    entries = await redis.xrange("t:events:run_1")
    types = [fields[b"type"].decode() for _, fields in entries]
    # accepted (from the claim), queued, in_progress, completed, final: not one per poll.
    assert types == ["accepted", "status", "status", "status", "final"]
    assert backend.gets == len(statuses)
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "completed" and final.output_text == "done"


async def test_a_bug_in_the_driver_ends_the_run_with_an_error_not_silence() -> None:
    backend = ScriptedBackend([Status.IN_PROGRESS], crash_at=2)
    redis, runner = await drive(backend)
    assert not runner.runs
    raw = await redis.get("t:result:run_1")
    assert raw is not None, "the run was not stranded"
    final = FinalEvent.model_validate_json(raw)
    assert final.status == "error" and final.error is not None
    assert final.error.code == "internal_error" and "RuntimeError" in final.error.message
    assert "sk-should-not-appear" not in raw.decode()
    assert not await redis.sismember("t:owned:w1", "run_1")


# ---------------------------------------------------------------------------- terminal status


class FetchingBackend(ScriptedBackend):
    """Completes after a few polls; the result fetch can be held, fail or crash."""

    def __init__(self, statuses: list[Status], fetch: str = "ok") -> None:
        super().__init__(statuses)
        self.fetch = fetch
        self.fetching = asyncio.Event()
        self.release = asyncio.Event()

    async def fetch_result(self, *args: Any) -> RunResult:
        self.fetching.set()
        if self.fetch == "hold":
            await self.release.wait()
        if self.fetch == "refused":
            raise ApiFailure(Failure("HTTP 404: no such thread", status_code=404))
        if self.fetch == "crash":
            raise RuntimeError("a bug while collecting results")
        return RunResult("done", {"run_id": "run_1"})


async def events_of(redis: fakeredis.FakeAsyncRedis) -> list[tuple[str, dict[str, Any]]]:
    entries = await redis.xrange("t:events:run_1")
    return [(f[b"type"].decode(), json.loads(f[b"data"])) for _, f in entries]


async def start(
    redis: fakeredis.FakeAsyncRedis, backend: ScriptedBackend, worker_id: str
) -> Runner:
    """Claim run_1 for ``worker_id`` (new, or taking it over) and drive it."""
    store = RunStore(redis, Keys("t"), worker_id=worker_id, maxlen=100, ttl_s=60)
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=600, interval_s=0.01)
    claim = await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    if claim.outcome == "resumed":
        assert claim.state_json is not None
        state = RunState.from_json(claim.state_json)
    runner.adopt("run_1", job, state, "sk-test")
    return runner


async def finished(runner: Runner) -> None:
    for _ in range(1000):
        if not runner.runs:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the run did not finish")


@pytest.mark.parametrize(
    ("fetch", "final_status"), [("ok", "completed"), ("refused", "completed"), ("crash", "error")]
)
async def test_the_terminal_status_event_comes_just_before_the_final_event(
    fetch: str, final_status: str
) -> None:
    redis = fakeredis.FakeAsyncRedis()
    backend = FetchingBackend([Status.IN_PROGRESS, Status.COMPLETED], fetch=fetch)
    await finished(await start(redis, backend, "w1"))
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "in_progress"),
        ("status", "completed"),
        ("final", final_status),
    ]
    status_ts, final_ts = events[2][1]["ts"], events[3][1]["ts"]
    assert status_ts <= final_ts, "the status event keeps the time the status was seen"
    if fetch == "refused":
        assert "results unavailable" in events[3][1]["reason"]


async def test_a_worker_dying_while_fetching_results_loses_no_event() -> None:
    redis = fakeredis.FakeAsyncRedis()
    first = FetchingBackend([Status.IN_PROGRESS, Status.COMPLETED], fetch="hold")
    runner = await start(redis, first, "w1")
    await asyncio.wait_for(first.fetching.wait(), 5)
    # Terminal status seen, results not yet in: nothing about it is durable yet.
    assert [t for t, _ in await events_of(redis)] == ["accepted", "status"]
    durable = RunState.from_json(await redis.hget("t:run:run_1", "state"))
    assert durable.phase is engine.Phase.POLLING
    assert durable.last_status is Status.IN_PROGRESS
    assert engine.resume(durable, time.time()) is not None  # a new owner polls again

    await runner.stop_runs()  # the worker dies (its tasks are gone) ...
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    assert await store.release("w1", force=True) == 1  # ... and its runs are released

    second = FetchingBackend([Status.COMPLETED])
    await finished(await start(redis, second, "w2"))
    assert second.gets == 1, "the new owner re-polled"
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "in_progress"),
        ("status", "completed"),
        ("final", "completed"),
    ]
    assert events[-1][1]["output_text"] == "done"
    assert await redis.hget("t:run:run_1", "final") == b"1"


class ExcludedAssistant(ScriptedBackend):
    """The first answer is already terminal, from an assistant the policy refuses."""

    async def get(self, job: Any, state: RunState, *_: Any) -> Observation:
        self.gets += 1
        return Observation(Status.COMPLETED, "completed", "run_1", assistant_id="asst_banned")


async def test_a_status_seen_on_the_answer_that_ends_the_run_still_gets_its_event() -> None:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    policy = engine.Policy(excluded_ids=frozenset({"asst_banned"}))
    runner = Runner(store, {"assistants_run": ExcludedAssistant([])}, policy, http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=600, interval_s=0.01)
    await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    runner.adopt("run_1", job, state, "sk-test")
    await finished(runner)
    events = await events_of(redis)
    # docs/protocol.md: an event for every status change, the one that ends the run included.
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "completed"),
        ("final", "refused"),
    ]


# ---------------------------------------------------------------------------- Responses backend


class ResponsesApi:
    """A Responses API behind httpx.MockTransport: records requests, answers from a script."""

    def __init__(self, answers: list[httpx.Response]) -> None:
        self.answers = answers
        self.requests: list[tuple[str, str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))
        return self.answers[min(len(self.requests) - 1, len(self.answers) - 1)]


def response(status: str, rid: str = "resp_1", **extra: Any) -> httpx.Response:
    data = {"id": rid, "object": "response", "status": status, "model": "gpt-4o"} | extra
    return httpx.Response(200, json=data)


FUNCTION_CALL = {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"}


def sample(runner: Runner, name: str, **labels: str) -> float | None:
    return runner.metrics.registry.get_sample_value(name, labels)


async def drive_response(
    api: ResponsesApi, job: ResponseJob, *, timeout_s: float = 600
) -> tuple[fakeredis.FakeAsyncRedis, Runner]:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    backend = ResponsesBackend(ApiClient(http, "http://api.test/v1"))
    runner = Runner(store, {"response": backend}, engine.Policy(), http_concurrency=4)
    state = engine.new_state(job.object_id, now=time.time(), timeout_s=timeout_s, interval_s=0.01)
    claim = await store.claim(job.run_key, job.model_dump_json(), state.to_json(), "{}")
    assert claim.outcome == "new"
    runner.adopt(job.run_key, job, state, "sk-test")
    await finished(runner)
    return redis, runner


async def test_a_response_past_its_tool_deadline_ends_cancelled_without_a_cancel_request() -> None:
    api = ResponsesApi([response("completed", output=[FUNCTION_CALL], usage={"total_tokens": 3})])
    job = ResponseJob(kind="response", response_id="resp_1", id="run_1")
    redis, runner = await drive_response(api, job, timeout_s=0.3)
    assert {method for method, _, _ in api.requests} == {"GET"}, "nothing to cancel: no POST"
    assert sample(runner, "runpoller_cancels_total", reason="tool_timeout") == 1
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "requires_action"),
        ("requires_action", None),
        ("status", "cancelled"),
        ("final", "timed_out"),
    ]
    final = FinalEvent.model_validate(events[-1][1])
    assert final.api_status == "cancelled"
    assert final.reason == "timed out waiting for tool outputs (unanswered call ids: call_1)"
    assert final.error is not None and final.error.code == "tool_outputs_timeout"
    assert final.cancel is not None and final.cancel.outcome == "confirmed"
    assert final.output_text is None
    assert final.model is None and final.usage is None
    assert final.detail == {"response_ids": ["resp_1"]}


async def test_a_response_job_with_a_request_creates_the_response_then_follows_it() -> None:
    api = ResponsesApi(
        [
            httpx.Response(500, json={"error": {"message": "busy"}}),
            response("queued", "resp_new"),
            response("completed", "resp_new"),
        ]
    )
    job = ResponseJob(kind="response", id="run_1", request={"model": "gpt-4o", "input": "hi"})
    redis, runner = await drive_response(api, job)
    created = {"model": "gpt-4o", "input": "hi", "background": True, "store": True}
    assert api.requests == [
        ("POST", "/v1/responses", created),
        ("POST", "/v1/responses", created),
        ("GET", "/v1/responses/resp_new", None),
    ]
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "completed" and final.detail["response_ids"] == ["resp_new"]
    requests = "runpoller_api_requests_total"
    assert sample(runner, requests, backend="response", op="create", code="500") == 1
    assert sample(runner, requests, backend="response", op="create", code="200") == 1
    assert sample(runner, requests, backend="response", op="get", code="200") == 1
    assert sample(runner, "runpoller_api_retries_total", backend="response", op="create") == 1


class ContinuationApi(ResponsesApi):
    """resp_1 completed with a function call; the first continuation gets a 503, the second
    creates resp_2, which completes. Answers by request, not by order: polls of resp_1 may
    come before the reply, however slow the machine."""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        super().__call__(request)
        if request.method == "POST":
            posts = sum(method == "POST" for method, _, _ in self.requests)
            if posts == 1:
                return httpx.Response(503, json={"error": {"message": "overloaded"}})
            return response("queued", "resp_2")
        if request.url.path.endswith("/resp_2"):
            return response("completed", "resp_2")
        return response("completed", output=[FUNCTION_CALL])


async def test_a_submit_retried_after_a_failure_still_carries_the_outputs() -> None:
    api = ContinuationApi([response("completed")])
    job = ResponseJob(kind="response", response_id="resp_1", id="run_1")
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    backend = ResponsesBackend(ApiClient(http, "http://api.test/v1"))
    runner = Runner(store, {"response": backend}, engine.Policy(), http_concurrency=4)
    state = engine.new_state("resp_1", now=time.time(), timeout_s=600, interval_s=0.01)
    await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    runner.adopt("run_1", job, state, "sk-test")
    for _ in range(1000):  # the tool round is asked (generous: shared machines are slow)
        if len(api.requests) >= 1 and runner.runs["run_1"].state.round == 1:
            break
        await asyncio.sleep(0.01)
    assert runner.deliver_reply(ParsedReply("run_1", 1, [("call_1", "42")]))
    await finished(runner)
    answer = [{"type": "function_call_output", "call_id": "call_1", "output": "42"}]
    submits = [body for method, _, body in api.requests if method == "POST"]
    assert len(submits) == 2
    assert all(body["input"] == answer for body in submits), submits
    final = FinalEvent.model_validate_json(await redis.get("t:result:run_1"))
    assert final.status == "completed" and final.detail["response_ids"] == ["resp_1", "resp_2"]


# ---------------------------------------------------------------------------- untrusted answers


async def test_a_poll_answered_with_another_response_ends_the_run_without_its_output() -> None:
    other = response(
        "completed",
        "resp_other",
        output=[{"type": "message", "content": [{"type": "output_text", "text": "not yours"}]}],
        usage={"total_tokens": 99},
    )
    api = ResponsesApi([response("in_progress"), other])
    job = ResponseJob(kind="response", response_id="resp_1", id="run_1")
    redis, _ = await drive_response(api, job)
    assert [(m, p) for m, p, _ in api.requests] == [("GET", "/v1/responses/resp_1")] * 2
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "in_progress"),
        ("final", "error"),
    ]
    final = FinalEvent.model_validate(events[-1][1])
    assert final.error is not None and final.error.code == "object_mismatch"
    assert "resp_1" in final.reason and "resp_other" in final.reason
    assert final.api_status == "in_progress"
    assert final.output_text is None and final.usage is None, "nothing of the other object"


async def test_an_unknown_status_keeps_polling_is_logged_once_and_cancelled_at_the_deadline(
    capsys: pytest.CaptureFixture[str],
) -> None:
    class NewStatusApi(ResponsesApi):
        """Says a status runpoller does not know until the response is cancelled."""

        def __call__(self, request: httpx.Request) -> httpx.Response:
            super().__call__(request)
            cancelled = any(path.endswith("/cancel") for _, path, _ in self.requests)
            return response("cancelled" if cancelled else "thinking_hard")

    api = NewStatusApi([response("thinking_hard")])
    job = ResponseJob(kind="response", response_id="resp_1", id="run_1")
    redis, runner = await drive_response(api, job, timeout_s=0.3)
    methods = [(m, p) for m, p, _ in api.requests]
    assert methods.count(("POST", "/v1/responses/resp_1/cancel")) == 1, methods
    assert methods[0] == ("GET", "/v1/responses/resp_1") and len(methods) >= 3, "kept polling"
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "thinking_hard"),
        ("status", "cancelled"),
        ("final", "timed_out"),
    ]
    assert sample(runner, "runpoller_unknown_statuses_total", backend="response") == 1
    captured = capsys.readouterr()  # stdout, or stderr once a worker configured logging
    assert (captured.out + captured.err).count("run.unknown_status") == 1


def run_object(status: str, **extra: Any) -> dict[str, Any]:
    data = {"id": "run_1", "object": "thread.run", "thread_id": "thread_1", "status": status}
    return data | extra


async def test_requires_action_without_function_calls_asks_the_app_nothing() -> None:
    no_calls = {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": []}}
    other_only = {
        "type": "submit_tool_outputs",
        "submit_tool_outputs": {"tool_calls": [{"id": "ci_1", "type": "code_interpreter"}]},
    }
    answers = [
        run_object("requires_action", required_action=no_calls),
        run_object("requires_action", required_action=other_only),
        run_object("completed"),
    ]
    gets: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json={"data": [], "has_more": False})
        gets.append(request.url.path)
        return httpx.Response(200, json=answers[min(len(gets) - 1, len(answers) - 1)])

    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    http = httpx.AsyncClient(transport=httpx.MockTransport(api))
    backend = AssistantsBackend(ApiClient(http, "http://api.test/v1"))
    runner = Runner(store, {"assistants_run": backend}, engine.Policy(), http_concurrency=4)
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = engine.new_state("run_1", now=time.time(), timeout_s=600, interval_s=0.01)
    await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    runner.adopt("run_1", job, state, "sk-test")
    await finished(runner)
    assert gets == ["/v1/threads/thread_1/runs/run_1"] * 3, "re-read at the interval"
    events = await events_of(redis)
    assert [(t, d.get("status")) for t, d in events] == [
        ("accepted", None),
        ("status", "requires_action"),
        ("status", "completed"),
        ("final", "completed"),
    ], "no requires_action event: there is nothing for the app to answer"
