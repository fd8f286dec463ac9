"""Every command's failure is one line and exit 2, never a traceback (issue 17)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runpoller.cli.main import main


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("RUNPOLLER_", "ASSISTANTS_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)


@pytest.mark.parametrize(
    "argv",
    [
        ["enqueue", "--thread-id", "thread_1", "--run-id", "run_1"],
        ["stats"],
        ["runs", "show", "run_1"],
    ],
)
def test_redis_unreachable_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    # Port 1 on the loopback: nothing listens there, the refusal is immediate.
    monkeypatch.setenv("REDIS_URL", "redis://:secretpw@127.0.0.1:1/0")
    assert main(argv) == 2
    err = capsys.readouterr().err
    command = " ".join(argv[:2] if argv[0] == "runs" else argv[:1])
    assert err.startswith(f"runpoller {command}: Redis unreachable at redis://:***@127.0.0.1:1/0 (")
    assert err.count("\n") == 1 and "secretpw" not in err and "Traceback" not in err


def test_a_bad_redis_url_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    assert main(["enqueue", "--response-id", "resp_1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "runpoller: configuration error: REDIS_URL (from environment): 'localhost:6379' has no "
        "scheme; write it as redis://host:port/db (or rediss://, unix://, redis+sentinel://)\n"
    )


def test_a_reader_leaving_the_pipe_is_no_traceback(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    paths = {f"/p{i}": {"get": {"operationId": f"op{i}"}} for i in range(200)}
    spec.write_text(
        json.dumps(
            {
                "openapi": "3.1.0",
                "info": {"title": "t", "version": "1"},
                "servers": [{"url": "https://api.example.com"}],
                "paths": paths,
            }
        )
    )
    for argv in (["actions", "convert", str(spec), "--json"], ["config", "--list"]):
        child = subprocess.Popen(
            [sys.executable, "-m", "runpoller", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={k: v for k, v in os.environ.items() if k != "REDIS_URL"},
        )
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()  # as `| head` does once it has read enough (here: nothing)
        err = child.stderr.read().decode()
        assert child.wait(timeout=60) == 0, err
        assert "Traceback" not in err and "BrokenPipe" not in err
