"""`runpoller enqueue --wait --json` from the shell, against a real worker."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.conftest import test_redis_url
from tests.integration.conftest import FAKE_KEY, SECRET_KEYS, WorkerHandle

pytestmark = pytest.mark.integration


async def test_enqueue_wait_json_prints_the_final_result(
    start_worker: Callable[..., Awaitable[WorkerHandle]],
    fake_http: httpx.AsyncClient,
    namespace: str,
) -> None:
    await start_worker()
    body = (await fake_http.post("/_fake/runs", json={"script": "complete"})).json()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env.update(
        {
            "REDIS_URL": test_redis_url(),
            "RUNPOLLER_KEY_PREFIX": namespace,
            "RUNPOLLER_QUEUE_NAME": f"{namespace}:queue",
            "RUNPOLLER_SECRET_KEYS": SECRET_KEYS,
            "MY_KEY": FAKE_KEY,
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runpoller", "enqueue",
        "--thread-id", body["thread_id"], "--run-id", body["id"],
        "--api-key-env", "MY_KEY", "--wait", "--json",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    final = json.loads(out)
    assert final["status"] == "completed" and final["run_id"] == body["id"]
    assert "completed" in err.decode(), "progress lines go to stderr"
    assert FAKE_KEY not in out.decode() + err.decode()
