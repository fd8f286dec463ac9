"""``python -m runpoller_bench.dashboard``: the dashboard's answer times on a big cluster.

Seeds a private key prefix (default: 10,000 runs in flight over 10 workers, 100,000 ended
runs, two hours of outcome counters, dead letters, 429 pauses) in the Redis at
``REDIS_URL`` (database ``--db``), serves a dashboard on it in this process and times its
JSON endpoints over HTTP: the overview (the page that must answer in 200 ms), a page of
runs in flight, a page of ended runs and one run. The phase census (what the overview's
split by phase costs Redis, done in the background at most every 5 s) is timed alone.
Every key it wrote is deleted at the end (by name: no scan).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from typing import Any

import httpx
from redis.asyncio import Redis

from runpoller.config import load_settings
from runpoller.dashboard import census
from runpoller.dashboard.server import start, stop
from runpoller.protocol import Keys

BATCH = 2000
FILTERED = "/api/runs?backend=assistants_run&meta=user%3Duser-7"


def _state(i: int, now_s: float) -> str:
    """A run's state as the engine writes it (its fields, realistic sizes)."""
    phase = ("polling", "polling", "polling", "awaiting_outputs", "cancelling")[i % 5]
    return json.dumps(
        {
            "deadline": now_s + 600, "interval": 1.0, "object_id": f"run_{i:024x}",
            "phase": phase, "phase_since": now_s - 5, "cancel_reason": None,
            "cancel_detail": "", "cancel_sent": False, "last_status": "in_progress",
            "round": 1 if phase == "awaiting_outputs" else 0,
            "pending_calls": [f"call_{i:024x}"] if phase == "awaiting_outputs" else [],
            "outputs_deadline": None, "failures": 0, "checked": True,
            "object_ids": [f"run_{i:024x}"], "cancellable": True, "answer_creates": False,
            "sending": "", "accepted_at": now_s - 30, "unknown_status": "",
        },
        separators=(",", ":"),
    )  # fmt: skip


def _job(i: int) -> str:
    return json.dumps(
        {
            "kind": "assistants_run", "thread_id": f"thread_{i:024x}",
            "run_id": f"run_{i:024x}", "api_key": "enc:v1:k1:" + "A" * 80,
            "metadata": {"user": f"user-{i % 500}", "conversation": f"conv-{i}"},
        }
    )  # fmt: skip


def _final(i: int, now_ms: int) -> str:
    status = "completed" if i % 20 else "failed"
    return json.dumps(
        {
            "run_id": f"ended-{i}", "ts": now_ms - i, "type": "final", "kind": "assistants_run",
            "status": status, "api_status": status, "reason": "the run completed",
            "output_text": "It is sunny in Paris. " * 8, "model": "gpt-4o",
            "usage": {"prompt_tokens": 60, "completion_tokens": 9, "total_tokens": 69},
            "metadata": {"user": f"user-{i % 500}"},
        }
    )  # fmt: skip


