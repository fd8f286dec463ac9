"""The runpoller command line: every subcommand is wired and errors are one line."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from runpoller.cli.main import build_parser, main


def test_every_documented_command_is_there() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert {"worker", "fake-openai", "enqueue", "demo", "config", "actions"} <= set(
        sub.choices  # type: ignore[arg-type]
    )


def test_actions_convert_is_wired(capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    from pathlib import Path

    spec = Path(str(tmp_path)) / "spec.json"
    spec.write_text(
        '{"openapi": "3.1.0", "info": {"title": "t", "version": "1"},'
        ' "servers": [{"url": "https://api.example.com"}],'
        ' "paths": {"/ping": {"get": {"operationId": "ping", "x-strict": true}}}}'
    )
    assert main(["actions", "convert", str(spec), "--json"]) == 0
    out = capsys.readouterr().out
    assert '"name": "ping"' in out and '"strict": true' in out


def test_enqueue_needs_an_id(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enqueue", "--thread-id", "t"]) == 2
    assert capsys.readouterr().err == (
        "runpoller enqueue: give --thread-id and --run-id, --response-id, or --session-id "
        "and --turn-id\n"
    )


def test_an_invalid_agent_turn_job_names_the_field(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enqueue", "--session-id", "sess_1", "--turn-id", "turn/../x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runpoller enqueue: invalid job: agent_turn.turn_id: String")


def test_an_invalid_job_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enqueue", "--thread-id", "../etc", "--run-id", "run_1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runpoller enqueue: invalid job: assistants_run.thread_id: String")
    assert err.count("\n") == 1


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_enqueue_errors_are_formatted_without_the_run_driver() -> None:
    done = run_python(
        """
        import sys
        from runpoller.cli.main import main
        assert main(["enqueue", "--thread-id", "../etc", "--run-id", "r"]) == 2
        print([m for m in sys.modules if m.startswith("runpoller.worker")])
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_operator_commands_run_alone_without_the_main_command_line() -> None:
    from runpoller.cli import ops

    assert ops.build_parser().parse_args(["stats", "--json"]).func is ops.cmd_stats
    with pytest.raises(SystemExit):
        ops.build_parser().parse_args(["config"])  # only stats and health
    done = run_python(
        """
        import sys
        from runpoller.cli import ops
        code = ops.main(["health", "--url", "http://127.0.0.1:1", "--timeout", "0.5"])
        print(code, "runpoller.cli.main" in sys.modules)
        """
    )
    assert done.stdout.strip() == "2 False", done.stderr
    assert done.stderr.startswith("unreachable: http://127.0.0.1:1/healthz")


def test_fake_openai_without_the_fake_extra_says_so() -> None:
    done = run_python(
        """
        import sys
        sys.modules["jsonschema"] = None  # as if the `fake` extra were not installed
        from runpoller.cli.main import main
        main(["fake-openai", "--port", "1"])
        """
    )
    assert done.returncode == 1
    assert done.stderr == (
        "runpoller fake-openai: needs the fake extra (jsonschema is not installed): "
        "pip install 'runpoller[fake]'\n"
    )


def test_only_the_fake_extra_is_explained() -> None:
    from runpoller.cli.main import _needs_fake_extra

    explained = r"runpoller demo: needs the fake extra \(fakeredis"
    with pytest.raises(SystemExit, match=explained), _needs_fake_extra("demo"):
        raise ModuleNotFoundError("No module named 'fakeredis'", name="fakeredis")
    with pytest.raises(ModuleNotFoundError), _needs_fake_extra("demo"):
        raise ModuleNotFoundError("No module named 'nope'", name="nope")


def test_fake_openai_help_lists_the_built_in_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    from runpoller_fake import BUILTIN_SCENARIOS

    with pytest.raises(SystemExit) as exit_info:
        main(["fake-openai", "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "metadata.fake_scenario" in out and "docs/fake-server.md" in out
    for kind, label in (("run", "runs"), ("response", "responses")):
        assert f"built-in scenarios for {label}: {', '.join(BUILTIN_SCENARIOS[kind])}" in out


def test_docs_fake_server_describes_every_built_in_scenario() -> None:
    from pathlib import Path

    from runpoller_fake import BUILTIN_SCENARIOS

    doc = (Path(__file__).resolve().parents[3] / "docs" / "fake-server.md").read_text("utf-8")
    names = set(BUILTIN_SCENARIOS["run"]) | set(BUILTIN_SCENARIOS["response"])
    assert {name for name in names if f"| `{name}` |" not in doc} == set()
