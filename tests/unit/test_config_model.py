"""The settings rules live on the model: ``Settings(...)`` built in code is checked, once."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from runpoller import config
from runpoller.config import SETTING_ERROR, ConfigError, Settings, load_settings
from runpoller.secrets import new_key

GOOD_RING = f"k1:{new_key()}"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings() reads the environment too; start every test from the defaults.
    for name in list(os.environ):
        if name.startswith(("RUNPOLLER_", "ASSISTANTS_")) or name == "REDIS_URL":
            monkeypatch.delenv(name)


# One case per rule: the arguments that break it, the field at fault, a phrase of the message.
RULES: list[tuple[str, dict[str, Any], str, str]] = [
    ("poll interval minimum", {"poll_interval_ms": 50}, "poll_interval_ms", "at least 100 ms"),
    (
        "timeout above interval",
        {"poll_interval_ms": 5000, "timeout_ms": 5000},
        "timeout_ms",
        "larger than the poll interval 5000 ms (poll_interval_ms)",
    ),
    (
        "max poll interval bound",
        {"poll_interval_ms": 2000, "max_poll_interval_ms": 1999},
        "poll_interval_ms",
        "above the maximum poll interval 1999 ms (max_poll_interval_ms)",
    ),
    (
        "max timeout bound",
        {"timeout_ms": 10_000, "max_timeout_ms": 9_999},
        "timeout_ms",
        "above the maximum timeout 9999 ms (max_timeout_ms)",
    ),
    (
        "dead worker after two heartbeats",
        {"heartbeat_interval_ms": 1000, "dead_worker_after_ms": 2000},
        "dead_worker_after_ms",
        "must exceed twice the heartbeat interval (1000 ms)",
    ),
    (
        "loop stall above heartbeat",
        {"heartbeat_interval_ms": 1000, "loop_stall_limit_ms": 1000},
        "loop_stall_limit_ms",
        "must exceed the heartbeat interval (1000 ms, heartbeat_interval_ms)",
    ),
    ("runs per worker", {"max_runs_per_worker": 0}, "max_runs_per_worker", "must be at least 1"),
    ("http concurrency", {"http_concurrency": 0}, "http_concurrency", "must be at least 1"),
    ("event stream length", {"event_stream_maxlen": -1}, "event_stream_maxlen", "at least 1"),
    (
        "http(s) base URL",
        {"assistants_base_url": "ftp://api.test/v1"},
        "assistants_base_url",
        "'ftp://api.test/v1' is not an http(s) URL",
    ),
    ("durations above 0", {"read_timeout_s": 0}, "read_timeout_s", "it must be above 0"),
    (
        "base URL with a host",
        {"assistants_base_url": "http://"},
        "assistants_base_url",
        "'http://' has no host",
    ),
    (
        "redis URL",
        {"redis_url": "redis://:secretpw@h:notaport/0"},
        "redis_url",
        "'redis://:***@h:notaport/0': port 'notaport' is not a number from 1 to 65535",
    ),
    ("metrics port", {"metrics_port": 99999}, "metrics_port", "must be -1 (no HTTP server)"),
    ("key ring parses", {"secret_keys": "k1:tooshort"}, "secret_keys", "k1"),
    ("empty supported ids", {"supported_ids": []}, "supported_ids", "an empty list is invalid"),
    ("empty excluded ids", {"excluded_ids": []}, "excluded_ids", "an empty list is invalid"),
    ("webhook secrets", {"webhook_secrets": "sk-x"}, "webhook_secrets", "does not start with"),
    ("webhook listener", {"webhook_port": 70000}, "webhook_port", "must be 0 (any port)"),
    (
        "adaptive polling",
        {"adaptive_poll_after_ms": 60_000, "adaptive_poll_max_ms": 10},
        "adaptive_poll_max_ms",
        "it must be from the poll interval",
    ),
    (
        "webhook fallback",
        {"webhook_fallback_interval_ms": 10},
        "webhook_fallback_interval_ms",
        "must be 0 (no webhooks) or from the poll interval",
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "field", "phrase"),
    [case[1:] for case in RULES],
    ids=[case[0] for case in RULES],
)
def test_settings_in_code_get_the_rule_as_a_validation_error(
    kwargs: dict[str, Any], field: str, phrase: str
) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    errors = info.value.errors()
    assert len(errors) == 1
    (err,) = errors
    assert err["type"] == SETTING_ERROR
    assert err["msg"].startswith(field)
    assert phrase in err["msg"]
    ctx = err.get("ctx") or {}
    assert ctx["field"] == field
    assert set(ctx["fields"]) >= {field}


@pytest.mark.parametrize(
    ("kwargs", "field"), [case[1:3] for case in RULES], ids=[case[0] for case in RULES]
)
def test_load_settings_says_the_same_in_env_names(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(**kwargs)
    in_code = info.value.errors()[0]["msg"]
    with pytest.raises(ConfigError) as config_info:
        load_settings(**kwargs)
    expected = in_code
    for name in (info.value.errors()[0].get("ctx") or {})["fields"]:
        expected = expected.replace(name, f"{config._env_name(name)} (from argument)", 1)
    assert str(config_info.value) == expected
    assert str(config_info.value).startswith(config._env_name(field) + " (from argument)")


def test_the_environment_is_checked_by_settings_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL_MS", "50")
    with pytest.raises(ValidationError, match="poll_interval_ms is 50 ms; it must be at least"):
        Settings()


def test_limits_themselves_are_accepted() -> None:
    settings = Settings(
        poll_interval_ms=100,
        timeout_ms=101,
        max_poll_interval_ms=100,
        max_timeout_ms=101,
        heartbeat_interval_ms=100,
        dead_worker_after_ms=201,
        loop_stall_limit_ms=101,
        max_runs_per_worker=1,
        http_concurrency=1,
        event_stream_maxlen=1,
        assistants_base_url="http://127.0.0.1:1/v1",
        secret_keys=GOOD_RING,
        supported_ids=["asst_a"],
        excluded_ids=["asst_b"],
    )
    assert settings.poll_interval_ms == 100
    assert list(settings.key_ring) == ["k1"]


def test_type_errors_come_before_the_rules() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(timeout_ms="soon", poll_interval_ms=50)
    assert [e["type"] for e in info.value.errors()] == ["int_parsing"]


def test_the_first_broken_rule_is_the_one_error() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(poll_interval_ms=50, http_concurrency=0, assistants_base_url="ftp://x")
    assert [(e.get("ctx") or {})["field"] for e in info.value.errors()] == ["poll_interval_ms"]


def test_the_error_does_not_print_the_api_key() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(assistants_api_key="sk-canary-123456", poll_interval_ms=50)
    assert "sk-canary-123456" not in str(info.value)
    assert "sk-canary-123456" not in repr(info.value)
    info.value.json()  # the context serialises


def test_both_id_lists_are_kept_in_code_and_dropped_with_a_warning_by_load_settings() -> None:
    # Unchanged: a warning, not an error, so it stays with load_settings (which can return it).
    both = Settings(supported_ids=["a"], excluded_ids=["b"])
    assert (both.supported_ids, both.excluded_ids) == (["a"], ["b"])
    settings, warnings = load_settings(supported_ids=["a"], excluded_ids=["b"])
    assert (settings.supported_ids, settings.excluded_ids) == (["a"], None)
    assert warnings == ["both supported_ids and excluded_ids are set; excluded_ids is ignored"]


def counting_rules(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    calls: dict[str, int] = {}

    def counted(rule: Callable[[Settings], Any]) -> Callable[[Settings], Any]:
        calls[rule.__name__] = 0

        def wrapper(s: Settings) -> Any:
            calls[rule.__name__] += 1
            return rule(s)

        return wrapper

    monkeypatch.setattr(config, "_RULES", tuple(counted(rule) for rule in config._RULES))
    return calls


def test_settings_in_code_runs_every_rule_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_rules(monkeypatch)
    Settings(secret_keys=GOOD_RING)
    # One rule each: the three counts, the two lists, the webhook listener and its fallback,
    # the base URL's two cases.
    assert len(calls) == len(RULES) - 5
    assert set(calls.values()) == {1}


def test_load_settings_runs_every_rule_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_rules(monkeypatch)
    # Both lists: the excluded_ids fix-up copies the settings without checking them again.
    load_settings(secret_keys=GOOD_RING, supported_ids=["a"], excluded_ids=["b"])
    assert set(calls.values()) == {1}


def test_a_broken_rule_stops_the_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting_rules(monkeypatch)
    with pytest.raises(ConfigError):
        load_settings(max_poll_interval_ms=10)
    order = list(calls)  # in the order the rules run
    stop = order.index("_max_poll_interval_bound")
    assert [calls[name] for name in order] == [1] * (stop + 1) + [0] * (len(order) - stop - 1)


def test_the_key_ring_is_parsed_once_per_load(monkeypatch: pytest.MonkeyPatch) -> None:
    import runpoller.secrets

    parsed: list[str] = []
    real = runpoller.secrets.parse_key_ring

    def spy(text: str) -> dict[str, bytes]:
        parsed.append(text)
        return real(text)

    monkeypatch.setattr(runpoller.secrets, "parse_key_ring", spy)
    load_settings(secret_keys=GOOD_RING)
    assert parsed == [GOOD_RING]