async def seed(redis: Redis, keys: Keys, *, active: int, ended: int, workers: int) -> list[str]:
    """Write the cluster; returns every key written."""
    now_s = time.time()
    now_ms = int(now_s * 1000)
    written: list[str] = []
    worker_ids = [f"bench-worker-{w}" for w in range(workers)]
    for first in range(0, active, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(first, min(first + BATCH, active)):
                run_id, owner = f"active-{i}", worker_ids[i % workers]
                mapping = {"state": _state(i, now_s), "owner": owner, "job": _job(i)}
                pipe.hset(keys.run(run_id), mapping=mapping)
                pipe.zadd(keys.runs_active, {run_id: now_ms - 30_000 - i})
                pipe.sadd(keys.owned(owner), run_id)
                written.append(keys.run(run_id))
            await pipe.execute()
    for first in range(0, ended, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            members = {}
            for i in range(first, min(first + BATCH, ended)):
                pipe.set(keys.result(f"ended-{i}"), _final(i, now_ms), ex=3600)
                members[f"ended-{i}"] = now_ms - i * 50
                written.append(keys.result(f"ended-{i}"))
            pipe.zadd(keys.runs_ended, members)
            await pipe.execute()
    async with redis.pipeline(transaction=False) as pipe:
        for w, owner in enumerate(worker_ids):
            beat = {"ts": now_ms, "in_flight": active // workers + (w < active % workers)}
            pipe.set(keys.heartbeat(owner), json.dumps(beat), px=60_000)
            pipe.zadd(keys.workers, {owner: now_ms})
            written += [keys.heartbeat(owner), keys.owned(owner)]
        minute = now_ms // 60_000
        for m in range(minute - 119, minute + 1):
            pipe.hset(keys.outcomes(m), mapping={"completed": 800, "failed": 30, "error": 3})
            pipe.expire(keys.outcomes(m), 7200)
            written.append(keys.outcomes(m))
        for n in range(200):
            data = {"type": "pause", "kid": "k1", "until": now_s + 1}
            pipe.xadd(keys.control, {"data": json.dumps(data)})
            reason = f"job {n} is not JSON"
            letter = {"reason": reason, "ts": now_ms, "raw": "not json"}
            pipe.xadd(keys.dead_letters, {"data": json.dumps(letter)})
        written += [keys.runs_active, keys.runs_ended, keys.workers, keys.control]
        written += [keys.dead_letters]
        await pipe.execute()
    return written


async def _time(http: httpx.AsyncClient, path: str, n: int) -> dict[str, Any]:
    times = []
    size = 0
    for _ in range(n):
        t0 = time.perf_counter()
        response = await http.get(path)
        times.append((time.perf_counter() - t0) * 1000)
        response.raise_for_status()
        size = len(response.content)
    times.sort()
    return {
        "path": path,
        "n": n,
        "p50_ms": round(statistics.median(times), 1),
        "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
        "max_ms": round(times[-1], 1),
        "bytes": size,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    prefix = f"rpbench-dash-{uuid.uuid4().hex[:8]}"
    base = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0").rsplit("/", 1)[0]
    url = f"{base}/{args.db}"
    settings, _ = load_settings(redis_url=url, key_prefix=prefix, queue_name=f"{prefix}:queue")
    redis: Redis = Redis.from_url(url)
    keys = Keys(prefix)
    written: list[str] = []
    try:
        t0 = time.perf_counter()
        written = await seed(redis, keys, active=args.active, ended=args.ended, workers=10)
        seeded_s = time.perf_counter() - t0
        took = [(await census.take(redis, keys)).took_ms for _ in range(5)]
        runner, dash_redis, base_url = await start(settings, host="127.0.0.1", port=0, token=None)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
                cold = await _time(http, "/api/overview", 1)
                results = [
                    await _time(http, "/api/overview", args.n),
                    await _time(http, "/api/runs?status=in_flight&limit=50", args.n // 4),
                    await _time(http, "/api/runs?status=ended&limit=50", args.n // 4),
                    await _time(http, FILTERED, args.n // 4),
                    await _time(http, "/api/runs/active-3", args.n // 4),
                ]
        finally:
            await stop(runner, dash_redis)
        return {
            "active": args.active,
            "ended": args.ended,
            "seeded_s": round(seeded_s, 1),
            "census_ms": sorted(took),
            "overview_cold_ms": cold["p50_ms"],
            "endpoints": results,
        }
    finally:
        for start_at in range(0, len(written), 5000):
            await redis.delete(*written[start_at : start_at + 5000])
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runpoller_bench.dashboard")
    parser.add_argument("--active", type=int, default=10_000)
    parser.add_argument("--ended", type=int, default=100_000)
    parser.add_argument("-n", type=int, default=200, help="requests per endpoint (overview)")
    parser.add_argument("--db", type=int, default=13, help="Redis database number (13)")
    args = parser.parse_args(argv)
    out = asyncio.run(run(args))
    print(f"dashboard bench: {out['active']} runs in flight, {out['ended']} ended")
    print(f"  seeded in {out['seeded_s']} s; census (alone) {out['census_ms']} ms")
    cold = out["overview_cold_ms"]
    print(f"  overview, first request (no census finished yet): {cold} ms")
    print(f"  {'endpoint':<52} {'n':>4} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'bytes':>7}")
    for r in out["endpoints"]:
        print(
            f"  {r['path']:<52} {r['n']:>4} {r['p50_ms']:>7} {r['p99_ms']:>7} "
            f"{r['max_ms']:>7} {r['bytes']:>7}"
        )
    print(json.dumps(out), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
