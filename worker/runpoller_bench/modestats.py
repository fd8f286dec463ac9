"""Pure maths of the delivery-modes section: per-run records, per-mode figures, the targets.

How a Responses run learns that its response ended, four ways side by side (``modes.py``
runs them): **fixed** interval polling, **adaptive** (age-based) polling, **webhooks** with
a long fallback poll, and **streamed** (the worker follows the response's SSE stream).

Instants, all on the harness's clock (Unix seconds unless a name says ``_ms``):

- **the API's terminal instant**: the fake plays a response's script from the instant it is
  created, so it ends at (arrival of the ``create_response`` request, from the response's
  request log) + (the script's duration), moved onto our clock by the fake's measured offset.
  The response is created a little after its request arrived, so this instant is early by
  the create's handling time (about a millisecond) and the lags below are upper bounds.
- **detection lag**: from that instant to the final event's stream id (Redis's clock when the
  worker wrote it): the poll's wait, the request, the results, the final write.
- **first progress**: from the instant the fake emitted the response's first
  ``response.output_text.delta`` (``GET /_fake/responses/{id}/stream``: each event's
  ``time``) to the stream id of the run's first ``progress`` event.
- **API requests per run**: every request in the response's log (the worker's create, its
  polls, stream requests, a cancel).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runpoller_bench.analysis import mean, percentile, ratio, stream_id_ms, summarize
from runpoller_bench.mix import Mix

MODES = ("fixed", "adaptive", "webhooks", "streamed")
CREATE = "create_response"
DELTA = "response.output_text.delta"


@dataclass(frozen=True)
class RunRecord:
    """One run of one mode, as the harness collected it after the run."""

    mode: str
    lifetime_s: float
    final_status: str | None
    api_requests: int
    detection_ms: float | None
    first_progress_ms: float | None
    progress_events: int


def terminal_instant(log: Sequence[Mapping[str, Any]], script_s: float) -> float | None:
    """When the response's script ended it (the fake's clock): create's arrival + duration."""
    creates = [float(e["time"]) for e in log if e.get("endpoint") == CREATE]
    return min(creates) + script_s if creates else None


def first_delta_at(stream_log: Mapping[str, Any] | None) -> float | None:
    """When the fake emitted the response's first text delta (``/_fake/responses/{id}/stream``)."""
    events = (stream_log or {}).get("events") or []
    stamps = [float(e["time"]) for e in events if e.get("type") == DELTA]
    return min(stamps) if stamps else None


def events_of(
    entries: Iterable[tuple[Any, Mapping[bytes, bytes]]],
) -> tuple[tuple[int, str] | None, int | None, int, str | None]:
    """From a run's whole event stream (``XRANGE``): the final event as (stream id ms, its
    status), the first ``progress`` event's stream id ms, how many there were, and the
    response id the ``status`` events name."""
    final: tuple[int, str] | None = None
    first_progress: int | None = None
    progress = 0
    object_id: str | None = None
    for entry_id, fields in entries:
        kind = (fields.get(b"type") or b"").decode()
        if kind == "progress":
            progress += 1
            if first_progress is None:
                first_progress = stream_id_ms(entry_id)
        elif kind == "status" and object_id is None:
            object_id = json.loads(fields[b"data"]).get("object_id")
        elif kind == "final" and final is None:
            final = (stream_id_ms(entry_id), str(json.loads(fields[b"data"])["status"]))
    return final, first_progress, progress, object_id


def run_record(
    mode: str,
    lifetime_s: float,
    script_s: float,
    entries: Sequence[tuple[Any, Mapping[bytes, bytes]]],
    log: Sequence[Mapping[str, Any]],
    fake_ahead_s: float,
    delta_at: float | None = None,
) -> RunRecord:
    """One run's figures; ``fake_ahead_s``: how far the fake's clock runs ahead of ours;
    ``delta_at``: when the fake emitted its first text delta (streamed runs)."""
    final, first_progress, progress, _ = events_of(entries)
    end = terminal_instant(log, script_s)
    detection = None
    if final is not None and end is not None and final[1] == "completed":
        detection = final[0] - (end - fake_ahead_s) * 1000
    first = None
    if first_progress is not None and delta_at is not None:
        first = first_progress - (delta_at - fake_ahead_s) * 1000
    return RunRecord(
        mode=mode,
        lifetime_s=lifetime_s,
        final_status=final[1] if final else None,
        api_requests=len(log),
        detection_ms=detection,
        first_progress_ms=first,
        progress_events=progress,
    )


def _bucket_label(low: float, high: float) -> str:
    return f"{low:g}-{high:g} s"


def mode_figures(records: Sequence[RunRecord], mix: Mix) -> dict[str, Any]:
    """Requests, lags and finals of one mode's runs (CPU is added by the harness)."""
    statuses: dict[str, int] = {}
    for r in records:
        key = r.final_status or "missing"
        statuses[key] = statuses.get(key, 0) + 1
    done = [r for r in records if r.final_status == "completed"]
    requests = [float(r.api_requests) for r in done]
    by_length: dict[str, dict[str, Any]] = {}
    for bucket in mix.buckets:
        inside = [
            float(r.api_requests) for r in done if bucket.low_s <= r.lifetime_s <= bucket.high_s
        ]
        by_length[_bucket_label(bucket.low_s, bucket.high_s)] = {
            "runs": len(inside),
            "mean": mean(inside),
            "max": max(inside) if inside else None,
        }
    detection = [r.detection_ms for r in done if r.detection_ms is not None]
    first = [r.first_progress_ms for r in records if r.first_progress_ms is not None]
    return {
        "runs": len(records),
        "completed": len(done),
        "finals_by_status": statuses,
        "finals_missing": statuses.get("missing", 0),
        "api_requests_per_run": mean(requests),
        "api_requests_per_run_p50": percentile(requests, 50),
        "api_requests_per_run_max": max(requests) if requests else None,
        "api_requests_by_length": by_length,
        "detection_lag_ms": summarize(detection),
        "first_progress_ms": summarize(first),
        "runs_with_progress": sum(1 for r in records if r.progress_events > 0),
        "progress_events_per_run": mean([float(r.progress_events) for r in records]),
    }


