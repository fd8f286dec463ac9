"""The app's replies (tool outputs) and the cluster's control messages, read as they land.

One task per worker blocks on both streams at once: a reply wakes the run waiting for it;
a control message (a 429 pause) goes to the rate limiter. A run taken over in the middle of
a tool round gets the replies that arrived since the round was asked, replayed from the
stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from runpoller import engine
from runpoller.protocol import Keys, parse_reply
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner
from runpoller.worker.ratelimit import RateLimiter

log = structlog.get_logger("runpoller.worker")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RepliesListener:
    def __init__(self, store: RunStore, keys: Keys, runner: Runner, limiter: RateLimiter) -> None:
        self.store = store
        self.keys = keys
        self.runner = runner
        self.limiter = limiter

    async def listen(self) -> None:
        """Wake runs waiting for tool outputs the moment the app's reply lands."""
        cursors: dict[str, str] = {self.keys.replies: "$", self.keys.control: "$"}
        while True:
            try:
                reply = await self.store.read_inbox(cursors, block_ms=1000, count=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replies.read_failed", error=type(exc).__name__)
                await asyncio.sleep(1)
                continue
            for stream, entries in reply or []:
                name = _text(stream)
                for entry_id, fields in entries:
                    cursors[name] = _text(entry_id)
                    if name == self.keys.control:
                        data = fields.get(b"data", fields.get("data"))
                        if data is not None:
                            self.limiter.on_control(_text(data))
                    else:
                        self.deliver(fields)

    def deliver(self, fields: dict[Any, Any]) -> None:
        reply = parse_reply(fields)
        if reply is not None:
            self.runner.deliver_reply(reply)

    async def replay(self, run_id: str, state: engine.RunState) -> None:
        """After a takeover mid-round, deliver replies that arrived since the round was asked.

        Which of them answer the current round is the engine's call (``engine.on_reply``), as
        for a reply delivered live.
        """
        if state.phase is not engine.Phase.AWAITING_OUTPUTS:
            return
        since = f"{int(state.phase_since * 1000)}-0"
        for _entry_id, fields in await self.store.replies_since(since, count=10_000):
            reply = parse_reply(fields)
            if reply is not None and reply.run_id == run_id:
                self.runner.deliver_reply(reply)
