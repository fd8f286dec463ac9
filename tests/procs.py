"""Helpers for tests that run real worker processes (tests/chaos, tests/scaling)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from runpoller_dev.devredis import _ping, free_port
from runpoller_fake import FakeServer
from runpoller_fake.testing import function_tools
from tests.conftest import test_redis_url


def worker_env(fake: FakeServer, namespace: str, api_key: str, **extra: str) -> dict[str, str]:
    """The environment of a ``python -m runpoller worker`` process on this test's namespace.

    The caller's own RUNPOLLER_* and ASSISTANTS_* variables are dropped, so a developer's
    shell settings never leak into a test. ``extra`` adds or overrides variables.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env.update(
        {
            "REDIS_URL": test_redis_url(),
            "ASSISTANTS_BASE_URL": fake.base_url,
            "ASSISTANTS_API_KEY": api_key,
            "RUNPOLLER_KEY_PREFIX": namespace,
            "RUNPOLLER_QUEUE_NAME": f"{namespace}:queue",
            "RUNPOLLER_TIMEOUT_MS": "60000",
            "RUNPOLLER_HEARTBEAT_INTERVAL_MS": "250",
            "RUNPOLLER_DEAD_WORKER_AFTER_MS": "1500",
            "RUNPOLLER_ARQ_POLL_DELAY_S": "0.05",
            "RUNPOLLER_LOG_LEVEL": "WARNING",
            "RUNPOLLER_LOG_FORMAT": "json",
            "RUNPOLLER_METRICS_PORT": "0",
            **extra,
        }
    )
    return env


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def create_runs(fake: FakeServer, n: int, work_ms: int) -> list[tuple[str, str]]:
    """``n`` runs on the fake server that complete after ``work_ms``: (thread id, run id)."""
    script = {
        "steps": [
            {"status": "queued", "ms": 100},
            {"status": "in_progress", "ms": work_ms},
            {"status": "completed", "messages": ["done"]},
        ]
    }
    async with httpx.AsyncClient(base_url=fake.root_url) as http:

        async def one() -> tuple[str, str]:
            body = (await http.post("/_fake/runs", json={"script": script})).json()
            return body["thread_id"], body["id"]

        out: list[tuple[str, str]] = []
        for start in range(0, n, 50):
            out += await asyncio.gather(*(one() for _ in range(min(50, n - start))))
        return out


async def owners(redis: Redis, namespace: str) -> dict[str, set[str]]:
    """The runs each worker holds now (workers holding none are left out)."""
    snapshot: dict[str, set[str]] = {}
    async for key in redis.scan_iter(match=f"{namespace}:owned:*"):
        worker_id = key.decode().split(":owned:", 1)[1]
        members = {m.decode() for m in await redis.smembers(key)}
        if members:
            snapshot[worker_id] = members
    return snapshot


async def final_counts(redis: Redis, namespace: str, run_ids: list[str]) -> dict[str, int]:
    """How many final events each run's stream holds (exactly one is right)."""
    async with redis.pipeline(transaction=False) as pipe:
        for rid in run_ids:
            pipe.xrange(f"{namespace}:events:{rid}")
        streams = await pipe.execute()
    return {
        rid: sum(1 for _, fields in entries if fields[b"type"] == b"final")
        for rid, entries in zip(run_ids, streams, strict=True)
    }


# ---------------------------------------------------------------- chaos helpers (issue 14)


