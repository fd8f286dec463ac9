"""A cluster-wide snapshot read from Redis alone, for ``runpoller stats``.

Nothing here talks to a worker: everything comes from the keys the workers maintain (see
docs/protocol.md), so it works from any machine that can reach the Redis:

- the arq queue (sorted set scored by run-at epoch ms): ready vs deferred, oldest ready job;
- ``<prefix>:workers`` (worker id -> last beat ms) and each ``<prefix>:worker:<id>`` heartbeat
  (JSON ``ts``, ``in_flight``; missing = dead); ``<prefix>:owned:<id>`` (runs held);
- ``<prefix>:outcomes:<minute>`` (final status -> count, per minute);
- ``<prefix>:worker-events`` (dead workers detected, hand-offs) and ``<prefix>:dead-letters``.

:func:`collect` takes one snapshot (a handful of pipelined round trips); :func:`render_table`
turns it into text for a terminal and does no I/O.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from runpoller.config import Settings
from runpoller.protocol import Keys

# How far back the worker-events stream is read (newest first); events beyond are not counted.
MAX_WORKER_EVENTS = 500
# How many recent worker events a snapshot lists (the counts cover the whole window).
LISTED_WORKER_EVENTS = 20


class QueueStats(BaseModel):
    name: str
    ready: int = Field(description="Jobs whose run-at time has come, not yet taken by a worker.")
    deferred: int = Field(description="Jobs scheduled for later (deferred or backed off).")
    oldest_ready_age_s: float | None = Field(
        description="How long the oldest ready job has been waiting; null when none is ready."
    )
    next_deferred_in_s: float | None = Field(
        description="When the next deferred job becomes ready; null when none is deferred."
    )


class WorkerStats(BaseModel):
    worker_id: str
    alive: bool = Field(
        description="False: listed in the workers set but its heartbeat is gone (dead, its "
        "runs not yet released to the other workers)."
    )
    in_flight: int | None = Field(
        description="Runs the worker reported driving at its last beat; null when dead."
    )
    owned: int = Field(description="Runs recorded as owned by the worker.")
    last_beat_age_s: float
    version: str | None = Field(None, description="Its runpoller version (from its beat).")


class OutcomeStats(BaseModel):
    minutes: int = Field(description="Window: this minute and the previous minutes - 1.")
    total: int
    by_status: dict[str, int]


class WorkerEvent(BaseModel):
    type: str = Field(description="`dead_worker` or `handed_off`.")
    ts: int
    worker_id: str
    runs: int | None = Field(description="Runs released to the other workers.")
    by: str | None = Field(None, description="The worker that detected a dead one.")


class WorkerEventStats(BaseModel):
    dead_workers_detected: int
    handoffs: int
    runs_released: int
    recent: list[WorkerEvent] = Field(description="Newest first, at most 20.")


class DeadLetterStats(BaseModel):
    count: int = Field(description="Entries on the dead-letters stream (capped at ~10000).")
    last_ts: int | None = None
    last_reason: str | None = None


class ClusterStats(BaseModel):
    ts: int = Field(description="When the snapshot was taken, epoch ms.")
    key_prefix: str
    queue: QueueStats
    live_workers: int
    dead_workers: int = Field(description="Workers whose heartbeat is gone, not yet released.")
    in_flight: int = Field(description="Sum of in-flight runs over the live workers.")
    orphans: int = Field(description="Released runs waiting to be re-enqueued.")
    workers: list[WorkerStats]
    outcomes: OutcomeStats
    worker_events: WorkerEventStats
    dead_letters: DeadLetterStats


def _s(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _age(now_ms: int, ts_ms: float) -> float:
    return round(max(now_ms - ts_ms, 0) / 1000, 3)


def _json(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def collect(
    redis: Redis, settings: Settings, *, now: float | None = None, minutes: int = 15
) -> ClusterStats:
    """One snapshot of the cluster. ``now`` is epoch seconds (default: this machine's clock)."""
    if minutes < 1:
        raise ValueError("minutes must be at least 1")
    now_ms = int((time.time() if now is None else now) * 1000)
    keys = Keys(settings.key_prefix)
    queue = settings.queue_name
    minute = now_ms // 60_000
    window = list(range(minute - minutes + 1, minute + 1))

    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcount(queue, "-inf", now_ms)
        pipe.zcount(queue, f"({now_ms}", "+inf")
        pipe.zrange(queue, 0, 0, withscores=True)
        pipe.zrangebyscore(queue, f"({now_ms}", "+inf", start=0, num=1, withscores=True)
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.scard(keys.orphans)
        pipe.xlen(keys.dead_letters)
        pipe.xrevrange(keys.dead_letters, count=1)
        pipe.xrevrange(keys.worker_events, count=MAX_WORKER_EVENTS)
        for m in window:
            pipe.hgetall(keys.outcomes(m))
        (
            ready,
            deferred,
            head,
            next_deferred,
            listed,
            orphans,
            dead_letter_count,
            last_letter,
            events_raw,
            *outcome_hashes,
        ) = await pipe.execute()

    worker_ids = [(_s(member), float(score)) for member, score in listed]
    async with redis.pipeline(transaction=False) as pipe:
        for worker_id, _ in worker_ids:
            pipe.get(keys.heartbeat(worker_id))
            pipe.scard(keys.owned(worker_id))
        beats = await pipe.execute()

    workers: list[WorkerStats] = []
    for index, (worker_id, score) in enumerate(worker_ids):
        raw_beat, owned = beats[2 * index], beats[2 * index + 1]
        if raw_beat is None:
            workers.append(
                WorkerStats(
                    worker_id=worker_id,
                    alive=False,
                    in_flight=None,
                    owned=int(owned),
                    last_beat_age_s=_age(now_ms, score),
                )
            )
            continue
        beat = _json(raw_beat) or {}
        ts = _int(beat.get("ts"))
        workers.append(
            WorkerStats(
                worker_id=worker_id,
                alive=True,
                in_flight=_int(beat.get("in_flight")) or 0,
                owned=int(owned),
                last_beat_age_s=_age(now_ms, score if ts is None else ts),
                version=beat["version"] if isinstance(beat.get("version"), str) else None,
            )
        )
    workers.sort(key=lambda w: (not w.alive, w.worker_id))

    head_age = None
    if head and float(head[0][1]) <= now_ms:
        head_age = _age(now_ms, float(head[0][1]))
    next_in = None
    if next_deferred:
        next_in = round((float(next_deferred[0][1]) - now_ms) / 1000, 3)

    by_status: dict[str, int] = {}
    for counts in outcome_hashes:
        for status, count in (counts or {}).items():
            name = _s(status)
            by_status[name] = by_status.get(name, 0) + int(count)

    return ClusterStats(
        ts=now_ms,
        key_prefix=settings.key_prefix,
        queue=QueueStats(
            name=queue,
            ready=int(ready),
            deferred=int(deferred),
            oldest_ready_age_s=head_age,
            next_deferred_in_s=next_in,
        ),
        live_workers=sum(w.alive for w in workers),
        dead_workers=sum(not w.alive for w in workers),
        in_flight=sum(w.in_flight or 0 for w in workers if w.alive),
        orphans=int(orphans),
        workers=workers,
        outcomes=OutcomeStats(
            minutes=minutes,
            total=sum(by_status.values()),
            by_status=dict(sorted(by_status.items(), key=lambda kv: (-kv[1], kv[0]))),
        ),
        worker_events=_worker_events(events_raw, now_ms - minutes * 60_000, now_ms),
        dead_letters=_dead_letters(int(dead_letter_count), last_letter),
    )


def _worker_events(entries: Any, since_ms: int, now_ms: int) -> WorkerEventStats:
    events: list[WorkerEvent] = []
    for _entry_id, fields in entries or []:
        data = _json(_field(fields, "data"))
        if data is None:
            continue
        ts = _int(data.get("ts"))
        if ts is None or ts < since_ms or ts > now_ms + 60_000:
            continue
        events.append(
            WorkerEvent(
                type=str(data.get("type", "?")),
                ts=ts,
                worker_id=str(data.get("worker_id", "?")),
                runs=_int(data.get("runs")),
                by=data["by"] if isinstance(data.get("by"), str) else None,
            )
        )
    events.sort(key=lambda e: e.ts, reverse=True)
    return WorkerEventStats(
        dead_workers_detected=sum(e.type == "dead_worker" for e in events),
        handoffs=sum(e.type == "handed_off" for e in events),
        runs_released=sum(max(e.runs or 0, 0) for e in events),
        recent=events[:LISTED_WORKER_EVENTS],
    )


def _dead_letters(count: int, last: Any) -> DeadLetterStats:
    if not last:
        return DeadLetterStats(count=count)
    data = _json(_field(last[0][1], "data")) or {}
    reason = data.get("reason")
    return DeadLetterStats(
        count=count,
        last_ts=_int(data.get("ts")),
        last_reason=reason if isinstance(reason, str) else None,
    )


def _field(fields: Any, name: str) -> Any:
    if not isinstance(fields, dict):
        return None
    return fields.get(name.encode(), fields.get(name))


# ---------------------------------------------------------------------------- rendering


def format_age(seconds: float | None) -> str:
    """``0.4s``, ``12s``, ``3m05s``, ``2h07m``, ``3d04h``; ``-`` for None."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def _clock(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).strftime("%H:%M:%S")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def render_table(stats: ClusterStats, *, max_workers: int | None = None) -> str:
    """The snapshot as a terminal table (no colours, no I/O). ``max_workers`` caps the rows."""
    when = datetime.fromtimestamp(stats.ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    q = stats.queue
    lines = [f"runpoller stats · prefix {stats.key_prefix} · queue {q.name} · {when}", ""]

    deferred = f"{q.deferred} deferred"
    if q.next_deferred_in_s is not None:
        deferred += f" (next in {format_age(max(q.next_deferred_in_s, 0))})"
    waiting = (
        "no job waiting"
        if q.oldest_ready_age_s is None
        else f"oldest waiting {format_age(q.oldest_ready_age_s)}"
    )
    lines.append(f"queue      {q.ready} ready, {deferred} · {waiting}")
    workers_line = (
        f"workers    {stats.live_workers} live, {stats.dead_workers} dead (not yet released); "
        f"{_plural(stats.in_flight, 'run')} in flight"
    )
    if stats.orphans:
        workers_line += f"; {stats.orphans} released runs waiting to be re-enqueued"
    lines.append(workers_line)

    if stats.workers:
        shown = stats.workers if max_workers is None else stats.workers[:max_workers]
        width = max(len("WORKER"), *(len(w.worker_id) for w in shown))
        lines.append("")
        lines.append(f"  {'WORKER':<{width}}  STATE  IN FLIGHT  OWNED  LAST BEAT")
        for w in shown:
            state = "live" if w.alive else "DEAD"
            in_flight = "-" if w.in_flight is None else str(w.in_flight)
            lines.append(
                f"  {w.worker_id:<{width}}  {state:<5}  {in_flight:>9}  {w.owned:>5}  "
                f"{format_age(w.last_beat_age_s):>9} ago"
            )
        if len(shown) < len(stats.workers):
            lines.append(f"  … {len(stats.workers) - len(shown)} more workers")

    o = stats.outcomes
    lines.append("")
    counts = "  ".join(f"{status} {n}" for status, n in o.by_status.items()) or "none"
    lines.append(f"outcomes   last {o.minutes} min: {_plural(o.total, 'run')} ended · {counts}")

    e = stats.worker_events
    lines.append(
        f"events     last {o.minutes} min: {_plural(e.dead_workers_detected, 'dead worker')} "
        f"detected, {_plural(e.handoffs, 'hand-off')}, {_plural(e.runs_released, 'run')} "
        "released"
    )
    for event in e.recent[:5]:
        if event.type == "dead_worker":
            what = f"dead worker {event.worker_id}"
            if event.by:
                what += f" (detected by {event.by})"
        elif event.type == "handed_off":
            what = f"{event.worker_id} stopped and handed off"
        else:
            what = f"{event.type} {event.worker_id}"
        runs = "" if event.runs is None else f": {_plural(event.runs, 'run')} released"
        lines.append(f"  {_clock(event.ts)}  {what}{runs}")

    d = stats.dead_letters
    letters = f"letters    {_plural(d.count, 'dead letter')}"
    if d.last_ts is not None:
        letters += f"; last at {_clock(d.last_ts)}"
        if d.last_reason:
            reason = d.last_reason if len(d.last_reason) <= 80 else d.last_reason[:79] + "…"
            letters += f": {reason}"
    lines.append(letters)
    return "\n".join(lines)
