"""The benchmark harness, end to end at smoke size: it runs, and its numbers are sane.

Never a wall-clock threshold here: the figures depend on the machine and on whatever else
runs on it. What must hold anywhere: every phase measured something, every number is
finite and of the right sign, every run of ours reached exactly one final event, no run was
polled twice at once, and the harness left no keys behind.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from runpoller_bench.config import parse_args, smoke_config
from runpoller_bench.harness import run_bench
from runpoller_bench.report import write_results
from tests.conftest import test_redis_url

pytestmark = pytest.mark.integration


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


async def test_smoke_bench_runs_and_reports_sane_numbers(tmp_path: Path) -> None:
    config = smoke_config(redis_url=test_redis_url(), verbose=False)
    results = await run_bench(config)

    designs = results["designs"]
    assert set(designs) == {"floor", "naive", "sdk", "ours", "modes"}
    modes = designs.pop("modes")
    # The latency size: floor and ours again, with fewer runs and one worker.
    latency = results["latency"]
    assert set(latency) == {"floor", "ours"}
    assert latency["ours"]["finals"] == latency["ours"]["runs_created"]
    assert len(latency["ours"]["in_flight_per_worker"]) == 1
    # The capacity size: ours alone, one worker, its own interval.
    capacity = results["capacity"]
    assert set(capacity) == {"ours"}
    assert len(capacity["ours"]["in_flight_per_worker"]) == 1
    assert capacity["ours"]["finals"] == capacity["ours"]["runs_created"]
    assert "≤ 6 KB" in results["capacity_table"] and "≤ 6 KB" not in results["table"]
    sized = [("latency " + k, v) for k, v in latency.items()] + [
        ("capacity " + k, v) for k, v in capacity.items()
    ]
    for name, figures in [*designs.items(), *sized]:
        assert figures["polls"] > 0, name
        assert finite(figures["polls_per_s"]) and figures["polls_per_s"] > 0, name
        assert finite(figures["cpu_ms_per_poll"]) and figures["cpu_ms_per_poll"] > 0, name
        assert finite(figures["redis_commands_per_poll"]), name
        assert figures["redis_commands_per_poll"] >= 0, name
        lateness = figures["poll_lateness_ms"]
        assert lateness["n"] > 0, name
        assert finite(lateness["p50"]) and finite(lateness["p99"]), name
        assert lateness["p50"] <= lateness["p99"], name
        assert figures["overlapping_polls"] == 0, name

    # The floor and the SDK never touch Redis; both queue-driven designs do.
    assert designs["floor"]["redis_commands_per_poll"] == pytest.approx(0, abs=0.05)
    assert designs["sdk"]["redis_commands_per_poll"] == pytest.approx(0, abs=0.05)
    assert designs["naive"]["redis_commands_per_poll"] > 0
    assert designs["ours"]["redis_commands_per_poll"] > 0

    ours = designs["ours"]
    assert ours["finals_missing"] == 0
    assert ours["finals"] == ours["runs_created"]
    assert ours["finals_by_status"] == {"completed": ours["runs_created"]}
    assert ours["tool_calls_answered"] >= 1
    assert finite(ours["api_requests_per_run"]) and ours["api_requests_per_run"] >= 2
    assert ours["polls_per_run"] <= ours["api_requests_per_run"]
    final = ours["final_event_ms"]
    assert final["n"] > 0
    assert finite(final["p50"]) and final["p50"] > -1  # ms-resolution stream ids
    if ours["rss_kb_per_run"] is not None:
        assert finite(ours["rss_kb_per_run"])
    assert len(ours["in_flight_per_worker"]) == 2

    # Every target is evaluated, and the table shows all four designs side by side.
    assert {t["status"] for t in results["targets"]} <= {"pass", "FAIL", "n/a"}
    header = results["table"].splitlines()[0]
    for column in ("ours", "floor", "sdk", "naive", "ours/sdk", "target", "result"):
        assert column in header
    assert "final status → final event p99" in results["latency_table"]

    check_modes(modes, results)

    path = write_results(results, tmp_path / "smoke.json")
    assert json.loads(path.read_text())["config"]["smoke"] is True

    redis = Redis.from_url(test_redis_url())
    try:
        prefix = results["config"]["key_prefix"]
        left = [key async for key in redis.scan_iter(match=f"*{prefix}*", count=1000)]
    finally:
        await redis.aclose()
    assert left == []


def check_modes(modes: dict[str, Any], results: dict[str, Any]) -> None:
    """The delivery-modes section: every mode that ran finished every run, its figures are
    sane, and the webhooks mode was woken by webhooks (one delivery per response)."""
    meta = modes.pop("_meta")
    expected = {"fixed", "adaptive", "webhooks"} | (
        {"streamed"} if meta["streaming_supported"] else set()
    )
    assert set(modes) == expected
    runs = meta["runs_per_mode"]
    for name, figures in modes.items():
        assert figures["finals_by_status"] == {"completed": runs}, name
        assert figures["response_ids_known"] == runs, name
        assert figures["overlapping_polls"] == 0, name
        # At least the create and one read of the response's end.
        assert figures["api_requests_per_run"] >= 1, name
        lag = figures["detection_lag_ms"]
        assert lag["n"] == runs and finite(lag["p50"]) and finite(lag["p99"]), name
        assert 0 <= lag["p50"] <= lag["p99"], name
        assert finite(figures["cpu_ms_per_run"]) and figures["cpu_ms_per_run"] >= 0, name
    # Webhooks need no polls beyond the fallback: fewer requests than fixed-interval polling.
    assert modes["webhooks"]["api_requests_per_run"] < modes["fixed"]["api_requests_per_run"]
    deliveries = modes["webhooks"]["deliveries"]
    assert deliveries["this_mode_by_status"] == {"200": runs}
    assert deliveries["all_modes"] == runs * len(modes)
    if "streamed" in modes:
        streamed = modes["streamed"]
        assert streamed["runs_with_progress"] == runs
        first = streamed["first_progress_ms"]
        assert first["n"] == runs and finite(first["p99"])
    targets = {(t["mode"], t["name"]): t["status"] for t in results["mode_targets"]}
    assert len(targets) == 5 and set(targets.values()) <= {"pass", "FAIL", "n/a"}
    for column in ("fixed", "adaptive", "webhooks", "streamed"):
        assert column in results["modes_table"].splitlines()[0]


def test_command_line_help_and_smoke_sizes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "runpoller_bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "--function-call-share" in done.stdout
    config = parse_args(["--smoke", "--workers", "3"])
    assert config.smoke and config.runs == 20 and config.workers == 3
    with pytest.raises(SystemExit):
        parse_args(["--interval-ms", "10"])


async def test_ours_drives_agent_session_turns() -> None:
    """``--backend agent_turn``: ours keeps agent turns in flight, answers their function
    calls, and every one ends completed; a poll is the turn's GET (the session's GET beside it
    is not a second poll)."""
    config = smoke_config(
        redis_url=test_redis_url(), verbose=False, designs=("ours",), backend="agent_turn"
    )
    results = await run_bench(config)
    ours = results["designs"]["ours"]
    assert ours["finals_missing"] == 0
    assert ours["finals_by_status"] == {"completed": ours["runs_created"]}
    assert ours["tool_calls_answered"] >= 1
    assert ours["polls"] > 0 and ours["overlapping_polls"] == 0
    assert ours["poll_lateness_ms"]["n"] > 0
    # Each poll of an unfinished turn also reads its session: about two requests a poll.
    assert ours["polls_per_run"] < ours["api_requests_per_run"]
    assert results["config"]["backend"] == "agent_turn"
    assert parse_args(["--smoke", "--backend", "agent_turn"]).backend == "agent_turn"


async def test_profile_samples_each_worker_during_the_window(tmp_path: Path) -> None:
    """``--profile DIR``: py-spy (from the bench extra) samples each of ours' workers during
    the window; the results name where the busy samples were, by package."""
    config = smoke_config(
        redis_url=test_redis_url(), verbose=False, designs=("ours",), profile=str(tmp_path)
    )
    results = await run_bench(config)
    profiles = results["designs"]["ours"]["profile"]
    assert len(profiles) == config.workers, results["notes"]
    for name, summary in profiles.items():
        assert Path(summary["file"]).is_file(), name
        assert summary["samples"] > 0, name
        shares = summary["busy_by_package"]
        assert shares and all(0 < share <= 1 for share in shares.values()), name
