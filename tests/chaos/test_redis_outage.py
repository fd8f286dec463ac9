"""Redis restarted (data kept with AOF) while runs are in flight: every run still ends once."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller_dev.devredis import _ping, free_port
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.chaos.figures import measure, read_events, record, request_log

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

KEY = "sk-outage-key-0123456789"
REDIS_SERVER = shutil.which("redis-server")


class OwnRedis:
    """A redis-server of our own (AOF on), which the test can stop and start again."""

    def __init__(self, password: str | None = None) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="runpoller-aof-"))
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping("127.0.0.1", self.port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: redis flushes the AOF and exits
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def own_redis() -> AsyncIterator[OwnRedis]:
    if REDIS_SERVER is None:
        pytest.skip("needs the redis-server binary to stop and restart a Redis of its own")
    server = OwnRedis()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={KEY}))
    yield server
    await server.close()


async def start_workers(
    n: int, redis_url: str, fake: FakeServer
) -> list[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "ASSISTANTS_BASE_URL": fake.base_url,
            "ASSISTANTS_API_KEY": KEY,
            "RUNPOLLER_POLL_INTERVAL_MS": "200",
            "RUNPOLLER_HEARTBEAT_INTERVAL_MS": "250",
            "RUNPOLLER_DEAD_WORKER_AFTER_MS": "1500",
            "RUNPOLLER_ARQ_POLL_DELAY_S": "0.05",
            "RUNPOLLER_METRICS_PORT": "0",
            "RUNPOLLER_LOG_FORMAT": "json",
        }
    )
    return [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", "worker", env=env, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(n)
    ]


async def create_runs(fake: FakeServer, n: int, script: object) -> list[dict[str, str]]:
    async with httpx.AsyncClient(base_url=fake.base_url.removesuffix("/v1")) as http:
        jobs = []
        for _ in range(n):
            body = (await http.post("/_fake/runs", json={"script": script})).json()
            jobs.append(
                {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}
            )
        return jobs


async def wait_finals(client: RunpollerClient, run_ids: list[str], timeout: float) -> list[str]:
    async def one(rid: str) -> str:
        return (await client.wait(rid, timeout)).status

    return list(await asyncio.gather(*(one(rid) for rid in run_ids)))


async def stop(procs: list[asyncio.subprocess.Process]) -> list[bytes]:
    logs = []
    for proc in procs:
        if proc.returncode is None:
            proc.terminate()
        _, err = await proc.communicate()
        logs.append(err)
    return logs


async def test_redis_restart_mid_flight_loses_nothing(
    own_redis: OwnRedis, fake: FakeServer
) -> None:
    redis = Redis.from_url(own_redis.url)
    client = RunpollerClient(redis)
    workers = await start_workers(2, own_redis.url, fake)
    try:
        script = {"steps": [{"status": "in_progress", "ms": 3000}, {"status": "completed"}]}
        jobs = await create_runs(fake, 20, script)
        run_ids = [await client.enqueue(job) for job in jobs]
        await asyncio.sleep(1.0)  # runs accepted and in flight
        # More runs enqueued right before the outage: claims are in flight when Redis goes.
        late = await create_runs(fake, 20, script)
        run_ids += [await client.enqueue(job) for job in late]
        own_redis.stop()
        await asyncio.sleep(2.5)
        own_redis.start()
        statuses = await wait_finals(client, run_ids, 40)
        record(
            "Redis restart (AOF kept)",
            measure(
                await read_events(redis, "runpoller", run_ids),
                await request_log(fake.root_url),
                side_effects=("submits", "cancels"),
            ),
        )
        assert statuses == ["completed"] * len(run_ids)
        for rid in run_ids:
            finals = [
                f
                for _, f in await redis.xrange(f"runpoller:events:{rid}")
                if f[b"type"] == b"final"
            ]
            assert len(finals) == 1
        survived = [w.returncode is None for w in workers]
    finally:
        logs = await stop(workers)
        await redis.aclose()
    died = [log.decode()[-3000:] for log, ok in zip(logs, survived, strict=True) if not ok]
    assert not died, "a worker died in the outage:\n" + "\n---\n".join(died)
    unavailable = sum(log.count(b"redis.unavailable") for log in logs)
    print(f"\nredis outage: runs={len(run_ids)} 'redis.unavailable' log lines={unavailable}")
    assert 1 <= unavailable <= 2 * len(workers), "logged once per outage, not per operation"


async def test_redis_gone_past_the_deadlines_still_times_runs_out(
    own_redis: OwnRedis, fake: FakeServer
) -> None:
    redis = Redis.from_url(own_redis.url)
    client = RunpollerClient(redis)
    workers = await start_workers(1, own_redis.url, fake)
    try:
        jobs = await create_runs(fake, 5, "never_ends")
        run_ids = [await client.enqueue({**job, "timeout_ms": 1500}) for job in jobs]
        await asyncio.sleep(0.8)
        own_redis.stop()
        await asyncio.sleep(3.0)  # longer than every run's deadline
        own_redis.start()
        statuses = await wait_finals(client, run_ids, 30)
        record(
            "Redis outage past the deadlines (grace 30 s)",
            measure(
                await read_events(redis, "runpoller", run_ids),
                await request_log(fake.root_url),
                side_effects=("cancels",),
                grace_s=30.0,  # RUNPOLLER_CANCEL_GRACE_MS is left at its default here
            ),
        )
        assert statuses == ["timed_out"] * len(run_ids)
    finally:
        await stop(workers)
        await redis.aclose()


async def test_password_protected_redis(fake: FakeServer) -> None:
    if REDIS_SERVER is None:
        pytest.skip("needs the redis-server binary to start a password-protected Redis")
    server = OwnRedis(password="s3cret-pw")
    server.start()
    try:
        redis = Redis.from_url(server.url)
        client = RunpollerClient(redis)
        workers = await start_workers(1, server.url, fake)
        try:
            (job,) = await create_runs(fake, 1, "complete")
            final = await client.wait(await client.enqueue(job), 20)
            assert final.status == "completed"
        finally:
            await stop(workers)
            await redis.aclose()
    finally:
        server.cleanup()
