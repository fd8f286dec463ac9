"""The worker's long-lived background tasks, owned in one place.

Like an ``asyncio.TaskGroup`` whose scope is the worker's life (arq's start-up and shut-down
hooks open and close it, so it cannot be an ``async with``): every task is named, a task
that dies is logged at once (not when someone finally awaits it), and closing cancels and
awaits all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import structlog

log = structlog.get_logger("runpoller.worker")


class TaskSet:
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        if name in self._tasks and not self._tasks[name].done():
            coro.close()
            raise RuntimeError(f"a task named {name!r} is already running")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._done)
        return task

    def get(self, name: str) -> asyncio.Task[Any] | None:
        return self._tasks.get(name)

    def alive(self, name: str) -> bool:
        task = self._tasks.get(name)
        return task is not None and not task.done()

    async def aclose(self) -> None:
        """Cancel every task and wait for all of them to end."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @staticmethod
    def _done(task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            error = f"{type(exc).__name__}: {exc}"
            log.error("worker.task_died", task=task.get_name(), error=error)
