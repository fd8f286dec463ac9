"""Redis I/O for the app's run control: cancel requests, and replies no run could take.

An app cancels run ``<id>`` by writing a durable request (hash ``cancel:<id>``) and an entry
on the ``cancels`` stream, in one transaction (docs/protocol.md). The stream wakes the
run's owner at once; the hash is what a worker that takes the run later (a takeover, an
intake after the request) reads when it adopts the run. A worker that does not drive the
run answers a request for an ended run in the hash itself (``cancel_ended.lua``), and
records why a reply for a run nobody drives was not applied (``reply_unapplied.lua``).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis import scripts

REPLY_STATUS_TTL_S = 24 * 3600
"""How long the status of a reply that could not be applied is kept."""


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class RunControl:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._cancel_ended = scripts.register(redis, "cancel_ended")
        self._reply_unapplied = scripts.register(redis, "reply_unapplied")

    async def cancel_request(self, run_id: str) -> str | None:
        """The app's reason when it asked to cancel the run ("" if it gave none), else None."""
        reason, requested_at = await self.redis.hmget(  # type: ignore[misc]
            self.keys.cancel(run_id), ["reason", "requested_at"]
        )
        if reason is None and requested_at is None:
            return None
        return _text(reason) if reason is not None else ""

    async def answer_cancel_of_ended(self, run_id: str) -> bool:
        """Answer a cancel request for a run that has ended (True); False when it has not."""
        done = await self._cancel_ended(
            keys=[self.keys.result(run_id), self.keys.cancel(run_id)], args=[]
        )
        return bool(done)

    async def reply_unapplied(self, entry_id: str, run_id: str, round_: int) -> bool:
        """Record why a reply for a run no worker here drives cannot be applied, when no owner
        ever will (no such run; it ended before the reply): True when recorded."""
        entry_ms = entry_id.split("-", 1)[0]
        done = await self._reply_unapplied(
            keys=[
                self.keys.run(run_id),
                self.keys.result(run_id),
                self.keys.reply_status(entry_id),
            ],
            args=[entry_ms, run_id, round_, REPLY_STATUS_TTL_S],
        )
        return bool(done)
