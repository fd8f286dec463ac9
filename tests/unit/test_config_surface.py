"""What a person sees of the settings: one line per mistake, "did you mean", no secret."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from runpoller.cli.main import main
from runpoller.config import ConfigError, Settings, load, load_settings, startup_problems


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("RUNPOLLER_", "ASSISTANTS_", "RUNPOLER")) or name == "REDIS_URL":
            monkeypatch.delenv(name)


def librechat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    path = tmp_path / "librechat.yaml"
    path.write_text(body)
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    return path


@pytest.mark.parametrize(
    ("url", "phrase"),
    [
        ("localhost:6379", "'localhost:6379' has no scheme"),
        ("http://:secretpw@cache/0", "'http://:***@cache/0': scheme http:// is not one of"),
        ("redis://:secretpw@cache:notaport/0", "port 'notaport' is not a number"),
        ("redis://cache/zero", "DB 'zero' is not a number"),
    ],
)
def test_a_bad_redis_url_is_refused_at_load(
    monkeypatch: pytest.MonkeyPatch, url: str, phrase: str
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert text.startswith("REDIS_URL (from environment): ")
    assert phrase in text and "secretpw" not in text


def test_sentinel_and_tls_urls_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("redis+sentinel://s1:26379,s2:26379/mymaster/0", "rediss://:pw@cache:6380/1"):
        monkeypatch.setenv("REDIS_URL", url)
        assert load_settings()[0].redis_url == url


def test_unknown_variables_are_warnings_with_the_likely_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL", "500")
    monkeypatch.setenv("RUNPOLER_TIMEOUT_MS", "500")
    monkeypatch.setenv("RUNPOLLER_NOTHING_LIKE_IT", "1")
    monkeypatch.setenv("RUNPOLLER_CHAOS_RUNS", "5")  # the tooling's own
    monkeypatch.setenv("HOME_DIRECTORY_X", "1")  # not ours, nothing like ours
    warnings = load_settings()[1]
    assert warnings == [
        "RUNPOLER_TIMEOUT_MS is set but is not a runpoller setting; did you mean "
        "RUNPOLLER_TIMEOUT_MS?",
        "RUNPOLLER_NOTHING_LIKE_IT is set but is not a runpoller setting",
        "RUNPOLLER_POLL_INTERVAL is set but is not a runpoller setting; did you mean "
        "RUNPOLLER_POLL_INTERVAL_MS?",
    ]


def test_strict_makes_an_unknown_variable_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL", "500")
    monkeypatch.setenv("RUNPOLLER_STRICT_CONFIG", "true")
    with pytest.raises(ConfigError, match=r"did you mean RUNPOLLER_POLL_INTERVAL_MS.*STRICT"):
        load_settings()
    monkeypatch.delenv("RUNPOLLER_STRICT_CONFIG")
    with pytest.raises(ConfigError):
        load(strict=True)
    assert load().settings.poll_interval_ms == 2000


def test_unknown_and_duplicate_librechat_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = librechat(
        tmp_path,
        monkeypatch,
        "endpoints:\n  assistants:\n    pollIntervallMs: 500\n    timeoutMs: 10000\n"
        "    disableBuilder: true\n    timeoutMs: 20000\n",
    )
    settings, warnings = load_settings()
    assert warnings == [
        f"{path}: line 6: key 'timeoutMs' repeats line 4 (LibreChat refuses the file; "
        "runpoller would use the last)",
        f"{path}: endpoints.assistants.pollIntervallMs is not a LibreChat assistants setting; "
        "did you mean pollIntervalMs?",
    ]
    assert (settings.poll_interval_ms, settings.timeout_ms) == (2000, 20000)
    with pytest.raises(ConfigError, match="repeats line 4"):
        load(strict=True)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "endpoints:\n  assistants:\n    timeoutMs: [1, 2\n",
            "{path}: not valid YAML at line 4, column 1: expected ',' or ']', but got "
            "'<stream end>' (while parsing a flow sequence)",
        ),
        (  # against the file, where the value came from, not against the default maximum
            "endpoints:\n  assistants:\n    timeoutMs: 999999999\n",
            "RUNPOLLER_TIMEOUT_MS (from {path}: endpoints.assistants.timeoutMs) is 999999999 "
            "ms; above the maximum timeout 86400000 ms (RUNPOLLER_MAX_TIMEOUT_MS (from default))",
        ),
    ],
    ids=["syntax error with its reason", "timeoutMs above the maximum"],
)
def test_file_problems_name_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str, message: str
) -> None:
    path = librechat(tmp_path, monkeypatch, body)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == message.format(path=path)


@pytest.mark.parametrize(
    ("name", "value", "phrase"),
    [
        ("RUNPOLLER_LOG_LEVEL", "LOUD", "RUNPOLLER_LOG_LEVEL (environment): Input should be"),
        ("ASSISTANTS_BASE_URL", "http://", "'http://' has no host"),
        ("RUNPOLLER_METRICS_PORT", "99999", "RUNPOLLER_METRICS_PORT (from environment) is 99999"),
        ("RUNPOLLER_READ_TIMEOUT_S", "0", "it must be above 0"),
        ("RUNPOLLER_CANCEL_GRACE_MS", "-1", "it must be 0 or more"),
    ],
)
def test_bounds(monkeypatch: pytest.MonkeyPatch, name: str, value: str, phrase: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(phrase)):
        load_settings()


def test_log_level_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_LOG_LEVEL", "debug")
    assert load_settings()[0].log_level == "DEBUG"


def test_startup_problems_say_what_will_fail() -> None:
    assert startup_problems(Settings()) == [
        "ASSISTANTS_API_KEY is not set: only jobs that carry their own api_key can run; every "
        "other job will be refused (missing_api_key)"
    ]
    (line,) = startup_problems(Settings(assistants_api_key="user_provided"))
    assert line.startswith("ASSISTANTS_API_KEY=user_provided but RUNPOLLER_SECRET_KEYS is not set")
    assert startup_problems(Settings(assistants_api_key="sk-live-123456789")) == []
    relaxed = Settings(assistants_api_key="user_provided", allow_plaintext_keys=True)
    assert startup_problems(relaxed) == []


def test_config_masks_every_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:secretpw@cache:6379/0")
    monkeypatch.setenv("ASSISTANTS_API_KEY", "sk-verysecretkey123")
    monkeypatch.setenv("ASSISTANTS_BASE_URL", "https://me:proxypw@proxy.test/v1")
    monkeypatch.setenv("RUNPOLLER_WEBHOOK_SECRETS", "whsec_c2VjcmV0")
    for argv in (["config"], ["config", "--list"]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        for secret in ("secretpw", "verysecretkey", "proxypw", "whsec_c2VjcmV0"):
            assert secret not in out
        assert "redis://:***@cache:6379/0" in out and "https://me:***@proxy.test/v1" in out


def test_config_list_has_env_name_default_value_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = librechat(tmp_path, monkeypatch, "endpoints:\n  assistants:\n    timeoutMs: 10000\n")
    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL_MS", "500")
    assert main(["config", "--list"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["ENV"] == ["ENV", "DEFAULT", "VALUE", "SOURCE"]
    assert rows["RUNPOLLER_POLL_INTERVAL_MS"] == [
        "RUNPOLLER_POLL_INTERVAL_MS",
        "2000",
        "500",
        "environment",
    ]
    assert rows["RUNPOLLER_TIMEOUT_MS"] == [
        "RUNPOLLER_TIMEOUT_MS",
        "180000",
        "10000",
        f"{path}:",
        "endpoints.assistants.timeoutMs",
    ]
    assert rows["ASSISTANTS_API_KEY"][1:] == ["(unset)", "(unset)", "default"]
    assert len(rows) == len(Settings.model_fields) + 1


def test_config_strict_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RUNPOLLER_TIMEOUT", "1")
    assert main(["config", "--strict"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean RUNPOLLER_TIMEOUT_MS?" in err
