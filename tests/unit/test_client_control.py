"""RunpollerClient's inspection and control on fakeredis: status, list_runs, cancel, dead letters.

Run records are written the way workers write them (RunStore's scripts), so the client reads
exactly what a worker leaves; the lists are checked against the index entries they page
over, with scores pinned (no wall clock).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from runpoller import engine
from runpoller.client import (
    CANCEL_TTL_S,
    MAX_PAGE,
    DeadLetterNotFound,
    RequeueRefused,
    RunpollerClient,
)
from runpoller.protocol import DeadLetter, Keys
from runpoller.redis import store as store_module
from runpoller.redis.store import RunStore
from runpoller.secrets import new_key

PREFIX = "rp"
QUEUE = "rp:queue"
SECRET_KEYS = f"k1:{new_key()}"
NOW_MS = 1_764_115_230_500


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
    yield client
    await client.aclose()


@pytest.fixture
def client(redis: Redis) -> RunpollerClient:
    return RunpollerClient(redis, queue_name=QUEUE, key_prefix=PREFIX, secret_keys=SECRET_KEYS)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The workers' clock (index scores), pinned: set ``clock[0]`` to move it."""
    now = [NOW_MS]
    monkeypatch.setattr(store_module, "_now_ms", lambda: now[0])
    return now


def worker(redis: Redis, worker_id: str = "w1") -> RunStore:
    return RunStore(redis, Keys(PREFIX), worker_id=worker_id, maxlen=100, ttl_s=3600)


def job(run_id: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "assistants_run", "thread_id": "thread_1", "run_id": run_id, **extra}


def state(**changes: Any) -> engine.RunState:
    base = engine.RunState(deadline=1_764_115_290.5, interval=1.0, object_id="run_x")
    return dataclasses.replace(base, **changes)


async def accept(
    redis: Redis, run_id: str, run_state: engine.RunState | None = None, **job_fields: Any
) -> None:
    """A run a worker took in (claimed, accepted event written)."""
    stored = json.dumps(job(run_id, **job_fields))
    claim = await worker(redis).claim(run_id, stored, (run_state or state()).to_json(), "{}")
    assert claim.outcome == "new"


async def end(redis: Redis, run_id: str, status: str = "completed") -> None:
    final = json.dumps({"type": "final", "run_id": run_id, "status": status, "reason": "r"})
    assert await worker(redis).finalize(run_id, state().to_json(), final, status) == 1


# ---------------------------------------------------------------------------- status


async def test_status_of_an_unknown_run_is_none(client: RunpollerClient) -> None:
    assert await client.status("nope") is None


async def test_status_refuses_an_invalid_run_id(client: RunpollerClient) -> None:
    with pytest.raises(ValueError, match="invalid run id 'a b'"):
        await client.status("a b")


async def test_status_of_a_queued_run_shows_its_job_without_the_key(
    client: RunpollerClient,
) -> None:
    await client.enqueue(job("run_q", api_key="sk-secret-123456789"))
    view = await client.status("run_q")
    assert view is not None
    assert view.status == "queued" and view.phase is None and view.owner is None
    assert view.job == job("run_q", api_key="encrypted")
    assert view.queued_at is not None and view.accepted_at is None
    assert "sk-secret" not in view.model_dump_json()


