"""The loop-stall limit setting and LoopHeartbeat's construction (no Redis needed)."""

from __future__ import annotations

import pytest

from runpoller.config import ConfigError, load_settings
from runpoller.protocol import Keys
from runpoller.redis import store
from runpoller.worker import liveness
from runpoller.worker.liveness import LoopHeartbeat


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "RUNPOLLER_LOOP_STALL_LIMIT_MS",
        "RUNPOLLER_HEARTBEAT_INTERVAL_MS",
        "RUNPOLLER_DEAD_WORKER_AFTER_MS",
        "RUNPOLLER_LIBRECHAT_CONFIG",
    ):
        monkeypatch.delenv(name, raising=False)


def test_default_stall_limit() -> None:
    settings, _ = load_settings()
    assert settings.loop_stall_limit_ms == 10_000
    assert settings.loop_stall_limit_ms > settings.heartbeat_interval_ms


def test_stall_limit_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_LOOP_STALL_LIMIT_MS", "4000")
    settings, _ = load_settings()
    assert settings.loop_stall_limit_ms == 4000


@pytest.mark.parametrize("limit", [1000, 500])
def test_stall_limit_must_exceed_heartbeat_interval(limit: int) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(loop_stall_limit_ms=limit, heartbeat_interval_ms=1000)
    message = str(err.value)
    assert message.startswith("RUNPOLLER_LOOP_STALL_LIMIT_MS (from argument)")
    assert "RUNPOLLER_HEARTBEAT_INTERVAL_MS" in message
    assert f"({limit} ms)" in message


def test_stall_limit_error_names_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_LOOP_STALL_LIMIT_MS", "900")
    with pytest.raises(ConfigError, match=r"^RUNPOLLER_LOOP_STALL_LIMIT_MS \(from environment\)"):
        load_settings()


def test_stall_limit_not_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPOLLER_LOOP_STALL_LIMIT_MS", "soon")
    with pytest.raises(ConfigError, match=r"^RUNPOLLER_LOOP_STALL_LIMIT_MS \(environment\)"):
        load_settings()


def test_heartbeat_script_is_the_store_script() -> None:
    # Both beats (loop side and thread side) must write the same key, value and TTL.
    assert liveness.HEARTBEAT_SCRIPT is store._HEARTBEAT


def test_from_settings_uses_the_settings() -> None:
    settings, _ = load_settings(
        redis_url="redis://127.0.0.1:1/0",
        key_prefix="rp-unit",
        heartbeat_interval_ms=300,
        dead_worker_after_ms=900,
        loop_stall_limit_ms=2000,
    )
    hb = LoopHeartbeat.from_settings(settings, "w-1", in_flight=lambda: 0, on_lapse=lambda: None)
    assert hb.interval_s == 0.3
    assert hb.ttl_ms == 900
    assert hb.stall_limit_s == 2.0
    assert hb._heartbeat_key == Keys("rp-unit").heartbeat("w-1")
    assert hb.last_beat is None
    assert not hb.running
    hb.stop()  # never started: nothing to join, and idempotent
    hb.stop()
    with pytest.raises(RuntimeError):
        hb.start()


@pytest.mark.parametrize(
    ("interval", "ttl", "stall"), [(1000, 2500, 1000), (0, 2500, 5000), (1000, 0, 5000)]
)
def test_constructor_refuses_nonsense(interval: int, ttl: int, stall: int) -> None:
    with pytest.raises(ValueError):
        LoopHeartbeat(
            "redis://127.0.0.1:1/0",
            Keys("rp-unit"),
            "w-1",
            interval_ms=interval,
            ttl_ms=ttl,
            stall_limit_ms=stall,
            in_flight=lambda: 0,
            on_lapse=lambda: None,
        )
