"""``runpoller stats --json`` against a cluster with known numbers; ``runpoller health`` exit codes.

Real Redis, real workers, the fake OpenAI server over HTTP. The commands run in a thread (as
from a shell: they start their own event loop) while the workers keep running in this one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from runpoller.cli import ops as opscli
from runpoller.cli.stats import ClusterStats, collect
from runpoller.client import RunpollerClient
from runpoller.config import Settings
from runpoller.protocol import FN_RUN, Keys
from runpoller.protocol.serde import serialize_job
from tests.conftest import test_redis_url
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def create_run(fake_http: httpx.AsyncClient, script: str, **job: Any) -> dict[str, Any]:
    body = (await fake_http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"], **job}


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command (the workers' JSON log lines left out)."""
    capsys.readouterr()
    code = await asyncio.to_thread(opscli.main, argv)
    out, err = capsys.readouterr()
    err = "".join(line for line in err.splitlines(keepends=True) if not line.startswith("{"))
    return code, out, err


async def test_stats_json_matches_a_known_scenario(
    start_worker: StartWorker,
    make_settings: Callable[..., Settings],
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Dead workers are detected after 60 s here, so a fake one stays "dead, not released".
    settings = make_settings(dead_worker_after_ms=60_000)
    keys = Keys(namespace)
    now_ms = int(time.time() * 1000)

    # A worker that starts and stops: one hand-off (no runs) on the worker-events stream.
    leaving = await start_worker(settings)
    await leaving.stop()
    # A worker that died long ago (found by the first housekeeping: one dead_worker event),
    # and one whose heartbeat just vanished (listed, dead, its 2 runs not yet released).
    await redis.zadd(keys.workers, {"ghost-old": now_ms - 120_000, "ghost-new": now_ms - 5_000})
    await redis.sadd(keys.owned("ghost-new"), "ghost-run-1", "ghost-run-2")
    first = await start_worker(settings)
    await until(lambda: _stream_has(redis, keys.worker_events, 2))
    second = await start_worker(settings)

    finished = [
        await create_run(fake_http, "complete"),
        await create_run(fake_http, "complete"),
        await create_run(fake_http, "fail"),
        await create_run(fake_http, "never_ends", timeout_ms=600),
    ]
    run_ids = [await client.enqueue(job) for job in finished]
    await client.enqueue(await create_run(fake_http, "never_ends", timeout_ms=60_000))
    finals = [await client.wait(run_id, 10) for run_id in run_ids]
    assert [f.status for f in finals] == ["completed", "completed", "failed", "timed_out"]

    # A job deferred by an hour, and a job no run can be found in (a dead letter).
    deferred_at = now_ms + 3_600_000
    body = serialize_job({"f": FN_RUN, "a": [{"kind": "x"}], "k": {}, "t": None, "et": now_ms})
    await redis.set(f"arq:job:{namespace}-later", body, px=60_000)
    await redis.zadd(settings.queue_name, {f"{namespace}-later": deferred_at})
    await redis.set(f"arq:job:{namespace}-bad", body, px=60_000)
    await redis.zadd(settings.queue_name, {f"{namespace}-bad": now_ms})
    await until(lambda: _stream_has(redis, keys.dead_letters, 1))
    # An invalid job naming its run: refused with a final error, which counts as an outcome.
    invalid = {"kind": "assistants_run", "id": f"{namespace}-invalid", "thread_id": "t"}
    body = serialize_job({"f": FN_RUN, "a": [invalid], "k": {}, "t": None, "et": now_ms})
    await redis.set(f"arq:job:{namespace}-invalid", body, px=60_000)
    await redis.zadd(settings.queue_name, {f"{namespace}-invalid": now_ms})
    refused = await client.wait(f"{namespace}-invalid", 10)
    assert refused.error is not None and refused.error.code == "invalid_job"

    async def settled() -> bool:
        stats = await collect(redis, settings)
        return stats.in_flight == 1 and stats.queue.ready == 0

    await until(settled)

    monkeypatch.setenv("REDIS_URL", test_redis_url())
    monkeypatch.setenv("RUNPOLLER_KEY_PREFIX", namespace)
    monkeypatch.setenv("RUNPOLLER_QUEUE_NAME", settings.queue_name)
    code, out, err = await run_cli(["stats", "--json"], capsys)
    assert code == 0, err
    stats = json.loads(out)
    ClusterStats.model_validate(stats)

    assert stats["key_prefix"] == namespace
    queue = stats["queue"]
    assert (queue["ready"], queue["deferred"], queue["oldest_ready_age_s"]) == (0, 1, None)
    assert 3590 < queue["next_deferred_in_s"] <= 3600
    assert (stats["live_workers"], stats["dead_workers"], stats["in_flight"]) == (2, 1, 1)
    assert stats["orphans"] == 0
    workers = {w["worker_id"]: w for w in stats["workers"]}
    assert set(workers) == {first.app.worker_id, second.app.worker_id, "ghost-new"}
    assert [w["alive"] for w in stats["workers"]] == [True, True, False], "live ones first"
    assert sorted(workers[w.app.worker_id]["in_flight"] for w in (first, second)) == [0, 1]
    assert all(workers[w.app.worker_id]["last_beat_age_s"] < 2 for w in (first, second))
    ghost = workers["ghost-new"]
    assert (ghost["in_flight"], ghost["owned"]) == (None, 2)
    assert 4 < ghost["last_beat_age_s"] < 30
    assert stats["outcomes"] == {
        "minutes": 15,
        "total": 5,
        "by_status": {"completed": 2, "error": 1, "failed": 1, "timed_out": 1},
    }
    events = stats["worker_events"]
    assert (events["dead_workers_detected"], events["handoffs"], events["runs_released"]) == (
        1,
        1,
        0,
    )
    assert [(e["type"], e["worker_id"], e["by"]) for e in events["recent"]] == [
        ("dead_worker", "ghost-old", first.app.worker_id),
        ("handed_off", leaving.app.worker_id, None),
    ]
    assert stats["dead_letters"]["count"] == 1
    assert stats["dead_letters"]["last_reason"].startswith("invalid_job")

    # The table says the same, for a person.
    code, out, _ = await run_cli(["stats", "--minutes", "5"], capsys)
    assert code == 0
    assert "0 ready, 1 deferred (next in 59m" in out and "no job waiting" in out
    assert "2 live, 1 dead (not yet released); 1 run in flight" in out
    assert "5 runs ended · completed 2  error 1  failed 1  timed_out 1" in out
    assert f"dead worker ghost-old (detected by {first.app.worker_id})" in out
    assert "1 dead letter;" in out


async def _stream_has(redis: Redis, key: str, n: int) -> bool:
    return int(await redis.xlen(key)) >= n


async def _is_set(value: object) -> bool:
    return value is not None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_health_exit_codes_follow_the_probes(
    start_worker: StartWorker, capsys: pytest.CaptureFixture[str]
) -> None:
    handle = await start_worker()
    app = handle.app
    await until(lambda: _is_set(app.http_port))
    base = f"http://127.0.0.1:{app.http_port}"

    code, out, err = await run_cli(["health", "--url", base], capsys)
    assert (code, err) == (0, "") and out.startswith("ok (healthz): housekeeping ")
    code, out, _ = await run_cli(["health", "--url", base, "--ready"], capsys)
    assert code == 0 and out == "ok (readyz): 0/10000 runs\n"

    app.probes.stopping = True
    code, out, _ = await run_cli(["health", "--url", base, "--ready"], capsys)
    assert (code, out) == (1, "not ok (readyz): shutting down\n")

    # Housekeeping has stopped: liveness fails, with the reason.
    app.tasks.get("housekeeping").cancel()  # type: ignore[union-attr]
    app.housekeeping.last_run = time.time() - 60
    code, out, _ = await run_cli(["health", "--url", base], capsys)
    assert code == 1 and out.startswith("not ok (healthz): ") and "housekeeping" in out

    port = closed_port()
    code, out, err = await run_cli(["health", "--url", f"127.0.0.1:{port}"], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"unreachable: http://127.0.0.1:{port}/healthz: ")
    assert err.count("\n") == 1 and "Traceback" not in err

    # Something that is not a runpoller probe answers: unreachable too, not "not ok".
    code, _, err = await run_cli(["health", "--url", f"{base}/nothing-here"], capsys)
    assert code == 2 and "answered HTTP 404, not a runpoller probe" in err
