from __future__ import annotations

from pathlib import Path

import pytest

from runpoller.config import ConfigError, load_settings

ENV_NAMES = [
    "ASSISTANTS_API_KEY",
    "ASSISTANTS_BASE_URL",
    "ASSISTANTS_MODELS",
    "RUNPOLLER_POLL_INTERVAL_MS",
    "RUNPOLLER_TIMEOUT_MS",
    "RUNPOLLER_LIBRECHAT_CONFIG",
    "RUNPOLLER_SUPPORTED_IDS",
    "RUNPOLLER_EXCLUDED_IDS",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def write_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "librechat.yaml"
    path.write_text(body)
    return path


def test_defaults_match_librechat() -> None:
    settings, warnings = load_settings()
    assert settings.poll_interval_ms == 2000
    assert settings.timeout_ms == 180_000
    assert settings.assistants_base_url == "https://api.openai.com/v1"
    assert settings.assistants_models == []
    assert warnings == []


def test_env_names_as_librechat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANTS_API_KEY", "user_provided")
    monkeypatch.setenv("ASSISTANTS_MODELS", "gpt-4o, gpt-4o-mini,,")
    monkeypatch.setenv("ASSISTANTS_BASE_URL", "http://127.0.0.1:9999/v1")
    settings, _ = load_settings()
    assert settings.user_provided_key
    assert settings.assistants_models == ["gpt-4o", "gpt-4o-mini"]
    assert settings.assistants_base_url == "http://127.0.0.1:9999/v1"


def test_librechat_yaml_block_and_env_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(
        tmp_path,
        "endpoints:\n  assistants:\n    pollIntervalMs: 750\n    timeoutMs: 10000\n"
        "    supportedIds: [asst_a, asst_b]\n    disableBuilder: true\n",
    )
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    settings, _ = load_settings()
    assert (settings.poll_interval_ms, settings.timeout_ms) == (750, 10000)
    assert settings.supported_ids == ["asst_a", "asst_b"]
    monkeypatch.setenv("RUNPOLLER_TIMEOUT_MS", "20000")
    settings, _ = load_settings()
    assert settings.timeout_ms == 20000
    assert settings.poll_interval_ms == 750


def test_both_id_lists_ignores_excluded_with_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(
        tmp_path, "endpoints:\n  assistants:\n    supportedIds: [a]\n    excludedIds: [b]\n"
    )
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    settings, warnings = load_settings()
    assert settings.supported_ids == ["a"]
    assert settings.excluded_ids is None
    assert any("excludedIds is ignored" in w for w in warnings)


def test_private_assistants_drops_both_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(
        tmp_path,
        "endpoints:\n  assistants:\n    privateAssistants: true\n    excludedIds: [b]\n",
    )
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    settings, warnings = load_settings()
    assert settings.excluded_ids is None and settings.supported_ids is None
    assert any("privateAssistants" in w for w in warnings)


def test_empty_id_list_in_yaml_is_invalid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "endpoints:\n  assistants:\n    supportedIds: []\n")
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"endpoints\.assistants\.supportedIds"):
        load_settings()


def test_interval_below_minimum_names_setting_and_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_yaml(tmp_path, "endpoints:\n  assistants:\n    pollIntervalMs: 0\n")
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "RUNPOLLER_POLL_INTERVAL_MS" in message
    assert "pollIntervalMs" in message and str(path) in message
    assert "at least 100" in message


def test_timeout_not_larger_than_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL_MS", "5000")
    monkeypatch.setenv("RUNPOLLER_TIMEOUT_MS", "5000")
    with pytest.raises(ConfigError, match=r"RUNPOLLER_TIMEOUT_MS .from environment.*larger"):
        load_settings()


def test_non_numeric_env_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_TIMEOUT_MS", "soon")
    with pytest.raises(ConfigError, match=r"RUNPOLLER_TIMEOUT_MS.*environment.*'soon'"):
        load_settings()


def test_broken_yaml_reports_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_yaml(tmp_path, "endpoints:\n  assistants:\n    pollIntervalMs: [1, 2\n")
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(path))
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings()


def test_missing_yaml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_LIBRECHAT_CONFIG", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="cannot read file"):
        load_settings()


def test_cli_prints_one_line_error_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runpoller.cli.main import main

    monkeypatch.setenv("RUNPOLLER_POLL_INTERVAL_MS", "10")
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("runpoller: configuration error: RUNPOLLER_POLL_INTERVAL_MS")
    assert "Traceback" not in err


def test_cli_never_prints_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from runpoller.cli.main import main

    monkeypatch.setenv("ASSISTANTS_API_KEY", "sk-canary-123456")
    assert main(["config"]) == 0
    assert "sk-canary-123456" not in capsys.readouterr().out
