"""Pure maths on what the benchmark collected: percentiles, poll gaps, deltas, splits.

Times are Unix seconds (floats) unless a name says ``_ms``. The fake server logs every
request addressed to a run with its arrival time (``GET /_fake/runs/{id}/log``), so:

- **poll lateness** of a poll = its arrival - (the previous poll's arrival + interval), over
  consecutive GETs of one run with no other request in between. Both designs schedule the
  next poll at "answer received + interval", so this counts the previous request's round
  trip plus any event-loop delay: what a user waiting on the run actually sees.
- **final status seen** = the ``ts`` of the worker's ``status`` event reporting the
  terminal status (the worker's clock when it applied that answer); the final event lands
  in Redis at its stream id's time. Seen from the API's side, the terminal status was
  served by the run's last GET (a worker stops polling once it has seen it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

POLL = "get_run"
# The requests an agent turn's design is measured by (--backend agent_turn): a poll is the
# turn's GET (the session's GET that follows an unfinished one belongs to the same poll).
AGENT_POLL = "get_agent_turn"
AGENT_POLL_COMPANION = "get_agent_session"


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


def poll_lateness_ms(
    log: Iterable[Mapping[str, Any]],
    interval_s: float,
    lo: float,
    hi: float,
    *,
    poll: str = POLL,
    companion: str = "",
) -> list[float]:
    """Lateness (ms) of each poll whose gap lies wholly inside ``[lo, hi]`` (``companion``:
    a read that is part of the poll before it, not a request in between)."""
    entries = sorted(log, key=lambda e: float(e["time"]))
    out: list[float] = []
    previous: float | None = None
    for entry in entries:
        t = float(entry["time"])
        if companion and entry.get("endpoint") == companion:
            continue
        if entry.get("endpoint") != poll:
            previous = None  # a submit or cancel in between resets the schedule
            continue
        if previous is not None and previous >= lo and t <= hi:
            out.append((t - previous - interval_s) * 1000)
        previous = t
    return out


def poll_times(log: Iterable[Mapping[str, Any]], poll: str = POLL) -> list[float]:
    return sorted(float(e["time"]) for e in log if e.get("endpoint") == poll)


def count_in(times: Iterable[float], lo: float, hi: float) -> int:
    return sum(1 for t in times if lo <= t < hi)


def final_status_seen(
    log: Iterable[Mapping[str, Any]], final_s: float, poll: str = POLL
) -> float | None:
    """Arrival of the last GET before the final event: the one that saw the terminal status."""
    seen = [t for t in poll_times(log, poll) if t <= final_s]
    return seen[-1] if seen else None


def first_after(log: Iterable[Mapping[str, Any]], endpoint: str, after_s: float) -> float | None:
    """Arrival of the first ``endpoint`` request at or after ``after_s``."""
    times = sorted(
        float(e["time"])
        for e in log
        if e.get("endpoint") == endpoint and float(e["time"]) >= after_s
    )
    return times[0] if times else None


def stream_id_ms(entry_id: str | bytes) -> int:
    """The Redis server time (ms) at which a stream entry was written."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


TERMINAL_API_STATUSES = frozenset({"completed", "failed", "incomplete", "expired", "cancelled"})


def final_and_terminal_status(
    recent: Sequence[tuple[Any, Mapping[bytes, bytes]]],
) -> tuple[tuple[int, dict[str, Any]] | None, int | None]:
    """From a run's newest stream entries (``XREVRANGE``, newest first): the final event as
    (Redis write time in ms, event), and the ``ts`` of the ``status`` event reporting the
    terminal status: the worker's own clock at the moment it saw that status."""
    final: tuple[int, dict[str, Any]] | None = None
    seen_ts: int | None = None
    for entry_id, fields in recent:
        kind = (fields.get(b"type") or b"").decode()
        if kind == "final" and final is None:
            final = (stream_id_ms(entry_id), json.loads(fields[b"data"]))
        elif kind == "status" and final is not None:
            data = json.loads(fields[b"data"])
            if data.get("status") in TERMINAL_API_STATUSES:
                seen_ts = int(data["ts"])
            break
    return final, seen_ts


def commandstats_calls(info: Mapping[str, Any]) -> dict[str, int]:
    """``INFO commandstats`` (as redis-py parses it) → {command: calls}."""
    out: dict[str, int] = {}
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, Mapping):
            out[key.removeprefix("cmdstat_")] = int(value.get("calls", 0))
    return out


def delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    diff = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def split_deviation(in_flight: Sequence[float]) -> float | None:
    """Largest relative distance of any worker's share from an even split (0.1 = ±10%)."""
    if len(in_flight) < 2:
        return None
    total = sum(in_flight)
    if total <= 0:
        return None
    fair = total / len(in_flight)
    return max(abs(n - fair) / fair for n in in_flight)


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