async def test_status_of_a_run_waiting_for_outputs(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    waiting = state(
        phase=engine.Phase.AWAITING_OUTPUTS,
        round=2,
        pending_calls=("call_1", "call_2"),
        outputs_deadline=1_764_115_250.0,
        object_ids=("run_x",),
        last_status=engine.Status.REQUIRES_ACTION,
    )
    await accept(redis, "run_a", waiting)
    await redis.set(Keys(PREFIX).heartbeat("w1"), "{}")
    view = await client.status("run_a")
    assert view is not None
    assert (view.status, view.phase, view.round) == ("requires_action", "awaiting_outputs", 2)
    assert view.pending_calls == ["call_1", "call_2"]
    assert (view.owner, view.owner_alive) == ("w1", True)
    assert view.deadline_ms == 1_764_115_290_500
    assert view.outputs_deadline_ms == 1_764_115_250_000
    assert (view.object_id, view.object_ids) == ("run_x", ["run_x"])
    assert view.last_status == "requires_action"
    assert view.job == job("run_a", api_key="none")
    assert view.accepted_at == NOW_MS and view.ended_at is None
    assert view.events == 1 and view.result is None and view.final_status is None
    assert view.cancel_request is None


async def test_status_says_when_the_owner_is_dead_and_tolerates_new_state_fields(
    client: RunpollerClient, redis: Redis
) -> None:
    await accept(redis, "run_b")
    run_key = Keys(PREFIX).run("run_b")
    text = json.dumps({**json.loads(state().to_json()), "added_later": [1, 2]})
    await redis.hset(run_key, "state", text)
    view = await client.status("run_b")
    assert view is not None
    assert (view.status, view.phase, view.owner, view.owner_alive) == (
        "in_flight",
        "polling",
        "w1",
        False,
    )


async def test_status_of_an_ended_run_shows_its_result_and_end(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    await accept(redis, "run_c")
    clock[0] = NOW_MS + 7_000
    await end(redis, "run_c", "failed")
    view = await client.status("run_c")
    assert view is not None
    assert (view.status, view.final_status, view.ended_at) == ("ended", "failed", NOW_MS + 7_000)
    assert view.result is not None and view.result["reason"] == "r"
    assert view.job is None and view.owner is None and view.accepted_at is None


async def test_status_drops_the_index_entry_of_an_expired_record(
    client: RunpollerClient, redis: Redis
) -> None:
    await accept(redis, "run_e")
    await redis.delete(Keys(PREFIX).run("run_e"))  # its TTL ran out before it ended
    assert await client.status("run_e") is None
    assert await redis.zrange(Keys(PREFIX).runs_active, 0, -1) == []


# ---------------------------------------------------------------------------- list_runs


async def seed_every_status(client: RunpollerClient, redis: Redis, clock: list[int]) -> None:
    """Two of each status, ordered by their scores: q1 q2 (queued), a1 a2 (in flight), r1
    (requires action), e1 e2 (ended); and a queue entry of an accepted run."""
    k = Keys(PREFIX)
    await redis.zadd(QUEUE, {"run:q1": NOW_MS + 1, "run:q2": NOW_MS + 2})
    await redis.zadd(QUEUE, {"run:a1": NOW_MS + 3, "resume:zz": NOW_MS + 3})  # not queued runs
    for i, run_id in enumerate(("a1", "r1", "a2", "e1", "e2")):
        clock[0] = NOW_MS + 10 + i
        waiting = run_id.startswith("r")
        phase = engine.Phase.AWAITING_OUTPUTS if waiting else engine.Phase.POLLING
        await accept(redis, run_id, state(phase=phase))
    for i, run_id in enumerate(("e1", "e2")):
        clock[0] = NOW_MS + 20 + i
        await end(redis, run_id, "completed" if i == 0 else "timed_out")
    assert await redis.zcard(k.runs_active) == 3


async def test_list_runs_by_status(client: RunpollerClient, redis: Redis, clock: list[int]) -> None:
    await seed_every_status(client, redis, clock)

    async def ids(status: Any) -> list[str]:
        page = await client.list_runs(status)
        assert page.next_cursor is None
        return [item.run_id for item in page.items]

    assert await ids("queued") == ["q1", "q2"]
    assert await ids("in_flight") == ["a1", "a2"]
    assert await ids("requires_action") == ["r1"]
    assert await ids("ended") == ["e1", "e2"]
    assert await ids(None) == ["q1", "q2", "a1", "r1", "a2", "e1", "e2"]
    page = await client.list_runs()
    summaries = {item.run_id: item for item in page.items}
    assert summaries["a1"].model_dump() == {
        "run_id": "a1",
        "status": "in_flight",
        "ts": NOW_MS + 10,
        "phase": "polling",
        "owner": "w1",
        "round": 0,
        "final_status": None,
    }
    assert summaries["r1"].phase == "awaiting_outputs"
    assert (summaries["e2"].final_status, summaries["e2"].ts) == ("timed_out", NOW_MS + 21)
    assert (summaries["q1"].status, summaries["q1"].ts) == ("queued", NOW_MS + 1)


async def test_list_runs_pages_follow_the_cursor_to_the_end(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    await seed_every_status(client, redis, clock)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await client.list_runs(limit=2, cursor=cursor)
        pages += 1
        assert len(page.items) <= 2
        seen += [item.run_id for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["q1", "q2", "a1", "r1", "a2", "e1", "e2"]
    assert pages == 4


async def test_a_page_that_ends_the_index_has_no_cursor(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    for n in range(4):
        clock[0] = NOW_MS + n
        await accept(redis, f"f{n}")
    first = await client.list_runs("in_flight", limit=2)
    assert [i.run_id for i in first.items] == ["f0", "f1"] and first.next_cursor is not None
    last = await client.list_runs("in_flight", limit=2, cursor=first.next_cursor)
    assert [i.run_id for i in last.items] == ["f2", "f3"]
    assert last.next_cursor is None, "nothing follows f3: no page to ask for"
    whole = await client.list_runs("in_flight", limit=4)
    assert len(whole.items) == 4 and whole.next_cursor is None


async def test_list_runs_since_starts_at_a_score(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    await seed_every_status(client, redis, clock)
    page = await client.list_runs(since_ms=NOW_MS + 11)
    assert [item.run_id for item in page.items] == ["r1", "a2", "e1", "e2"]


async def test_runs_accepted_in_the_same_millisecond_are_paged_exactly_once(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    for n in range(7):  # one score for all: the cursor's member breaks the tie
        await accept(redis, f"tie_{n}")
    seen: list[str] = []
    cursor = None
    while True:
        page = await client.list_runs("in_flight", limit=3, cursor=cursor)
        seen += [item.run_id for item in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert seen == [f"tie_{n}" for n in range(7)]


async def test_a_filtered_page_reads_on_until_it_is_full(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    for n in range(12):
        clock[0] = NOW_MS + n
        waiting = n in (3, 10)
        await accept(
            redis, f"m{n:02}", state(phase=engine.Phase.AWAITING_OUTPUTS) if waiting else None
        )
    page = await client.list_runs("requires_action", limit=2)
    assert [item.run_id for item in page.items] == ["m03", "m10"]
    assert page.next_cursor is not None, "the index goes on after m10"
    rest = await client.list_runs("requires_action", limit=2, cursor=page.next_cursor)
    assert rest.items == [] and rest.next_cursor is None


async def test_a_page_reads_at_most_ten_windows(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    for n in range(25):
        clock[0] = NOW_MS + n
        await accept(redis, f"p{n:02}")
    page = await client.list_runs("requires_action", limit=2)
    assert page.items == []
    assert page.next_cursor == f"{NOW_MS + 19}:p19", "20 entries read, then a cursor"
    rest = await client.list_runs("requires_action", limit=2, cursor=page.next_cursor)
    assert rest.items == [] and rest.next_cursor is None


async def test_list_runs_skips_and_removes_expired_records(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    k = Keys(PREFIX)
    for n in range(3):
        clock[0] = NOW_MS + n
        await accept(redis, f"x{n}")
    await redis.delete(k.run("x1"))  # expired while unfinished
    await redis.zadd(k.runs_ended, {"gone": NOW_MS})  # its result expired before the trim
    page = await client.list_runs()
    assert [item.run_id for item in page.items] == ["x0", "x2"]
    assert await redis.zrange(k.runs_active, 0, -1) == [b"x0", b"x2"]
    assert await redis.zcard(k.runs_ended) == 0


async def test_an_expired_entry_whose_run_came_back_stays(
    client: RunpollerClient, redis: Redis, clock: list[int]
) -> None:
    k = Keys(PREFIX)
    await accept(redis, "back")
    # The reader saw no record; before it removes the entry, the run is enqueued and claimed
    # again (a new record): the entry stays.
    await redis.delete(k.run("back"))
    await accept(redis, "back")
    await client._drop_stale(k.runs_active, ["back"], [k.run("back")])
    assert await redis.zrange(k.runs_active, 0, -1) == [b"back"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "running"}, "unknown status 'running'"),
        ({"limit": 0}, f"limit must be 1 to {MAX_PAGE}"),
        ({"limit": MAX_PAGE + 1}, f"limit must be 1 to {MAX_PAGE}"),
        ({"cursor": "nope"}, "invalid cursor 'nope'"),
        ({"cursor": "inf:x"}, "invalid cursor"),
    ],
)
async def test_list_runs_refuses_bad_arguments(
    client: RunpollerClient, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        await client.list_runs(**kwargs)


# ---------------------------------------------------------------------------- cancel


async def test_cancel_records_the_request_and_announces_it(
    client: RunpollerClient, redis: Redis
) -> None:
    k = Keys(PREFIX)
    await accept(redis, "run_k")
    before = int(time.time() * 1000)
    outcome = await client.cancel("run_k", "user pressed stop")
    assert outcome.outcome == "requested" and outcome.final_status is None
    request = await redis.hgetall(k.cancel("run_k"))
    assert request.keys() == {b"reason", b"requested_at"}
    assert request[b"reason"] == b"user pressed stop"
    assert before <= int(request[b"requested_at"]) <= int(time.time() * 1000)
    assert CANCEL_TTL_S - 5 < await redis.ttl(k.cancel("run_k")) <= CANCEL_TTL_S == 604_800
    entries = await redis.xrange(k.cancels)
    assert [(e[0].decode(), e[1]) for e in entries] == [
        (outcome.entry_id, {b"run_id": b"run_k", b"reason": b"user pressed stop"})
    ]


async def test_cancel_again_sends_again_and_no_reason_is_empty(
    client: RunpollerClient, redis: Redis
) -> None:
    k = Keys(PREFIX)
    first = await client.cancel("run_k")
    second = await client.cancel("run_k")
    assert (first.outcome, second.outcome) == ("requested", "requested")
    assert await redis.hget(k.cancel("run_k"), "reason") == b""
    assert [fields for _, fields in await redis.xrange(k.cancels)] == [
        {b"run_id": b"run_k", b"reason": b""}
    ] * 2


async def test_cancel_of_an_ended_run_writes_nothing(client: RunpollerClient, redis: Redis) -> None:
    k = Keys(PREFIX)
    await accept(redis, "run_done")
    await end(redis, "run_done", "completed")
    outcome = await client.cancel("run_done", "too late")
    assert (outcome.outcome, outcome.final_status) == ("already_ended", "completed")
    assert not await redis.exists(k.cancel("run_done"), k.cancels)


async def test_cancel_refuses_an_invalid_run_id(client: RunpollerClient, redis: Redis) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        await client.cancel("x" * 129)
    assert not await redis.exists(Keys(PREFIX).cancels)


# ---------------------------------------------------------------------------- dead letters


async def dead(redis: Redis, reason: str, raw: Any) -> str:
    """A dead letter as a worker writes it; its entry id."""
    text = raw if isinstance(raw, str) else json.dumps(raw)
    await worker(redis).dead_letter(reason, text)
    entries = await redis.xrevrange(Keys(PREFIX).dead_letters, count=1)
    return str(entries[0][0].decode())


async def test_dead_letters_page_oldest_first(client: RunpollerClient, redis: Redis) -> None:
    ids = [await dead(redis, f"reason {n}", {"n": n}) for n in range(3)]
    await redis.xadd(Keys(PREFIX).dead_letters, {"data": "not json"})
    first = await client.dead_letters(limit=2)
    assert [e.id for e in first.items] == ids[:2] and first.next_after == ids[1]
    letter = first.items[0].letter
    assert isinstance(letter, DeadLetter) and letter.reason == "reason 0"
    rest = await client.dead_letters(limit=2, after=first.next_after)
    assert rest.items[0].id == ids[2] and rest.next_after is not None
    assert rest.items[1].letter is None and "JSON" in rest.items[1].problem
    assert (await client.dead_letters(limit=2, after=rest.next_after)).items == []


async def test_requeue_enqueues_the_job_and_deletes_the_letter(
    client: RunpollerClient, redis: Redis
) -> None:
    entry = await dead(redis, "conflicting_job: ...", job("run_dl", timeout_ms=5000))
    assert await client.requeue_dead_letter(entry) == "run_dl"
    view = await client.status("run_dl")
    assert view is not None and view.status == "queued"
    assert view.job == job("run_dl", timeout_ms=5000, api_key="none")
    assert await redis.xlen(Keys(PREFIX).dead_letters) == 0


async def test_requeue_takes_the_job_out_of_a_run_call(
    client: RunpollerClient, redis: Redis
) -> None:
    entry = await dead(redis, "wrong arguments", {"f": "runpoller.run", "a": [job("run_c")]})
    assert await client.requeue_dead_letter(entry) == "run_c"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (job("run_1", api_key="sk-abcdefghijkl"), "carried an api_key.*re-enqueue it with its key"),
        ('{"kind": "assistants_run", "thread_id": "' + "t" * 5000, "cut at 4096 bytes"),
        ("run_9", "not JSON"),
        ([1, 2], "not a JSON object"),
        ({"f": "runpoller.resume", "a": ["run_1"]}, "a call of 'runpoller.resume'"),
        ({"kind": "assistants_run", "thread_id": "t"}, "run_id"),
    ],
    ids=["api-key", "truncated", "not-json", "not-object", "resume-call", "invalid"],
)
async def test_requeue_refuses_what_it_cannot_enqueue(
    client: RunpollerClient, redis: Redis, raw: Any, message: str
) -> None:
    entry = await dead(redis, "why", raw)
    with pytest.raises(RequeueRefused, match=message):
        await client.requeue_dead_letter(entry)
    assert await redis.xlen(Keys(PREFIX).dead_letters) == 1, "the letter stays"
    assert await redis.zcard(QUEUE) == 0


async def test_requeue_refuses_a_run_that_exists(client: RunpollerClient, redis: Redis) -> None:
    await accept(redis, "run_x")
    entry = await dead(redis, "conflicting_job", job("run_x"))
    with pytest.raises(RequeueRefused, match="run run_x is already in_flight"):
        await client.requeue_dead_letter(entry)


async def test_requeue_of_an_unknown_entry(client: RunpollerClient) -> None:
    with pytest.raises(DeadLetterNotFound, match="no dead letter 1-1"):
        await client.requeue_dead_letter("1-1")


async def test_purge_everything_or_only_the_old(client: RunpollerClient, redis: Redis) -> None:
    key = Keys(PREFIX).dead_letters
    now_ms = int(time.time() * 1000)
    await redis.xadd(key, {"data": "{}"}, id=f"{now_ms - 3_600_000}-0")
    await redis.xadd(key, {"data": "{}"}, id=f"{now_ms - 10_000}-0")
    await redis.xadd(key, {"data": "{}"})
    assert await client.purge_dead_letters(older_than_ms=600_000) == 1
    assert await redis.xlen(key) == 2
    assert await client.purge_dead_letters() == 2
    assert not await redis.exists(key)
    assert await client.purge_dead_letters() == 0


async def test_status_shows_the_cancel_request_and_the_workers_answer(
    client: RunpollerClient, redis: Redis
) -> None:
    await accept(redis, "run_z")
    await end(redis, "run_z", "completed")
    await redis.hset(
        Keys(PREFIX).cancel("run_z"),
        mapping={
            "reason": "stop",
            "requested_at": "1764115230500",
            "outcome": "already_ended",
            "final_status": "completed",
        },
    )
    view = await client.status("run_z")
    assert view is not None and view.cancel_request is not None
    assert view.cancel_request.model_dump() == {
        "reason": "stop",
        "requested_at": 1_764_115_230_500,
        "outcome": "already_ended",
        "final_status": "completed",
    }
