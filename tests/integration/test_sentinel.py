"""Redis Sentinel (issue 17): a real master, a replica and three redis-sentinel processes on
free ports; workers, client and CLI reach Redis through ``redis+sentinel://``; the master is
failed over while runs are in flight, and every run ends exactly once.

The master dies (SIGKILL) with writes in flight, after its replica has caught up (writes
paused with ``CLIENT PAUSE … WRITE`` until then): the sentinels elect the replica, and every
write the workers were sending meanwhile is sent again to the new master. (Redis replicates
asynchronously: writes a master acknowledged but had not yet replicated are lost with it,
whatever the client does; and ``SENTINEL FAILOVER`` of a live master lets it accept writes
until it is demoted, which are then lost: see docs/operations.md, "Redis Sentinel".)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import redis.asyncio

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent
from runpoller.redis.url import connect
from runpoller_dev.devredis import free_port
from tests.integration.conftest import SECRET_KEYS, WorkerHandle
from tests.integration.test_end_to_end import fake_run, job

pytestmark = pytest.mark.integration

MASTER = "mymaster"


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: apt-get install {name} (make test installs it where it "
            "is missing, as root or through sudo)"
        )
    return path


class SentinelCluster:
    """Master, replica and three sentinels, each its own process on a free port."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="runpoller-sentinel-"))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    def _server(self, port: int, *extra: str) -> None:
        workdir = self.dir / str(port)
        workdir.mkdir()
        self.procs.append(
            subprocess.Popen(
                [
                    binary("redis-server"),
                    "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning", *extra,
                ],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip

    def start(self) -> None:
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"  # sentinels rewrite their file: one each
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER} 1000\n"
                f"sentinel failover-timeout {MASTER} 10000\n"
                f"sentinel parallel-syncs {MASTER} 1\n"
            )
            self.procs.append(
                subprocess.Popen(
                    [binary("redis-sentinel"), str(conf), "--loglevel", "warning"],
                    stdout=subprocess.DEVNULL,
                )
            )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER}/0"

    def node(self, port: int) -> redis.asyncio.Redis:
        return redis.asyncio.Redis(port=port, socket_timeout=5, decode_responses=True)

    async def ready(self, timeout: float = 30) -> None:
        """Every sentinel knows the replica and the two other sentinels."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if await self._all_know_each_other():
                    return
            except (OSError, redis.RedisError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the sentinels did not find each other")
            await asyncio.sleep(0.2)

    async def _all_know_each_other(self) -> bool:
        for port in self.sentinel_ports:
            async with self.node(port) as sentinel:
                replicas = await sentinel.execute_command("SENTINEL", "REPLICAS", MASTER)
                peers = await sentinel.execute_command("SENTINEL", "SENTINELS", MASTER)
                if len(replicas) != 1 or len(peers) != 2:
                    return False
        return True

    async def master_addr(self) -> int:
        async with self.node(self.sentinel_ports[0]) as sentinel:
            _, port = await sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)
            return int(port)

    async def fail_over(self, timeout: float = 30) -> None:
        """Pause writes on the master until the replica has every write, then kill the master
        (SIGKILL): the sentinels elect the replica. A write sent meanwhile was never
        acknowledged: the client must send it again, to the new master."""
        async with self.node(self.master_port) as master, self.node(self.replica_port) as replica:
            await master.execute_command("CLIENT", "PAUSE", "10000", "WRITE")
            deadline = time.monotonic() + 10
            while True:
                offset = (await master.info("replication"))["master_repl_offset"]
                if (await replica.info("replication"))["slave_repl_offset"] >= offset:
                    break
                assert time.monotonic() < deadline, "the replica did not catch up"
                await asyncio.sleep(0.02)
        self.procs[0].kill()  # the master
        self.procs[0].wait(timeout=10)
        deadline = time.monotonic() + timeout
        while await self.master_addr() != self.replica_port:
            assert time.monotonic() < deadline, "the failover did not happen"
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def cluster() -> AsyncIterator[SentinelCluster]:
    nodes = SentinelCluster()
    try:
        nodes.start()
        await nodes.ready()
        yield nodes
    finally:
        nodes.stop()


LONG = {  # about 4 s in progress: the failover happens while every run is in flight
    "steps": [
        {"status": "queued", "ms": 200},
        {"status": "in_progress", "ms": 4000},
        {"status": "completed", "messages": ["done"]},
    ]
}


async def test_runs_survive_a_master_failover_none_lost_none_doubled(
    cluster: SentinelCluster,
    start_worker: Callable[..., Awaitable[WorkerHandle]],
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    url = cluster.url
    workers = [await start_worker(redis_url=url) for _ in range(2)]
    app_redis = connect(url, socket_timeout=10)
    client = RunpollerClient(
        app_redis, queue_name=f"{namespace}:queue", key_prefix=namespace, secret_keys=SECRET_KEYS
    )
    try:
        run_ids = []
        for _ in range(20):
            thread_id, run_id = await fake_run(fake_http, LONG)
            run_ids.append(
                await client.enqueue(job(thread_id, run_id, namespace, timeout_ms=60_000))
            )

        async def in_flight() -> int:
            return sum(len(w.app.runner.runs) for w in workers)

        deadline = time.monotonic() + 20
        while await in_flight() < len(run_ids):
            assert time.monotonic() < deadline, "the runs were not taken"
            await asyncio.sleep(0.05)

        await cluster.fail_over()
        assert await cluster.master_addr() == cluster.replica_port

        finals: dict[str, FinalEvent] = {}

        async def final_of(run_id: str) -> None:
            async for item in client.events(run_id):
                if isinstance(item.event, FinalEvent):
                    finals[run_id] = item.event
                    return

        await asyncio.wait_for(asyncio.gather(*(final_of(r) for r in run_ids)), 60)
        assert {r: f.status for r, f in finals.items()} == dict.fromkeys(run_ids, "completed")
        # Exactly one final event per run, and its result, read from the new master.
        async with cluster.node(cluster.replica_port) as new_master:
            direct = RunpollerClient(
                new_master, queue_name=f"{namespace}:queue", key_prefix=namespace
            )
            for run_id in run_ids:
                kinds = [item.event.type for item in await direct.history(run_id)]
                assert kinds.count("final") == 1 and kinds.count("accepted") == 1, (run_id, kinds)
                assert await direct.result(run_id) == finals[run_id]
        # The CLI follows the new master too.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOLLER_")}
        env.update(
            REDIS_URL=url, RUNPOLLER_KEY_PREFIX=namespace, RUNPOLLER_QUEUE_NAME=f"{namespace}:queue"
        )
        shown = subprocess.run(
            [sys.executable, "-m", "runpoller", "runs", "show", run_ids[0]],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "COMPLETED: the run completed" in shown.stdout
    finally:
        await app_redis.aclose()
