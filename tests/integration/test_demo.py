"""`make demo` runs `runpoller demo`: it must show every outcome and exit 0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from tests.conftest import test_redis_url

pytestmark = pytest.mark.integration

NODE_CLIENT = Path(__file__).resolve().parents[2] / "clients" / "node" / "dist" / "index.js"


def test_demo_shows_every_outcome() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOLLER_", "ASSISTANTS_"))}
    env["REDIS_URL"] = test_redis_url()
    redis = Redis.from_url(test_redis_url())
    before = set(redis.scan_iter(match="runpoller-demo-*", count=1000))
    done = subprocess.run(
        [sys.executable, "-m", "runpoller", "demo", "--fast"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for outcome in ("→ completed", "→ failed", "→ timed_out", "→ cancelled", "→ refused"):
        assert outcome in out
    assert out.count("  ok ") == 10 and "!!" not in out
    assert "output: Agents answer in session turns: 21 °C in Lyon." in out, "the agent turn"
    streamed = re.search(
        r"streamed: (\d+) progress events while it was written, joined the same", out
    )
    assert streamed is not None and int(streamed.group(1)) >= 2, out
    assert "error: cancelled_by_app: cancelled at the app's request (the user pressed stop)" in out
    assert "app: completed: It is sunny in Paris." in out, "the example app's round trip"
    if shutil.which("node") and NODE_CLIENT.exists():  # make test builds it (node-install)
        assert "node app: completed: It is sunny in Paris." in out, "examples/node's round trip"
    else:
        assert "Node example (examples/node/weather.mjs): not run" in out
    assert "$ runpoller stats" in out and "/metrics" in out
    assert re.search(r"web: +http://127\.0\.0\.1:\d+/ \(runpoller dashboard", out)  # it answered
    # Responses runs poll every 20 s; the demo (well under 20 s) ends them by webhook.
    match = re.search(r"webhooks: (\d+) poll\(s\) of the background responses brought forward", out)
    assert match is not None and int(match.group(1)) >= 1, out
    # Nothing left behind: the worker's hand-off on worker-events came after the clean-up.
    left = set(redis.scan_iter(match="runpoller-demo-*", count=1000)) - before
    assert left == set()
