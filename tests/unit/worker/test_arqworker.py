"""The arq options `runpoller worker` runs with; `arq runpoller.main.WorkerSettings` refuses."""

from __future__ import annotations

import os
import subprocess
import sys

from runpoller.protocol import FN_DEAD_LETTER, FN_RESUME, FN_RUN
from runpoller.protocol.serde import deserialize_job, serialize_job


def test_the_worker_runs_our_functions_with_json_and_short_leases() -> None:
    from types import SimpleNamespace

    from runpoller.config import load_settings
    from runpoller.worker.arqworker import arq_options

    settings, _ = load_settings(assistants_api_key="sk-test")
    WorkerSettings = SimpleNamespace(**arq_options(settings))
    names = {f.name for f in WorkerSettings.functions}
    assert names == {FN_RUN, FN_RESUME, FN_DEAD_LETTER}
    assert WorkerSettings.job_serializer is serialize_job
    assert WorkerSettings.job_deserializer is deserialize_job
    assert WorkerSettings.queue_name == "runpoller:queue"
    assert WorkerSettings.keep_result == 0
    # Every function has its own short timeout, so arq's lease stays short (arq.md §4).
    assert all(f.timeout_s is not None and f.timeout_s <= 30 for f in WorkerSettings.functions)


def test_bad_config_exits_with_one_line_not_a_traceback() -> None:
    env = {**os.environ, "RUNPOLLER_TIMEOUT_MS": "50", "RUNPOLLER_POLL_INTERVAL_MS": "100"}
    done = subprocess.run(
        [sys.executable, "-m", "runpoller", "worker"],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("runpoller: configuration error: RUNPOLLER_TIMEOUT_MS")
    assert "Traceback" not in done.stderr


def test_arq_cli_entry_point_refuses_with_one_line_pointing_at_runpoller_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import runpoller.main"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("runpoller: start workers with `runpoller worker`")
    assert len(done.stderr.strip().splitlines()) == 1


def test_the_event_loop_is_uvloop_unless_asyncio_is_chosen() -> None:
    import asyncio

    import pytest

    uvloop = pytest.importorskip("uvloop")  # not installed on Windows or PyPy

    from runpoller.worker.loops import new_event_loop

    for choice, expected in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop)):
        loop = new_event_loop(choice)
        try:
            assert isinstance(loop, expected)
        finally:
            loop.close()
    loop = new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.AbstractEventLoop)
    finally:
        loop.close()


def test_an_unknown_event_loop_is_a_config_error_naming_the_variable() -> None:
    import pytest

    from runpoller.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="RUNPOLLER_EVENT_LOOP"):
        load_settings(event_loop="trio")
