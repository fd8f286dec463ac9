"""A worker's start, as the person running it sees it (issue 17): the probes answer while
Redis does not, the outage is one line naming host:port and the error, SIGTERM still stops
it, a port in use is one line and exit 2; the API's outages are logged like Redis's."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from runpoller.redis import connection
from runpoller.worker.apiwatch import WatchedTransport
from runpoller_dev.devredis import free_port
from tests.unit.logrecorder import Recorder


def worker_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    # Nothing listens on port 1 of the loopback: Redis and the API refuse at once.
    env.update(
        {
            "REDIS_URL": "redis://:hunter2@127.0.0.1:1/0",
            "ASSISTANTS_API_KEY": "sk-test-123456789",
            "ASSISTANTS_BASE_URL": "http://127.0.0.1:1/v1",
            "RUNPOLLER_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "runpoller", "worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def probe(port: int, path: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_redis_down_at_start_probes_answer_the_outage_is_one_line_and_sigterm_stops() -> None:
    port = free_port()
    child = start(worker_env(RUNPOLLER_METRICS_PORT=str(port)))
    try:
        ready = probe(port, "/readyz")
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("redis unreachable at 127.0.0.1:1 (")
        alive = probe(port, "/healthz")
        assert alive.status_code == 200 and alive.json()["reason"] == "starting (waiting for Redis)"
    finally:
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    (redis_down,) = [line for line in lines if line["event"] == "redis.unavailable"]
    assert redis_down["where"] == "127.0.0.1:1" and "refused" in redis_down["error"]
    (api_down,) = [line for line in lines if line["event"] == "api.unavailable"]
    assert api_down["where"] == "http://127.0.0.1:1"
    assert events.count("redis.unavailable") == 1  # not one per attempt
    assert "hunter2" not in err and "Traceback" not in err


def test_a_metrics_port_in_use_is_one_line_and_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        child = start(
            worker_env(RUNPOLLER_METRICS_HOST="127.0.0.1", RUNPOLLER_METRICS_PORT=str(port))
        )
        _, err = child.communicate(timeout=60)
    assert child.returncode == 2
    (line,) = [line for line in err.splitlines() if not line.startswith("{")]
    assert line.startswith(
        f"runpoller: configuration error: RUNPOLLER_METRICS_PORT={port}: cannot listen on "
        f"127.0.0.1:{port} ("
    )
    assert "give each worker its own port" in line


async def test_the_api_outage_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(connection, "log", recorder)
    answers = iter([None, 503, 200, 404])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status is None:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(status)

    watched = WatchedTransport(httpx.MockTransport(handler))
    async with httpx.AsyncClient(transport=watched) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("https://api.test/v1/threads/t/runs/r")
        for _ in range(3):
            await http.get("https://api.test/v1/threads/t/runs/r")
    assert [(line["event"], line.get("failures")) for line in recorder.lines] == [
        ("api.unavailable", None),
        ("api.available", 2),
    ]
    assert recorder.lines[0]["where"] == "https://api.test:443"
    assert recorder.lines[0]["error"] == "ConnectError: connection refused"
    assert "retrying" not in recorder.lines[0]  # the engine decides that, not this transport
