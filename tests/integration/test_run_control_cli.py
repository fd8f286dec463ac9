"""``runpoller runs|follow|reply|cancel|dead-letters`` from the shell, on real Redis with real
workers and the fake OpenAI server over HTTP.

Every command runs as a process of its own (``python -m runpoller ...``) with the settings
an operator's shell would have, while the workers run in this test's event loop. The run
indexes are the worker's (its scripts write them at claim and finalize); nothing is seeded
but what a worker could not be made to do on cue (a record left to expire).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FN_RUN, FinalEvent, Keys, RequiresActionEvent, StatusEvent
from runpoller.protocol.serde import serialize_job
from runpoller.redis.store import RunStore
from tests.conftest import test_redis_url
from tests.integration.conftest import SECRET_KEYS, WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]
LONG = 60_000  # ms: runs that outlive the test unless it ends them


class Shell:
    """``runpoller`` commands as processes, with this test's Redis, prefix and queue."""

    def __init__(self, namespace: str) -> None:
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))
        }
        self.env.update(
            {
                "REDIS_URL": test_redis_url(),
                "RUNPOLLER_KEY_PREFIX": namespace,
                "RUNPOLLER_QUEUE_NAME": f"{namespace}:queue",
                "RUNPOLLER_SECRET_KEYS": SECRET_KEYS,
            }
        )
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *argv: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", *argv,
            env=self.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    @staticmethod
    async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> tuple[int, str, str]:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def __call__(self, *argv: str) -> tuple[int, str, str]:
        return await self.finish(await self.start(*argv))

    async def json(self, *argv: str) -> Any:
        code, out, err = await self(*argv, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
async def shell(namespace: str) -> AsyncIterator[Shell]:
    commands = Shell(namespace)
    yield commands
    for proc in commands.procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def fake_run(http: httpx.AsyncClient, script: Any) -> dict[str, Any]:
    body = (await http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


async def fake_log(http: httpx.AsyncClient, object_id: str) -> list[dict[str, Any]]:
    log: list[dict[str, Any]] = (await http.get(f"/_fake/runs/{object_id}/log")).json()
    return log


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def first(client: RunpollerClient, run_id: str, kind: type) -> Any:
    async for item in client.events(run_id):
        if isinstance(item.event, kind):
            return item.event
        if isinstance(item.event, FinalEvent):
            raise AssertionError(f"{run_id} ended ({item.event.status}) before a {kind.__name__}")
    raise AssertionError("no event")


async def polled_run(client: RunpollerClient, http: httpx.AsyncClient) -> tuple[str, str]:
    """A long run a worker has taken and polled: (its API run id, its run id)."""
    job = await fake_run(http, "never_ends")
    run_id = await client.enqueue({**job, "timeout_ms": LONG})
    await first(client, run_id, StatusEvent)
    return job["run_id"], run_id


def ids(page: dict[str, Any]) -> list[str]:
    return [item["run_id"] for item in page["items"]]


# ---------------------------------------------------------------------------- runs list / show


async def test_list_and_show_follow_runs_through_every_state(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    keys = Keys(namespace)
    polled = await fake_run(fake_http, "never_ends")
    asking = await fake_run(fake_http, "requires_action")
    done = await fake_run(fake_http, "complete")
    polled_id, asking_id, done_id = [
        await client.enqueue({**job, "timeout_ms": LONG}) for job in (polled, asking, done)
    ]

    # No worker yet: all three wait in the queue (oldest first; a tie by run id).
    queued = await shell.json("runs", "list", "--status", "queued")
    assert sorted(ids(queued)) == sorted([polled_id, asking_id, done_id])
    assert [(i["ts"], i["run_id"]) for i in queued["items"]] == sorted(
        (i["ts"], i["run_id"]) for i in queued["items"]
    )
    shown = await shell.json("runs", "show", asking_id)
    assert (shown["status"], shown["phase"], shown["owner"]) == ("queued", None, None)
    assert shown["job"] == {**asking, "timeout_ms": LONG, "api_key": "none"}
    assert shown["queued_at"] is not None and shown["accepted_at"] is None

    handle = await start_worker(timeout_ms=LONG)
    ask = await first(client, asking_id, RequiresActionEvent)
    final = await client.wait(done_id, 15)
    await first(client, polled_id, StatusEvent)

    assert await shell.json("runs", "list", "--status", "queued") == {
        "items": [],
        "next_cursor": None,
    }
    assert ids(await shell.json("runs", "list", "--status", "in_flight")) == [polled_id]
    waiting = await shell.json("runs", "list", "--status", "requires_action")
    assert [(i["run_id"], i["phase"], i["round"]) for i in waiting["items"]] == [
        (asking_id, "awaiting_outputs", 1)
    ]
    ended = await shell.json("runs", "list", "--status", "ended")
    assert [(i["run_id"], i["final_status"]) for i in ended["items"]] == [(done_id, "completed")]
    assert ended["items"][0]["ts"] >= final.ts - 1000

    everything = await shell.json("runs", "list")
    assert sorted(ids(everything)) == sorted([polled_id, asking_id, done_id])

    view = await shell.json("runs", "show", asking_id)
    assert (view["status"], view["round"]) == ("requires_action", 1)
    assert view["pending_calls"] == [call.id for call in ask.tool_calls]
    assert (view["owner"], view["owner_alive"]) == (handle.app.worker_id, True)
    assert view["deadline_ms"] >= ask.deadline, "the run's deadline bounds the round's"
    view = await shell.json("runs", "show", done_id)
    assert (view["status"], view["final_status"], view["job"]) == ("ended", "completed", None)
    assert view["result"]["output_text"] == final.output_text

    # The finalize moved the run from one index to the other.
    assert await redis.zscore(keys.runs_active, done_id) is None
    assert await redis.zscore(keys.runs_ended, done_id) is not None
    assert await redis.zscore(keys.runs_active, polled_id) is not None

    # The same, for a person.
    code, out, _ = await shell("runs", "list", "--status", "in_flight")
    assert code == 0
    assert out.splitlines()[1].split()[:2] == [polled_id, "in_flight"]
    assert f"owner {handle.app.worker_id}" in out
    code, out, _ = await shell("runs", "show", polled_id)
    assert out.startswith(f"run {polled_id}: in_flight\n")
    assert f"{handle.app.worker_id} (alive)" in out


async def test_pages_list_every_run_once(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    await start_worker(timeout_ms=LONG)
    run_ids = [
        await client.enqueue({**await fake_run(fake_http, "never_ends"), "timeout_ms": LONG})
        for _ in range(5)
    ]

    async def all_accepted() -> bool:
        page = await client.list_runs("in_flight", limit=10)
        return len(page.items) == 5

    await until(all_accepted, "five runs in flight")
    seen: list[str] = []
    cursor: list[str] = []
    pages = 0
    while True:
        page = await shell.json("runs", "list", "--status", "in_flight", "--limit", "2", *cursor)
        pages += 1
        seen += ids(page)
        if page["next_cursor"] is None:
            break
        cursor = ["--cursor", page["next_cursor"]]
    assert sorted(seen) == sorted(run_ids) and len(seen) == 5
    assert pages == 3
    since = await shell.json("runs", "list", "--since", "1h", "--limit", "1000")
    assert sorted(ids(since)) == sorted(run_ids)


async def test_a_record_that_expired_unfinished_is_skipped_and_unlisted(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    keys = Keys(namespace)
    await start_worker(timeout_ms=LONG)
    _, live = await polled_run(client, fake_http)
    # A run a worker (long gone) claimed with a record TTL of one second.
    gone = RunStore(redis, keys, worker_id="gone-worker", maxlen=100, ttl_s=1)
    assert (await gone.claim("lapsed", "{}", '{"phase": "polling"}', "{}")).outcome == "new"
    assert await redis.zscore(keys.runs_active, "lapsed") is not None

    async def expired() -> bool:
        return not await redis.exists(keys.run("lapsed"))

    await until(expired, "the record to expire")
    assert ids(await shell.json("runs", "list", "--status", "in_flight")) == [live]
    assert await redis.zscore(keys.runs_active, "lapsed") is None, "removed by the reader"
    assert await redis.zscore(keys.runs_active, live) is not None
    code, _, err = await shell("runs", "show", "lapsed")
    assert (code, err) == (
        1,
        "runpoller runs show: no run lapsed: no record, no result and no queued job\n",
    )


# ---------------------------------------------------------------------------- follow


async def test_follow_waits_for_a_queued_run_and_exits_as_enqueue_wait(
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    good = await client.enqueue(await fake_run(fake_http, "complete"))
    bad = await client.enqueue(await fake_run(fake_http, "fail"))
    following = await shell.start("follow", good, "--json")
    following_bad = await shell.start("follow", bad)
    # Both are followed before any worker runs: each says its run is queued, and waits.
    said = []
    for proc in (following, following_bad):
        assert proc.stderr is not None
        said.append((await asyncio.wait_for(proc.stderr.readline(), 30)).decode())
    assert all(line.endswith(": queued: no worker has taken it yet\n") for line in said), said
    assert following.returncode is None and following_bad.returncode is None
    await start_worker()
    code, out, err = await shell.finish(following)
    assert code == 0, err
    assert json.loads(out)["status"] == "completed"
    progress = [line.split(": ", 1)[1] for line in err.splitlines() if f"{good}: " in line]
    assert progress[0] == "accepted" and progress[-1].startswith("COMPLETED: ")
    code, out, _ = await shell.finish(following_bad)
    assert code == 1 and out.startswith(f"{bad}: failed — ")

    code, _, err = await shell("follow", "no_such_run")
    assert code == 1 and "--wait-for-start waits for it" in err


# ---------------------------------------------------------------------------- reply


async def test_reply_from_the_shell_answers_a_real_tool_round(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    await start_worker(timeout_ms=LONG)
    job = await fake_run(fake_http, "requires_action")
    run_id = await client.enqueue({**job, "timeout_ms": LONG})
    ask = await first(client, run_id, RequiresActionEvent)
    [call] = ask.tool_calls

    code, _, err = await shell("reply", run_id, "--round", "2", f"{call.id}=sunny")
    assert (code, err) == (2, f"runpoller reply: run {run_id} waits for round 1, not 2\n")
    assert await redis.xlen(Keys(namespace).replies) == 0

    code, out, err = await shell("reply", run_id, "--round", "1", f'{call.id}={{"temp_c": 21}}')
    assert code == 0, err
    [(entry_id, fields)] = await redis.xrange(Keys(namespace).replies)
    assert out == f"{entry_id.decode()}\n"
    assert json.loads(fields[b"outputs"]) == [{"tool_call_id": call.id, "output": '{"temp_c": 21}'}]
    final = await client.wait(run_id, 15)
    assert final.status == "completed"
    submits = [
        e
        for e in await fake_log(fake_http, job["run_id"])
        if e["endpoint"] == "submit_tool_outputs"
    ]
    assert len(submits) == 1


# ---------------------------------------------------------------------------- cancel


async def test_cancel_wait_ends_a_running_run_cancelled_by_the_app(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    keys = Keys(namespace)
    await start_worker(timeout_ms=LONG)
    api_run_id, run_id = await polled_run(client, fake_http)

    before = int(time.time() * 1000)
    code, out, err = await shell(
        "cancel", run_id, "--reason", "user pressed stop", "--wait", "--json"
    )
    assert code == 0, err
    document = json.loads(out)
    assert document["outcome"] == "requested"
    final = document["final"]
    assert (final["status"], final["error"]["code"]) == ("cancelled", "cancelled_by_app")
    assert final["cancel"]["app_reason"] == "user pressed stop"
    assert "cancel_run" in [e["endpoint"] for e in await fake_log(fake_http, api_run_id)]

    # What the command wrote: exactly the protocol's request.
    request = await redis.hgetall(keys.cancel(run_id))
    assert request[b"reason"] == b"user pressed stop"
    assert before <= int(request[b"requested_at"]) <= int(time.time() * 1000)
    assert 604_700 < await redis.ttl(keys.cancel(run_id)) <= 604_800
    [(entry_id, fields)] = await redis.xrange(keys.cancels)
    assert entry_id.decode() == document["entry_id"]
    assert fields == {b"run_id": run_id.encode(), b"reason": b"user pressed stop"}

    # Ended: the run moved to the ended index; a second cancel writes nothing.
    assert await redis.zscore(keys.runs_active, run_id) is None
    assert ids(await shell.json("runs", "list", "--status", "ended")) == [run_id]
    code, out, _ = await shell("cancel", run_id)
    assert (code, out) == (0, f"run {run_id} already ended (cancelled): nothing requested\n")
    assert await redis.xlen(keys.cancels) == 1


# ---------------------------------------------------------------------------- dead letters


async def test_dead_letters_list_requeue_purge_round_trip(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    shell: Shell,
) -> None:
    keys = Keys(namespace)
    queue = f"{namespace}:queue"
    await start_worker()
    job = await fake_run(fake_http, "complete")
    now_ms = int(time.time() * 1000)
    # A run job with a keyword argument (a dead letter holding the job), and a body that is
    # not JSON at all (one that holds none).
    body = serialize_job({"f": FN_RUN, "a": [job], "k": {"extra": 1}, "t": None, "et": now_ms})
    await redis.set(f"arq:job:{namespace}-kw", body, px=60_000)
    await redis.zadd(queue, {f"{namespace}-kw": now_ms})

    async def letters(n: int) -> bool:
        return int(await redis.xlen(keys.dead_letters)) == n

    await until(lambda: letters(1), "the first dead letter")
    await redis.set(f"arq:job:{namespace}-bad", b"not json", px=60_000)
    await redis.zadd(queue, {f"{namespace}-bad": now_ms})
    await until(lambda: letters(2), "the second dead letter")

    page = await shell.json("dead-letters", "list")
    kw, bad = page["items"]
    assert "takes no keyword arguments" in kw["letter"]["reason"]
    assert "not JSON" in bad["letter"]["reason"]
    code, out, _ = await shell("dead-letters", "list", "--limit", "1")
    assert out.startswith(f"{kw['id']}  ") and f"--after {kw['id']}" in out

    code, _, err = await shell("dead-letters", "requeue", bad["id"])
    assert code == 2 and err.startswith("runpoller dead-letters requeue: ") and "not JSON" in err
    code, out, err = await shell("dead-letters", "requeue", kw["id"])
    assert code == 0, err
    assert out == f"run {job['run_id']} enqueued again; dead letter {kw['id']} deleted\n"
    final = await client.wait(job["run_id"], 15)
    assert final.status == "completed"
    assert [item["id"] for item in (await shell.json("dead-letters", "list"))["items"]] == [
        bad["id"]
    ]

    code, _, err = await shell("dead-letters", "purge")
    assert code == 2 and "add --yes" in err
    assert await shell.json("dead-letters", "purge", "--older-than", "1h", "--yes") == {"purged": 0}
    assert await shell.json("dead-letters", "purge", "--yes") == {"purged": 1}
    assert await redis.xlen(keys.dead_letters) == 0
