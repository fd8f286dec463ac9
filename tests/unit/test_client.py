"""RunpollerClient on fakeredis: the app side of docs/protocol.md, and what it imports.

Enqueue writes the arq job and its queue entry once per run id; API keys reach Redis only
encrypted; a tool-outputs reply is what the worker's parse_reply reads back; result and wait
read the run's result key (and its stream). An app that imports the client loads none of the
worker's runtime, and the worker package loads none of the fake extra.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import fakeredis
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from runpoller.client import ARQ_JOB_PREFIX, JOB_EXPIRES_MS, RunpollerClient
from runpoller.protocol import (
    FN_RUN,
    AcceptedEvent,
    FinalEvent,
    ParsedReply,
    StatusEvent,
    parse_job,
    parse_reply,
)
from runpoller.protocol.serde import deserialize_job
from runpoller.secrets import decrypt, new_key, parse_key_ring

JOB = {"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_1"}
QUEUE = "rp:queue"


@pytest.fixture
async def fake_redis() -> AsyncIterator[Redis]:
    redis = fakeredis.FakeAsyncRedis()
    yield redis
    await redis.aclose()


@pytest.fixture
def client(fake_redis: Redis) -> RunpollerClient:
    return RunpollerClient(fake_redis, queue_name=QUEUE, key_prefix="rp")


def final(run_id: str = "run_1", status: str = "completed") -> FinalEvent:
    return FinalEvent(run_id=run_id, ts=1, status=status, reason="the run completed")  # type: ignore[arg-type]


async def add_event(
    redis: Redis, run_id: str, event: AcceptedEvent | StatusEvent | FinalEvent
) -> None:
    await redis.xadd(f"rp:events:{run_id}", {"type": event.type, "data": event.model_dump_json()})


# ---------------------------------------------------------------------------- enqueue


async def test_enqueue_writes_the_arq_job_and_its_queue_entry(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    before = int(time.time() * 1000)
    assert await client.enqueue({**JOB, "metadata": {"conversation": "c-42"}}) == "run_1"
    body = await fake_redis.get(f"{ARQ_JOB_PREFIX}run:run_1")
    assert body is not None
    decoded = deserialize_job(body)  # what the worker's intake does with it
    assert decoded["f"] == FN_RUN and decoded["k"] == {} and decoded["t"] is None
    assert before <= decoded["et"] <= int(time.time() * 1000)
    job = parse_job(decoded["a"][0])
    assert job.run_key == "run_1" and job.metadata == {"conversation": "c-42"}
    assert await fake_redis.zrange(QUEUE, 0, -1, withscores=True) == [
        (b"run:run_1", float(decoded["et"]))
    ]
    assert 0 < await fake_redis.pttl(f"{ARQ_JOB_PREFIX}run:run_1") <= JOB_EXPIRES_MS


async def test_enqueue_is_idempotent_per_run_id(client: RunpollerClient, fake_redis: Redis) -> None:
    await client.enqueue(JOB)
    body = await fake_redis.get(f"{ARQ_JOB_PREFIX}run:run_1")
    score = await fake_redis.zscore(QUEUE, "run:run_1")
    await asyncio.sleep(0.01)
    assert await client.enqueue({**JOB, "timeout_ms": 5}) == "run_1"
    # The first job and its enqueue time (which anchors the deadline) stay.
    assert await fake_redis.get(f"{ARQ_JOB_PREFIX}run:run_1") == body
    assert await fake_redis.zscore(QUEUE, "run:run_1") == score
    assert await fake_redis.zcard(QUEUE) == 1


async def test_the_logical_id_names_the_job(client: RunpollerClient, fake_redis: Redis) -> None:
    assert await client.enqueue({**JOB, "id": "conv:42"}) == "conv:42"
    assert await fake_redis.exists(f"{ARQ_JOB_PREFIX}run:conv:42")
    assert await fake_redis.zrange(QUEUE, 0, -1) == [b"run:conv:42"]


async def test_an_invalid_job_writes_nothing(client: RunpollerClient, fake_redis: Redis) -> None:
    with pytest.raises(ValidationError):
        await client.enqueue({**JOB, "thread_id": "../etc"})
    with pytest.raises(ValidationError):
        await client.enqueue({"kind": "response"})
    assert await fake_redis.keys("*") == []


async def test_a_plaintext_api_key_is_refused_without_secret_keys(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    with pytest.raises(ValueError, match="plaintext: pass secret_keys"):
        await client.enqueue({**JOB, "api_key": "sk-live-123456"})
    assert await fake_redis.keys("*") == []


async def test_api_keys_are_encrypted_with_the_first_secret_key(fake_redis: Redis) -> None:
    ring_text = f"k2:{new_key()},k1:{new_key()}"
    client = RunpollerClient(fake_redis, queue_name=QUEUE, key_prefix="rp", secret_keys=ring_text)
    await client.enqueue({**JOB, "api_key": "sk-live-123456"})
    body = await fake_redis.get(f"{ARQ_JOB_PREFIX}run:run_1")
    assert body is not None and b"sk-live-123456" not in body
    stored = json.loads(body)["a"][0]["api_key"]
    assert stored.startswith("enc:v1:k2:")
    assert decrypt(stored, parse_key_ring(ring_text)) == "sk-live-123456"


async def test_an_already_encrypted_key_is_passed_through(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    sealed = "enc:v1:k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    await client.enqueue({**JOB, "api_key": sealed})
    body = await fake_redis.get(f"{ARQ_JOB_PREFIX}run:run_1")
    assert body is not None and json.loads(body)["a"][0]["api_key"] == sealed


# ---------------------------------------------------------------------------- replies


async def test_submit_tool_outputs_writes_what_the_worker_parses(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    entry_id = await client.submit_tool_outputs("run_1", 2, {"call_a": "sunny", "call_b": "{}"})
    entries = await fake_redis.xrange("rp:replies")
    assert [e[0].decode() for e in entries] == [entry_id]
    assert parse_reply(entries[0][1]) == ParsedReply(
        "run_1", 2, [("call_a", "sunny"), ("call_b", "{}")]
    )


# ---------------------------------------------------------------------------- results


async def test_result_reads_the_result_key(client: RunpollerClient, fake_redis: Redis) -> None:
    assert await client.result("run_1") is None
    await fake_redis.set("rp:result:run_1", final(status="failed").model_dump_json())
    result = await client.result("run_1")
    assert result is not None and result.status == "failed"


async def test_wait_returns_a_stored_result_at_once(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    await fake_redis.set("rp:result:run_1", final().model_dump_json())
    assert (await client.wait("run_1", timeout=0.01)).status == "completed"


async def test_wait_follows_the_stream_until_the_final_event(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    accepted = AcceptedEvent(
        run_id="run_1", ts=1, kind="assistants_run", deadline=9, poll_interval_ms=100
    )
    await add_event(fake_redis, "run_1", accepted)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await add_event(fake_redis, "run_1", final(status="cancelled"))

    writer = asyncio.create_task(later())
    assert (await client.wait("run_1", timeout=5)).status == "cancelled"
    await writer


async def test_wait_times_out(client: RunpollerClient) -> None:
    with pytest.raises(TimeoutError):
        await client.wait("run_1", timeout=0.1)


async def test_events_resume_after_an_id_and_stop_at_the_final_event(
    client: RunpollerClient, fake_redis: Redis
) -> None:
    for status in ("queued", "in_progress"):
        await add_event(
            fake_redis, "run_1", StatusEvent(run_id="run_1", ts=1, status=status, object_id="r")
        )
    await add_event(fake_redis, "run_1", final())
    seen = [item async for item in client.events("run_1")]
    assert [type(item.event).__name__ for item in seen] == [
        "StatusEvent",
        "StatusEvent",
        "FinalEvent",
    ]
    rest = [item.event async for item in client.events("run_1", after=seen[0].id)]
    assert [getattr(e, "status", None) for e in rest] == ["in_progress", "completed"]


# ---------------------------------------------------------------------------- dependencies


def run_python(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_client_loads_none_of_the_worker_runtime() -> None:
    out = run_python(
        """
        import runpoller.client, sys
        print([m for m in ("arq", "aiohttp", "uvloop", "httpx", "prometheus_client")
               if m in sys.modules])
        """
    )
    assert out == "[]"


def test_no_module_of_the_worker_package_imports_the_fake_extra() -> None:
    # Every module of worker/runpoller, none skipped: fakeredis and jsonschema are the `fake`
    # extra (runpoller_fake, the demo's embedded Redis), not runtime dependencies.
    out = run_python(
        """
        import contextlib, importlib, io, pkgutil, sys
        import runpoller

        # Entry points run when imported (`runpoller.__main__` runs the command line, given
        # --help here; `runpoller.main` refuses arq's CLI): what they imported still counts.
        sys.argv = ["runpoller", "--help"]
        names = [m.name for m in pkgutil.walk_packages(runpoller.__path__, "runpoller.")]
        for name in names:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(
                io.StringIO()
            ), contextlib.suppress(SystemExit):
                importlib.import_module(name)
        assert len(names) > 20 and "runpoller.worker.driver" in names, names
        print([m for m in sys.modules if m.split(".")[0] in ("fakeredis", "jsonschema")])
        """
    )
    assert out == "[]"
