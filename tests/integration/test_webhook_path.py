"""The whole webhook path: the fake sends, a real ``runpoller webhooks`` verifies and writes the
wake to the real Redis, and a worker polling at a long fallback interval polls at once.

Judged by order and counts, not by the clock: the response is polled when the run starts,
then once more, after the delivery, instead of at the 30 s fallback; the wake is counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from tests.integration import test_webhooks
from tests.integration.conftest import WorkerHandle
from tests.integration.test_responses import fake_response, job

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]
Receiver = tuple[str, Any]

# The real `runpoller webhooks` process and its two secrets (tests/integration/test_webhooks.py).
receiver = test_webhooks.receiver
secrets = test_webhooks.secrets


@dataclass
class WebhookPath:
    """The fake sending to the receiver, a worker, and what each side observed."""

    receiver: Receiver
    secrets: list[str]
    start_worker: StartWorker
    client: RunpollerClient
    http: httpx.AsyncClient
    redis: Redis
    namespace: str
    worker: WorkerHandle | None = None

    async def start(self, fallback_ms: int, secret: str) -> None:
        """Webhooks from the fake to the receiver, and a worker with this fallback interval."""
        body = {"url": f"{self.receiver[0]}/webhooks/openai", "secret": secret}
        reply = await self.http.post("/_fake/webhooks", json={**body, "retry_backoff_ms": 50})
        assert reply.status_code == 200, reply.text
        self.worker = await self.start_worker(
            webhook_fallback_interval_ms=fallback_ms, poll_interval_ms=100
        )

    async def run(self, in_progress_ms: int) -> str:
        """A response in progress this long, followed to its end: its id."""
        steps = [{"status": "queued", "ms": 50}, {"status": "in_progress", "ms": in_progress_ms}]
        response_id = await fake_response(self.http, {"steps": [*steps, {"status": "completed"}]})
        final = await self.client.wait(
            await self.client.enqueue(job(response_id, self.namespace)), 25
        )
        assert final.status == "completed"
        return response_id

    def woken(self) -> float:
        assert self.worker is not None
        value = self.worker.app.metrics.registry.get_sample_value(
            "runpoller_wakes_total", {"result": "woken"}
        )
        return value or 0.0

    async def polls_of(self, response_id: str) -> list[dict[str, Any]]:
        requests = (await self.http.get("/_fake/log")).json()["requests"]
        return [
            r for r in requests if r["object_id"] == response_id and r["endpoint"] == "get_response"
        ]

    async def deliveries(self) -> list[dict[str, Any]]:
        """The fake's deliveries once each is done: the worker can finish the run (woken by
        the wake the receiver wrote) before the fake has read the receiver's 200."""
        for _ in range(100):
            reply = await self.http.get("/_fake/webhooks/log")
            entries: list[dict[str, Any]] = reply.json()["deliveries"]
            if all(entry["status"] != "pending" for entry in entries):
                break
            await asyncio.sleep(0.05)
        return entries


@pytest.fixture
def path(
    receiver: Receiver,
    secrets: list[str],
    start_worker: StartWorker,
    client: RunpollerClient,
    fake_http: httpx.AsyncClient,
    redis: Redis,
    namespace: str,
) -> WebhookPath:
    return WebhookPath(receiver, secrets, start_worker, client, fake_http, redis, namespace)


async def test_the_webhook_brings_the_final_poll_forward(path: WebhookPath) -> None:
    await path.start(30000, path.secrets[0])
    before = path.woken()
    response_id = await path.run(1500)

    [delivery] = await path.deliveries()
    assert (delivery["response_id"], delivery["type"]) == (response_id, "response.completed")
    assert (delivery["status"], delivery["attempts"]) == (200, 1)
    wakes = await path.redis.xrange(f"{path.namespace}:wakes")
    assert [fields[b"object_id"].decode() for _, fields in wakes] == [response_id]
    assert path.woken() == before + 1
    # Polled when the run started (still in progress), then once: after the webhook.
    polls = await path.polls_of(response_id)
    assert len(polls) >= 2, polls
    *early, last = polls
    assert len(early) <= 2, polls
    assert all(p["time"] < delivery["sent_at"] for p in early), (polls, delivery)
    assert last["time"] >= delivery["sent_at"]


async def test_a_dropped_webhook_costs_the_fallback_interval_not_the_run(
    path: WebhookPath,
) -> None:
    reply = await path.http.post("/_fake/webhooks/faults", json={"drop": True, "times": 1})
    assert reply.status_code == 200, reply.text
    await path.start(1500, path.secrets[1])
    before = path.woken()
    response_id = await path.run(200)

    [delivery] = await path.deliveries()
    assert (delivery["response_id"], delivery["status"]) == (response_id, "dropped")
    assert await path.redis.xlen(f"{path.namespace}:wakes") == 0
    assert path.woken() == before
    polls = await path.polls_of(response_id)
    assert len(polls) >= 2 and polls[-1]["time"] - polls[0]["time"] >= 1.0, polls
