"""The chaos figures of issue 14: what each attack cost, computed from what the system left.

Two sources, both read after (or during) an attack:

- the fake API's request log (``GET /_fake/log``, see ``runpoller_fake.control``): every
  ``/v1`` request with its arrival time, endpoint, object id, answer and, for side effects,
  what identifies them (the tool call ids submitted, the ``previous_response_id`` continued);
- the runs' event streams in Redis (``<prefix>:events:<id>``), as ``{"type", ...data}``
  dicts: ``ts`` (epoch ms) on every event, ``deadline`` (epoch ms) on ``accepted``.

The computations are pure functions of those (unit-tested in tests/unit/test_chaos_figures.py
on synthetic logs); ``measure`` puts them together into one :class:`Figures` per attack, and
``record(attack, figures)`` hands it to the session report (tests/chaos/conftest.py prints
the table and writes bench/results/chaos-<timestamp>.json). Figures are printed, never held
to wall-clock thresholds by the tests: the targets below are judged in the report only.

Definitions (docs/operations.md, "Chaos figures"):

- **lost**: a run with no ``final`` event, or whose final came after the attack's bound.
- **duplicate finals**: ``final`` events beyond the first in one run's stream.
- **duplicate submits / continuations / cancels**: requests of one side effect beyond the first
  that the API *answered* (any HTTP status but 408, 429 and 5xx; a dropped connection or a
  request still in flight is not an answer, a 400 "already submitted" is). One side effect is:
  ``submit_tool_outputs`` per run per round (the round is the set of tool call ids submitted; a
  submit without ids belongs to the run's previous round), ``POST /v1/responses`` per
  ``previous_response_id``, a cancel per run or response.
- **resume**: from the kill (or stop) of a worker to, for each run it held, either the first
  API request for the run after it (``"api"``: after a SIGKILL or during a SIGSTOP every
  request comes from another worker), the first event in the run's stream after it
  (``"events"``), or whichever of the two comes first (``"any"``: a new owner may end a run
  without a request, e.g. with ``request_unconfirmed``); runs that had ended before it are
  left out. p50/p95/max over the runs that
  resumed; ``not_resumed`` counts those that
  showed no sign of a new owner (within the window, for a stopped worker: they count as the
  whole window in the percentiles) and fails the resume target.
- **intake lag**: enqueue (the test's clock, just before ``enqueue``) to the ``accepted``
  event's ``ts``. Judged against its target only where runs were enqueued at a steady rate
  (``intake_paced``); after a burst it is information.
- **late final**: ``final.ts - (deadline + grace)``, in seconds, per run; ``late_final_max_s``
  is the worst and ``late_finals`` counts runs beyond the 1 s allowance.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# ------------------------------------------------------------------ targets (issue 14)

LOST_TARGET = 0
DUPLICATES_TARGET = 0
RESUME_P95_OVER_TTL_S = 2.0
RESUME_MAX_OVER_TTL_S = 5.0
INTAKE_LAG_P99_S = 2.0
LATE_FINAL_ALLOWANCE_S = 1.0

# Statuses after which the API did not act on a request: the client may (must) retry.
RETRYABLE_STATUSES = frozenset({408, 429})

Event = Mapping[str, Any]
Request = Mapping[str, Any]


@dataclass
class Figures:
    """One attack's figures; ``None`` where the attack does not measure that figure."""

    runs: int
    lost: int
    duplicate_finals: int
    duplicate_submits: int | None = None
    duplicate_continuations: int | None = None
    duplicate_cancels: int | None = None
    resume_p50_s: float | None = None
    resume_p95_s: float | None = None
    resume_max_s: float | None = None
    resume_source: str | None = None  # "api", "events" or "any" (the first of the two)
    resumed: int | None = None  # runs the resume figures are over
    not_resumed: int = 0  # victim runs with no sign of a new owner (in the window)
    ttl_s: float | None = None  # the dead-worker TTL the resume targets add to
    intake_lag_p99_s: float | None = None
    intake_paced: bool = False  # runs enqueued at a steady rate: the intake target applies
    late_final_max_s: float | None = None
    late_finals: int | None = None
    grace_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def verdicts(self) -> dict[str, bool]:
        """Each target this attack measures: met (True) or not (False)."""
        out = {
            "lost": self.lost <= LOST_TARGET,
            "duplicate_finals": self.duplicate_finals <= DUPLICATES_TARGET,
        }
        for name in ("duplicate_submits", "duplicate_continuations", "duplicate_cancels"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value <= DUPLICATES_TARGET
        if self.ttl_s is not None:
            if self.resume_p95_s is not None:
                out["resume_p95"] = self.resume_p95_s <= self.ttl_s + RESUME_P95_OVER_TTL_S
            if self.resume_max_s is not None or self.not_resumed:
                out["resume_max"] = not self.not_resumed and (
                    self.resume_max_s is not None
                    and self.resume_max_s <= self.ttl_s + RESUME_MAX_OVER_TTL_S
                )
        if self.intake_paced and self.intake_lag_p99_s is not None:
            out["intake_lag_p99"] = self.intake_lag_p99_s <= INTAKE_LAG_P99_S
        if self.late_final_max_s is not None:
            out["late_final"] = self.late_final_max_s <= LATE_FINAL_ALLOWANCE_S
        return out

    def passed(self) -> bool:
        return all(self.verdicts().values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "verdicts": self.verdicts()}

    def line(self) -> str:
        """One line for a test's own output (``-s``)."""
        parts = [f"runs={self.runs}", f"lost={self.lost}", f"dup_finals={self.duplicate_finals}"]
        for name, label in (
            ("duplicate_submits", "dup_submits"),
            ("duplicate_continuations", "dup_continuations"),
            ("duplicate_cancels", "dup_cancels"),
        ):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{label}={value}")
        if self.resume_max_s is not None:
            parts.append(
                f"resume({self.resume_source}) p50/p95/max="
                f"{self.resume_p50_s:.2f}/{self.resume_p95_s:.2f}/{self.resume_max_s:.2f}s"
            )
        if self.not_resumed:
            parts.append(f"not_resumed={self.not_resumed}")
        if self.intake_lag_p99_s is not None:
            parts.append(f"intake_lag_p99={self.intake_lag_p99_s:.2f}s")
        if self.late_final_max_s is not None:
            parts.append(f"late_final_max={self.late_final_max_s:+.2f}s")
        parts += [f"{k}={v}" for k, v in self.extra.items()]
        return " ".join(parts)


# ------------------------------------------------------------------ the report's registry


@dataclass
class Record:
    attack: str
    figures: Figures
    test: str


RECORDS: list[Record] = []


def record(attack: str, figures: Figures) -> Figures:
    """Add one attack's figures to the session report, and print them on one line."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]
    RECORDS.append(Record(attack, figures, test))
    print(f"\nchaos figures [{attack}]: {figures.line()}")
    return figures


# ------------------------------------------------------------------ small statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..1): the smallest value with at least q of them
    at or below it. None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def answered(status: Any) -> bool:
    """Whether the API acted on (or refused for good) a request with this logged status."""
    if not isinstance(status, int) or isinstance(status, bool):
        return False  # dropped, aborted, still in flight
    return status < 500 and status not in RETRYABLE_STATUSES


def _by_time(log: Iterable[Request]) -> list[Request]:
    return sorted(log, key=lambda r: (r["time"], r.get("seq", 0)))


def _extra_answers(groups: Mapping[Any, list[Request]]) -> int:
    return sum(
        max(0, sum(1 for r in reqs if answered(r.get("status"))) - 1) for reqs in groups.values()
    )


# ------------------------------------------------------------------ events


def final_events(events: Sequence[Event]) -> list[Event]:
    return [e for e in events if e.get("type") == "final"]


def lost_runs(
    events_by_run: Mapping[str, Sequence[Event]], final_by: float | None = None
) -> list[str]:
    """Runs with no final event, or (``final_by``, epoch s) whose first final came after it."""
    lost = []
    for run_id, events in events_by_run.items():
        finals = final_events(events)
        if not finals or (final_by is not None and finals[0]["ts"] / 1000 > final_by):
            lost.append(run_id)
    return sorted(lost)


def duplicate_finals(events_by_run: Mapping[str, Sequence[Event]]) -> int:
    """Final events beyond the first, summed over runs."""
    return sum(max(0, len(final_events(ev)) - 1) for ev in events_by_run.values())


def object_ids(run_id: str, events: Sequence[Event]) -> set[str]:
    """The API objects a run went through: its id (the default logical id) and every
    ``object_id`` its events name (a Responses run moves to a new one per continuation)."""
    ids = {run_id}
    ids.update(str(e["object_id"]) for e in events if e.get("object_id"))
    return ids


def intake_lags(
    events_by_run: Mapping[str, Sequence[Event]], enqueued_at: Mapping[str, float]
) -> list[float]:
    """Seconds from each run's enqueue (epoch s) to its ``accepted`` event."""
    lags = []
    for run_id, at in enqueued_at.items():
        accepted = [e for e in events_by_run.get(run_id, ()) if e.get("type") == "accepted"]
        if accepted:
            lags.append(accepted[0]["ts"] / 1000 - at)
    return lags


def late_finals(
    events_by_run: Mapping[str, Sequence[Event]],
    grace_s: float,
    deadlines: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Per run with a final and a known deadline: ``final.ts - (deadline + grace)`` in s.

    The deadline (epoch s) comes from ``deadlines`` if given, else from the ``accepted``
    event; a run whose accepted event is gone and has no given deadline is left out.
    """
    out = {}
    for run_id, events in events_by_run.items():
        finals = final_events(events)
        if not finals:
            continue
        deadline = (deadlines or {}).get(run_id)
        if deadline is None:
            accepted = [e for e in events if e.get("type") == "accepted" and "deadline" in e]
            if not accepted:
                continue
            deadline = accepted[0]["deadline"] / 1000
        out[run_id] = finals[0]["ts"] / 1000 - (deadline + grace_s)
    return out


def resume_from_events(
    events_by_run: Mapping[str, Sequence[Event]],
    runs: Iterable[str],
    killed_at: float,
    before: float | None = None,
) -> dict[str, float]:
    """Per run held by the killed worker: seconds to its first event written after the kill
    (and, with ``before``, before then)."""
    out = {}
    for run_id in runs:
        after = [
            e["ts"] / 1000
            for e in events_by_run.get(run_id, ())
            if killed_at < e["ts"] / 1000 and (before is None or e["ts"] / 1000 < before)
        ]
        if after:
            out[run_id] = min(after) - killed_at
    return out


# ------------------------------------------------------------------ the request log


def resume_from_api(
    log: Iterable[Request],
    objects_by_run: Mapping[str, set[str]],
    killed_at: float,
    before: float | None = None,
) -> dict[str, float]:
    """Per run: seconds from the kill to the first API request for one of its objects
    (or continuing one of them) that arrived after it. ``before``: ignore requests from then
    on (a stopped worker continued at that instant could be sending them itself)."""
    owner_of: dict[str, str] = {}
    for run_id, ids in objects_by_run.items():
        for object_id in ids:
            owner_of[object_id] = run_id
    out: dict[str, float] = {}
    for req in _by_time(log):
        if req["time"] <= killed_at or (before is not None and req["time"] >= before):
            continue
        for key in (req.get("object_id"), req.get("previous_response_id")):
            run_id = owner_of.get(key) if key else None
            if run_id is not None and run_id not in out:
                out[run_id] = req["time"] - killed_at
    return out


def duplicate_submits(log: Iterable[Request]) -> int:
    """Answered ``submit_tool_outputs`` beyond the first, per run per round."""
    groups: dict[tuple[str, tuple[str, ...]], list[Request]] = {}
    last_round: dict[str, tuple[str, ...]] = {}
    for req in _by_time(log):
        if req.get("endpoint") != "submit_tool_outputs":
            continue
        run = str(req.get("object_id"))
        ids = tuple(sorted(str(i) for i in req.get("tool_call_ids") or ()))
        round_ = ids or last_round.get(run, ())
        last_round[run] = round_
        groups.setdefault((run, round_), []).append(req)
    return _extra_answers(groups)


def duplicate_continuations(log: Iterable[Request]) -> int:
    """Answered ``POST /v1/responses`` beyond the first, per ``previous_response_id``."""
    groups: dict[str, list[Request]] = {}
    for req in log:
        previous = req.get("previous_response_id")
        if req.get("endpoint") == "create_response" and previous:
            groups.setdefault(str(previous), []).append(req)
    return _extra_answers(groups)


def duplicate_cancels(log: Iterable[Request]) -> int:
    """Answered cancels beyond the first, per run or response."""
    groups: dict[str, list[Request]] = {}
    for req in log:
        if req.get("endpoint") in ("cancel_run", "cancel_response"):
            groups.setdefault(str(req.get("object_id")), []).append(req)
    return _extra_answers(groups)


# ------------------------------------------------------------------ one attack


def measure(
    events_by_run: Mapping[str, Sequence[Event]],
    log: Sequence[Request] | None = None,
    *,
    final_by: float | None = None,
    side_effects: Iterable[str] = (),
    killed_at: float | None = None,
    victim_runs: Iterable[str] = (),
    resume_before: float | None = None,
    resume_source: str = "api",
    ttl_s: float | None = None,
    enqueued_at: Mapping[str, float] | None = None,
    intake_paced: bool = False,
    grace_s: float | None = None,
    deadlines: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Figures:
    """The figures of one attack.

    ``side_effects`` names which duplicates to count from ``log`` (``"submits"``,
    ``"continuations"``, ``"cancels"``); ``killed_at`` (epoch s) and ``victim_runs`` give the
    resume figures (``resume_source`` "api" and "any" need ``log``; ``resume_before`` ends
    the window, for a stopped worker that was continued); ``enqueued_at`` the intake lag;
    ``grace_s`` the late finals.
    """
    figures = Figures(
        runs=len(events_by_run),
        lost=len(lost_runs(events_by_run, final_by)),
        duplicate_finals=duplicate_finals(events_by_run),
        extra=dict(extra or {}),
    )
    wanted = set(side_effects)
    if wanted - {"submits", "continuations", "cancels"}:
        raise ValueError(f"unknown side effects: {sorted(wanted)}")
    if wanted and log is None:
        raise ValueError("duplicate side effects are counted from the request log")
    if "submits" in wanted:
        figures.duplicate_submits = duplicate_submits(log or ())
    if "continuations" in wanted:
        figures.duplicate_continuations = duplicate_continuations(log or ())
    if "cancels" in wanted:
        figures.duplicate_cancels = duplicate_cancels(log or ())
    if killed_at is not None:
        # A run that had ended before the kill needed no new owner.
        victims = sorted(
            rid
            for rid in set(victim_runs)
            if not any(
                e["ts"] / 1000 <= killed_at for e in final_events(events_by_run.get(rid, ()))
            )
        )
        if resume_source not in ("api", "events", "any"):
            raise ValueError(f"resume_source is 'api', 'events' or 'any', not {resume_source!r}")
        resumed = {}
        if resume_source in ("api", "any"):
            if log is None:
                raise ValueError(f"resume_source={resume_source!r} needs the request log")
            objects = {rid: object_ids(rid, events_by_run.get(rid, ())) for rid in victims}
            resumed = resume_from_api(log, objects, killed_at, resume_before)
        if resume_source in ("events", "any"):
            by_events = resume_from_events(events_by_run, victims, killed_at, resume_before)
            for rid, value in by_events.items():
                resumed[rid] = min(value, resumed.get(rid, value))
        values = list(resumed.values())
        figures.resume_source = resume_source
        figures.resumed = len(values)
        figures.not_resumed = len(victims) - len(values)
        if resume_before is not None:
            # Not resumed within the window: at least the window, counted as that.
            values += [resume_before - killed_at] * figures.not_resumed
        figures.ttl_s = ttl_s
        figures.resume_p50_s = percentile(values, 0.50)
        figures.resume_p95_s = percentile(values, 0.95)
        figures.resume_max_s = max(values) if values else None
    if enqueued_at:
        lags = intake_lags(events_by_run, enqueued_at)
        figures.intake_lag_p99_s = percentile(lags, 0.99)
        figures.intake_paced = intake_paced
    if grace_s is not None:
        late = late_finals(events_by_run, grace_s, deadlines)
        figures.grace_s = grace_s
        figures.late_final_max_s = max(late.values()) if late else None
        figures.late_finals = sum(1 for v in late.values() if v > LATE_FINAL_ALLOWANCE_S)
    return figures


# ------------------------------------------------------------------ reading (needs I/O)


def parse_entry(fields: Mapping[bytes, bytes]) -> dict[str, Any]:
    """One event stream entry as ``{"type": ..., **data}``."""
    data = json.loads(fields.get(b"data", b"{}"))
    return {**(data if isinstance(data, dict) else {}), "type": fields[b"type"].decode()}


async def read_events(redis: Any, prefix: str, run_ids: Sequence[str]) -> dict[str, list[Event]]:
    """Every run's event stream (``<prefix>:events:<id>``), parsed; empty for a missing one."""
    async with redis.pipeline(transaction=False) as pipe:
        for rid in run_ids:
            pipe.xrange(f"{prefix}:events:{rid}")
        streams = await pipe.execute()
    return {
        rid: [parse_entry(fields) for _id, fields in entries]
        for rid, entries in zip(run_ids, streams, strict=True)
    }


async def request_log(root_url: str) -> list[dict[str, Any]]:
    """The fake server's whole request log (``GET /_fake/log``)."""
    import httpx

    async with httpx.AsyncClient(base_url=root_url, timeout=30) as http:
        reply = await http.get("/_fake/log")
        reply.raise_for_status()
        requests: list[dict[str, Any]] = reply.json()["requests"]
        return requests


# ------------------------------------------------------------------ the report


COLUMNS: list[tuple[str, str]] = [
    ("runs", "runs"),
    ("lost", "lost"),
    ("dup final", "duplicate_finals"),
    ("dup submit", "duplicate_submits"),
    ("dup cont", "duplicate_continuations"),
    ("dup cancel", "duplicate_cancels"),
    ("resume p50", "resume_p50_s"),
    ("resume p95", "resume_p95_s"),
    ("resume max", "resume_max_s"),
    ("intake p99", "intake_lag_p99_s"),
    ("late final", "late_final_max_s"),
]
# Which verdict (Figures.verdicts) a column shows.
_VERDICT_OF = {
    "lost": "lost",
    "duplicate_finals": "duplicate_finals",
    "duplicate_submits": "duplicate_submits",
    "duplicate_continuations": "duplicate_continuations",
    "duplicate_cancels": "duplicate_cancels",
    "resume_p95_s": "resume_p95",
    "resume_max_s": "resume_max",
    "intake_lag_p99_s": "intake_lag_p99",
    "late_final_max_s": "late_final",
}


def targets_line() -> str:
    return (
        f"targets: lost {LOST_TARGET}, duplicates of any side effect {DUPLICATES_TARGET}, "
        f"resume p95 <= TTL+{RESUME_P95_OVER_TTL_S:g} s and max <= TTL+{RESUME_MAX_OVER_TTL_S:g} s,"
        f" intake lag p99 <= {INTAKE_LAG_P99_S:g} s (paced runs only), "
        f"late final <= +{LATE_FINAL_ALLOWANCE_S:g} s past deadline + grace"
    )


def _cell(figures: Figures, attr: str, verdicts: Mapping[str, bool]) -> str:
    value = getattr(figures, attr)
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:+.2f}" if attr == "late_final_max_s" else f"{value:.2f}"
    else:
        text = str(value)
    if attr == "resume_max_s" and figures.resume_source:
        text += "/" + figures.resume_source
    verdict = verdicts.get(_VERDICT_OF.get(attr, ""))
    if verdict is None:
        return text
    return f"{text} {'ok' if verdict else 'FAIL'}"


def _notes(figures: Figures) -> str:
    """The attack's extra figures, compactly (``statuses`` as ``completed:24``)."""
    parts = []
    if figures.not_resumed:
        parts.append(f"not_resumed={figures.not_resumed}")
    for key, value in figures.extra.items():
        if isinstance(value, Mapping):
            value = ",".join(f"{k}:{v}" for k, v in value.items())
        parts.append(f"{key}={value}")
    return " ".join(parts)


def table(records: Sequence[Record], outcomes: Mapping[str, str] | None = None) -> str:
    """The report: one row per attack, each measured target's pass/FAIL beside its figure."""
    header = ["attack", *(title for title, _ in COLUMNS), "TTL", "test", "notes"]
    rows = [header]
    for rec in records:
        verdicts = rec.figures.verdicts()
        outcome = (outcomes or {}).get(rec.test, "")
        rows.append(
            [
                rec.attack,
                *(_cell(rec.figures, attr, verdicts) for _, attr in COLUMNS),
                "-" if rec.figures.ttl_s is None else f"{rec.figures.ttl_s:g}",
                outcome or "?",
                _notes(rec.figures),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    failing = [rec.attack for rec in records if not rec.figures.passed()]
    lines += [
        targets_line(),
        "seconds; resume max is tagged api (first API request for the run after the kill), "
        "events (first event after it) or any (the first of the two); "
        "late final = final - (deadline + grace)",
        "targets missed by: " + (", ".join(failing) if failing else "none"),
    ]
    return "\n".join(lines)


def report_json(
    records: Sequence[Record], outcomes: Mapping[str, str] | None, created: str
) -> dict[str, Any]:
    return {
        "created": created,
        "chaos_runs": os.environ.get("RUNPOLLER_CHAOS_RUNS"),
        "targets": {
            "lost": LOST_TARGET,
            "duplicates": DUPLICATES_TARGET,
            "resume_p95_over_ttl_s": RESUME_P95_OVER_TTL_S,
            "resume_max_over_ttl_s": RESUME_MAX_OVER_TTL_S,
            "intake_lag_p99_s": INTAKE_LAG_P99_S,
            "late_final_allowance_s": LATE_FINAL_ALLOWANCE_S,
        },
        "attacks": [
            {
                "attack": rec.attack,
                "test": rec.test,
                "outcome": (outcomes or {}).get(rec.test),
                **rec.figures.as_dict(),
            }
            for rec in records
        ],
    }
