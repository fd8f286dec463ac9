"""The sdk design: what a Python developer writes without runpoller, with the official SDK.

``python -m runpoller_bench.sdk --base-url URL --interval-ms I --runs-file FILE`` (the API
key comes from ``ASSISTANTS_API_KEY``). ``FILE`` is a JSON list; an entry
``[thread_id, run_id]`` is an Assistants run, polled with
``client.beta.threads.runs.retrieve``; an entry ``[response_id]`` is a background Response,
polled with ``client.responses.retrieve``. One ``AsyncOpenAI`` client for the process (its
defaults: httpx pool, retries, timeouts), one task per run: sleep a random part of the
interval (to spread the first polls), then retrieve, read ``status`` from the typed model and
sleep ``interval`` — the floor's schedule, so the two differ only in what a poll costs.
Runs until SIGTERM. No Redis, no decision.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import openai
from openai import AsyncOpenAI

Retrieve = Callable[[], Awaitable[Any]]


def retriever(client: AsyncOpenAI, entry: list[str]) -> Retrieve:
    """The SDK call that polls one entry of the runs file (see the module's docstring)."""
    if len(entry) == 2:
        thread_id, run_id = entry
        runs = client.beta.threads.runs
        return lambda: runs.retrieve(run_id, thread_id=thread_id)
    if len(entry) == 1:
        (response_id,) = entry
        return lambda: client.responses.retrieve(response_id)
    raise ValueError(f"runs file entry {entry!r}: want [thread_id, run_id] or [response_id]")


async def _poll_forever(retrieve: Retrieve, interval: float, counts: dict[str, int]) -> None:
    await asyncio.sleep(random.random() * interval)
    while True:
        try:
            obj = await retrieve()
            counts[str(obj.status)] = counts.get(str(obj.status), 0) + 1
        except openai.OpenAIError:
            counts["error"] = counts.get("error", 0) + 1
        await asyncio.sleep(interval)


async def _main(base_url: str, interval_ms: int, runs: list[list[str]]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    counts: dict[str, int] = {}
    async with AsyncOpenAI(
        api_key=os.environ.get("ASSISTANTS_API_KEY", "sk-sdk"), base_url=base_url
    ) as client:
        retrieves = [retriever(client, entry) for entry in runs]
        tasks = [
            asyncio.create_task(_poll_forever(r, interval_ms / 1000, counts)) for r in retrieves
        ]
        print(f"sdk: polling {len(tasks)} runs with openai {openai.__version__}", flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    print(f"sdk: stopped; answers by status {json.dumps(counts, sort_keys=True)}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runpoller_bench.sdk")
    parser.add_argument("--base-url", required=True, help="API base URL, ending in /v1")
    parser.add_argument("--interval-ms", type=int, required=True)
    parser.add_argument("--runs-file", required=True, help="JSON list of runs (see --help)")
    parser.add_argument("--event-loop", choices=["auto", "uvloop", "asyncio"], default="asyncio")
    args = parser.parse_args(argv)
    # The SDK warns on every Assistants call that the API is deprecated: not this bench's news.
    warnings.simplefilter("ignore", DeprecationWarning)
    runs = json.loads(Path(args.runs_file).read_text())
    from runpoller.worker.loops import new_event_loop

    with asyncio.Runner(loop_factory=lambda: new_event_loop(args.event_loop)) as runner:
        return runner.run(_main(args.base_url, args.interval_ms, runs))


if __name__ == "__main__":
    sys.exit(main())
