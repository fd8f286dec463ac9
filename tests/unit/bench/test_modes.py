"""The delivery-modes section's pure parts: instants, per-run records, figures, targets, table."""

from __future__ import annotations

import json

import pytest

from runpoller_bench import modestats as ms
from runpoller_bench.config import parse_args
from runpoller_bench.mix import MODES_MIX, SMOKE_MODES_MIX, parse_mix
from runpoller_bench.modes import response_script, script_seconds
from runpoller_fake import parse_script


def entry(ms_id: int, kind: str, **data: object) -> tuple[bytes, dict[bytes, bytes]]:
    body = {"type": kind, **data}
    return f"{ms_id}-0".encode(), {b"type": kind.encode(), b"data": json.dumps(body).encode()}


def test_response_scripts_are_valid_and_last_their_lifetime() -> None:
    script = response_script(12.5)
    assert script_seconds(script) == pytest.approx(12.5)
    parse_script(script).check_kind("response")
    assert script_seconds(response_script(0.01)) == pytest.approx(0.051)  # queued + 1 ms


def test_terminal_instant_and_first_delta_come_from_the_fakes_logs() -> None:
    log = [
        {"endpoint": "get_response", "time": 101.0},
        {"endpoint": "create_response", "time": 100.25},
    ]
    assert ms.terminal_instant(log, 3.0) == pytest.approx(103.25)
    assert ms.terminal_instant(log[:1], 3.0) is None
    stream = {
        "events": [
            {"sequence_number": 0, "type": "response.created", "time": 100.3},
            {"sequence_number": 5, "type": "response.output_text.delta", "time": 100.9},
            {"sequence_number": 6, "type": "response.output_text.delta", "time": 101.2},
        ]
    }
    assert ms.first_delta_at(stream) == pytest.approx(100.9)
    assert ms.first_delta_at({"events": stream["events"][:1]}) is None
    assert ms.first_delta_at(None) is None


def test_a_runs_record_measures_on_our_clock() -> None:
    entries = [
        entry(1000, "accepted"),
        entry(1010, "status", status="in_progress", object_id="resp_1"),
        entry(1500, "progress", delta="Hi "),
        entry(1600, "progress", delta="there"),
        entry(4300, "final", status="completed"),
    ]
    log = [{"endpoint": "create_response", "time": 1.002}, {"endpoint": "get_response"}]
    # The fake's clock runs 2 ms ahead of ours: its 1.002 s is our 1.000 s.
    record = ms.run_record("streamed", 3.0, 3.25, entries, log, 0.002, delta_at=1.452)
    assert record.api_requests == 2
    assert record.final_status == "completed"
    assert record.detection_ms == pytest.approx(4300 - 4250)
    assert record.first_progress_ms == pytest.approx(1500 - 1450)
    assert record.progress_events == 2
    assert ms.events_of(entries)[3] == "resp_1"
    # No final yet, no delta known: nothing invented.
    unfinished = ms.run_record("fixed", 3.0, 3.25, entries[:2], log, 0.0)
    assert (unfinished.final_status, unfinished.detection_ms) == (None, None)
    assert unfinished.first_progress_ms is None


def _record(mode: str, lifetime: float, requests: int, lag: float | None) -> ms.RunRecord:
    status = "completed" if lag is not None else None
    return ms.RunRecord(mode, lifetime, status, requests, lag, None, 0)


