"""The app's cancel in the driver (fakeredis, a scripted backend): when it is fed to the
engine, what is sent, and what is never sent."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import fakeredis

from runpoller import engine
from runpoller.backends import RunResult
from runpoller.engine import Observation, RunState, Status
from runpoller.protocol import AssistantsRunJob, FinalEvent, Keys, ResponseJob
from runpoller.redis.store import RunStore
from runpoller.worker.driver import CANCEL_NOTICES_KEPT, Runner


class Backend:
    """Polls answer in_progress (a GET can be held); a cancel is confirmed at once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.in_get = asyncio.Event()

    async def get(self, job: Any, state: RunState, *_: Any) -> Observation:
        self.calls.append("get")
        self.in_get.set()
        await self.hold.wait()
        return Observation(Status.IN_PROGRESS, "in_progress", state.object_id)

    async def create(self, job: Any, api_key: str, *_: Any) -> Observation:
        self.calls.append("create")
        return Observation(Status.QUEUED, "queued", "resp_new")

    async def cancel(self, job: Any, state: RunState, api_key: str) -> Observation:
        self.calls.append("cancel")
        return Observation(Status.CANCELLED, "cancelled", state.object_id)

    async def submit(self, *args: Any) -> Observation:
        raise AssertionError("no tool calls here")

    async def fetch_result(self, *args: Any) -> RunResult:
        self.calls.append("fetch")
        return RunResult(None, {})


JOB = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")


async def runner_for(backend: Backend) -> tuple[fakeredis.FakeAsyncRedis, Runner, RunStore]:
    redis = fakeredis.FakeAsyncRedis()
    store = RunStore(redis, Keys("t"), worker_id="w1", maxlen=100, ttl_s=60)
    backends: dict[str, Any] = {"assistants_run": backend, "response": backend}
    return redis, Runner(store, backends, engine.Policy(), http_concurrency=4), store


async def adopt(
    store: RunStore,
    runner: Runner,
    job: Any = JOB,
    object_id: str = "run_1",
    interval_s: float = 0.01,
    cancel: str | None = None,
) -> None:
    state = engine.new_state(object_id, now=time.time(), timeout_s=600, interval_s=interval_s)
    claim = await store.claim("run_1", job.model_dump_json(), state.to_json(), "{}")
    assert claim.outcome == "new"
    assert runner.adopt("run_1", job, state, "sk-test", cancel=cancel)


async def final_of(redis: fakeredis.FakeAsyncRedis, runner: Runner) -> FinalEvent:
    async def ended() -> None:
        while runner.runs:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(ended(), 10)
    raw = await redis.get("t:result:run_1")
    assert raw is not None
    return FinalEvent.model_validate_json(raw)


async def test_a_cancel_during_a_request_is_sent_right_after_it() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    backend.hold.clear()
    await adopt(store, runner)
    await backend.in_get.wait()
    assert runner.request_cancel("run_1", "user pressed stop")
    backend.hold.set()
    final = await final_of(redis, runner)
    assert backend.calls == ["get", "cancel", "fetch"], "no other poll between the two"
    assert final.status == "cancelled" and final.error is not None
    assert final.error.code == "cancelled_by_app"
    assert final.cancel is not None and final.cancel.app_reason == "user pressed stop"


async def test_a_cancel_ends_a_long_wait_at_once() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    await adopt(store, runner, interval_s=300)  # the next poll would be 5 minutes away
    while not backend.calls:
        await asyncio.sleep(0.01)
    runner.request_cancel("run_1", "")
    final = await final_of(redis, runner)  # bounded at 10 s: it does not wait 300
    assert backend.calls == ["get", "cancel", "fetch"]
    assert final.status == "cancelled" and final.reason == "cancelled at the app's request"


async def test_a_cancel_read_with_the_claim_comes_before_any_request() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    await adopt(store, runner, cancel="asked before intake")
    final = await final_of(redis, runner)
    assert backend.calls == ["cancel", "fetch"], "not even one poll first"
    assert final.cancel is not None and final.cancel.app_reason == "asked before intake"


