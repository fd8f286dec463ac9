"""The naive design: one arq job per poll, re-armed with ``Retry(defer=interval)``.

This is the design the arq reference (§15) arrives at when arq is the scheduler, and what
runpoller is measured against: every poll is a job (claim, lease, retry counter, result),
every request goes through httpx's default client (``httpx.AsyncClient()``, default pool).
It is configured generously so that arq's own limits do not cap it: ``max_jobs=500`` (so
``queue_read_limit`` is 2,500, above K at one poll per second) and ``poll_delay=0.1`` s (the
reference's low-lateness setting); ``max_tries`` is effectively unlimited.

``python -m runpoller_bench.naive --redis-url URL --queue Q --base-url URL --interval-ms I
--result-prefix P``; the API key comes from ``ASSISTANTS_API_KEY``. Enqueue jobs with
:func:`enqueue_polls`. A run that ends gets its body stored at ``<result-prefix><run_id>``;
tool calls are not answered (the baseline keeps polling a ``requires_action`` run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Iterable
from typing import Any

import httpx
from arq import Retry
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func

FUNCTION = "naive.poll"
TERMINAL = frozenset({"completed", "failed", "incomplete", "expired", "cancelled"})
MAX_JOBS = 500
POLL_DELAY_S = 0.1


async def poll(ctx: dict[str, Any], thread_id: str, run_id: str) -> str:
    http: httpx.AsyncClient = ctx["http"]
    interval: float = ctx["interval_s"]
    try:
        resp = await http.get(f"threads/{thread_id}/runs/{run_id}")
        resp.raise_for_status()
        status = str(resp.json()["status"])
    except (httpx.HTTPError, ValueError, KeyError):
        raise Retry(defer=interval) from None
    if status in TERMINAL:
        await ctx["redis"].set(ctx["result_prefix"] + run_id, resp.text, ex=3600)
        return status
    raise Retry(defer=interval)


def build_worker(
    *, redis_url: str, queue: str, base_url: str, interval_ms: int, result_prefix: str
) -> Worker:
    api_key = os.environ.get("ASSISTANTS_API_KEY", "sk-naive")

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["http"] = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {api_key}", "OpenAI-Beta": "assistants=v2"},
        )
        ctx["interval_s"] = interval_ms / 1000
        ctx["result_prefix"] = result_prefix

    async def shutdown(ctx: dict[str, Any]) -> None:
        http: httpx.AsyncClient | None = ctx.get("http")
        if http is not None:
            await http.aclose()

    return Worker(
        functions=[func(poll, name=FUNCTION, max_tries=1_000_000_000, timeout=30)],
        redis_settings=RedisSettings.from_dsn(redis_url),
        queue_name=queue,
        max_jobs=MAX_JOBS,
        poll_delay=POLL_DELAY_S,
        keep_result=0,
        on_startup=startup,
        on_shutdown=shutdown,
    )


async def enqueue_polls(
    redis: ArqRedis,
    queue: str,
    runs: Iterable[tuple[str, str]],
    job_prefix: str,
    *,
    concurrency: int = 16,
) -> int:
    """Enqueue the first poll of each run (job id ``<job_prefix><run_id>``); how many were new."""
    slots = asyncio.Semaphore(concurrency)

    async def one(thread_id: str, run_id: str) -> bool:
        async with slots:
            job = await redis.enqueue_job(
                FUNCTION, thread_id, run_id, _queue_name=queue, _job_id=job_prefix + run_id
            )
        return job is not None

    done = await asyncio.gather(*(one(thread_id, run_id) for thread_id, run_id in runs))
    return sum(done)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runpoller_bench.naive")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--base-url", required=True, help="API base URL, ending in /v1")
    parser.add_argument("--interval-ms", type=int, required=True)
    parser.add_argument("--result-prefix", required=True)
    args = parser.parse_args(argv)
    worker = build_worker(
        redis_url=args.redis_url,
        queue=args.queue,
        base_url=args.base_url,
        interval_ms=args.interval_ms,
        result_prefix=args.result_prefix,
    )
    print(f"naive: arq worker on {args.queue}", flush=True)
    worker.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