def test_mode_figures_split_requests_by_length_and_count_missing_finals() -> None:
    mix = parse_mix("0.5:1-10,0.5:10-100")
    records = [
        _record("fixed", 5, 6, 100.0),
        _record("fixed", 50, 51, 900.0),
        _record("fixed", 60, 61, 500.0),
        _record("fixed", 70, 0, None),
    ]
    figures = ms.mode_figures(records, mix)
    assert (figures["runs"], figures["completed"], figures["finals_missing"]) == (4, 3, 1)
    assert figures["api_requests_per_run"] == pytest.approx(118 / 3)
    assert figures["api_requests_by_length"]["1-10 s"] == {"runs": 1, "mean": 6.0, "max": 6.0}
    assert figures["api_requests_by_length"]["10-100 s"]["mean"] == pytest.approx(56.0)
    assert figures["detection_lag_ms"]["n"] == 3
    ms.add_cpu(figures, cpu_s=1.5, idle_cores=0.01, span_s=100.0)
    assert figures["cpu_ms_per_run"] == pytest.approx(500.0)
    assert figures["cpu_ms_per_run_above_idle"] == pytest.approx(0.5 * 1000 / 3)


def _modes(**overrides: dict[str, object]) -> dict[str, dict[str, object]]:
    modes: dict[str, dict[str, object]] = {
        "fixed": {"api_requests_per_run": 40.0, "detection_lag_ms": {"p99": 1000.0}},
        "adaptive": {"api_requests_per_run": 19.0, "detection_lag_ms": {"p99": 1900.0}},
        "webhooks": {
            "api_requests_per_run": 2.0,
            "api_requests_by_length": {"2-15 s": {"mean": 2.0}, "60-180 s": {"mean": 2.5}},
            "detection_lag_ms": {"p99": 40.0},
        },
    }
    modes.update(overrides)
    return modes


def test_targets_of_the_modes() -> None:
    targets = {(t.mode, t.name): t for t in ms.evaluate_mode_targets(_modes(), 1000)}
    assert targets["webhooks", "API requests per run, every length"].status == "pass"
    assert targets["webhooks", "detection lag p99"].status == "pass"
    assert targets["adaptive", "API requests per run vs fixed"].value == "47.5 %"
    assert targets["adaptive", "detection lag p99 vs fixed"].status == "pass"  # +900 ms
    assert targets["streamed", "first delta → first progress event p99"].status == "n/a"
    slow = _modes(
        webhooks={"api_requests_by_length": {"60-180 s": {"mean": 3.4}}},
        adaptive={"api_requests_per_run": 25.0, "detection_lag_ms": {"p99": 2100.0}},
        streamed={"first_progress_ms": {"p99": 250.0}},
    )
    failed = {(t.mode, t.name): t.status for t in ms.evaluate_mode_targets(slow, 1000)}
    assert failed["webhooks", "API requests per run, every length"] == "FAIL"
    assert failed["webhooks", "detection lag p99"] == "n/a"
    assert failed["adaptive", "API requests per run vs fixed"] == "FAIL"
    assert failed["adaptive", "detection lag p99 vs fixed"] == "FAIL"
    assert failed["streamed", "first delta → first progress event p99"] == "FAIL"


def test_the_modes_table_has_a_column_per_mode() -> None:
    rows = ms.mode_rows(_modes())
    by_label = {row[0]: row[1:] for row in rows}
    assert by_label["API requests per completed run"] == ["40.00", "19.00", "2.00", ""]
    assert by_label["  runs of 60-180 s: requests per run"] == ["n/a", "n/a", "2.50", ""]
    assert by_label["detection lag p99, ms"][2] == "40.0"


def test_modes_options() -> None:
    config = parse_args([])
    assert config.designs == ("floor", "naive", "sdk", "ours", "modes")
    assert config.modes_mix == MODES_MIX and config.webhook_fallback_ms == 300_000
    smoke = parse_args(["--smoke", "--modes", "webhooks,fixed", "--modes-mix", "1:1-2"])
    assert smoke.modes == ("fixed", "webhooks")
    assert smoke.modes_mix.describe() == "1:1-2"
    assert parse_args(["--smoke"]).modes_mix == SMOKE_MODES_MIX
    for bad in (
        ["--modes", "carrier-pigeon"],
        ["--modes-mix", "1:5"],
        ["--webhook-fallback-ms", "10"],
        ["--adaptive-max-ms", "50"],
        ["--modes-runs", "0"],
    ):
        with pytest.raises(SystemExit):
            parse_args(bad)
