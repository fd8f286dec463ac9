"""``python -m runpoller_bench.intake``: how fast one worker takes runs in, idle and loaded.

The capacity size of ``make bench`` showed intake binding (a worker polling thousands of runs
took new ones at ~40/s): this measures just that, in a minute or two, so a change to intake
can be judged without the whole benchmark. One fake OpenAI server and one worker (children
of this process, as the benchmark starts them), a key prefix and queue of their own in the
given Redis. Each step enqueues a burst of never-ending runs at once (a pipeline) and times
it until the worker's owned set holds them all (the claim script adds each run there):

- ``idle``: ``--runs`` runs into a worker holding none;
- ``loaded``: ``--load`` runs first (at ``--interval-ms``, polled for the rest of the test),
  then ``--runs`` more, timed alone.

The worker's CPU over each burst is read from ``/proc``; ``--profile STEP`` runs py-spy on
the worker during that step (a speedscope file in ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import Keys
from runpoller_bench.fakectl import FakeControl
from runpoller_bench.harness import API_KEY, ENV_PREFIXES, _free_port
from runpoller_bench.mix import NEVER_ENDING_SCRIPT
from runpoller_bench.procs import Child, spawn


async def _enqueue_all(client: RunpollerClient, jobs: list[dict[str, Any]]) -> None:
    slots = asyncio.Semaphore(64)

    async def one(job: dict[str, Any]) -> None:
        async with slots:
            await client.enqueue(job)

    await asyncio.gather(*(one(j) for j in jobs))


async def _create(fake: FakeControl, n: int, prefix: str) -> list[dict[str, Any]]:
    pairs = await asyncio.gather(*(fake.create_run(NEVER_ENDING_SCRIPT) for _ in range(n)))
    return [
        {"id": f"{prefix}.{run_id}", "kind": "assistants_run", "thread_id": t, "run_id": run_id}
        for t, run_id in pairs
    ]


async def _count(redis: Redis, key: str) -> int:
    return int(await redis.scard(key))  # type: ignore[misc]


async def _trickle(fake: FakeControl, client: RunpollerClient, n: int, prefix: str) -> None:
    """Create and enqueue ``n`` runs 16 at a time, each created then enqueued, as the
    benchmark's ramp does (``OursPhase.create``): arrivals paced by the fake server."""
    slots = asyncio.Semaphore(16)

    async def one() -> None:
        async with slots:
            [job] = await _create(fake, 1, prefix)
            await client.enqueue(job)

    await asyncio.gather(*(one() for _ in range(n)))


async def _burst(
    redis: Redis,
    client: RunpollerClient,
    owned_key: str,
    jobs: list[dict[str, Any]] | int,
    worker: Child,
    timeout_s: float,
    fake: FakeControl,
    prefix: str,
) -> dict[str, float]:
    """Enqueue ``jobs`` (or create and enqueue that many, paced as the benchmark does) and
    wait until the worker owns them all: rate and CPU per run."""
    before = await _count(redis, owned_key)
    want = before + (jobs if isinstance(jobs, int) else len(jobs))
    cpu0, t0 = worker.cpu(), time.monotonic()
    if isinstance(jobs, int):
        await _trickle(fake, client, jobs, prefix)
    else:
        await _enqueue_all(client, jobs)
    enqueued_s = time.monotonic() - t0
    held = before
    while held < want and time.monotonic() - t0 < timeout_s:
        await asyncio.sleep(0.05)
        held = await _count(redis, owned_key)
    elapsed = time.monotonic() - t0
    taken = held - before
    cpu = worker.cpu() - cpu0
    return {
        "runs": want - before,
        "taken": taken,
        "seconds": round(elapsed, 3),
        "enqueue_s": round(enqueued_s, 3),
        "runs_per_s": round(taken / elapsed, 1),
        "worker_cpu_ms_per_run": round(1000 * cpu / max(taken, 1), 3),
        "worker_cores": round(cpu / elapsed, 2),
    }


