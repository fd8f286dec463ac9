"""The delivery-modes section: how a Responses run learns that its response ended.

Four modes run at the same time against the one fake server, each with a worker process of
its own (own key prefix and queue), on the same run mix: run ``i`` of every mode has the
same lifetime and is enqueued at the same instant. Every job carries a CreateResponse
``request`` (the worker creates the background response; its script rides in
``metadata.fake_scenario``), so each response's log holds every request made for it.

- **fixed**: polled every ``--interval-ms``.
- **adaptive**: the same base interval, growing with the run's age
  (``RUNPOLLER_ADAPTIVE_POLL_AFTER_MS`` / ``_MAX_MS``: ``--adaptive-after-ms``,
  ``--adaptive-max-ms``).
- **webhooks**: the fake signs and sends a webhook when a response ends to a real
  ``runpoller webhooks`` process, which wakes the run through Redis; the worker polls only
  at ``RUNPOLLER_WEBHOOK_FALLBACK_INTERVAL_MS`` (``--webhook-fallback-ms``).
- **streamed**: the job says ``"stream": true``; the worker follows the response's SSE
  stream and writes ``progress`` events. Skipped (with a note) while the worker's job model
  has no ``stream`` field.

The fake has one webhook URL, so the receiver gets the webhooks of every mode's responses
(the webhooks mode's CPU is an upper bound). Figures: ``modestats``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import Keys
from runpoller.protocol.jobs import ResponseJob
from runpoller_bench import modestats
from runpoller_bench.analysis import summarize
from runpoller_bench.config import BenchConfig
from runpoller_bench.mix import QUEUED_MS
from runpoller_bench.procs import Child, machine_busy_seconds, self_cpu_seconds, spawn

if TYPE_CHECKING:  # the harness imports this module
    from runpoller_bench.harness import Bench

ANSWER = (
    "The benchmark's answer, long enough to arrive in several text deltas when the "
    "response is streamed."
)


def response_script(lifetime_s: float) -> dict[str, Any]:
    """A background response in progress for ``lifetime_s`` (minus its queued start)."""
    work_ms = max(lifetime_s * 1000 - QUEUED_MS, 1.0)
    return {
        "steps": [
            {"status": "queued", "ms": QUEUED_MS},
            {"status": "in_progress", "ms": round(work_ms, 1)},
            {"status": "completed", "messages": [ANSWER]},
        ]
    }


def script_seconds(script: dict[str, Any]) -> float:
    return sum(float(step.get("ms") or 0) for step in script["steps"]) / 1000


def streaming_supported() -> bool:
    """Whether this worker's job model takes ``"stream": true`` (issue 16's streamed path)."""
    return "stream" in ResponseJob.model_fields


@dataclass
class ModeRun:
    run_key: str
    index: int
    lifetime_s: float
    script_s: float


@dataclass
class Mode:
    """One mode: its worker (and receiver), its keys, its runs."""

    name: str
    keys: Keys
    queue: str
    client: RunpollerClient
    env: dict[str, str]
    stream: bool = False
    response_ids: set[str] | None = None
    # Response id -> the instant its script ended it (the fake's clock).
    ends: dict[str, float] | None = None
    worker: Child | None = None
    receiver: Child | None = None
    runs: list[ModeRun] | None = None

    @property
    def procs(self) -> list[Child]:
        return [c for c in (self.worker, self.receiver) if c is not None]


class ModesPhase:
    """Runs the four modes side by side and returns their figures."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.config: BenchConfig = bench.config
        self.redis: Redis = bench.redis
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        self.webhook_port = 0
        self.modes: list[Mode] = []

    def mode_env(self, name: str) -> dict[str, str]:
        c = self.config
        base = c.interval_ms
        if name == "adaptive":
            return {
                "RUNPOLLER_ADAPTIVE_POLL_AFTER_MS": str(c.adaptive_after_ms or 5 * base),
                "RUNPOLLER_ADAPTIVE_POLL_MAX_MS": str(c.adaptive_max_ms or 2 * base),
            }
        if name == "webhooks":
            fallback = str(c.webhook_fallback_ms)
            return {
                "RUNPOLLER_WEBHOOK_FALLBACK_INTERVAL_MS": fallback,
                "RUNPOLLER_MAX_POLL_INTERVAL_MS": fallback,
            }
        if name == "streamed":
            # Every run streams (RUNPOLLER_MAX_STREAMS, default 100, would poll the rest
            # until a stream is free: a capacity figure, not the latency this measures).
            return {"RUNPOLLER_MAX_STREAMS": str(max(c.modes_runs, 100))}
        return {}

    def worker_env(self, mode: Mode) -> dict[str, str]:
        c = self.config
        return self.bench.child_env(
            {
                "REDIS_URL": self.bench.redis_url,
                "ASSISTANTS_BASE_URL": self.bench.fake.base_url,
                "ASSISTANTS_API_KEY": "sk-bench-not-a-real-key",
                "RUNPOLLER_KEY_PREFIX": mode.keys.prefix,
                "RUNPOLLER_QUEUE_NAME": mode.queue,
                "RUNPOLLER_POLL_INTERVAL_MS": str(c.interval_ms),
                "RUNPOLLER_TIMEOUT_MS": str(3_600_000),
                "RUNPOLLER_HTTP_TRANSPORT": c.transport,
                "RUNPOLLER_EVENT_LOOP": c.event_loop,
                "RUNPOLLER_LOG_LEVEL": c.log_level,
                "RUNPOLLER_LOG_FORMAT": "json",
                "RUNPOLLER_METRICS_HOST": "127.0.0.1",
                "RUNPOLLER_METRICS_PORT": "0",
                **mode.env,
            }
        )

    def plan(self) -> list[str]:
        names = [m for m in modestats.MODES if m in self.config.modes]
        if "streamed" in names and not streaming_supported():
            names.remove("streamed")
            self.bench.notes.append(
                "modes: streamed skipped: this worker's Response job has no 'stream' field yet"
            )
        return names

    async def run(self) -> dict[str, Any]:
        bench = self.bench
        for name in self.plan():
            prefix = f"{bench.prefix}-{name}"
            self.modes.append(
                Mode(
                    name=name,
                    keys=Keys(prefix),
                    queue=f"{prefix}:queue",
                    client=RunpollerClient(
                        self.redis, queue_name=f"{prefix}:queue", key_prefix=prefix
                    ),
                    env=self.mode_env(name),
                    stream=name == "streamed",
                )
            )
        if not self.modes:
            return {}
        try:
            await self.start()
            return await self.measure()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ processes

    async def start(self) -> None:
        bench = self.bench
        hooks = next((m for m in self.modes if m.name == "webhooks"), None)
        if hooks is not None:
            from runpoller_dev.devredis import free_port

            self.webhook_port = free_port()
            hooks.receiver = await spawn(
                "webhooks",
                ["-m", "runpoller", "webhooks"],
                env=bench.child_env(
                    {
                        "REDIS_URL": bench.redis_url,
                        "RUNPOLLER_KEY_PREFIX": hooks.keys.prefix,
                        "RUNPOLLER_WEBHOOK_SECRETS": self.secret,
                        "RUNPOLLER_WEBHOOK_HOST": "127.0.0.1",
                        "RUNPOLLER_WEBHOOK_PORT": str(self.webhook_port),
                        "RUNPOLLER_LOG_FORMAT": "json",
                        "RUNPOLLER_LOG_LEVEL": self.config.log_level,
                    }
                ),
                log_dir=bench.log_dir,
            )
            bench.children.append(hooks.receiver)
            await self.wait_receiver(hooks.receiver)
            url = f"http://127.0.0.1:{self.webhook_port}/webhooks/openai"
            await bench.fake.post("/_fake/webhooks", {"url": url, "secret": self.secret})
        for mode in self.modes:
            mode.worker = await spawn(
                f"{mode.name}-worker",
                ["-m", "runpoller", "worker"],
                env=self.worker_env(mode),
                log_dir=bench.log_dir,
            )
            bench.children.append(mode.worker)
        await asyncio.gather(*(self.wait_registered(m) for m in self.modes))
        bench.say("modes: " + ", ".join(m.name for m in self.modes) + " up")

    async def wait_receiver(self, child: Child) -> None:
        url = f"http://127.0.0.1:{self.webhook_port}/readyz"
        deadline = time.monotonic() + 30
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as reply:
                        if reply.status == 200:
                            return
                if not child.alive:
                    raise RuntimeError(f"runpoller webhooks exited at start-up:\n{child.tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError("runpoller webhooks was not ready within 30 s")
                await asyncio.sleep(0.1)

    async def wait_registered(self, mode: Mode) -> None:
        assert mode.worker is not None
        deadline = time.monotonic() + 60
        while True:
            ids = await self.bench.cmd(1, self.redis.zrange(mode.keys.workers, 0, -1))
            if ids:
                return
            if not mode.worker.alive:
                raise RuntimeError(f"{mode.worker.name} exited at start-up:\n{mode.worker.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{mode.worker.name} did not register within 60 s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        bench = self.bench
        if any(m.receiver is not None for m in self.modes):
            with contextlib.suppress(Exception):
                await bench.fake.post("/_fake/webhooks", {"url": None})
        procs = [c for m in self.modes for c in m.procs]
        await asyncio.gather(*(c.stop() for c in procs), return_exceptions=True)
        for child in procs:
            if child in bench.children:
                bench.children.remove(child)

    # ------------------------------------------------------------------ the runs

    def cpu(self) -> dict[str, float]:
        return {m.name: sum(c.cpu() for c in m.procs) for m in self.modes}

    async def measure(self) -> dict[str, Any]:
        bench, config = self.bench, self.config
        rng = random.Random(config.seed + 16)
        lifetimes = [config.modes_mix.draw(rng) for _ in range(config.modes_runs)]
        offsets = sorted(rng.uniform(0, config.modes_arrival_s) for _ in lifetimes)
        # Idle use first: heartbeats, housekeeping and the receiver's own loop cost CPU with
        # no run at all; "above idle" takes it out.
        idle0, t0 = self.cpu(), time.monotonic()
        await asyncio.sleep(config.modes_idle_s)
        idle1, t1 = self.cpu(), time.monotonic()
        idle = {n: (idle1[n] - idle0[n]) / (t1 - t0) for n in idle1}
        bench.say(
            f"modes: {config.modes_runs} runs per mode over {config.modes_arrival_s:g} s, "
            f"mix {config.modes_mix.describe()}"
        )
        fake0 = self.bench._fake_child().cpu()
        cpu0, start, others0 = self.cpu(), time.monotonic(), await self.everyone_else()
        await self.enqueue_all(lifetimes, offsets)
        deadline = time.monotonic() + config.modes_mix.max_s + 60 + config.modes_arrival_s
        while time.monotonic() < deadline:
            if not await self.unfinished():
                break
            await asyncio.sleep(0.5)
        else:
            bench.notes.append("modes: some runs had no final event when the wait ended")
        cpu1, span, others1 = self.cpu(), time.monotonic() - start, await self.everyone_else()
        ours = sum(cpu1.values()) - sum(cpu0.values())
        clock = await bench.fake.clock_offset()
        results: dict[str, Any] = {}
        for mode in self.modes:
            figures = await self.collect(mode, clock["offset_ms"] / 1000)
            modestats.add_cpu(figures, cpu1[mode.name] - cpu0[mode.name], idle[mode.name], span)
            figures["processes"] = [c.name for c in mode.procs]
            figures["worker_env"] = mode.env
            results[mode.name] = figures
        objects = (await bench.fake.stats()).get("objects", {})
        for mode in self.modes:
            results[mode.name]["overlapping_polls"] = sum(
                int(objects.get(rid, {}).get("overlapping_polls", 0))
                for rid in mode.response_ids or ()
            )
        hooks = next((m for m in self.modes if m.name == "webhooks"), None)
        if hooks is not None:
            results["webhooks"]["deliveries"] = await self.deliveries(hooks.ends or {})
        results["_meta"] = {
            "fake_clock": clock,
            "span_s": round(span, 1),
            "runs_per_mode": config.modes_runs,
            "arrival_s": config.modes_arrival_s,
            "mix": config.modes_mix.describe(),
            "base_interval_ms": config.interval_ms,
            "streaming_supported": streaming_supported(),
            # Machine CPU (user + nice + system) not used by the modes' processes, the fake
            # server, Redis or the harness: other users of the machine, which the figures share.
            "other_processes_cores": max(others1 - others0 - ours, 0.0) / span,
            "fake_server_cores": (self.bench._fake_child().cpu() - fake0) / span,
        }
        return results

    async def everyone_else(self) -> float:
        """Machine busy seconds minus the fake's, Redis's and the harness's (see measure)."""
        info = await self.redis.info("cpu")
        redis = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        fake = self.bench._fake_child().cpu()
        return machine_busy_seconds() - redis - fake - self_cpu_seconds()

    async def enqueue_all(self, lifetimes: list[float], offsets: list[float]) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for mode in self.modes:
            mode.runs = []
        for index, (lifetime, offset) in enumerate(zip(lifetimes, offsets, strict=True)):
            delay = began + offset - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            script = response_script(lifetime)
            await asyncio.gather(*(self.enqueue(m, index, lifetime, script) for m in self.modes))

    async def enqueue(
        self, mode: Mode, index: int, lifetime: float, script: dict[str, Any]
    ) -> None:
        assert mode.runs is not None
        run_key = f"{mode.keys.prefix}.r{index}"
        mode.runs.append(ModeRun(run_key, index, lifetime, script_seconds(script)))
        job: dict[str, Any] = {
            "kind": "response",
            "id": run_key,
            "request": {
                "model": "gpt-4.1-mini",
                "input": "Benchmark question.",
                "metadata": {"fake_scenario": json.dumps(script, separators=(",", ":"))},
            },
        }
        if mode.stream:
            job["stream"] = True
        self.bench.own_commands += 4
        await mode.client.enqueue(job)

    async def unfinished(self) -> int:
        async with self.redis.pipeline(transaction=False) as pipe:
            for mode in self.modes:
                for run in mode.runs or []:
                    pipe.exists(mode.keys.result(run.run_key))
            found = await pipe.execute()
        return sum(1 for ok in found if not ok)

    async def collect(self, mode: Mode, fake_ahead_s: float) -> dict[str, Any]:
        runs = mode.runs or []
        async with self.redis.pipeline(transaction=False) as pipe:
            for run in runs:
                pipe.xrange(mode.keys.events(run.run_key), "-", "+")
            streams = await pipe.execute()
        ids = [modestats.events_of(entries)[3] for entries in streams]
        known = [i for i in ids if i]
        mode.response_ids = set(known)
        logs = await self.bench.fake.logs(known)
        mode.ends = {}
        for run, object_id in zip(runs, ids, strict=True):
            end = modestats.terminal_instant(logs.get(object_id or "", []), run.script_s)
            if object_id and end is not None:
                mode.ends[object_id] = end
        deltas: dict[str, float | None] = {}
        if mode.stream:
            replies = await asyncio.gather(
                *(self.bench.fake.get(f"/_fake/responses/{i}/stream") for i in known),
                return_exceptions=True,
            )
            for object_id, reply in zip(known, replies, strict=True):
                if isinstance(reply, dict):
                    deltas[object_id] = modestats.first_delta_at(reply)
        records = [
            modestats.run_record(
                mode.name,
                run.lifetime_s,
                run.script_s,
                entries,
                logs.get(object_id or "", []),
                fake_ahead_s,
                deltas.get(object_id or ""),
            )
            for run, entries, object_id in zip(runs, streams, ids, strict=True)
        ]
        figures = modestats.mode_figures(records, self.config.modes_mix)
        figures["response_ids_known"] = len(known)
        if mode.stream and not figures["runs_with_progress"]:
            self.bench.notes.append("modes: no streamed run wrote a progress event")
        return figures

    async def deliveries(self, ends: dict[str, float]) -> dict[str, Any]:
        """The fake's webhook deliveries: all of them (every mode's responses end with one),
        those of the webhooks mode's responses by outcome, and how long after the response
        ended the fake sent each (its 10 ms ticker, then the POST: the fake's share of the
        detection lag)."""
        log = (await self.bench.fake.get("/_fake/webhooks/log"))["deliveries"]
        statuses: dict[str, int] = {}
        sent_ms: list[float] = []
        for entry in log:
            end = ends.get(str(entry.get("response_id")))
            if end is None:
                continue
            key = str(entry.get("status"))
            statuses[key] = statuses.get(key, 0) + 1
            if entry.get("attempts") == 1 and isinstance(entry.get("sent_at"), int | float):
                sent_ms.append((float(entry["sent_at"]) - end) * 1000)
        return {
            "all_modes": len(log),
            "this_mode_by_status": statuses,
            "sent_after_end_ms": summarize(sent_ms),
        }
