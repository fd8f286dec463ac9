"""The worker's background tasks: named, logged when they die, all ended by aclose()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from runpoller.worker import tasks as tasks_module
from runpoller.worker.tasks import TaskSet


async def test_aclose_cancels_and_awaits_every_task() -> None:
    tasks = TaskSet()
    stopped: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            stopped.append(name)

    tasks.spawn(forever("a"), name="a")
    tasks.spawn(forever("b"), name="b")
    await asyncio.sleep(0)
    assert tasks.alive("a") and tasks.alive("b")
    await tasks.aclose()
    assert sorted(stopped) == ["a", "b"]
    assert not tasks.alive("a")


async def test_a_task_that_dies_is_logged_at_once_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[dict[str, Any]] = []

    class Recorder:
        def error(self, event: str, **fields: Any) -> None:
            errors.append({"event": event, **fields})

    monkeypatch.setattr(tasks_module, "log", Recorder())
    tasks = TaskSet()

    async def broken() -> None:
        raise RuntimeError("boom")

    tasks.spawn(broken(), name="housekeeping")
    await asyncio.sleep(0.01)
    assert not tasks.alive("housekeeping")
    assert errors == [
        {"event": "worker.task_died", "task": "housekeeping", "error": "RuntimeError: boom"}
    ]
    await tasks.aclose()


async def test_two_live_tasks_cannot_share_a_name() -> None:
    tasks = TaskSet()
    tasks.spawn(asyncio.sleep(3600), name="replies")
    with pytest.raises(RuntimeError, match="already running"):
        tasks.spawn(asyncio.sleep(3600), name="replies")
    await tasks.aclose()
