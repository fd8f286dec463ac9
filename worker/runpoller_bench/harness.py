"""The benchmark's phases: floor, naive, sdk, ours — same fake server, same K, same interval.

Floor and ours run a second time at the latency size (``--latency-runs``).

Each phase measures over one fixed window between two snapshots (``/proc`` CPU times,
``INFO``). Polls and API requests in the window are counted afterwards from the fake
server's per-run request logs: asking it for ``/_fake/stats`` at the window edges would
stall it for tens of milliseconds with thousands of runs, and show up as lateness. Redis
commands come from ``MONITOR``, attributed to processes by client port (``redismon``); if
``MONITOR`` is refused, from ``INFO commandstats`` minus the harness's own commands and minus
the rate of other clients' commands seen during the floor's window (``redis_noise_per_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from redis.asyncio import BlockingConnectionPool, Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import Keys
from runpoller_bench import analysis as an
from runpoller_bench import profile
from runpoller_bench.config import BenchConfig
from runpoller_bench.fakectl import FakeControl, LogEntry, endpoint_count
from runpoller_bench.mix import NEVER_ENDING_SCRIPT, agent_script, run_script
from runpoller_bench.procs import (
    Child,
    git_state,
    machine,
    machine_busy_seconds,
    self_cpu_seconds,
    spawn,
)
from runpoller_bench.redismon import RedisMonitor, client_ports, script_names

API_KEY = "sk-bench-not-a-real-key"
# What runs again at the latency size (``--latency-runs``, one worker by default).
LATENCY_DESIGNS = ("floor", "ours")
ENV_PREFIXES = ("RUNPOLLER_", "ASSISTANTS_")


def _free_port() -> int:
    from runpoller_dev.devredis import free_port

    return free_port()


@dataclass
class Snapshot:
    """Counters at one instant."""

    t: float
    commands: dict[str, int]
    own_commands: int
    redis_cpu_s: float
    cpu_s: dict[str, float]
    harness_cpu_s: float
    machine_busy_s: float


@dataclass
class OursRun:
    """One run of ours, as the harness (the app) saw it."""

    run_key: str
    thread_id: str
    run_id: str
    function_call: bool
    created_at: float
    lifetime_s: float
    enqueued_at: float = 0.0
    last_id: str = "0-0"
    replied_at: float | None = None
    reply_round: int | None = None


@dataclass
class Sample:
    """Per worker pid: runs owned (``owned:<wid>`` set), heartbeat (None: lapsed), RSS."""

    t: float
    in_flight: dict[int, int]
    heartbeat: dict[int, int | None]
    rss_kb: dict[int, int]


@dataclass
class PhaseResult:
    figures: dict[str, Any] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.prefix = f"rpbench-{uuid.uuid4().hex[:8]}"
        self.keys = Keys(self.prefix)
        self.queue = f"{self.prefix}:queue"
        self.naive_queue = f"{self.prefix}:naive:queue"
        self.rng = random.Random(config.seed)
        self.log_dir = Path(tempfile.mkdtemp(prefix="runpoller-bench-"))
        self.children: list[Child] = []
        self.own_commands = 0
        self.redis_url = config.redis_url
        self._private_redis: Any = None
        self._redis: Redis | None = None
        self._fake: FakeControl | None = None
        self.fake_child: Child | None = None
        self.noise_per_s: float | None = None
        self.failed = False
        self.notes: list[str] = []
        self.monitor: RedisMonitor | None = None
        self.broken_monitors: list[RedisMonitor] = []
        self.redis_port = 6379
        self.port_owner: dict[int, str] = {}  # Redis client port -> process name

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def latency_size(self) -> Iterator[None]:
        """The phases inside run at ``--latency-runs`` / ``--latency-workers``."""
        config = self.config
        with self._sized("lat", runs=config.latency_runs, workers=config.latency_workers):
            yield

    @contextlib.contextmanager
    def capacity_size(self) -> Iterator[None]:
        """The phases inside run at ``--capacity-runs`` and ``--capacity-interval-ms``, in one
        worker, with the capacity mix (long runs)."""
        config = self.config
        with self._sized(
            "cap",
            runs=config.capacity_runs,
            workers=1,
            interval_ms=config.capacity_interval_ms,
            mix=config.capacity_mix,
            # 20,000 runs take a while to create and take in.
            ramp_timeout_s=max(config.ramp_timeout_s, 300.0),
        ):
            yield

    @contextlib.contextmanager
    def _sized(self, suffix: str, **changes: Any) -> Iterator[None]:
        """Another size: the config changed so, with keys and a queue of their own (the
        earlier size's workers leave their runs behind)."""
        config, prefix = self.config, self.prefix
        self.config = replace(config, **changes)
        self.prefix = f"{prefix}-{suffix}"
        self.keys, self.queue = Keys(self.prefix), f"{self.prefix}:queue"
        try:
            yield
        finally:
            self.config, self.prefix = config, prefix
            self.keys, self.queue = Keys(prefix), f"{prefix}:queue"

    @property
    def redis(self) -> Redis:
        assert self._redis is not None
        return self._redis

    @property
    def fake(self) -> FakeControl:
        assert self._fake is not None
        return self._fake

    def say(self, message: str) -> None:
        if self.config.verbose:
            print(f"bench: {message}", file=sys.stderr, flush=True)

    async def cmd(self, n: int, call: Awaitable[Any]) -> Any:
        """Send a Redis command of the harness's own (counted, to be subtracted)."""
        self.own_commands += n
        return await call

    def child_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
        env.pop("REDIS_URL", None)
        env.update(extra)
        return env

    async def start(self) -> None:
        if self.config.private_redis:
            from runpoller_dev.devredis import start_redis_server

            binary = shutil.which("redis-server")
            if binary is None:
                raise SystemExit("--private-redis: redis-server is not installed")
            self._private_redis, self.redis_url = start_redis_server(binary)
            self.say(f"private redis-server at {self.redis_url}")
        pool = BlockingConnectionPool.from_url(self.redis_url, max_connections=32, timeout=60)
        self._redis = Redis(connection_pool=pool)
        await self.redis.ping()
        self.redis_port = urlparse(self.redis_url).port or 6379
        monitor = RedisMonitor(self.redis_url)
        try:
            await monitor.start()
            self.monitor = monitor
        except (OSError, RuntimeError) as exc:
            self.notes.append(
                f"MONITOR unavailable ({exc}); Redis figures from INFO commandstats, "
                "minus an estimate of other clients' commands"
            )
        port = _free_port()
        self.fake_child = await spawn(
            "fake-openai",
            ["-m", "runpoller", "fake-openai", "--port", str(port)],
            env=self.child_env({}),
            log_dir=self.log_dir,
        )
        self.children.append(self.fake_child)
        self._fake = FakeControl(f"http://127.0.0.1:{port}")
        await self.fake.wait_ready()
        self.say(f"fake OpenAI server pid {self.fake_child.pid} on port {port}")

    async def close(self) -> None:
        for monitor in [*self.broken_monitors, self.monitor]:
            if monitor is not None:
                await monitor.close()
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                await child.stop()
        if self._fake is not None:
            await self._fake.close()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                deleted = await self.delete_keys()
                self.say(f"deleted {deleted} Redis keys under {self.prefix}")
            await self._redis.aclose()
            await self._redis.connection_pool.disconnect()
        if self._private_redis is not None:
            self._private_redis.terminate()
            self._private_redis.wait(timeout=10)
        if self.failed or self.config.keep_logs:
            self.say(f"process logs kept in {self.log_dir}")
        else:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    async def delete_keys(self) -> int:
        deleted = 0
        for pattern in (f"{self.prefix}*", f"arq:*{self.prefix}*"):
            batch: list[Any] = []
            async for key in self.redis.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await self.redis.delete(*batch)
                    batch = []
            if batch:
                deleted += await self.redis.delete(*batch)
        return deleted

    async def snapshot(self, procs: dict[str, Child]) -> Snapshot:
        own = self.own_commands
        self.own_commands += 2  # the two INFO commands below
        cpu_s = {name: child.cpu() for name, child in procs.items()}
        harness_cpu_s = self_cpu_seconds()
        machine_busy_s = machine_busy_seconds()
        t = time.time()
        info = await self.redis.info("commandstats")
        cpu_info = await self.redis.info("cpu")
        return Snapshot(
            t=t,
            commands=an.commandstats_calls(info),
            own_commands=own,
            redis_cpu_s=float(cpu_info["used_cpu_sys"]) + float(cpu_info["used_cpu_user"]),
            cpu_s=cpu_s,
            harness_cpu_s=harness_cpu_s,
            machine_busy_s=machine_busy_s,
        )

    def map_ports(self, procs: dict[str, Child]) -> None:
        """Note which process holds each Redis connection (the harness and ``procs``)."""
        owners = {"harness": os.getpid(), **{name: c.pid for name, c in procs.items()}}
        for name, pid in owners.items():
            for port in client_ports(pid, self.redis_port):
                self.port_owner[port] = name

    def ports_of(self, names: list[str]) -> set[int]:
        return {port for port, owner in self.port_owner.items() if owner in names}

    async def others_busy(self, procs: dict[str, Child], seconds: float = 1.0) -> float:
        """Cores used by processes that are not part of the benchmark, over ``seconds``."""

        async def ours() -> float:
            info = await self.redis.info("cpu")
            redis = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
            return sum(c.cpu() for c in procs.values()) + self_cpu_seconds() + redis

        m0, o0 = machine_busy_seconds(), await ours()
        await asyncio.sleep(seconds)
        m1, o1 = machine_busy_seconds(), await ours()
        return max((m1 - m0) - (o1 - o0), 0.0) / seconds

    async def wait_quiet(self, procs: dict[str, Child]) -> None:
        limit = self.config.wait_quiet_s
        if limit <= 0:
            return
        deadline = time.monotonic() + limit
        while True:
            others = await self.others_busy(procs, 2.0)
            if others < 0.15:
                return
            if time.monotonic() > deadline:
                self.notes.append(
                    f"other processes still used {others:.2f} cores after waiting {limit:g} s"
                )
                return
            self.say(f"waiting for a quiet machine (others use {others:.2f} cores)")

    async def measure(
        self,
        procs: dict[str, Child],
        on_start: Callable[[], Awaitable[None]] | None = None,
    ) -> tuple[Snapshot, Snapshot]:
        """The window: snapshot, wait ``duration_s`` (mapping Redis clients), snapshot."""
        await self.wait_quiet(procs)
        if on_start is not None:
            await on_start()
        self.port_owner.clear()  # ports of earlier phases may belong to anyone by now
        self.map_ports(procs)
        a = await self.snapshot(procs)
        if self.monitor is not None:
            self.monitor.window(a.t)
        deadline = time.monotonic() + self.config.duration_s
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 1.0))
            self.map_ports(procs)
        b = await self.snapshot(procs)
        self.map_ports(procs)
        if self.monitor is not None:
            self.monitor.window(a.t, b.t)
            await self.monitor.drain()
        return a, b

    async def create_runs(
        self, count: int, script_for: Callable[[int], dict[str, Any]]
    ) -> list[tuple[str, str]]:
        return list(
            await asyncio.gather(*(self.fake.create_run(script_for(i)) for i in range(count)))
        )

    async def wait_polled(self, before: int, want: int, timeout: float) -> bool:
        """Wait until the fake server has served ``want`` more polls than ``before``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stats = await self.fake.stats()
            if endpoint_count(stats, an.POLL) - before >= want:
                return True
            await asyncio.sleep(0.5)
        return False

    def window_figures(
        self,
        a: Snapshot,
        b: Snapshot,
        cpu_names: list[str],
        logs: dict[str, list[LogEntry]],
        *,
        in_flight: float,
        endpoints: Endpoints | None = None,
    ) -> dict[str, Any]:
        """Rates, per-poll costs and poll lateness between two snapshots (every design)."""
        window = b.t - a.t
        polls = requests = 0
        lateness: list[float] = []
        ep = endpoints or ENDPOINTS["assistants_run"]
        for log in logs.values():
            times = [float(e["time"]) for e in log if e.get("endpoint") == ep.poll]
            polls += an.count_in(times, a.t, b.t)
            requests += an.count_in((float(e["time"]) for e in log), a.t, b.t)
            lateness.extend(
                an.poll_lateness_ms(
                    log, self.config.interval_s, a.t, b.t, poll=ep.poll, companion=ep.companion
                )
            )
        cpu = sum(b.cpu_s[n] - a.cpu_s[n] for n in cpu_names)
        fake_cpu = b.cpu_s["fake"] - a.cpu_s["fake"]
        redis = self.redis_figures(a, b, cpu_names)
        polls_per_s = polls / window if window > 0 else None
        harness_cpu = b.harness_cpu_s - a.harness_cpu_s
        redis_cpu = b.redis_cpu_s - a.redis_cpu_s
        busy = b.machine_busy_s - a.machine_busy_s
        # Everything else the machine did meanwhile (other users' tests, say): it competes
        # for the same cores and inflates lateness, so it is reported with every run.
        others = busy - cpu - fake_cpu - harness_cpu - redis_cpu
        expected = in_flight / self.config.interval_s
        return {
            "window_s": round(window, 3),
            "in_flight_mean": in_flight,
            "polls": polls,
            "polls_per_s": polls_per_s,
            "poll_rate_attained": an.ratio(polls_per_s, expected),
            "api_requests": requests,
            "cpu_s": cpu,
            "cpu_ms_per_poll": an.ratio(cpu * 1000, polls),
            "cpu_ms_per_request": an.ratio(cpu * 1000, requests),
            "cpu_cores_busy": an.ratio(cpu, window),
            "fake_server_cpu_ms_per_request": an.ratio(fake_cpu * 1000, requests),
            "harness_cpu_s": harness_cpu,
            "redis_cpu_s": redis_cpu,
            "machine_busy_cores": busy / window,
            "other_processes_cores": max(others, 0.0) / window,
            **redis,
            "redis_commands_per_poll": an.ratio(redis["redis_commands"], polls),
            "redis_client_commands_per_poll": an.ratio(redis["redis_client_commands"], polls),
            "poll_lateness_ms": an.summarize(lateness),
        }

    def redis_figures(self, a: Snapshot, b: Snapshot, names: list[str]) -> dict[str, Any]:
        """Redis commands of the processes ``names`` in the window (see ``redismon``)."""
        commands = an.delta(a.commands, b.commands)
        raw = sum(commands.values())
        own = b.own_commands - a.own_commands
        if self.monitor is not None and self.monitor.error is not None:
            self.notes.append(f"{self.monitor.error}; Redis figures from INFO commandstats")
            self.broken_monitors.append(self.monitor)
            self.monitor = None
        if self.monitor is not None:
            tally = self.monitor.tally(self.ports_of(names), script_names())
            return {
                "redis_accounting": "MONITOR, per client process",
                "redis_commands": tally["total"],
                "redis_client_commands": tally["client"],
                "redis_lua_commands": tally["lua"],
                "redis_commands_by_name": tally["by_name"],
                "redis_commands_by_script": tally["by_script"],
                "redis_other_clients_commands": self.monitor.others(set(self.port_owner)),
                "redis_commandstats_all_clients": raw,
            }
        noise = (self.noise_per_s or 0.0) * (b.t - a.t)
        return {
            "redis_accounting": "INFO commandstats minus the harness and estimated noise",
            "redis_commands": max(raw - own - noise, 0.0),
            "redis_client_commands": None,
            "redis_lua_commands": None,
            "redis_commands_by_name": dict(list(commands.items())[:20]),
            "redis_commands_harness": own,
            "redis_noise_estimate": round(noise, 1),
            "redis_commandstats_all_clients": raw,
        }

    # ------------------------------------------------------------------ floor

    async def phase_floor(self) -> PhaseResult:
        return await self._phase_poller("floor")

    async def phase_sdk(self) -> PhaseResult:
        return await self._phase_poller("sdk")

    async def _phase_poller(self, name: str) -> PhaseResult:
        """One process, one task per never-ending run (``runpoller_bench.<name>``): the floor's
        bare aiohttp loop or the official SDK's ``retrieve``, on the same event loop."""
        config = self.config
        self.say(f"{name}: creating {config.runs} never-ending runs")
        runs = await self.create_runs(config.runs, lambda _: NEVER_ENDING_SCRIPT)
        runs_file = self.log_dir / f"{name}-runs.json"
        runs_file.write_text(json.dumps(runs))
        before = endpoint_count(await self.fake.stats(), an.POLL)
        child = await spawn(
            name,
            [
                "-m",
                f"runpoller_bench.{name}",
                "--base-url",
                self.fake.base_url,
                "--interval-ms",
                str(config.interval_ms),
                "--runs-file",
                str(runs_file),
                "--event-loop",
                config.event_loop,
            ],
            env=self.child_env({"ASSISTANTS_API_KEY": API_KEY}),
            log_dir=self.log_dir,
        )
        self.children.append(child)
        try:
            if not await self.wait_polled(before, config.runs, timeout=config.ramp_timeout_s):
                self.notes.append(f"{name}: not every run was polled once before the window")
            await asyncio.sleep(max(1.0, config.interval_s))
            procs = {name: child, "fake": self._fake_child()}
            a, b = await self.measure(procs)
        finally:
            await child.stop()
            self.children.remove(child)
        window = b.t - a.t
        raw = sum(an.delta(a.commands, b.commands).values())
        own = b.own_commands - a.own_commands
        run_ids = [run_id for _, run_id in runs]
        logs = await self.fake.logs(run_ids)
        figures = self.window_figures(a, b, [name], logs, in_flight=float(config.runs))
        if name == "floor":
            self.noise_per_s = max(raw - own, 0) / window
            figures["redis_noise_per_s"] = self.noise_per_s
        return PhaseResult(figures, run_ids)

    def _fake_child(self) -> Child:
        assert self.fake_child is not None
        return self.fake_child

    # ------------------------------------------------------------------ naive

    async def phase_naive(self) -> PhaseResult:
        from arq.connections import RedisSettings, create_pool

        from runpoller_bench.naive import enqueue_polls

        config = self.config
        self.say(f"naive: creating {config.runs} never-ending runs")
        runs = await self.create_runs(config.runs, lambda _: NEVER_ENDING_SCRIPT)
        child = await spawn(
            "naive",
            [
                "-m",
                "runpoller_bench.naive",
                "--redis-url",
                self.redis_url,
                "--queue",
                self.naive_queue,
                "--base-url",
                self.fake.base_url,
                "--interval-ms",
                str(config.interval_ms),
                "--result-prefix",
                f"{self.prefix}:naive:result:",
            ],
            env=self.child_env({"ASSISTANTS_API_KEY": API_KEY}),
            log_dir=self.log_dir,
        )
        self.children.append(child)
        arq = await create_pool(RedisSettings.from_dsn(self.redis_url))
        try:
            before = endpoint_count(await self.fake.stats(), an.POLL)
            await enqueue_polls(arq, self.naive_queue, runs, f"{self.prefix}-naive-")
            if not await self.wait_polled(before, config.runs, timeout=config.ramp_timeout_s):
                self.notes.append("naive: not every run was polled once before the window")
            await asyncio.sleep(max(1.0, 2 * config.interval_s))
            procs = {"naive": child, "fake": self._fake_child()}
            a, b = await self.measure(procs)
            backlog = await self.cmd(
                1, arq.zcount(self.naive_queue, "-inf", int(time.time() * 1000))
            )
        finally:
            await child.stop()
            self.children.remove(child)
            await arq.aclose()
        run_ids = [run_id for _, run_id in runs]
        logs = await self.fake.logs(run_ids)
        figures = self.window_figures(a, b, ["naive"], logs, in_flight=float(config.runs))
        figures["arq_ready_backlog_at_end"] = int(backlog)
        return PhaseResult(figures, run_ids)

    # ------------------------------------------------------------------ ours

    async def phase_ours(self) -> PhaseResult:
        return await OursPhase(self).run()

    # ------------------------------------------------------------------ delivery modes

    async def phase_modes(self) -> PhaseResult:
        from runpoller_bench.modes import ModesPhase

        return PhaseResult(await ModesPhase(self).run())


