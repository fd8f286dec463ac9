"""``serve()``: the blocking entry point behind ``runpoller fake-openai``."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx
import pytest

SERVE = "from runpoller_fake import serve; serve('127.0.0.1', 0, {'sk-only'})"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_serve_prints_its_url_and_stops_on_signal(signum: int) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=10)).decode()
        base_url = line.split()[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        async with httpx.AsyncClient(base_url=base_url) as http:
            body = {"model": "gpt-4o", "input": "Hi", "background": True}
            wrong = await http.post("/responses", json=body, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 401
            right = {"Authorization": "Bearer sk-only"}
            assert (await http.post("/responses", json=body, headers=right)).status_code == 200
        process.send_signal(signum)
        assert await asyncio.wait_for(process.wait(), timeout=10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
