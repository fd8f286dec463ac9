"""A zombie worker: SIGSTOPped past the dead-worker TTL in the middle of tool rounds, continued.

One worker takes every run (half Assistants runs answered with ``submit_tool_outputs``, half
background Responses answered with continuations), a second one stands by, and the app
answers each tool round after a random delay. The API takes a while to answer submits and
continuations, and the first worker is stopped while some of its own are in flight (the API
still acts on them) and replies keep arriving; the second takes its runs over once its
heartbeat lapses and answers the rounds; then the first is continued, still holding every run
and every reply it had read in memory.

Issue 14, item 3: a zombie sent non-idempotent requests for runs it no longer owned (before
any fenced write), and a new owner repeated the ones its predecessor had sent (nothing
recorded them): 1 to 9 duplicate continuations in every trial before 6bfedce. Asserted: no
run lost, none finished twice, and no side effect sent twice (counted from the fake's
request log: more than one answered ``submit_tool_outputs`` per run and round, or
``POST /v1/responses`` per ``previous_response_id``). Not asserted: that every run completes
— a continuation whose sender stopped before the answer is not sent again, and that run
ends ``error`` / ``request_unconfirmed`` (counted in the ``statuses`` figure). Sizes:
``RUNPOLLER_CHAOS_RUNS`` (``make chaos``), small otherwise.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_fake import FakeServer, FakeState, start_fake_server
from runpoller_fake.script import Fault
from tests.chaos.figures import measure, read_events, record, request_log
from tests.procs import (
    ToolReplier,
    create_objects,
    kill_all,
    owners,
    start_worker,
    tool_round_script,
    wait_for,
    worker_env,
    worker_pid,
)

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-zombie-key-0123456789"
# One worker carries every run until the stop: a fifth of make chaos's size (tool rounds, replies
# and in-flight side effects on 2 shared cores), 24 in make test.
RUNS = max(int(os.environ.get("RUNPOLLER_CHAOS_RUNS") or 0) // 5, 24)
ROUNDS = 4
WORK_MS = 400
TTL_S = 1.5  # RUNPOLLER_DEAD_WORKER_AFTER_MS in tests/procs.py's worker_env
STOP_S = TTL_S + 2.0  # well past the TTL: the other worker has taken over by then
POLL_MS = 300
SLACK_S = 30 + RUNS / 10
SIDE_EFFECT_MS = 800  # how long the API takes to answer a submit or a continuation
SIDE_EFFECTS = ("create_response", "submit_tool_outputs")


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    yield server
    await server.close()


def in_flight(fake: FakeServer) -> set[str]:
    """The side-effect endpoints with a request the API has not answered yet."""
    return {
        r["endpoint"]
        for r in fake.state.request_log
        if r["status"] is None and r["endpoint"] in SIDE_EFFECTS
    }


async def test_a_zombie_sends_no_side_effect_twice(
    fake: FakeServer, redis: Redis, namespace: str
) -> None:
    client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
    env = worker_env(fake, namespace, KEY, RUNPOLLER_POLL_INTERVAL_MS=str(POLL_MS))
    procs = [await start_worker(env)]
    replier: ToolReplier | None = None
    fake.state.set_faults(
        Fault(on=endpoint, latency_ms=SIDE_EFFECT_MS) for endpoint in SIDE_EFFECTS
    )
    try:
        runs = await create_objects(
            fake, RUNS - RUNS // 2, tool_round_script(ROUNDS, work_ms=WORK_MS), "run"
        )
        responses = await create_objects(
            fake, RUNS // 2, tool_round_script(ROUNDS, work_ms=WORK_MS, kind="response"), "response"
        )
        jobs = runs + responses
        enqueued_at: dict[str, float] = {}
        run_ids = []
        for job in jobs:
            at = time.time()
            rid = await client.enqueue(job)
            enqueued_at[rid] = at
            run_ids.append(rid)
        replier = ToolReplier(redis, client, run_ids, delay_s=(0.2, 1.2)).start()

        async def all_accepted() -> bool:
            events = await read_events(redis, namespace, run_ids)
            return all(any(e["type"] == "accepted" for e in ev) for ev in events.values())

        await wait_for(all_accepted, SLACK_S, "the first worker to accept every run")
        ((zombie_id, zombie_runs),) = (await owners(redis, namespace)).items()
        zombie = procs[0]
        assert worker_pid(zombie_id) == zombie.pid
        procs.append(await start_worker(env))

        async def live_workers() -> bool:
            return int(await redis.zcard(f"{namespace}:workers")) == 2

        await wait_for(live_workers, 20, "the second worker to start")

        # Stop the first worker while runs are in their tool rounds, replies on their way,
        # and a submit and a continuation of its own in flight at the API.
        async def rounds_under_way() -> bool:
            asked = {rid for rid, _, _ in replier.asked}  # type: ignore[union-attr]
            return len(asked) >= len(run_ids) // 2 and in_flight(fake) == set(SIDE_EFFECTS)

        await wait_for(rounds_under_way, SLACK_S, "tool rounds with side effects in flight")
        stopped_at = time.time()
        zombie.send_signal(signal.SIGSTOP)
        await asyncio.sleep(STOP_S)
        held = await owners(redis, namespace)
        taken_over = len(zombie_runs - held.get(zombie_id, set()))
        continued_at = time.time()
        zombie.send_signal(signal.SIGCONT)

        async def all_final() -> bool:
            events = await read_events(redis, namespace, run_ids)
            return all(any(e["type"] == "final" for e in ev) for ev in events.values())

        await wait_for(all_final, SLACK_S + ROUNDS * 3, "every run to reach its final event")
        await asyncio.sleep(2 * POLL_MS / 1000)  # a zombie's late request or final shows now
        events = await read_events(redis, namespace, run_ids)
        log = await request_log(fake.root_url)
    finally:
        if replier is not None:
            await replier.stop()
        await kill_all(procs)

    statuses = Counter(
        next(e["status"] for e in ev if e["type"] == "final") for ev in events.values()
    )
    figures = record(
        "zombie (SIGSTOP past TTL)",
        measure(
            events,
            log,
            side_effects=("submits", "continuations", "cancels"),
            killed_at=stopped_at,
            victim_runs=zombie_runs,
            resume_before=continued_at,
            resume_source="any",  # a new owner may end a run without a request
            ttl_s=TTL_S,
            enqueued_at=enqueued_at,
            extra={
                "stopped_s": round(continued_at - stopped_at, 2),
                "taken_over": taken_over,
                "statuses": dict(statuses),
            },
        ),
    )
    assert figures.lost == 0, "every run ends"
    assert figures.duplicate_finals == 0, "exactly one final event per run"
    assert taken_over > 0, "the zombie's runs were taken over while it was stopped"
    assert figures.duplicate_submits == 0, "no tool outputs submitted twice"
    assert figures.duplicate_continuations == 0, "no response continued twice"
