"""Housekeeping trims the ended-runs index once a minute (a finalize no longer does)."""

from __future__ import annotations

import time

import fakeredis
import httpx

from runpoller.config import load_settings
from runpoller.worker import housekeeping as housekeeping_module
from runpoller.worker.app import WorkerApp

PREFIX = "hk"


async def test_the_ended_index_is_trimmed_once_a_minute() -> None:
    settings, _ = load_settings(
        assistants_api_key="sk-housekeeping-test",
        assistants_base_url="http://api.test/v1",
        key_prefix=PREFIX,
        metrics_port=-1,
        record_ttl_s=60,
    )
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(500)))
    app = WorkerApp(settings, fakeredis.FakeAsyncRedis(), http=http, worker_id="w1")  # type: ignore[arg-type]
    ended = app.store.keys.runs_ended
    now_ms = int(time.time() * 1000)
    await app.redis.zadd(ended, {"expired": now_ms - 61_000, "recent": now_ms - 1_000})
    await app.housekeeping.once()
    assert await app.redis.zrange(ended, 0, -1) == [b"recent"]

    # Within the minute, another round leaves a newly expired entry for the next trim.
    await app.redis.zadd(ended, {"expired-too": now_ms - 62_000})
    await app.housekeeping.once()
    assert await app.redis.zrange(ended, 0, -1) == [b"expired-too", b"recent"]
    app.housekeeping.trimmed_at -= housekeeping_module.TRIM_ENDED_EVERY_S  # a minute later
    await app.housekeeping.once()
    assert await app.redis.zrange(ended, 0, -1) == [b"recent"]
    await http.aclose()
