"""``runpoller dashboard`` from the shell: a bad token or a taken port is one line, exit 2."""

from __future__ import annotations

import socket

import pytest

from runpoller.cli.main import main


def test_a_short_token_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOLLER_DASHBOARD_TOKEN", "short")
    assert main(["dashboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("runpoller dashboard: RUNPOLLER_DASHBOARD_TOKEN is 5 characters long")
    assert "\n" not in err and "short" not in err  # the token itself is never printed


def test_a_taken_port_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RUNPOLLER_DASHBOARD_TOKEN", raising=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["dashboard", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"runpoller dashboard: cannot listen on 127.0.0.1:{port}: ")
    assert "\n" not in err


def test_the_command_loads_no_aiohttp_until_it_runs() -> None:
    import subprocess
    import sys

    code = "import sys, runpoller.cli.main as m; m.build_parser(); print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