async def test_a_response_to_create_is_never_created_once_cancelled() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    job = ResponseJob(kind="response", id="run_1", request={"model": "gpt-4o", "input": "hi"})
    await adopt(store, runner, job=job, object_id="", cancel="")
    final = await final_of(redis, runner)
    assert backend.calls == [], "no create, no cancel: nothing existed"
    assert final.status == "cancelled" and final.api_status is None
    assert final.error is not None and final.error.code == "cancelled_by_app"


async def test_a_cancel_read_just_before_adoption_is_kept_for_it() -> None:
    # The listener read the app's request while the run was being claimed here (the claim
    # had read no request yet): the notice waits for the adoption.
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    assert not runner.request_cancel("run_1", "in between")
    await adopt(store, runner)
    final = await final_of(redis, runner)
    assert backend.calls == ["cancel", "fetch"]
    assert final.cancel is not None and final.cancel.app_reason == "in between"
    assert "run_1" not in runner.cancel_notices


async def test_notices_for_runs_not_here_are_bounded() -> None:
    _, runner, _ = await runner_for(Backend())
    for n in range(CANCEL_NOTICES_KEPT + 50):
        runner.request_cancel(f"elsewhere_{n}", "")
    assert len(runner.cancel_notices) == CANCEL_NOTICES_KEPT
    assert "elsewhere_0" not in runner.cancel_notices, "the oldest go first"


async def test_asking_twice_sends_one_cancel() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    backend.hold.clear()
    await adopt(store, runner)
    await backend.in_get.wait()
    runner.request_cancel("run_1", "first")
    runner.request_cancel("run_1", "second")
    backend.hold.set()
    final = await final_of(redis, runner)
    assert backend.calls.count("cancel") == 1
    assert final.cancel is not None and final.cancel.app_reason == "first"


# ---------------------------------------------------------------------------- webhook wakes


async def test_a_webhook_wake_polls_the_run_now_instead_of_after_its_interval() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    await adopt(store, runner, interval_s=300)
    while not backend.calls:
        await asyncio.sleep(0.01)
    while runner.runs["run_1"].next_op is None:  # the first answer is being applied
        await asyncio.sleep(0.01)
    assert runner.wake_object("run_other") == "not_here"
    assert runner.wake_object("run_1") == "woken"
    while len(backend.calls) < 2:  # bounded by the test timeout, not by the 300 s interval
        await asyncio.sleep(0.01)
    assert backend.calls == ["get", "get"]
    runner.request_cancel("run_1", "")
    await final_of(redis, runner)
    assert runner.by_object == {}, "forgotten with the run"


async def test_a_wake_does_not_hurry_a_request_that_is_not_a_poll() -> None:
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    backend.hold.clear()
    await adopt(store, runner)
    await backend.in_get.wait()
    assert runner.wake_object("run_1") == "not_waiting", "a request is in flight"
    backend.hold.set()
    runner.request_cancel("run_1", "")
    await final_of(redis, runner)


async def test_a_webhook_that_comes_before_its_response_is_known_still_hurries_the_poll() -> None:
    # The response ended (and its webhook arrived) before the create's answer was applied:
    # the notice is kept, and the poll comes as soon as the run follows that response.
    backend = Backend()
    redis, runner, store = await runner_for(backend)
    assert runner.wake_object("resp_new") == "not_here"
    job = ResponseJob(kind="response", id="run_1", request={"model": "gpt-4o", "input": "hi"})
    await adopt(store, runner, job=job, object_id="", interval_s=300)
    while len(backend.calls) < 2:  # bounded by the test timeout, not by the 300 s interval
        await asyncio.sleep(0.01)
    assert backend.calls == ["create", "get"]
    assert "resp_new" not in runner.wake_notices
    runner.request_cancel("run_1", "")
    await final_of(redis, runner)
