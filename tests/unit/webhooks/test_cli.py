"""`runpoller webhooks`: wired into the command line; refuses to start without secrets."""

from __future__ import annotations

import pytest

from runpoller.cli.main import build_parser, main


def test_the_command_is_registered() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert "webhooks" in sub.choices  # type: ignore[operator]


@pytest.mark.parametrize("value", [None, "", " , "])
def test_without_secrets_it_refuses_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("RUNPOLLER_WEBHOOK_SECRETS", raising=False)
    else:
        monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", value)
    assert main(["webhooks"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runpoller webhooks: RUNPOLLER_WEBHOOK_SECRETS is not set")
    assert err.count("\n") == 1


def test_a_bad_secret_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", "whsec_***")
    assert main(["webhooks"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "runpoller: configuration error: RUNPOLLER_WEBHOOK_SECRETS (from environment): "
        "secret #1 is not whsec_ followed by base64\n"
    )
