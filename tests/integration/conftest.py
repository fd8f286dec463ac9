"""Integration fixtures: a real Redis, the fake OpenAI server over real HTTP, real workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.config import Settings, load_settings
from runpoller.secrets import new_key
from runpoller.worker.app import WorkerApp
from runpoller.worker.arqworker import build_worker
from runpoller_fake import FakeServer, FakeState, start_fake_server
from tests.conftest import test_redis_url

pytestmark = pytest.mark.integration

FAKE_KEY = "sk-fake-integration-key-123456"
SECRET_KEYS = f"it1:{new_key()}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = await start_fake_server(port=0, state=FakeState(api_keys={FAKE_KEY}))
    yield server
    await server.close()


@pytest.fixture
def make_settings(
    namespace: str, fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Settings]:
    for name in ("ASSISTANTS_API_KEY", "ASSISTANTS_MODELS", "RUNPOLLER_LIBRECHAT_CONFIG"):
        monkeypatch.delenv(name, raising=False)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": test_redis_url(),
            "assistants_base_url": fake.base_url,
            "assistants_api_key": FAKE_KEY,
            "key_prefix": namespace,
            "queue_name": f"{namespace}:queue",
            "poll_interval_ms": 100,
            "timeout_ms": 5000,
            "cancel_grace_ms": 3000,
            "heartbeat_interval_ms": 200,
            "dead_worker_after_ms": 1000,
            "arq_poll_delay_s": 0.05,
            "log_format": "json",
            "metrics_port": 0,
            "secret_keys": SECRET_KEYS,
            "metrics_host": "127.0.0.1",
        }
        values.update(overrides)
        settings, _ = load_settings(**values)
        return settings

    return make


class WorkerHandle:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.task: asyncio.Task[None] = asyncio.create_task(worker.main())

    @property
    def app(self) -> WorkerApp:
        app: WorkerApp = self.worker.ctx["app"]
        return app

    async def wait_started(self) -> None:
        for _ in range(200):
            if "app" in self.worker.ctx:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("worker did not start")

    async def stop(self) -> None:
        await self.worker.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


@pytest.fixture
async def start_worker(
    make_settings: Callable[..., Settings],
) -> AsyncIterator[Callable[..., Awaitable[WorkerHandle]]]:
    handles: list[WorkerHandle] = []

    async def start(settings: Settings | None = None, **overrides: Any) -> WorkerHandle:
        settings = settings or make_settings(**overrides)
        handle = WorkerHandle(build_worker(settings, handle_signals=False))
        handles.append(handle)
        await handle.wait_started()
        return handle

    yield start
    for handle in handles:
        await handle.stop()


@pytest.fixture
def client(redis: Redis, namespace: str) -> RunpollerClient:
    return RunpollerClient(
        redis, queue_name=f"{namespace}:queue", key_prefix=namespace, secret_keys=SECRET_KEYS
    )


@pytest.fixture
async def fake_http(fake: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    root = fake.base_url.removesuffix("/v1")
    async with httpx.AsyncClient(base_url=root, timeout=10) as http:
        yield http
