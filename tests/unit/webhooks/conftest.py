"""The receiver on an in-process aiohttp test server and fakeredis; deliveries signed with
``standardwebhooks.Webhook(secret).sign`` over bodies checked against the OpenAI spec."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import fakeredis
import jsonschema
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks import Webhook

from runpoller.config import Settings
from runpoller.webhooks import Receiver, build_app

REPO = Path(__file__).resolve().parents[3]
SPEC_FILE = REPO.parent / "shared" / "openai-openapi" / "openapi.yaml"
PATH = "/webhooks/openai"
PREFIX = "rpwh"

# The spec's schema for each event type a test sends.
SCHEMA_OF = {
    "response.completed": "WebhookResponseCompleted",
    "response.failed": "WebhookResponseFailed",
    "response.cancelled": "WebhookResponseCancelled",
    "response.incomplete": "WebhookResponseIncomplete",
    "batch.completed": "WebhookBatchCompleted",
    "fine_tuning.job.succeeded": "WebhookFineTuningJobSucceeded",
    "eval.run.failed": "WebhookEvalRunFailed",
}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@cache
def spec_schemas() -> dict[str, Any]:
    doc = yaml.load(SPEC_FILE.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    schemas: dict[str, Any] = doc["components"]["schemas"]
    return schemas


def event(event_type: str, object_id: str = "resp_abc123", **extra: Any) -> dict[str, Any]:
    """An event body as OpenAI sends it, valid against the spec's schema for its type."""
    body = {
        "id": f"evt_{os.urandom(6).hex()}",
        "object": "event",
        "type": event_type,
        "created_at": int(time.time()),
        "data": {"id": object_id},
        **extra,
    }
    jsonschema.Draft202012Validator(spec_schemas()[SCHEMA_OF[event_type]]).validate(body)
    return body


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]


def sign(
    body: dict[str, Any] | bytes | str,
    secret: str,
    *,
    webhook_id: str | None = None,
    at: float | None = None,
) -> Delivery:
    """The body and the three Standard Webhooks headers, signed with ``secret``."""
    if isinstance(body, dict):
        body = json.dumps(body)
    text = body.decode() if isinstance(body, bytes) else body
    when = datetime.fromtimestamp(time.time() if at is None else at, tz=UTC)
    webhook_id = webhook_id or f"wh_{os.urandom(8).hex()}"
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, when, text),
        "content-type": "application/json",
    }
    return Delivery(text.encode(), headers)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the environment too: start every test from the defaults."""
    for name in list(os.environ):
        if name.startswith(("RUNPOLLER_", "ASSISTANTS_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)


@pytest.fixture
def secrets() -> list[str]:
    """Two secrets, as during a rotation (new first)."""
    return [new_secret(), new_secret()]


@pytest.fixture
def settings(secrets: list[str]) -> Settings:
    return Settings(webhook_secrets=",".join(secrets), key_prefix=PREFIX)


@pytest.fixture
def server() -> fakeredis.FakeServer:
    return fakeredis.FakeServer()


@pytest.fixture
async def redis(server: fakeredis.FakeServer) -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    client = fakeredis.FakeAsyncRedis(server=server)
    yield client
    await client.aclose()


@pytest.fixture
def receiver(settings: Settings, redis: fakeredis.FakeAsyncRedis) -> Receiver:
    return Receiver(settings, redis)


@pytest.fixture
async def client(receiver: Receiver) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(build_app(receiver))) as test_client:
        yield test_client


Post = Callable[..., Any]


@pytest.fixture
def post(client: TestClient[Any, Any]) -> Post:
    async def send(delivery: Delivery, **headers: str) -> tuple[int, dict[str, Any]]:
        response = await client.post(
            PATH, data=delivery.body, headers={**delivery.headers, **headers}
        )
        return response.status, await response.json()

    return send


async def everything(redis: fakeredis.FakeAsyncRedis) -> list[bytes]:
    """Every key in Redis: a refused delivery leaves this empty."""
    return sorted(await redis.keys("*"))


async def wakes(redis: fakeredis.FakeAsyncRedis) -> list[dict[str, str]]:
    entries = await redis.xrange(f"{PREFIX}:wakes")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]


def counted(receiver: Receiver, event_type: str, result: str) -> float:
    value = receiver.metrics.registry.get_sample_value(
        "runpoller_webhooks_total", {"type": event_type, "result": result}
    )
    return value or 0.0
