"""The runpoller command line: every subcommand is wired and errors are one line."""

from __future__ import annotations

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
    with pytest.raises(SystemExit, match="--thread-id and --run-id, or --response-id"):
        main(["enqueue", "--thread-id", "t"])