@dataclass(frozen=True)
class Endpoints:
    """The fake's endpoint names a design's runs are measured by."""

    poll: str
    submit: str
    fetch: str
    companion: str = ""
    """A read that belongs to the poll before it (an unfinished agent turn's session GET)."""


ENDPOINTS = {
    "assistants_run": Endpoints(an.POLL, "submit_tool_outputs", "list_messages"),
    "agent_turn": Endpoints(
        an.AGENT_POLL, "create_agent_events", "list_agent_turn_items", an.AGENT_POLL_COMPANION
    ),
}


class OursPhase:
    """N real workers, K runs kept in flight, tool calls answered by the harness (the app)."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config = bench.config
        self.endpoints = ENDPOINTS[self.config.backend]
        self.redis = bench.redis
        self.client = RunpollerClient(bench.redis, queue_name=bench.queue, key_prefix=bench.prefix)
        self.workers: list[Child] = []
        self.runs: dict[str, OursRun] = {}
        # Function-call runs not answered yet: a heap by when their tool call is scripted to
        # start, and those whose time has come (their event streams are read).
        self.upcoming: list[tuple[float, str]] = []
        self.awaiting: set[str] = set()
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()  # stops the sampler and the tool-call reader
        self.stop_creating = asyncio.Event()  # stops the replenishment
        self.creations: set[asyncio.Task[None]] = set()
        self.create_slots = asyncio.Semaphore(16)
        self.steady_from = float("inf")  # runs enqueued from then on were seen whole

    def worker_env(self) -> dict[str, str]:
        c = self.config
        return self.bench.child_env(
            {
                "REDIS_URL": self.bench.redis_url,
                "ASSISTANTS_BASE_URL": self.bench.fake.base_url,
                "ASSISTANTS_API_KEY": API_KEY,
                "RUNPOLLER_KEY_PREFIX": self.bench.prefix,
                "RUNPOLLER_QUEUE_NAME": self.bench.queue,
                "RUNPOLLER_POLL_INTERVAL_MS": str(c.interval_ms),
                "RUNPOLLER_TIMEOUT_MS": str(3_600_000),
                "RUNPOLLER_HTTP_TRANSPORT": c.transport,
                "RUNPOLLER_EVENT_LOOP": c.event_loop,
                "RUNPOLLER_MAX_RUNS_PER_WORKER": str(max(10_000, 2 * c.runs)),
                "RUNPOLLER_LOG_LEVEL": c.log_level,
                "RUNPOLLER_LOG_FORMAT": "json",
                # Several workers on one host: metrics and probes on any free port.
                "RUNPOLLER_METRICS_HOST": "127.0.0.1",
                "RUNPOLLER_METRICS_PORT": "0",
            }
        )

    async def worker_ids(self) -> dict[int, str]:
        """pid → worker id, from the workers' registry (ids are ``host-pid-random``)."""
        raw = await self.bench.cmd(1, self.redis.zrange(self.bench.keys.workers, 0, -1))
        out: dict[int, str] = {}
        for item in raw:
            wid = item.decode() if isinstance(item, bytes) else str(item)
            with contextlib.suppress(ValueError, IndexError):
                out[int(wid.rsplit("-", 2)[1])] = wid
        return out

    async def start_workers(self) -> dict[int, str]:
        env = self.worker_env()
        for index in range(self.config.workers):
            child = await spawn(
                f"worker-{index + 1}",
                ["-m", "runpoller", "worker"],
                env=env,
                log_dir=self.bench.log_dir,
            )
            self.workers.append(child)
            self.bench.children.append(child)
        deadline = time.monotonic() + 60
        pids = {w.pid for w in self.workers}
        while True:
            ids = await self.worker_ids()
            if pids <= set(ids):
                return {pid: ids[pid] for pid in pids}
            for w in self.workers:
                if not w.alive:
                    raise RuntimeError(f"{w.name} exited at start-up:\n{w.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not register within 60 s")
            await asyncio.sleep(0.1)

    async def sample(self, wids: dict[int, str]) -> Sample:
        """Runs each worker owns, from the store's ``owned:<wid>`` sets (kept by the claim and
        finalize scripts, so right even when a worker is too busy to beat), and heartbeats."""
        keys = self.bench.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            for wid in wids.values():
                pipe.scard(keys.owned(wid))
            pipe.mget([keys.heartbeat(wid) for wid in wids.values()])
            replies = await pipe.execute()
        self.bench.own_commands += len(wids) + 1
        in_flight = {pid: int(n) for pid, n in zip(wids, replies[:-1], strict=True)}
        heartbeat: dict[int, int | None] = {}
        for pid, value in zip(wids, replies[-1], strict=True):
            heartbeat[pid] = int(json.loads(value)["in_flight"]) if value else None
        rss = {w.pid: w.rss() for w in self.workers if w.alive}
        return Sample(time.time(), in_flight, heartbeat, rss)

    async def sampler(self, wids: dict[int, str]) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(await self.sample(wids))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    async def create(self, lifetime_s: float) -> None:
        fc = self.bench.rng.random() < self.config.function_call_share
        agents = self.config.backend == "agent_turn"
        async with self.create_slots:
            created = time.time()
            if agents:  # thread_id / run_id: the session and its turn
                thread_id, run_id = await self.bench.fake.create_agent_turn(
                    agent_script(lifetime_s, function_call=fc)
                )
            else:
                thread_id, run_id = await self.bench.fake.create_run(
                    run_script(lifetime_s, function_call=fc)
                )
            run = OursRun(
                run_key=f"{self.bench.prefix}.{run_id}",
                thread_id=thread_id,
                run_id=run_id,
                function_call=fc,
                created_at=created,
                lifetime_s=lifetime_s,
            )
            self.runs[run.run_key] = run
            if fc:
                # run_script() spends half the run before asking for the tool call.
                heapq.heappush(self.upcoming, (created + lifetime_s / 2, run.run_key))
            run.enqueued_at = time.time()
            self.bench.own_commands += 4  # MULTI, SET, ZADD, EXEC
            job = {"kind": "assistants_run", "thread_id": thread_id, "run_id": run_id}
            if agents:
                job = {"kind": "agent_turn", "session_id": thread_id, "turn_id": run_id}
            await self.client.enqueue({"id": run.run_key, **job})

    async def replenish(self, rate: float) -> None:
        """New runs at ``rate`` per second, evenly spaced, until told to stop."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not self.stop_creating.is_set():
            next_at += 1 / rate
            delay = next_at - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop_creating.wait(), delay)
                if self.stop_creating.is_set():
                    return
            task = asyncio.create_task(self.create(self.config.mix.draw(self.bench.rng)))
            self.creations.add(task)
            task.add_done_callback(self.creations.discard)

    async def answer_tool_calls(self) -> None:
        """The app's side: read requires_action events and reply at once.

        Only the streams of runs whose tool call is due are read (the harness knows each
        script), in batches, so the app's cost stays small next to the workers'.
        """
        while not self.stop.is_set():
            now = time.time()
            while self.upcoming and self.upcoming[0][0] <= now:
                self.awaiting.add(heapq.heappop(self.upcoming)[1])
            due = list(self.awaiting)
            if not due:
                await asyncio.sleep(0.01)
                continue
            found = False
            for start in range(0, len(due), 200):
                chunk = due[start : start + 200]
                block = 50 if len(due) <= 200 else None
                try:
                    found |= await self.read_events(chunk, block)
                except Exception as exc:
                    self.bench.notes.append(f"tool-call reader: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.2)
            if not found and len(due) > 200:
                await asyncio.sleep(0.01)

    async def read_events(self, run_keys: list[str], block: int | None) -> bool:
        keys = self.bench.keys
        streams: dict[Any, Any] = {keys.events(k): self.runs[k].last_id for k in run_keys}
        reply = await self.bench.cmd(1, self.redis.xread(streams, block=block, count=50))
        for stream, entries in reply or []:
            name = stream.decode() if isinstance(stream, bytes) else str(stream)
            run = self.runs[name.removeprefix(keys.events(""))]
            for entry_id, fields in entries:
                run.last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                kind = (fields.get(b"type") or b"").decode()
                if kind == "requires_action" and run.replied_at is None:
                    data = json.loads(fields[b"data"])
                    outputs = {call["id"]: '{"temp_c": 21}' for call in data["tool_calls"]}
                    run.reply_round = int(data["round"])
                    run.replied_at = time.time()
                    await self.bench.cmd(
                        1,
                        self.client.submit_tool_outputs(run.run_key, run.reply_round, outputs),
                    )
                    self.awaiting.discard(run.run_key)
                elif kind == "final":
                    self.awaiting.discard(run.run_key)
        return bool(reply)

    def in_flight_total(self) -> int:
        return sum(self.samples[-1].in_flight.values()) if self.samples else 0

    async def run(self) -> PhaseResult:
        bench = self.bench
        wids = await self.start_workers()
        await asyncio.sleep(1.0)
        idle = await self.sample(wids)
        self.bench.say(
            f"ours: {len(wids)} worker(s) up, idle RSS "
            + ", ".join(f"{kb // 1024} MiB" for kb in idle.rss_kb.values())
        )
        background: list[asyncio.Task[None]] = [
            asyncio.create_task(self.sampler(wids)),
            asyncio.create_task(self.answer_tool_calls()),
        ]
        try:
            return await self._measure(wids, idle, background)
        finally:
            self.stop.set()
            self.stop_creating.set()
            for task in background:
                with contextlib.suppress(Exception):
                    await task
            for task in list(self.creations):
                task.cancel()
            # All at once, so no worker picks up the runs another one hands over on its way out.
            codes = await asyncio.gather(*(w.stop() for w in self.workers))
            for w, code in zip(self.workers, codes, strict=True):
                if code not in (0, None):
                    last = (w.tail(1) or "no output").strip()
                    bench.notes.append(f"{w.name} exited with status {code} on SIGTERM ({last})")
                bench.children.remove(w)

    async def _measure(
        self, wids: dict[int, str], idle: Sample, background: list[asyncio.Task[None]]
    ) -> PhaseResult:
        bench, config = self.bench, self.config
        mix = config.mix
        rate = config.runs / (mix.mean_s + config.interval_s / 2)
        bench.say(
            f"ours: creating {config.runs} runs in flight, then {rate:.1f} new runs/s "
            f"(mean lifetime {mix.mean_s:.1f} s)"
        )
        t_start = time.monotonic()
        await asyncio.gather(
            *(self.create(mix.draw_in_flight(bench.rng)) for _ in range(config.runs))
        )
        background.append(asyncio.create_task(self.replenish(rate)))
        ramp_deadline = time.monotonic() + config.ramp_timeout_s
        while time.monotonic() < ramp_deadline:
            now_ms = int(time.time() * 1000)
            ready = await bench.cmd(1, self.redis.zcount(bench.queue, "-inf", now_ms))
            # Caught up: less than a second of arrivals waiting, and K runs (nearly) held.
            if ready <= max(10, rate) and (
                config.drain or self.in_flight_total() >= 0.9 * config.runs
            ):
                break
            await asyncio.sleep(0.5)
        else:
            bench.notes.append("ours: intake had not caught up when the window started")
        ramp_s = time.monotonic() - t_start
        self.steady_from = time.time()
        await asyncio.sleep(max(1.0, 2 * config.interval_s))
        bench.say(f"ours: intake done in {ramp_s:.1f} s; measuring {config.duration_s:g} s")
        procs = {w.name: w for w in self.workers}
        procs["fake"] = bench._fake_child()
        profilers: dict[str, tuple[Path, asyncio.subprocess.Process]] = {}

        async def start_profiles() -> None:
            profilers.update(await self.start_profiles())

        a, b = await bench.measure(procs, start_profiles)
        end = await self.sample(wids)
        window_samples = [*(s for s in self.samples if a.t <= s.t <= b.t), end]
        self.stop_creating.set()
        for task in list(self.creations):
            with contextlib.suppress(Exception):
                await task
        clock = await bench.fake.clock_offset()
        cluster: dict[str, Any] = {"fake_clock": clock}
        await self.count_worker_events(cluster, a.t, b.t)
        check_at = await self.settle(a.t)
        logs = await bench.fake.logs(r.run_id for r in self.runs.values())
        figures = bench.window_figures(
            a,
            b,
            [w.name for w in self.workers],
            logs,
            in_flight=an.mean([sum(s.in_flight.values()) for s in window_samples]) or 0.0,
            endpoints=self.endpoints,
        )
        if profilers:
            figures["profile"] = await self.finish_profiles(profilers)
        figures.update(cluster)
        figures["intake_ramp_s"] = round(ramp_s, 2)
        figures["runs_created"] = len(self.runs)
        figures["arrival_rate_per_s"] = rate
        figures["heartbeats_lapsed_in_window"] = sum(
            1 for smp in window_samples for v in smp.heartbeat.values() if v is None
        )
        self.memory(figures, idle, end)
        self.split(figures, wids, window_samples)
        await self.per_run(figures, logs, a.t, b.t, check_at, clock["offset_ms"] / 1000)
        return PhaseResult(figures, [r.run_id for r in self.runs.values()])

    async def start_profiles(self) -> dict[str, tuple[Path, asyncio.subprocess.Process]]:
        if not self.config.profile:
            return {}
        out_dir = Path(self.config.profile)
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        started = {}
        for w in self.workers:
            path = out_dir / f"{w.name}.txt"
            proc = await profile.record(w.pid, path, self.config.duration_s)
            if proc is None:
                self.bench.notes.append("--profile: py-spy is not installed (make install)")
                return {}
            started[w.name] = (path, proc)
        return started

    async def finish_profiles(
        self, profilers: dict[str, tuple[Path, asyncio.subprocess.Process]]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, (path, proc) in profilers.items():
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            if path.exists():
                out[name] = {"file": str(path), **profile.summarize(path)}
            else:
                self.bench.notes.append(
                    f"--profile: py-spy wrote no profile of {name} (exit {proc.returncode};"
                    " can it attach here? it needs ptrace, e.g. SYS_PTRACE in a container)"
                )
        return out

    async def count_worker_events(self, out: dict[str, Any], lo: float, hi: float) -> None:
        """Cluster events (a worker presumed dead, hand-offs) so far, and in the window.

        A worker whose event loop stalls longer than its heartbeat TTL is presumed dead and
        its runs move: under overload that shows up here before anywhere else.
        """
        entries = await self.redis.xrange(self.bench.keys.worker_events, "-", "+")
        total: dict[str, int] = {}
        window: dict[str, int] = {}
        for _entry_id, fields in entries:
            try:
                event = json.loads(fields[b"data"])
                kind, ts = str(event["type"]), float(event["ts"]) / 1000
            except (KeyError, ValueError, TypeError):
                continue
            total[kind] = total.get(kind, 0) + 1
            if lo <= ts <= hi:
                window[kind] = window.get(kind, 0) + 1
        out["worker_events"] = total
        out["worker_events_in_window"] = window

    async def settle(self, window_start: float) -> float:
        """After the window: wait for finals (all of them when draining); the check time."""
        config = self.config
        if config.drain:
            # The tool-call reader keeps answering while the last runs end.
            deadline = time.monotonic() + max(30.0, 3 * config.mix.max_s)
            while time.monotonic() < deadline:
                if not await self.missing_results(list(self.runs.values())):
                    break
                await asyncio.sleep(0.2)
        else:
            await asyncio.sleep(min(2 * config.interval_s, 5.0))
        return time.time()

    async def missing_results(self, runs: list[OursRun]) -> list[OursRun]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                pipe.exists(self.bench.keys.result(run.run_key))
            found = await pipe.execute()
        return [run for run, ok in zip(runs, found, strict=True) if not ok]

    def memory(self, figures: dict[str, Any], idle: Sample, end: Sample) -> None:
        per_worker = []
        growth_total = 0
        in_flight_total = 0
        for pid, idle_kb in idle.rss_kb.items():
            loaded_kb = end.rss_kb.get(pid, idle_kb)
            runs = end.in_flight.get(pid, 0)
            growth_total += loaded_kb - idle_kb
            in_flight_total += runs
            per_worker.append(
                {
                    "pid": pid,
                    "idle_rss_kb": idle_kb,
                    "rss_kb": loaded_kb,
                    "in_flight": runs,
                    "kb_per_run": an.ratio(loaded_kb - idle_kb, runs),
                }
            )
        figures["rss_per_worker"] = per_worker
        figures["rss_kb_per_run"] = an.ratio(growth_total, in_flight_total)

    def split(self, figures: dict[str, Any], wids: dict[int, str], samples: list[Sample]) -> None:
        means = {pid: an.mean([s.in_flight.get(pid, 0) for s in samples]) or 0.0 for pid in wids}
        figures["in_flight_per_worker"] = {wids[pid]: round(m, 1) for pid, m in means.items()}
        figures["split_max_deviation"] = an.split_deviation(list(means.values()))

    async def per_run(
        self,
        figures: dict[str, Any],
        logs: dict[str, list[LogEntry]],
        lo: float,
        hi: float,
        check_at: float,
        fake_ahead_s: float,
    ) -> None:
        """Final events and replies of every run: latencies, request economy, missing finals."""
        bench, config, ep = self.bench, self.config, self.endpoints
        runs = list(self.runs.values())
        async with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                pipe.xrevrange(bench.keys.events(run.run_key), count=4)
            last_events = await pipe.execute()
        final_ms: list[float] = []
        from_api_ms: list[float] = []
        outliers: list[dict[str, Any]] = []
        steps: dict[str, list[float]] = {
            "api_to_worker": [],
            "worker_to_fetch": [],
            "fetch_to_event": [],
            "event_to_redis": [],
        }
        reply_ms: list[float] = []
        statuses: dict[str, int] = {}
        requests: list[int] = []
        polls: list[int] = []
        expected_polls: list[float] = []
        missing: list[str] = []
        for run, recent in zip(runs, last_events, strict=True):
            log: list[LogEntry] = logs[run.run_id]
            final, seen_ts = an.final_and_terminal_status(recent)
            if run.replied_at is not None and lo <= run.replied_at <= hi:
                submitted = an.first_after(log, ep.submit, run.replied_at - 0.01)
                if submitted is not None:
                    reply_ms.append((submitted - fake_ahead_s - run.replied_at) * 1000)
            if final is None:
                if self.expected_done(run, lo, check_at) or config.drain:
                    missing.append(run.run_key)
                continue
            written_ms, event = final
            statuses[event["status"]] = statuses.get(event["status"], 0) + 1
            if seen_ts is not None and lo <= seen_ts / 1000 <= hi:
                final_ms.append(written_ms - seen_ts)
                if written_ms - seen_ts > 1000 and len(outliers) < 3:
                    outliers.append({"run": run.run_key, "final": event, "log": log[-6:]})
            # A worker stops polling once it has seen the terminal status: the run's last
            # GET is the one that served it (with a second of slack for the two clocks).
            served = an.final_status_seen(log, written_ms / 1000 + fake_ahead_s + 1.0, ep.poll)
            if served is not None:
                served -= fake_ahead_s  # on our clock from here on
            if served is not None and lo <= served <= hi:
                from_api_ms.append(written_ms - served * 1000)
                fetched = an.first_after(log, ep.fetch, served + fake_ahead_s)
                if fetched is not None and seen_ts is not None:
                    fetched -= fake_ahead_s
                    # API answered → worker applied it (status event) → results requested
                    # (after writing the status event) → final event built → in Redis.
                    steps["api_to_worker"].append(seen_ts - served * 1000)
                    steps["worker_to_fetch"].append(fetched * 1000 - seen_ts)
                    steps["fetch_to_event"].append(float(event["ts"]) - fetched * 1000)
                    steps["event_to_redis"].append(written_ms - float(event["ts"]))
            if run.enqueued_at >= self.steady_from:
                # Request economy over whole lives only (the first K runs started mid-life).
                requests.append(len(log))
                polls.append(sum(1 for e in log if e.get("endpoint") == ep.poll))
                expected_polls.append(run.lifetime_s / config.interval_s + 1)
        figures["final_event_ms"] = an.summarize(final_ms)
        figures["final_event_steps_ms"] = {k: an.summarize(v) for k, v in steps.items()}
        figures["final_event_outliers"] = outliers
        figures["final_event_from_api_ms"] = an.summarize(from_api_ms)
        figures["reply_to_submit_ms"] = an.summarize(reply_ms)
        figures["finals"] = sum(statuses.values())
        figures["finals_by_status"] = statuses
        figures["finals_missing"] = len(missing)
        figures["finals_missing_examples"] = missing[:5]
        figures["api_requests_per_run"] = an.mean([float(n) for n in requests])
        figures["polls_per_run"] = an.mean([float(n) for n in polls])
        figures["scripted_polls_per_run"] = an.mean(expected_polls)
        figures["tool_calls_answered"] = sum(1 for r in runs if r.replied_at is not None)

    def expected_done(self, run: OursRun, window_start: float, check_at: float) -> bool:
        """Whether the run should have ended by ``check_at`` (with a generous margin)."""
        interval = self.config.interval_s
        adopted = max(run.enqueued_at + 1.0, window_start if run.enqueued_at < window_start else 0)
        if run.function_call:
            if run.replied_at is None:
                ends = max(run.created_at + run.lifetime_s / 2, adopted)
            else:
                ends = run.replied_at + run.lifetime_s / 2
        else:
            ends = max(run.created_at + run.lifetime_s, adopted)
        return ends + 2 * interval + 1.0 <= check_at


async def run_bench(config: BenchConfig) -> dict[str, Any]:
    """Run every phase and return the results (the report module renders and writes them)."""
    from runpoller_bench.report import build_results

    bench = Bench(config)
    started = time.time()
    code = git_state()  # what the workers run: read before they start
    phases: dict[str, PhaseResult] = {}
    latency: dict[str, PhaseResult] = {}
    capacity: dict[str, PhaseResult] = {}
    try:
        await bench.start()
        for design in config.designs:
            phase = getattr(bench, f"phase_{design}")
            phases[design] = await phase()
            bench.say(f"{design}: done")
        latency_designs = [d for d in LATENCY_DESIGNS if d in config.designs]
        if config.latency_runs and latency_designs:
            # The latency size: few enough runs that the floor keeps its own tail small.
            with bench.latency_size():
                for design in latency_designs:
                    latency[design] = await getattr(bench, f"phase_{design}")()
                    bench.say(f"{design} at the latency size: done")
        if config.capacity_runs and "ours" in config.designs:
            # The capacity size: many long runs at a long interval in one worker (memory).
            with bench.capacity_size():
                capacity["ours"] = await bench.phase_ours()
                bench.say("ours at the capacity size: done")
        final_stats = await bench.fake.stats()
        objects = final_stats.get("objects", {})
        for name, phase in [*phases.items(), *latency.items(), *capacity.items()]:
            if name == "modes":  # counted per mode by the phase itself
                continue
            phase.figures["overlapping_polls"] = sum(
                int(objects.get(rid, {}).get("overlapping_polls", 0)) for rid in phase.run_ids
            )
    except BaseException:
        bench.failed = True
        for child in bench.children:
            tail = child.tail()
            if tail:
                print(f"--- {child.name} (pid {child.pid}) log tail ---\n{tail}", file=sys.stderr)
        raise
    finally:
        await bench.close()
    return build_results(
        config,
        {name: p.figures for name, p in phases.items()},
        latency={name: p.figures for name, p in latency.items()},
        capacity={name: p.figures for name, p in capacity.items()},
        started=started,
        finished=time.time(),
        machine=machine(),
        notes=bench.notes,
        redis_url=bench.redis_url if not config.private_redis else "private redis-server",
        key_prefix=bench.prefix,
        code=code,
    )
