"""Following runs from the shell: a live progress line per run, then the final result."""

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

    def __init__(self, out: TextIO = sys.stderr) -> None:
        self.out = out
        self.tty = out.isatty()
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
    redis: Redis = Redis.from_url(settings.redis_url)
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
        progress = ProgressLine()
        final: FinalEvent | None = None
        async for item in client.events(run_id):
            progress.show(run_id, describe(item.event))
            if isinstance(item.event, FinalEvent):
                final = item.event
        progress.done()
        assert final is not None
        if as_json:
            print(final.model_dump_json())
        else:
            print(format_final(final))
        return 0 if final.status == "completed" else 1
    finally:
        await redis.aclose()
