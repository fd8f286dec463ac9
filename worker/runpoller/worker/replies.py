"""The app's replies and cancel requests, and the cluster's control messages, read as they land.

One task per worker blocks on the four streams at once: a reply wakes the run waiting for
it; a cancel request goes to the run's driver; a webhook's wake-up makes the run following
that object poll now (a run with no owner polls when it is resumed anyway); a control
message (a 429 pause) goes to the rate limiter. A run taken over in the middle of a tool
round gets the replies that arrived since the round was asked, replayed from the stream; a
run adopted after a cancel request finds it in the run's durable request (see admission).

What no worker here drives is answered in Redis when no owner ever will (``RunControl``): a
reply for a run that does not exist or had ended gets a reply status; a cancel for a run
that has ended is answered in its request. A run in flight elsewhere is its owner's.

The read never starts from ``$``: that means "after whatever is last when this very call
arrives", so an entry written between two calls (while the worker was stalled, busy, or
reconnecting) would be skipped. The listener records each stream's position once, before its
first read (:meth:`RepliesListener.positions`), and from then on reads after the last entry
it has read, through read errors and reconnects alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from runpoller import engine
from runpoller.protocol import Keys, ParsedReply, parse_reply
from runpoller.redis.control import RunControl
from runpoller.redis.store import RunStore
from runpoller.worker.driver import Runner
from runpoller.worker.ratelimit import RateLimiter

log = structlog.get_logger("runpoller.worker")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(fields: dict[Any, Any], name: str) -> str | None:
    """A stream entry's field as text (None when absent), whether or not the client decodes."""
    value = fields.get(name.encode(), fields.get(name))
    return None if value is None else _text(value)


class RepliesListener:
    def __init__(
        self,
        store: RunStore,
        keys: Keys,
        runner: Runner,
        limiter: RateLimiter,
        control: RunControl | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.runner = runner
        self.limiter = limiter
        self.control = control or RunControl(store.redis, keys)
        self.cursors: dict[str, str] | None = None
        """Stream -> the id after which the next read starts; None until first recorded."""
        self._positioning = asyncio.Lock()
        self.retry_s = 1.0
        """The pause after a failed read (Redis down) before the next try."""

    async def positions(self) -> dict[str, str]:
        """The read's cursors, recorded once (the streams' last ids, ``0-0`` if empty or missing).

        Entries already in a stream when the worker starts are not replayed (a run adopted
        later replays its own round with :meth:`replay`); every entry written after is read,
        and a stream created later is read from its first entry.
        """
        if self.cursors is None:
            async with self._positioning:
                if self.cursors is None:
                    self.cursors = await self.store.stream_positions(
                        [
                            self.keys.replies,
                            self.keys.control,
                            self.keys.cancels,
                            self.keys.wakes,
                        ]
                    )
        return self.cursors

    async def listen(self) -> None:
        """Wake runs waiting for tool outputs the moment the app's reply lands."""
        while True:
            try:
                cursors = await self.positions()
                reply = await self.store.read_inbox(cursors, block_ms=1000, count=500)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replies.read_failed", error=type(exc).__name__)
                await asyncio.sleep(self.retry_s)
                continue
            for stream, entries in reply or []:
                name = _text(stream)
                for entry_id, fields in entries:
                    cursors[name] = _text(entry_id)
                    try:
                        await self.handle(name, cursors[name], fields)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # one bad entry must not end the listener
                        log.warning(
                            "replies.entry_failed",
                            stream=name,
                            entry_id=cursors[name],
                            error=type(exc).__name__,
                        )

    async def handle(self, stream: str, entry_id: str, fields: dict[Any, Any]) -> None:
        if stream == self.keys.control:
            data = _field(fields, "data")
            if data is not None:
                self.limiter.on_control(data)
        elif stream == self.keys.cancels:
            await self.cancel(fields)
        elif stream == self.keys.wakes:
            self.wake(fields)
        else:
            await self.deliver(fields, entry_id)

    async def deliver(self, fields: dict[Any, Any], entry_id: str = "") -> None:
        reply = parse_reply(fields, entry_id)
        if reply is None:
            log.warning("reply.unroutable", entry_id=entry_id, why="no run_id or round")
            return
        if not self.runner.deliver_reply(reply) and entry_id:
            await self._unapplied(reply)

    async def _unapplied(self, reply: ParsedReply) -> None:
        if await self.control.reply_unapplied(reply.entry_id, reply.run_id, reply.round):
            log.info("reply.unapplied", run_id=reply.run_id, entry_id=reply.entry_id)

    def wake(self, fields: dict[Any, Any]) -> None:
        """A webhook said an object changed: the run here that follows it polls now."""
        object_id = _field(fields, "object_id")
        if object_id is None:
            return
        result = self.runner.wake_object(object_id)
        self.runner.metrics.wakes.labels(result).inc()
        if result == "woken":
            log.info("run.woken", object_id=object_id)

    async def cancel(self, fields: dict[Any, Any]) -> None:
        """The app asked to cancel a run: its driver's, if here; else answered if it ended."""
        run_id = _field(fields, "run_id")
        if run_id is None:
            log.warning("cancel.unroutable", why="no run_id")
            return
        reason = _field(fields, "reason") or ""
        if self.runner.request_cancel(run_id, reason):
            log.info("run.cancel_requested", run_id=run_id, reason=reason)
        elif await self.control.answer_cancel_of_ended(run_id):
            log.info("cancel.run_already_ended", run_id=run_id)

    async def replay(self, run_id: str, state: engine.RunState) -> None:
        """After a takeover mid-round, deliver replies that arrived since the round was asked.

        Which of them answer the current round is the engine's call (``engine.on_reply``), as
        for a reply delivered live.
        """
        if state.phase is not engine.Phase.AWAITING_OUTPUTS:
            return
        # The live read's start is recorded before this read, so between the two no reply
        # falls through (one read by both is delivered twice; the engine drops the second).
        await self.positions()
        since = f"{int(state.phase_since * 1000)}-0"
        for entry_id, fields in await self.store.replies_since(since, count=10_000):
            reply = parse_reply(fields, entry_id)
            if reply is not None and reply.run_id == run_id:
                self.runner.deliver_reply(reply)
