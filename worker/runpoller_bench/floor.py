"""The floor: a bare aiohttp loop that GETs each run at the interval and does nothing else.

``python -m runpoller_bench.floor --base-url URL --interval-ms I --runs-file FILE`` (the API
key comes from ``ASSISTANTS_API_KEY``). ``FILE`` is a JSON list of ``[thread_id, run_id]``.
One task per run: sleep a random part of the interval (to spread the first polls), then
GET, read the body, take ``status`` out of it and sleep ``interval`` — exactly the schedule
the worker's engine keeps (next poll = answer received + interval). Runs until SIGTERM.
No Redis, no decision, no logging: the least CPU a poll can cost in Python with aiohttp.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
from pathlib import Path

import aiohttp


async def _poll_forever(
    session: aiohttp.ClientSession, url: str, interval: float, errors: list[int]
) -> None:
    await asyncio.sleep(random.random() * interval)
    while True:
        try:
            async with session.get(url) as resp:
                body = await resp.read()
            json.loads(body)["status"]
        except (aiohttp.ClientError, OSError, ValueError, KeyError, TimeoutError):
            errors[0] += 1
        await asyncio.sleep(interval)


async def _main(base_url: str, interval_ms: int, runs: list[list[str]], connections: int) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    headers = {
        "Authorization": f"Bearer {os.environ.get('ASSISTANTS_API_KEY', 'sk-floor')}",
        "OpenAI-Beta": "assistants=v2",
    }
    errors = [0]
    connector = aiohttp.TCPConnector(limit=connections)
    base = base_url.rstrip("/")
    async with aiohttp.ClientSession(headers=headers, connector=connector) as session:
        tasks = [
            asyncio.create_task(
                _poll_forever(
                    session, f"{base}/threads/{thread_id}/runs/{run_id}", interval_ms / 1000, errors
                )
            )
            for thread_id, run_id in runs
        ]
        print(f"floor: polling {len(tasks)} runs", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"floor: stopped; {errors[0]} failed requests", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runpoller_bench.floor")
    parser.add_argument("--base-url", required=True, help="API base URL, ending in /v1")
    parser.add_argument("--interval-ms", type=int, required=True)
    parser.add_argument("--runs-file", required=True, help="JSON list of [thread_id, run_id]")
    parser.add_argument(
        "--connections", type=int, default=200, help="connection limit (the workers' default)"
    )
    parser.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="asyncio")
    args = parser.parse_args(argv)
    runs = json.loads(Path(args.runs_file).read_text())
    from runpoller.worker.loops import new_event_loop

    with asyncio.Runner(loop_factory=lambda: new_event_loop(args.event_loop)) as runner:
        return runner.run(_main(args.base_url, args.interval_ms, runs, args.connections))


if __name__ == "__main__":
    sys.exit(main())
