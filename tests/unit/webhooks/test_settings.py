"""The webhook settings: defaults, the list of secrets, and one clear error per bad value."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from runpoller.config import ConfigError, Settings, load_settings
from tests.unit.webhooks.conftest import new_secret


def test_defaults() -> None:
    s = Settings()
    assert s.webhook_secrets is None and s.webhook_secret_list == []
    assert (s.webhook_host, s.webhook_port) == ("127.0.0.1", 8090)
    assert s.webhook_max_body_bytes == 1024 * 1024


def test_secrets_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = new_secret(), new_secret()
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", f" {a} , {b},")
    settings, _ = load_settings()
    assert settings.webhook_secret_list == [a, b]
    assert str(settings.webhook_secrets) == "**********"


def test_unpadded_base64_is_accepted_as_the_library_reads_it() -> None:
    secret = new_secret().rstrip("=")
    assert Settings(webhook_secrets=secret).webhook_secret_list == [secret]


def test_blank_is_no_secret() -> None:
    assert Settings(webhook_secrets=" , ").webhook_secret_list == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("sk-not-a-webhook-secret", "secret #1 does not start with whsec_"),
        ("whsec_", "secret #1 has nothing after whsec_"),
        ("whsec_abc-def_ghi", "secret #1 is not whsec_ followed by base64"),
        ("whsec_A", "secret #1 is not whsec_ followed by base64"),
        (f"{new_secret()},whsec", "secret #2 does not start with whsec_"),
    ],
)
def test_a_bad_secret_is_one_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, value: str, problem: str
) -> None:
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert str(caught.value) == f"RUNPOLLER_WEBHOOK_SECRETS (from environment): {problem}"
    with pytest.raises(ValidationError, match=re.escape(f"webhook_secrets: {problem}")):
        Settings(webhook_secrets=value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("webhook_port", -1, "webhook_port is -1; it must be 0 (any port) to 65535"),
        ("webhook_port", 70000, "webhook_port is 70000; it must be 0 (any port) to 65535"),
        ("webhook_max_body_bytes", 0, "webhook_max_body_bytes must be at least 1"),
    ],
)
def test_listener_bounds(field: str, value: int, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(**{field: value})