async def main(args: argparse.Namespace, out: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    prefix, queue = f"ib{tag}", f"arq:queue:ib{tag}"
    redis = Redis.from_url(args.redis_url)
    keys = Keys(prefix)
    client = RunpollerClient(redis, queue_name=queue, key_prefix=prefix)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    base_env.pop("REDIS_URL", None)
    children: list[Child] = []
    port = _free_port()
    fake_proc = await spawn(
        "fake-openai",
        ["-m", "runpoller", "fake-openai", "--port", str(port)],
        env=base_env,
        log_dir=out,
    )
    children.append(fake_proc)
    fake = FakeControl(f"http://127.0.0.1:{port}")
    results: dict[str, Any] = {"prefix": prefix}
    try:
        await fake.wait_ready()
        env = {
            **base_env,
            **({"PYTHONPATH": args.worker_pythonpath} if args.worker_pythonpath else {}),
            "REDIS_URL": args.redis_url,
            "ASSISTANTS_BASE_URL": fake.base_url,
            "ASSISTANTS_API_KEY": API_KEY,
            "RUNPOLLER_KEY_PREFIX": prefix,
            "RUNPOLLER_QUEUE_NAME": queue,
            "RUNPOLLER_POLL_INTERVAL_MS": str(args.interval_ms),
            "RUNPOLLER_TIMEOUT_MS": "3600000",
            "RUNPOLLER_MAX_RUNS_PER_WORKER": str(2 * (args.runs * 2 + args.load) + 10_000),
            "RUNPOLLER_LOG_LEVEL": "info",
            "RUNPOLLER_LOG_FORMAT": "json",
            "RUNPOLLER_METRICS_HOST": "127.0.0.1",
            "RUNPOLLER_METRICS_PORT": "0",
        }
        worker = await spawn("worker", ["-m", "runpoller", "worker"], env=env, log_dir=out)
        children.append(worker)
        wid = ""
        deadline = time.monotonic() + 60
        while not wid:
            for item in await redis.zrange(keys.workers, 0, -1):
                text = item.decode()
                if f"-{worker.pid}-" in text:
                    wid = text
            if time.monotonic() > deadline or not worker.alive:
                raise RuntimeError(f"worker did not register:\n{worker.tail()}")
            await asyncio.sleep(0.1)
        owned = keys.owned(wid)
        print(f"intake bench: worker {worker.pid} ({wid}), logs in {out}", file=sys.stderr)
        steps = [("idle", args.runs, 0), ("loaded", args.runs, args.load)]
        if args.trickle:
            steps.append(("loaded_trickle", args.runs, 0))
        for name, n, load in steps:
            if load:
                jobs = await _create(fake, load, prefix)
                fill = await _burst(
                    redis, client, owned, jobs, worker, args.timeout_s, fake, prefix
                )
                results["load_fill"] = fill
                print(f"  load of {load}: {fill}", file=sys.stderr)
                await asyncio.sleep(args.settle_s)
            t0 = time.monotonic()
            burst: list[dict[str, Any]] | int = n
            if name != "loaded_trickle":
                burst = await _create(fake, n, prefix)
            results[f"{name}_create_s"] = round(time.monotonic() - t0, 3)
            spy = None
            if name == args.profile:
                spy = await asyncio.create_subprocess_exec(
                    args.py_spy,
                    "record",
                    "-p",
                    str(worker.pid),
                    "-r",
                    "200",
                    "--nonblocking",
                    "--format",
                    "speedscope",
                    "-o",
                    str(out / f"intake-{name}.speedscope.json"),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                await asyncio.sleep(1.0)
            results[name] = await _burst(
                redis, client, owned, burst, worker, args.timeout_s, fake, prefix
            )
            print(f"  {name}: {results[name]}", file=sys.stderr)
            if spy is not None:
                spy.send_signal(2)
                await spy.wait()
            await asyncio.sleep(args.settle_s)
    finally:
        for child in reversed(children):
            with contextlib.suppress(Exception):
                await child.stop()
        await fake.close()
        deleted = 0
        for pattern in (f"{prefix}*", f"arq:*{prefix}*"):
            batch = [k async for k in redis.scan_iter(match=pattern, count=1000)]
            for i in range(0, len(batch), 500):
                deleted += int(await redis.unlink(*batch[i : i + 500]))
        await redis.aclose()
    return results


def cli(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runpoller_bench.intake", description=__doc__)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--runs", type=int, default=2000, help="runs per timed burst")
    p.add_argument("--load", type=int, default=6000, help="runs held before the loaded burst")
    p.add_argument("--interval-ms", type=int, default=5000, help="poll interval of every run")
    p.add_argument("--timeout-s", type=float, default=300.0)
    p.add_argument("--settle-s", type=float, default=3.0)
    p.add_argument(
        "--trickle",
        action="store_true",
        help="a last loaded burst created and enqueued 16 at a time, as make bench's ramp",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="STEP",
        help="py-spy the worker during this step (idle, loaded, loaded_trickle)",
    )
    p.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    p.add_argument(
        "--worker-pythonpath",
        default=None,
        help="PYTHONPATH of the worker only (another checkout's worker/: a baseline)",
    )
    p.add_argument("--out", default=None, help="directory for logs and profiles")
    args = p.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="intake-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    results = asyncio.run(main(args, out))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(cli())
