"""Following runs from the shell: a live progress line per run, then the final result.

``enqueue --wait``, ``follow`` and ``cancel --wait`` all show a run this way.
"""

from __future__ import annotations

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
    RequiresActionEvent,
    StatusEvent,
)
from runpoller.redis.url import connect


def describe(event: Event) -> str:
    """A short human phrase for one event."""
    if isinstance(event, AcceptedEvent):
        return "accepted"
    if isinstance(event, StatusEvent):
        return event.status
    if isinstance(event, RequiresActionEvent):
        names = ", ".join(call.name for call in event.tool_calls)
        return f"requires_action (round {event.round}: {names})"
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
        lines.append(f"  usage: {final.usage}")
    return "\n".join(lines)


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
        return print_final(await follow_run(client, run_id), as_json=as_json)
    finally:
        await redis.aclose()


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
