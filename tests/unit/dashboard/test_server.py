"""The dashboard's API on fakeredis, over aiohttp's test server: what it shows, what it
refuses, and that secrets never leave it."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from redis.asyncio import Redis

from runpoller.config import load_settings
from runpoller.dashboard.auth import COOKIE, Guard, TokenError
from runpoller.dashboard.census import take
from runpoller.dashboard.server import build_app, shown
from runpoller.protocol import Keys

TOKEN = "unit-operator-token-0123456789"
PREFIX = "dash"
MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    async with fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer()) as fake:
        yield fake


@pytest.fixture
async def make_client(redis: Redis) -> AsyncIterator[MakeClient]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def make(token: str | None = None, redis_url: str = "redis://127.0.0.1:6379/0") -> Any:
        settings, _ = load_settings(
            redis_url=redis_url, key_prefix=PREFIX, queue_name=f"{PREFIX}:queue"
        )
        client = TestClient(TestServer(build_app(settings, redis, token=token)))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def seed_run(redis: Redis, run_id: str, phase: str, **job: object) -> None:
    keys = Keys(PREFIX)
    state = {"phase": phase, "round": 1, "deadline": time.time() + 60}
    body = {"kind": "assistants_run", "thread_id": "thread_1", "run_id": run_id, **job}
    await redis.hset(
        keys.run(run_id),
        mapping={"state": json.dumps(state), "owner": "w1", "job": json.dumps(body)},
    )
    await redis.zadd(keys.runs_active, {run_id: int(time.time() * 1000)})


def test_shown_blanks_secrets_as_the_logs_do() -> None:
    doc = {
        "api_key": "encrypted",
        "job": {"api_key": "sk-abcdefghijklmnop", "token": "x", "note": "Bearer abc.def"},
        "outputs": ['{"key": "sk-abcdefghijklmnop"}', "redis://u:hunter2@h:6379/0"],
    }
    out = json.dumps(shown(doc))
    assert "sk-abcdefghijklmnop" not in out and "hunter2" not in out and "abc.def" not in out
    assert shown(doc)["api_key"] == "encrypted"  # the client's own description stays


def test_guard_signs_in_only_with_the_token_and_checks_csrf() -> None:
    with pytest.raises(TokenError, match="at least 16"):
        Guard("short")
    guard = Guard(TOKEN)
    assert guard.sign_in("wrong-token-wrong-token") is None
    cookie = guard.sign_in(TOKEN)
    assert cookie is not None
    session = guard.session(cookie)
    assert session is not None
    assert guard.check_csrf(session, guard.csrf(session))
    assert not guard.check_csrf(session, None) and not guard.check_csrf(session, "0" * 64)
    assert guard.session(cookie + "x") is None and guard.session("forged.cookie") is None
    assert Guard(TOKEN).session(cookie) is None, "a restart signs everyone out"
    assert Guard(None).sign_in(TOKEN) is None and not Guard(None).actions


def test_guessing_the_token_is_stopped_after_ten_failures_a_minute() -> None:
    guard = Guard(TOKEN)
    for n in range(10):
        assert guard.locked_for(now=100.0 + n) == 0
        assert guard.sign_in("a-wrong-guess-of-the-token", now=100.0 + n) is None
    assert guard.locked_for(now=110.0) == pytest.approx(50.0)
    assert guard.locked_for(now=160.5) == 0  # the first failure left the window


async def test_census_counts_runs_in_flight_by_phase(redis: Redis) -> None:
    for n, phase in enumerate(["polling", "polling", "awaiting_outputs", "cancelling"]):
        await seed_run(redis, f"r{n}", phase)
    await redis.zadd(Keys(PREFIX).runs_active, {"expired": 1})  # its record is gone
    census = await take(redis, Keys(PREFIX))
    assert census.by_phase == {"awaiting_outputs": 1, "cancelling": 1, "polling": 2}
    assert census.by_owner == {"w1": 4} and census.scanned == 5 and not census.truncated


async def test_read_only_refuses_every_action(make_client: MakeClient, redis: Redis) -> None:
    await seed_run(redis, "r1", "polling")
    client = await make_client()
    session = await (await client.get("/api/session")).json()
    assert session == {"actions": False, "signed_in": False, "csrf": None, "key_prefix": PREFIX}
    for path in ("/api/runs/r1/cancel", "/api/dead-letters/1-0/requeue", "/api/login"):
        response = await client.post(path, json={"token": TOKEN})
        assert response.status == 403, path
        assert "read-only" in (await response.json())["error"]
    assert not await redis.exists(Keys(PREFIX).cancel("r1"))


async def test_signed_in_with_csrf_the_cancel_is_written(
    make_client: MakeClient, redis: Redis
) -> None:
    await seed_run(redis, "r1", "polling")
    client = await make_client(token=TOKEN)
    login = await client.post("/api/login", json={"token": TOKEN})
    assert login.status == 200
    assert (
        "HttpOnly" in login.headers["Set-Cookie"]
        and "SameSite=Strict" in login.headers["Set-Cookie"]
    )
    csrf = (await login.json())["csrf"]
    response = await client.post("/api/runs/r1/cancel", headers={"X-CSRF-Token": csrf}, json={})
    assert response.status == 200 and (await response.json())["outcome"] == "requested"
    request = await redis.hgetall(Keys(PREFIX).cancel("r1"))
    assert request[b"reason"] == b"cancelled from the dashboard"


async def test_bad_input_is_one_line_naming_what_was_wrong(make_client: MakeClient) -> None:
    client = await make_client()
    cases = {
        "/api/runs?status=running": "status must be one of",
        "/api/runs?limit=0": "limit must be a whole number from 1 to 1000",
        "/api/runs?older_than=soon": "older_than 'soon' is no duration",
        "/api/runs?since=yesterday": "since 'yesterday' is neither a duration",
        "/api/runs?cursor=nonsense": "invalid cursor",
        "/api/runs/bad%20id": "invalid run id",
        "/api/runs/missing": "no run missing",
        "/api/dead-letters/abc": "invalid entry id",
        "/api/dead-letters/1-0": "no dead letter 1-0",
        "/api/nothing": "no such API path",
    }
    for path, message in cases.items():
        response = await client.get(path)
        body = await response.json()
        assert 400 <= response.status < 500, path
        assert message in body["error"] and "\n" not in body["error"], (path, body)


async def test_filters_by_backend_and_metadata(make_client: MakeClient, redis: Redis) -> None:
    await seed_run(redis, "a", "polling", metadata={"user": "u1"})
    await seed_run(redis, "b", "awaiting_outputs", metadata={"user": "u2"})
    client = await make_client()

    async def ids(query: str) -> list[str]:
        return [
            r["run_id"] for r in (await (await client.get(f"/api/runs?{query}")).json())["items"]
        ]

    assert await ids("meta=user%3Du2") == ["b"]
    assert await ids("meta=user") == ["a", "b"]
    assert await ids("backend=response") == []
    assert await ids("status=requires_action") == ["b"]
    assert await ids("worker=w1") == ["a", "b"]
    assert await ids("worker=w2") == []


async def test_redis_down_is_one_line_without_the_password(make_client: MakeClient) -> None:
    settings, _ = load_settings(
        redis_url="redis://user:hunter2@127.0.0.1:1/0", key_prefix=PREFIX,
        queue_name=f"{PREFIX}:queue",
    )  # fmt: skip
    down = Redis.from_url(settings.redis_url, socket_connect_timeout=0.5)
    client = TestClient(TestServer(build_app(settings, down, token=None)))
    await client.start_server()
    try:
        response = await client.get("/api/overview")
        body = await response.json()
        assert response.status == 503
        assert body["error"].startswith("Redis unreachable or failing at redis://user:***@")
        assert "hunter2" not in body["error"]
    finally:
        await client.close()
        await down.aclose()


async def test_pages_carry_a_strict_content_security_policy(make_client: MakeClient) -> None:
    client = await make_client()
    index = await client.get("/")
    assert index.status == 200
    assert "script-src 'self'" in index.headers["Content-Security-Policy"]
    assert index.headers["X-Frame-Options"] == "DENY"
    text = await index.text()
    assert "<script" in text and "onclick" not in text  # no inline script or handler


def test_the_vendored_chart_js_is_the_pinned_one() -> None:
    root = Path(__file__).resolve().parents[3] / "worker" / "runpoller" / "dashboard"
    pinned = json.loads((root / "vendor" / "package.json").read_text())["dependencies"]["chart.js"]
    lock = json.loads((root / "vendor" / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/chart.js"]["version"] == pinned
    head = (root / "static" / "vendor" / "chart.umd.min.js").read_text()[:200]
    assert f"Chart.js v{pinned}" in head
    assert (root / "static" / "vendor" / "chart.js-LICENSE.md").exists()


async def test_behind_a_tls_proxy_the_origin_check_and_the_cookie_fit(
    make_client: MakeClient, redis: Redis
) -> None:
    await seed_run(redis, "r1", "polling")
    client = await make_client(token=TOKEN)
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "dash.example"}
    login = await client.post(
        "/api/login", json={"token": TOKEN}, headers={**proxied, "Origin": "https://dash.example"}
    )
    assert login.status == 200 and "Secure" in login.headers["Set-Cookie"]
    csrf = (await login.json())["csrf"]
    # The test client speaks plain HTTP, so it keeps the Secure cookie to itself: send it as
    # the browser would over HTTPS.
    cookie = f"{COOKIE}={login.cookies[COOKIE].value}"
    for origin, status in (("https://evil.example", 403), ("https://dash.example", 200)):
        headers = {**proxied, "Origin": origin, "X-CSRF-Token": csrf, "Cookie": cookie}
        response = await client.post("/api/runs/r1/cancel", headers=headers, json={})
        assert response.status == status, origin


async def test_an_event_this_version_cannot_read_is_one_line(
    make_client: MakeClient, redis: Redis
) -> None:
    await seed_run(redis, "r1", "polling")
    await redis.xadd(Keys(PREFIX).events("r1"), {"type": "accepted", "data": '{"run_id": 1}'})
    response = await (await make_client()).get("/api/runs/r1")
    error = (await response.json())["error"]
    assert response.status == 500 and "\n" not in error
    assert error.startswith("run r1: Redis holds an event this version cannot read (")
