"""`runpoller webhooks` as a real process on a real port, writing to the real Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from runpoller_dev.devredis import free_port
from tests.conftest import test_redis_url
from tests.unit.webhooks.conftest import event, new_secret, sign

pytestmark = pytest.mark.integration


def receiver_env(namespace: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env.update(
        REDIS_URL=test_redis_url(),
        RUNPOLLER_KEY_PREFIX=namespace,
        RUNPOLLER_WEBHOOK_PORT=str(port),
        RUNPOLLER_LOG_FORMAT="json",
        **extra,
    )
    return env


@pytest.fixture
def secrets() -> list[str]:
    return [new_secret(), new_secret()]


@pytest.fixture
async def receiver(
    namespace: str, secrets: list[str]
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    port = free_port()
    env = receiver_env(namespace, port, RUNPOLLER_WEBHOOK_SECRETS=",".join(secrets))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runpoller", "webhooks", env=env, stderr=asyncio.subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(f"{base}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.returncode is None, "the receiver exited"
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the receiver did not come up")
    try:
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_deliveries_over_http_into_real_redis(
    receiver: tuple[str, asyncio.subprocess.Process],
    redis: Redis,
    namespace: str,
    secrets: list[str],
) -> None:
    base, proc = receiver
    url = f"{base}/webhooks/openai"
    first = sign(event("response.completed", "resp_it1"), secrets[0], webhook_id="wh_it1")
    rotated = sign(event("response.incomplete", "resp_it2"), secrets[1], webhook_id="wh_it2")
    async with httpx.AsyncClient() as http:
        assert (await http.post(url, content=first.body, headers=first.headers)).status_code == 200
        again = await http.post(url, content=first.body, headers=first.headers)
        assert again.json() == {"ok": True, "result": "duplicate"}
        ok = await http.post(url, content=rotated.body, headers=rotated.headers)
        assert ok.status_code == 200
        forged = sign(event("response.completed", "resp_evil"), new_secret())
        bad = await http.post(url, content=forged.body, headers=forged.headers)
        assert bad.status_code == 401
        metrics = (await http.get(f"{base}/metrics")).text
    entries = await redis.xrange(f"{namespace}:wakes")
    assert [{k.decode(): v.decode() for k, v in f.items()} for _, f in entries] == [
        {"object_id": "resp_it1", "type": "response.completed", "webhook_id": "wh_it1"},
        {"object_id": "resp_it2", "type": "response.incomplete", "webhook_id": "wh_it2"},
    ]
    assert await redis.ttl(f"{namespace}:webhook:wh_it1") > 86_000
    assert await redis.exists(f"{namespace}:webhook:{forged.headers['webhook-id']}") == 0
    assert 'runpoller_webhooks_total{result="duplicate",type="response.completed"} 1.0' in metrics

    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert proc.stderr is not None
    logged = (await proc.stderr.read()).decode()
    assert '"event": "webhooks.listening"' in logged and '"webhook_id": "wh_it1"' in logged
    for secret in secrets:
        assert secret.removeprefix("whsec_")[:12] not in logged


async def test_without_secrets_it_exits_2_in_one_line(namespace: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "runpoller",
        "webhooks",
        env=receiver_env(namespace, free_port()),
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 2
    assert err.decode().count("\n") == 1
    assert "RUNPOLLER_WEBHOOK_SECRETS is not set" in err.decode()
