"""Following runs from the shell: a live progress line per run, then the final result.

``enqueue --wait``, ``follow`` and ``cancel --wait`` all show a run this way.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any, TextIO

from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.config import Settings
from runpoller.protocol import (
    AcceptedEvent,
    Event,
    FinalEvent,
    Keys,
    ProgressEvent,
    RequiresActionEvent,
    StatusEvent,
)
from runpoller.redis.url import connect
from runpoller.redis.url import mask as mask_url


def describe(event: Event) -> str:
    """A short human phrase for one event."""
    if isinstance(event, AcceptedEvent):
        return "accepted"
    if isinstance(event, StatusEvent):
        return event.status
    if isinstance(event, RequiresActionEvent):
        names = ", ".join(call.name for call in event.tool_calls)
        return f"requires_action (round {event.round}: {names})"
    if isinstance(event, ProgressEvent):
        return f"writing: …{event.delta[-60:]}"
    if isinstance(event, FinalEvent):
        return f"{event.status.upper()}: {event.reason}"
    return getattr(event, "type", "?")


def format_final(final: FinalEvent) -> str:
    lines = [f"{final.run_id}: {final.status} — {final.reason}"]
    if final.output_text:
        lines.append(f"  output: {final.output_text}")
    if final.error:
        lines.append(f"  error: {final.error.code}: {final.error.message}")
    if final.usage:
        lines.append(f"  usage: {format_usage(final.usage)}")
    return "\n".join(lines)


_USAGE_PARTS = (
    ("prompt_tokens", "prompt"),
    ("input_tokens", "input"),
    ("completion_tokens", "completion"),
    ("output_tokens", "output"),
)


def format_usage(usage: dict[str, Any]) -> str:
    """``10 prompt + 7 completion = 17 tokens`` (other numbers after, as ``name 3``)."""
    done = {"total_tokens"}
    parts = []
    for key, label in _USAGE_PARTS:
        if isinstance(usage.get(key), int):
            parts.append(f"{usage[key]} {label}")
            done.add(key)
    text = " + ".join(parts)
    total = usage.get("total_tokens")
    if isinstance(total, int):
        text = f"{text} = {total} tokens" if text else f"{total} tokens"
    extra = [f"{k} {v}" for k, v in usage.items() if k not in done and isinstance(v, int | float)]
    return ", ".join([p for p in (text, *extra) if p]) or "-"


class ProgressLine:
    """One line rewritten in place on a TTY; plain appended lines otherwise."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr  # stderr now, not at import (a test may have replaced it)
        self.tty = self.out.isatty()
        self.started = time.monotonic()

    def show(self, run_id: str, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[{elapsed:6.1f}s] {run_id}: {text}"
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


async def enqueue_and_follow(
    settings: Settings, job: dict[str, Any], *, wait: bool, as_json: bool
) -> int:
    redis: Redis = connect(settings.redis_url, socket_connect_timeout=3)
    try:
        client = RunpollerClient(
            redis,
            queue_name=settings.queue_name,
            key_prefix=settings.key_prefix,
            secret_keys=settings.secret_keys.get_secret_value() if settings.secret_keys else None,
        )
        run_id = await client.enqueue(job)
        if not wait:
            print(run_id)
            return 0
        watch = asyncio.create_task(_warn_without_workers(redis, settings))
        try:
            return print_final(await follow_run(client, run_id), as_json=as_json)
        except (asyncio.CancelledError, KeyboardInterrupt):
            print(
                f"\nrunpoller enqueue: stopped following {run_id}; the run goes on "
                f"(runpoller follow {run_id} to watch it again, runpoller cancel {run_id} to "
                "stop it)",
                file=sys.stderr,
            )
            raise
        finally:
            watch.cancel()
    finally:
        await redis.aclose()


NO_WORKER_AFTER_S = 3.0


async def live_workers(redis: Redis, settings: Settings) -> int:
    """Workers under the key prefix whose heartbeat lives."""
    keys = Keys(settings.key_prefix)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in await redis.hkeys(keys.workers)]  # type: ignore[misc]
    if not ids:
        return 0
    return int(await redis.exists(*(keys.heartbeat(i) for i in ids)))


async def _warn_without_workers(redis: Redis, settings: Settings) -> None:
    """One line when no live worker could take the run: it would wait in silence."""
    await asyncio.sleep(NO_WORKER_AFTER_S)
    if await live_workers(redis, settings) == 0:
        print(
            f"runpoller enqueue: no live worker under prefix {settings.key_prefix!r} "
            f"(RUNPOLLER_KEY_PREFIX) on {mask_url(settings.redis_url)}: the run waits on "
            f"{settings.queue_name!r} until one starts (runpoller worker)",
            file=sys.stderr,
        )


async def follow_run(
    client: RunpollerClient, run_id: str, *, progress: ProgressLine | None = None
) -> FinalEvent:
    """Show each of the run's events (from its first) on a progress line until the final
    one, and return it. Waits as long as it takes: a run not yet taken has no events yet."""
    progress = progress or ProgressLine()
    async for item in client.events(run_id):
        progress.show(run_id, describe(item.event))
        if isinstance(item.event, FinalEvent):
            progress.done()
            return item.event
    raise RuntimeError("event stream ended without a final event")


def print_final(final: FinalEvent, *, as_json: bool) -> int:
    """Print the final event (text, or one JSON object); the exit code of ``--wait``: 0 for
    a completed run, else 1."""
    print(final.model_dump_json() if as_json else format_final(final))
    return 0 if final.status == "completed" else 1
