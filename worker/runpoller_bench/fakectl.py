"""The fake OpenAI server's ``/_fake`` control API, as the harness uses it."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

LogEntry = dict[str, Any]


class FakeControl:
    def __init__(self, root_url: str, *, concurrency: int = 32) -> None:
        self.root_url = root_url.rstrip("/")
        self.base_url = f"{self.root_url}/v1"
        self._session: aiohttp.ClientSession | None = None
        self._slots = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._concurrency)
            timeout = aiohttp.ClientTimeout(total=60)
            self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        async with (
            self._slots,
            self.session.request(method, self.root_url + path, json=body) as resp,
        ):
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"fake server: {method} {path} -> {resp.status}: {data}")
            return data

    async def get(self, path: str) -> Any:
        return await self._request("GET", path)

    async def post(self, path: str, body: Any) -> Any:
        return await self._request("POST", path, body)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self._request("GET", "/_fake/health")
                return
            except (aiohttp.ClientError, OSError, RuntimeError):
                if loop.time() > deadline:
                    raise RuntimeError(f"fake server at {self.root_url} did not start") from None
                await asyncio.sleep(0.05)

    async def create_run(self, script: dict[str, Any]) -> tuple[str, str]:
        """A scripted run; returns (thread_id, run_id)."""
        run = await self._request("POST", "/_fake/runs", {"script": script})
        return str(run["thread_id"]), str(run["id"])

    async def create_agent_turn(self, script: dict[str, Any]) -> tuple[str, str]:
        """A session whose first turn plays ``script``; returns (session_id, turn_id)."""
        body = {"script": script, "input": "Benchmark turn."}
        created = await self._request("POST", "/_fake/agents/sessions", body)
        return str(created["session"]["id"]), str(created["turn"]["id"])

    async def clock_offset(self, samples: int = 9) -> dict[str, float]:
        """How far the fake server's request timestamps run ahead of this process's clock.

        The fake stamps requests with its own wall clock (monotonic time since it started,
        plus its start time), which can drift a few milliseconds from ``time.time()`` over
        minutes. Figures that compare its timestamps with ours (reply → submit, API answer
        → final event) subtract this. Estimated from the quickest of a few round trips.
        """
        thread_id, run_id = await self.create_run(
            {"steps": [{"status": "queued", "ms": 50}, {"status": "in_progress"}]}
        )
        url = f"{self.base_url}/threads/{thread_id}/runs/{run_id}"
        headers = {"Authorization": "Bearer sk-clock", "OpenAI-Beta": "assistants=v2"}
        sent: list[tuple[float, float]] = []
        for _ in range(samples):
            t0 = time.time()
            async with self.session.get(url, headers=headers) as resp:
                await resp.read()
            sent.append((t0, time.time()))
        stamps = [float(e["time"]) for e in await self.log(run_id)]
        pairs = sorted(zip(sent, stamps, strict=True), key=lambda p: p[0][1] - p[0][0])[:3]
        offsets = [stamp - (t0 + t1) / 2 for (t0, t1), stamp in pairs]
        return {
            "offset_ms": statistics.median(offsets) * 1000,
            "rtt_ms": (pairs[0][0][1] - pairs[0][0][0]) * 1000,
        }

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._request("GET", "/_fake/stats")
        return data

    async def log(self, run_id: str) -> list[LogEntry]:
        data: list[LogEntry] = await self._request("GET", f"/_fake/runs/{run_id}/log")
        return data

    async def logs(self, run_ids: Iterable[str]) -> dict[str, list[LogEntry]]:
        ids = list(run_ids)
        results = await asyncio.gather(*(self.log(run_id) for run_id in ids))
        return dict(zip(ids, results, strict=True))


def endpoint_count(stats: dict[str, Any], endpoint: str) -> int:
    """Requests served for one endpoint, all statuses, from a ``/_fake/stats`` snapshot."""
    return sum(int(n) for n in stats.get("requests", {}).get(endpoint, {}).values())
