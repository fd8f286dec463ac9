"""Every command's failure is one line and exit 2, never a traceback (issue 17)."""

from __future__ import annotations

import asyncio
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


def test_conflicting_run_flags_are_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["enqueue", "--thread-id", "thread_1", "--run-id", "run_1", "--response-id", "resp_1"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "runpoller enqueue: --response-id is a Responses run; --thread-id and --run-id an "
        "Assistants run: give one or the other\n"
    )


def test_a_negative_timeout_is_a_plain_sentence(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["enqueue", "--response-id", "resp_1", "--timeout-ms", "-5"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.endswith(
        "runpoller enqueue: error: argument --timeout-ms: a whole number of milliseconds "
        "above 0, not '-5'\n"
    )
    assert "timeout_ms" not in err  # no pydantic field path


def test_every_option_of_every_command_says_what_it_does() -> None:
    import argparse

    from runpoller.cli.main import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "runpoller")
    assert missing == []


def test_usage_is_a_sentence_not_a_dict() -> None:
    from runpoller.cli.follow import format_usage

    assert format_usage({"prompt_tokens": 10, "completion_tokens": 7, "total_tokens": 17}) == (
        "10 prompt + 7 completion = 17 tokens"
    )
    assert format_usage({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}) == (
        "3 input + 4 output = 7 tokens"
    )


async def test_wait_without_a_live_worker_says_so_and_ctrl_c_says_the_run_goes_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from fakeredis import FakeAsyncRedis

    from runpoller.cli import follow
    from runpoller.config import Settings

    fake = FakeAsyncRedis()
    monkeypatch.setattr(follow, "connect", lambda *a, **k: fake)
    monkeypatch.setattr(follow, "NO_WORKER_AFTER_S", 0.0)

    async def interrupted(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(0.2)  # the hint comes first
        raise KeyboardInterrupt

    monkeypatch.setattr(follow, "follow_run", interrupted)
    settings = Settings(key_prefix="rp-nobody", queue_name="rp-nobody:queue")
    with pytest.raises(KeyboardInterrupt):
        await follow.enqueue_and_follow(
            settings, {"kind": "response", "response_id": "resp_1"}, wait=True, as_json=False
        )
    err = capsys.readouterr().err
    assert "runpoller enqueue: no live worker under prefix 'rp-nobody'" in err
    assert "runpoller enqueue: stopped following resp_1; the run goes on" in err


def test_worker_help_lists_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from runpoller.config import env_names

    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(name in out for name in env_names()) and "config --list" in out
