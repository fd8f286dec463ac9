"""The overview page's data: ``runpoller stats``'s snapshot, plus what a page shows over time.

Per request, a fixed number of round trips whatever the cluster's size: the snapshot of
:func:`runpoller.cli.stats.collect` (two: queue, workers, outcomes, worker events, dead
letters), then one more for the two run indexes' sizes, the per-minute outcome counts of the
last two hours (``<prefix>:outcomes:<minute>``, kept 2 h by the workers: one ``HGETALL`` per
minute) and the 429 pauses on ``<prefix>:control`` in that window (capped read). The phase
split comes from the census cache (:mod:`runpoller.dashboard.census`), not from this request.

Per-request API error rates live in each worker's Prometheus metrics, not in Redis: the
overview shows what Redis has, the final statuses (``error``, ``failed``, ``timed_out`` ...)
per minute and the 429 pauses the workers shared.
"""

from __future__ import annotations

import json
import time

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from runpoller.cli.stats import ClusterStats, collect
from runpoller.config import Settings
from runpoller.dashboard.census import Census, CensusCache
from runpoller.protocol import Keys

SERIES_MINUTES = 120
"""The chart's window: the outcome counters live two hours."""
RATE_MINUTES = 15
"""The window of the overview's totals and rates (as ``runpoller stats``)."""
MAX_CONTROL_ENTRIES = 5000
"""At most this many control-stream entries are read for the 429 series."""
FAILED = frozenset({"error", "failed", "timed_out", "expired", "incomplete", "refused"})
"""Final statuses counted as failures in the overview's failure rate."""


class Minute(BaseModel):
    ts: int = Field(description="The minute's start, epoch ms.")
    by_status: dict[str, int] = Field(description="Runs ended that minute, by final status.")
    pauses_429: int = Field(description="429 pauses the workers shared that minute.")


class Rates(BaseModel):
    minutes: int
    ended_per_min: float
    failed_share: float | None = Field(
        description="Share of ended runs whose status is a failure (None: none ended)."
    )
    errors_per_min: float = Field(description="Runs ended `error` per minute.")
    pauses_429_per_min: float
    pauses_429_capped: bool = Field(description="The control stream had more than was read.")


class Overview(BaseModel):
    stats: ClusterStats
    active_index: int = Field(description="Entries of the active index (runs with a record).")
    ended_index: int = Field(description="Entries of the ended index (kept for the record TTL).")
    census: Census
    census_problem: str | None = Field(description="Why the latest census failed, if it did.")
    series: list[Minute] = Field(description="Oldest first, one per minute.")
    rates: Rates


async def collect_overview(
    redis: Redis, settings: Settings, census: CensusCache, *, now: float | None = None
) -> Overview:
    now_s = time.time() if now is None else now
    now_ms = int(now_s * 1000)
    keys = Keys(settings.key_prefix)
    stats = await collect(redis, settings, now=now_s, minutes=RATE_MINUTES)
    minute = now_ms // 60_000
    minutes = list(range(minute - SERIES_MINUTES + 1, minute + 1))
    since = minutes[0] * 60_000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.runs_active)
        pipe.zcard(keys.runs_ended)
        pipe.xrange(keys.control, min=f"{since}-0", max="+", count=MAX_CONTROL_ENTRIES)
        for m in minutes:
            pipe.hgetall(keys.outcomes(m))
        active, ended, control, *hashes = await pipe.execute()
    pauses = _pauses_by_minute(control)
    series = [
        Minute(
            ts=m * 60_000,
            by_status={_s(k): int(v) for k, v in sorted((counts or {}).items())},
            pauses_429=pauses.get(m, 0),
        )
        for m, counts in zip(minutes, hashes, strict=True)
    ]
    return Overview(
        stats=stats,
        active_index=int(active),
        ended_index=int(ended),
        census=census.get(),
        census_problem=census.failure,
        series=series,
        rates=_rates(series[-RATE_MINUTES:], capped=len(control) >= MAX_CONTROL_ENTRIES),
    )


def _rates(window: list[Minute], *, capped: bool) -> Rates:
    ended = sum(sum(m.by_status.values()) for m in window)
    failed = sum(n for m in window for status, n in m.by_status.items() if status in FAILED)
    errors = sum(m.by_status.get("error", 0) for m in window)
    pauses = sum(m.pauses_429 for m in window)
    span = len(window)
    return Rates(
        minutes=span,
        ended_per_min=round(ended / span, 2),
        failed_share=round(failed / ended, 4) if ended else None,
        errors_per_min=round(errors / span, 2),
        pauses_429_per_min=round(pauses / span, 2),
        pauses_429_capped=capped,
    )


def _pauses_by_minute(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> dict[int, int]:
    """The ``pause`` messages of the control stream, counted by the minute of their entry id."""
    counts: dict[int, int] = {}
    for entry_id, fields in entries:
        try:
            data = json.loads(fields.get(b"data", b""))
        except ValueError:
            continue
        if not isinstance(data, dict) or data.get("type") != "pause":
            continue
        ms = int(_s(entry_id).partition("-")[0])
        counts[ms // 60_000] = counts.get(ms // 60_000, 0) + 1
    return counts


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


__all__ = ["Census", "Minute", "Overview", "Rates", "collect_overview"]