def add_cpu(figures: dict[str, Any], cpu_s: float, idle_cores: float, span_s: float) -> None:
    """CPU per completed run: all of the mode's processes, and above their idle use."""
    completed = figures.get("completed") or 0
    figures["cpu_s"] = cpu_s
    figures["cpu_ms_per_run"] = ratio(cpu_s * 1000, completed)
    above = max(cpu_s - idle_cores * span_s, 0.0)
    figures["cpu_ms_per_run_above_idle"] = ratio(above * 1000, completed)
    figures["idle_cores"] = idle_cores


@dataclass(frozen=True)
class ModeTarget:
    name: str
    mode: str
    target: str
    value: str
    status: str  # "pass", "FAIL" or "n/a"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def _fmt(value: float | None, digits: int = 1, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _dig(figures: Mapping[str, Any] | None, path: tuple[str, ...]) -> float | None:
    value: Any = figures
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return float(value) if isinstance(value, int | float) else None


def _limit(
    name: str, mode: str, limit: str, value: float | None, shown: str, most: float
) -> ModeTarget:
    """A target met when ``value`` is at most ``most`` (n/a without a value)."""
    return ModeTarget(name, mode, limit, shown, _status(None if value is None else value <= most))


def evaluate_mode_targets(modes: Mapping[str, Mapping[str, Any]], base_ms: int) -> list[ModeTarget]:
    """Issue 16's targets for the four modes (n/a where a mode did not run or measure)."""
    lag = "detection_lag_ms"
    by_length = (modes.get("webhooks") or {}).get("api_requests_by_length") or {}
    means = [m for b in by_length.values() if (m := _dig(b, ("mean",))) is not None]
    worst = max(means) if means else None
    hooks_lag = _dig(modes.get("webhooks"), (lag, "p99"))
    requests = "api_requests_per_run"
    share = ratio(_dig(modes.get("adaptive"), (requests,)), _dig(modes.get("fixed"), (requests,)))
    fixed_lag, adaptive_lag = (
        _dig(modes.get("fixed"), (lag, "p99")),
        _dig(modes.get("adaptive"), (lag, "p99")),
    )
    more = None if fixed_lag is None or adaptive_lag is None else adaptive_lag - fixed_lag
    first = _dig(modes.get("streamed"), ("first_progress_ms", "p99"))
    worst_text = "n/a" if worst is None else f"{worst:.2f} (worst length bucket's mean)"
    return [
        _limit("API requests per run, every length", "webhooks", "≤ 3", worst, worst_text, 3),
        _limit(
            "detection lag p99", "webhooks", "≤ 100 ms", hooks_lag, _fmt(hooks_lag, 1, " ms"), 100
        ),
        _limit(
            "API requests per run vs fixed",
            "adaptive",
            "≤ 50 %",
            share,
            "n/a" if share is None else f"{share * 100:.1f} %",
            0.5,
        ),
        _limit(
            "detection lag p99 vs fixed",
            "adaptive",
            f"≤ +{base_ms:,} ms",
            more,
            "n/a" if more is None else f"{more:+,.1f} ms",
            base_ms,
        ),
        _limit(
            "first delta → first progress event p99",
            "streamed",
            "≤ 200 ms",
            first,
            _fmt(first, 1, " ms"),
            200,
        ),
    ]


MODE_COLUMNS = ("figure", *MODES)


def mode_rows(modes: Mapping[str, Mapping[str, Any]]) -> list[list[str]]:
    """The section's table: one column per mode, '' where a mode did not run."""
    lines: list[tuple[str, tuple[str, ...], int]] = [
        ("runs completed", ("completed",), 0),
        ("API requests per completed run", ("api_requests_per_run",), 2),
        ("API requests per run, max", ("api_requests_per_run_max",), 0),
    ]
    buckets: list[str] = []
    for figures in modes.values():
        for name in figures.get("api_requests_by_length") or {}:
            if name not in buckets:
                buckets.append(name)
    lines += [
        (f"  runs of {name}: requests per run", ("api_requests_by_length", name, "mean"), 2)
        for name in buckets
    ]
    lines += [
        ("detection lag p50, ms", ("detection_lag_ms", "p50"), 1),
        ("detection lag p99, ms", ("detection_lag_ms", "p99"), 1),
        ("first delta → first progress p50, ms", ("first_progress_ms", "p50"), 1),
        ("first delta → first progress p99, ms", ("first_progress_ms", "p99"), 1),
        ("CPU per run, ms", ("cpu_ms_per_run",), 2),
        ("CPU per run above idle, ms", ("cpu_ms_per_run_above_idle",), 2),
    ]
    return [
        [
            label,
            *(
                "" if modes.get(m) is None else _fmt(_dig(modes.get(m), path), digits)
                for m in MODES
            ),
        ]
        for label, path, digits in lines
    ]
