"""The bench's sdk design (``runpoller_bench.sdk``) polls both backends through the official
SDK: an Assistants run with ``runs.retrieve`` and a background Response with
``responses.retrieve``, against the fake server, one task per run (sanity only)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from openai import AsyncOpenAI

from runpoller_bench.sdk import _poll_forever, retriever
from runpoller_fake.server import FakeServer
from tests.integration.conftest import FAKE_KEY

pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


async def test_sdk_design_polls_runs_and_responses(
    fake: FakeServer, fake_http: httpx.AsyncClient
) -> None:
    run = (await fake_http.post("/_fake/runs", json={"script": "never_ends"})).json()
    response = (
        await fake_http.post("/_fake/responses", json={"script": "never_ends", "model": "gpt-4o"})
    ).json()
    entries = [[run["thread_id"], run["id"]], [response["id"]]]
    counts: dict[str, int] = {}
    async with AsyncOpenAI(api_key=FAKE_KEY, base_url=fake.base_url) as client:
        tasks = [
            asyncio.create_task(_poll_forever(retriever(client, e), 0.05, counts)) for e in entries
        ]
        for _ in range(200):
            if sum(counts.values()) >= 6:
                break
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    assert "error" not in counts and sum(counts.values()) >= 6
    assert set(counts) <= {"queued", "in_progress"}
    for path, endpoint in (
        (f"/_fake/runs/{run['id']}/log", "get_run"),
        (f"/_fake/responses/{response['id']}/log", "get_response"),
    ):
        log = (await fake_http.get(path)).json()
        assert any(e["endpoint"] == endpoint for e in log), (path, {e["endpoint"] for e in log})


def test_a_malformed_runs_file_entry_is_named() -> None:
    client = AsyncOpenAI(api_key="sk-x", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match=r"\['a', 'b', 'c'\]"):
        retriever(client, ["a", "b", "c"])
