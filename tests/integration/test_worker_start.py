"""A DB index the real Redis does not have: one line and exit 2, not a retry a second forever."""

from __future__ import annotations

import subprocess
import sys
from urllib.parse import urlparse, urlunparse

from runpoller.redis.url import mask
from tests.conftest import test_redis_url
from tests.unit.worker.test_startup import worker_env


def test_a_db_out_of_range_is_one_line_and_exit_2() -> None:
    url = urlunparse(urlparse(test_redis_url())._replace(path="/99"))
    done = subprocess.run(
        [sys.executable, "-m", "runpoller", "worker"],
        env=worker_env(REDIS_URL=url, RUNPOLLER_METRICS_PORT="-1"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    host = urlparse(url).netloc.rpartition("@")[2]
    assert line == (
        f"runpoller: configuration error: REDIS_URL ({mask(url)}): Redis at {host} has no DB 99 "
        "(it answered: DB index is out of range); a Redis has DBs 0 to 15 unless its "
        "`databases` setting says more"
    )
    assert "retries remaining" not in done.stderr


def test_stats_under_a_mistyped_prefix_says_so() -> None:
    env = worker_env(REDIS_URL=test_redis_url(), RUNPOLLER_KEY_PREFIX="rp-nothing-here-17")
    done = subprocess.run(
        [sys.executable, "-m", "runpoller", "stats"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(
        "runpoller stats: no worker and no queued run under prefix 'rp-nothing-here-17' and "
        "queue 'runpoller:queue' on "
    )
    assert "check RUNPOLLER_KEY_PREFIX and RUNPOLLER_QUEUE_NAME" in done.stderr
