"""A Responses create the worker sends is never sent twice, and never reported as cancelled
when nothing was (issue 16's create safety), on the real fake server over HTTP."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from runpoller.client import RunpollerClient
from tests.integration.conftest import WorkerHandle

pytestmark = pytest.mark.integration

StartWorker = Callable[..., Awaitable[WorkerHandle]]


async def test_a_create_with_no_answer_is_never_sent_twice_nor_called_cancelled(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient, namespace: str
) -> None:
    # POST /v1/responses is slow: the worker's read times out after sending it. The response
    # may exist (and bill): the worker must not create a second one, nor claim a cancel.
    await start_worker(read_timeout_s=0.5)
    since = (await fake_http.get("/_fake/log")).json()["next"]
    faults = [{"on": "create_response", "latency_ms": 2000, "times": 1}]
    await fake_http.post("/_fake/faults", json=faults)
    rid = f"{namespace}-slow-create"
    request = {"model": "gpt-4o", "input": "hi", "metadata": {"app_run": rid}}
    final = await client.wait(
        await client.enqueue({"kind": "response", "id": rid, "request": request}), 15
    )
    assert final.status == "error" and final.error is not None
    assert final.error.code == "create_outcome_unknown", final.error
    assert "ReadTimeout" in final.reason and final.cancel is None
    assert "cancelled" not in final.reason
    log = (await fake_http.get(f"/_fake/log?since={since}")).json()["requests"]
    endpoints = [entry["endpoint"] for entry in log]
    assert endpoints.count("create_response") == 1 and "cancel_response" not in endpoints
