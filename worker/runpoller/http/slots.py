"""Priority HTTP slots: requests someone waits on go before routine polls."""

from __future__ import annotations

import asyncio
from collections import deque


class PrioritySemaphore:
    """A semaphore whose urgent waiters are served before routine ones (FIFO within each).

    A released slot is handed straight to the next waiter, so a newcomer cannot take it
    ahead of those already queued. Used for HTTP slots: creates, result fetches, submits and
    cancels (someone is waiting on them) go before routine polls.
    """

    def __init__(self, value: int) -> None:
        if value < 1:
            raise ValueError("a semaphore needs at least one slot")
        self._value = value
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._routine: deque[asyncio.Future[None]] = deque()
        # ``async with sem.urgent:`` / ``async with sem.routine:`` hold one slot for the block.
        self.urgent = _Slot(self, True)
        self.routine = _Slot(self, False)

    @property
    def free(self) -> int:
        return self._value

    @property
    def waiting(self) -> int:
        return sum(not w.done() for w in (*self._urgent, *self._routine))

    async def acquire(self, urgent: bool = False) -> None:
        if self._value > 0 and not self._urgent and (urgent or not self._routine):
            self._value -= 1
            return
        queue = self._urgent if urgent else self._routine
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                waiter.cancel()  # left in its queue; release() skips it
            raise

    def release(self) -> None:
        self._value += 1
        while self._value > 0:
            queue = self._urgent if self._urgent else self._routine
            if not queue:
                return
            waiter = queue.popleft()
            if not waiter.done():
                self._value -= 1
                waiter.set_result(None)


class _Slot:
    __slots__ = ("_sem", "_urgent")

    def __init__(self, sem: PrioritySemaphore, urgent: bool) -> None:
        self._sem = sem
        self._urgent = urgent

    async def __aenter__(self) -> None:
        await self._sem.acquire(self._urgent)

    async def __aexit__(self, *exc_info: object) -> None:
        self._sem.release()