async def start_worker(env: dict[str, str]) -> asyncio.subprocess.Process:
    """A ``python -m runpoller worker`` process with ``env`` (see :func:`worker_env`)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runpoller", "worker", env=env
    )


async def kill_all(procs: list[asyncio.subprocess.Process]) -> None:
    """SIGKILL every process still running (a stopped one is continued first)."""
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            await proc.wait()


def worker_pid(worker_id: str) -> int:
    """The process id inside a worker id (``<host>-<pid>-<random>``)."""
    return int(worker_id.split("-")[-2])


def tool_round_script(rounds: int, *, work_ms: int, kind: str = "run") -> dict[str, Any]:
    """A fake script asking for one tool call ``rounds`` times, ``work_ms`` apart, then done.

    ``kind`` is ``"run"`` (requires_action, answered with submit_tool_outputs) or
    ``"response"`` (function calls, answered with a continuation).
    """
    steps: list[dict[str, Any]] = []
    for i in range(rounds):
        steps.append({"status": "in_progress", "ms": work_ms})
        call = {"name": "lookup", "arguments": json.dumps({"round": i + 1})}
        if kind == "run":
            steps.append({"status": "requires_action", "tool_calls": [call]})
        else:
            steps.append({"status": "completed", "function_calls": [call]})
    steps += [{"status": "in_progress", "ms": work_ms}, {"status": "completed"}]
    if kind == "run":
        steps.insert(0, {"status": "queued", "ms": 50})
    return {"steps": steps}


async def create_objects(fake: FakeServer, n: int, script: Any, kind: str = "run") -> list[Any]:
    """``n`` fake runs (``kind="run"``) or background responses playing ``script``; the jobs
    that drive them."""
    path = "/_fake/runs" if kind == "run" else "/_fake/responses"
    async with httpx.AsyncClient(base_url=fake.root_url) as http:

        async def one() -> dict[str, Any]:
            body = (await http.post(path, json={"script": script})).json()
            if kind == "run":
                return {
                    "kind": "assistants_run",
                    "thread_id": body["thread_id"],
                    "run_id": body["id"],
                }
            # The continuations must declare the function again (the API carries no tools
            # over previous_response_id), or every round after the first is never asked.
            continuation = {"model": "gpt-4o", "tools": function_tools("lookup")}
            return {"kind": "response", "response_id": body["id"], "continuation": continuation}

        out: list[Any] = []
        for start in range(0, n, 50):
            out += await asyncio.gather(*(one() for _ in range(min(50, n - start))))
        return out


class ToolReplier:
    """The app's side of tool rounds, for many runs at once: follows every run's events (one
    XREAD over all streams) and answers each ``requires_action`` round once, after a random
    delay in ``delay_s``, through the replies stream (docs/protocol.md, "Answer function
    calls"). ``answered`` lists (run id, round, time) of every reply written."""

    def __init__(
        self,
        redis: Redis,
        client: Any,
        run_ids: list[str],
        delay_s: tuple[float, float] = (0.2, 1.0),
    ) -> None:
        self.redis = redis
        self.client = client
        self.cursors = {client.keys.events(rid): "0-0" for rid in run_ids}
        self.run_of = {client.keys.events(rid): rid for rid in run_ids}
        self.delay_s = delay_s
        self.seen: set[tuple[str, int]] = set()
        self.answered: list[tuple[str, int, float]] = []
        self.asked: list[tuple[str, int, float]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._main: asyncio.Task[None] | None = None

    def start(self) -> ToolReplier:
        self._main = asyncio.create_task(self._follow())
        return self

    async def stop(self) -> None:
        for task in [self._main, *self._tasks]:
            if task is not None:
                task.cancel()
        for task in [self._main, *self._tasks]:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _follow(self) -> None:
        while self.cursors:
            try:
                reply = await self.redis.xread(self.cursors, block=500, count=100)
            except Exception:  # Redis restarting under the test: read again
                await asyncio.sleep(0.2)
                continue
            for stream, entries in reply or []:
                key = stream.decode() if isinstance(stream, bytes) else stream
                for entry_id, fields in entries:
                    self.cursors[key] = entry_id.decode()
                    kind = fields[b"type"]
                    if kind == b"final":
                        self.cursors.pop(key, None)
                        break
                    if kind == b"requires_action":
                        self._ask(self.run_of[key], json.loads(fields[b"data"]))

    def _ask(self, run_id: str, event: dict[str, Any]) -> None:
        round_ = int(event["round"])
        if (run_id, round_) in self.seen:
            return  # a repeated ask of a round already answered (after a takeover)
        self.seen.add((run_id, round_))
        self.asked.append((run_id, round_, time.time()))
        outputs = {call["id"]: f"answer {round_}" for call in event["tool_calls"]}
        task = asyncio.create_task(self._answer(run_id, round_, outputs))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, run_id: str, round_: int, outputs: dict[str, str]) -> None:
        await asyncio.sleep(random.uniform(*self.delay_s))
        await self.client.submit_tool_outputs(run_id, round_, outputs)
        self.answered.append((run_id, round_, time.time()))


class RedisServer:
    """A redis-server of the test's own, which it may stop, kill, wipe and start again.

    ``persist=False``: no RDB, no AOF, so a restart comes back empty (a pod restarted without
    a volume, a managed failover to an empty replica). The shared test Redis is never touched.
    """

    def __init__(self, *, persist: bool = False) -> None:
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="runpoller-redis-"))
        self.persist = persist
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.dir), "--save", ""]
        args += ["--appendonly", "yes" if self.persist else "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _ping("127.0.0.1", self.port):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM: with ``persist`` the data is flushed to disk and comes back on start."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: whatever was only in memory is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def tcp_ports(pid: int, remote_port: int) -> set[int]:
    """Local ports of the process's TCP connections to ``remote_port`` on this host: which
    of the fake server's request-log entries (``peer_port``) it sent. Linux only (/proc)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as f:
            for line in list(f)[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rsplit(":", 1)[1], 16) == remote_port:
                    ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports
