"""No webhook secret in logs, responses, metrics, config errors or `runpoller config`."""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import pytest
import structlog
from aiohttp.test_utils import TestClient

from runpoller.config import ConfigError, Settings, load_settings
from runpoller.logs import configure_logging
from tests.unit.webhooks.conftest import Post, event, new_secret, sign


def fragments(secret: str) -> list[str]:
    """The secret, its key part, and its first 12 characters of key."""
    key = secret.removeprefix("whsec_")
    return [secret, key, key[:12]]


@pytest.fixture
def restore_structlog() -> Any:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


async def test_no_secret_in_logs_responses_or_metrics(
    post: Post,
    client: TestClient[Any, Any],
    secrets: list[str],
    settings: Settings,
    redis: fakeredis.FakeAsyncRedis,
    capsys: pytest.CaptureFixture[str],
    restore_structlog: None,
) -> None:
    configure_logging(settings.model_copy(update={"log_format": "json", "log_level": "DEBUG"}))
    answers = []
    for delivery, extra in [
        (sign(event("response.completed"), secrets[0]), {}),
        (sign(event("response.completed"), secrets[1], at=time.time() - 900), {}),
        (sign(event("response.completed"), new_secret()), {}),
        (sign(b"{oops", secrets[1]), {}),
        (sign(event("batch.completed", "batch_1"), secrets[0]), {}),
        (sign(event("response.failed"), secrets[0]), {"webhook-signature": "junk"}),
    ]:
        answers.append(json.dumps(await post(delivery, **extra)))
    answers.append(await (await client.get("/metrics")).text())
    logged = capsys.readouterr()
    seen = "\n".join([*answers, logged.out, logged.err])
    assert "webhook.received" in seen and "webhook.refused" in seen  # the logs were captured
    for secret in secrets:
        for fragment in fragments(secret):
            assert fragment not in seen


def test_a_config_error_names_the_setting_not_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = new_secret()
    bad = "whsec_" + "not*base64*" + good[6:20]
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", f"{good},{bad}")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message == (
        "RUNPOLLER_WEBHOOK_SECRETS (from environment): secret #2 is not whsec_ followed by base64"
    )
    for fragment in [*fragments(good), bad, "not*base64*"]:
        assert fragment not in message


def test_runpoller_config_hides_the_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runpoller.cli.main import main

    secret = new_secret()
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", secret)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "webhook_secrets = set (hidden)" in out
    for fragment in fragments(secret):
        assert fragment not in out
