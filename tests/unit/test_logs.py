"""The structlog secret-redaction processor, alone and in the configured chain."""

from __future__ import annotations

import json
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from runpoller.config import Settings
from runpoller.logs import configure_logging, redact_secrets

KEY = "sk-proj-Abc123def456ghi789"
MASK = "**********"


def redact(**fields: Any) -> MutableMapping[str, Any]:
    return redact_secrets(None, "info", dict(fields))


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.mark.parametrize("name", ["api_key", "API_KEY", "Authorization", "password", "secret"])
def test_secret_named_fields_are_blanked_whatever_their_value(name: str) -> None:
    assert redact(event="x", **{name: "anything-at-all"})[name] == MASK


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"calling with {KEY}", f"calling with {MASK}"),
        ("Authorization: Bearer eyJhbGciOi.J9-x_y", f"Authorization: {MASK}"),
        (f"two: {KEY} and sk-other_123456 end", f"two: {MASK} and {MASK} end"),
        (
            f'{{"api_key": "{KEY}", "kind": "response"}}',
            f'{{"api_key": "{MASK}", "kind": "response"}}',
        ),
    ],
)
def test_keys_and_bearer_tokens_are_blanked_inside_any_text(text: str, expected: str) -> None:
    out = redact(event=text, error=text)
    assert out["event"] == expected and out["error"] == expected


def test_everything_else_is_left_alone() -> None:
    fields = {
        "event": "run.final",
        "run_id": "run_abc123",
        "object_id": "resp_abc",
        "status": "completed",
        "reason": "the run completed",
        "usage": {"prompt_tokens": 42, "completion_tokens": 8},
        "round": 2,
    }
    assert redact(**fields) == fields


def test_the_configured_chain_redacts_before_rendering(
    restore_structlog: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_logging(Settings(log_format="json"))
    processors = structlog.get_config()["processors"]
    assert redact_secrets in processors
    assert processors.index(redact_secrets) == len(processors) - 2, "last before the renderer"
    try:
        raise RuntimeError(f"401 from the API for key {KEY}")
    except RuntimeError as exc:
        event: Any = {"event": "run.crashed", "api_key": KEY, "run_id": "r1", "exc_info": exc}
        for processor in processors:
            event = processor(None, "error", event)
    assert isinstance(event, str)
    line = json.loads(event)
    assert line["run_id"] == "r1" and line["api_key"] == MASK and line["level"] == "error"
    assert KEY not in event and "Abc123def456" not in event
    assert "RuntimeError" in line["exception"], "the traceback is kept, minus the key"


# ---------------------------------------------------------------------------- former gaps
# Each case below leaked with the first processor: nested values, prefixed field names,
# secrets in text that do not start with sk-.


@pytest.mark.parametrize(
    "fields",
    [
        {"headers": {"Authorization": "Bearer abc.def-ghi"}},
        {"job": {"kind": "assistants_run", "api_key": KEY}},
        {"args": [KEY]},
    ],
    ids=["dict-header", "nested-job", "list"],
)
def test_former_gap_nested_values_are_not_scanned(fields: dict[str, Any]) -> None:
    shown = repr(redact(event="x", **fields))
    assert KEY not in shown and "abc.def" not in shown


@pytest.mark.parametrize(
    "name", ["assistants_api_key", "openai_api_key", "x-api-key", "access_token", "secret_keys"]
)
def test_former_gap_secret_like_field_names_are_not_blanked(name: str) -> None:
    assert redact(event="x", **{name: "azure0123456789abcdef"})[name] == MASK


@pytest.mark.parametrize(
    "text",
    [
        "request failed: api_key=azure0123456789abcdef",
        '{"api_key": "azure0123456789abcdef"}',
        "bearer azure0123456789abcdef",
        "Authorization: Bearer abc+def/ghi==",
        "redis://:azure0123456789abcdef@redis:6379/0",
    ],
    ids=["api_key=", "json-api_key", "lowercase-bearer", "base64-token", "url-password"],
)
def test_former_gap_non_sk_secrets_in_text_survive(text: str) -> None:
    out = redact(event=text)["event"]
    assert "azure0123456789abcdef" not in out and "def/ghi" not in out
