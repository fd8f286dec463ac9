"""``runpoller stats`` without workers: collect() on seeded keys, render_table, CLI plumbing."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from fakeredis import FakeAsyncRedis

from runpoller.cli import ops as opscli
from runpoller.cli.stats import (
    ClusterStats,
    DeadLetterStats,
    OutcomeStats,
    QueueStats,
    WorkerEvent,
    WorkerEventStats,
    WorkerStats,
    collect,
    format_age,
    render_table,
)
from runpoller.config import Settings
from runpoller.protocol import Keys

NOW = 1_764_115_230.5  # 2025-11-26 00:00:30.5 UTC
NOW_MS = int(NOW * 1000)
MINUTE = NOW_MS // 60_000


def settings() -> Settings:
    return Settings(key_prefix="rp", queue_name="rp:queue")


async def seed(redis: FakeAsyncRedis) -> None:
    k = Keys("rp")
    await redis.zadd(
        "rp:queue",
        {
            "run:a": NOW_MS - 42_000,  # ready, oldest
            "run:b": NOW_MS - 1_000,  # ready
            "run:c": NOW_MS + 90_000,  # deferred, next
            "run:d": NOW_MS + 600_000,  # deferred
        },
    )
    await redis.zadd(k.workers, {"w-live-1": NOW_MS - 300, "w-live-2": NOW_MS - 900})
    await redis.zadd(k.workers, {"w-dead": NOW_MS - 12_000})
    await redis.set(k.heartbeat("w-live-1"), json.dumps({"ts": NOW_MS - 250, "in_flight": 7}))
    await redis.set(k.heartbeat("w-live-2"), json.dumps({"ts": NOW_MS - 900, "in_flight": 5}))
    await redis.sadd(k.owned("w-live-1"), *[f"r{i}" for i in range(7)])
    await redis.sadd(k.owned("w-live-2"), *[f"s{i}" for i in range(5)])
    await redis.sadd(k.owned("w-dead"), "d1", "d2", "d3")
    await redis.sadd(k.orphans, "o1")
    await redis.hset(k.outcomes(MINUTE), mapping={"completed": 3, "failed": 1})
    await redis.hset(k.outcomes(MINUTE - 14), mapping={"completed": 2, "timed_out": 2})
    await redis.hset(k.outcomes(MINUTE - 15), mapping={"completed": 100})  # outside 15 min
    events = [
        {"type": "dead_worker", "ts": NOW_MS - 20 * 60_000, "worker_id": "old", "runs": 9},
        {"type": "dead_worker", "ts": NOW_MS - 120_000, "worker_id": "w-x", "runs": 4, "by": "w1"},
        {"type": "handed_off", "ts": NOW_MS - 60_000, "worker_id": "w-y", "runs": 2},
        {"type": "dead_worker", "ts": NOW_MS - 5_000, "worker_id": "w-z", "runs": 0, "by": "w2"},
    ]
    for event in events:
        await redis.xadd(k.worker_events, {"data": json.dumps(event)})
    await redis.xadd(k.worker_events, {"data": "not json"})
    for reason in ("invalid_job: first", "invalid_job: no run id given"):
        letter = {"reason": reason, "raw": "{}", "ts": NOW_MS - 3_000}
        await redis.xadd(k.dead_letters, {"data": json.dumps(letter)})


async def test_collect_reads_every_number_from_redis() -> None:
    redis = FakeAsyncRedis()
    await seed(redis)
    stats = await collect(redis, settings(), now=NOW, minutes=15)
    assert stats.ts == NOW_MS and stats.key_prefix == "rp"
    assert stats.queue == QueueStats(
        name="rp:queue", ready=2, deferred=2, oldest_ready_age_s=42.0, next_deferred_in_s=90.0
    )
    assert (stats.live_workers, stats.dead_workers, stats.in_flight, stats.orphans) == (2, 1, 12, 1)
    assert stats.workers == [
        WorkerStats(worker_id="w-live-1", alive=True, in_flight=7, owned=7, last_beat_age_s=0.25),
        WorkerStats(worker_id="w-live-2", alive=True, in_flight=5, owned=5, last_beat_age_s=0.9),
        WorkerStats(worker_id="w-dead", alive=False, in_flight=None, owned=3, last_beat_age_s=12.0),
    ]
    assert stats.outcomes == OutcomeStats(
        minutes=15, total=8, by_status={"completed": 5, "timed_out": 2, "failed": 1}
    )
    events = stats.worker_events
    assert (events.dead_workers_detected, events.handoffs, events.runs_released) == (2, 1, 6)
    assert [(e.type, e.worker_id) for e in events.recent] == [
        ("dead_worker", "w-z"),
        ("handed_off", "w-y"),
        ("dead_worker", "w-x"),
    ]
    assert events.recent[0].by == "w2" and events.recent[1].by is None
    assert stats.dead_letters == DeadLetterStats(
        count=2, last_ts=NOW_MS - 3_000, last_reason="invalid_job: no run id given"
    )
    # JSON-serialisable, and round-trips.
    assert ClusterStats.model_validate_json(stats.model_dump_json()) == stats
    await redis.aclose()


async def test_collect_window_and_empty_cluster() -> None:
    redis = FakeAsyncRedis()
    await seed(redis)
    narrow = await collect(redis, settings(), now=NOW, minutes=1)
    assert narrow.outcomes.by_status == {"completed": 3, "failed": 1}
    assert narrow.worker_events.dead_workers_detected == 1  # only w-z, 5 s ago
    empty = await collect(redis, Settings(key_prefix="other", queue_name="other:q"), now=NOW)
    assert empty.queue.ready == empty.queue.deferred == 0
    assert empty.queue.oldest_ready_age_s is None and empty.queue.next_deferred_in_s is None
    assert empty.workers == [] and empty.outcomes.total == 0
    assert empty.dead_letters == DeadLetterStats(count=0)
    with pytest.raises(ValueError, match="minutes"):
        await collect(redis, settings(), minutes=0)
    await redis.aclose()


def sample_stats() -> ClusterStats:
    return ClusterStats(
        ts=NOW_MS,
        key_prefix="runpoller",
        queue=QueueStats(
            name="runpoller:queue",
            ready=3,
            deferred=1,
            oldest_ready_age_s=2.4,
            next_deferred_in_s=95,
        ),
        live_workers=2,
        dead_workers=1,
        in_flight=12,
        orphans=0,
        workers=[
            WorkerStats(
                worker_id="web-1-8f2a", alive=True, in_flight=7, owned=7, last_beat_age_s=0.3
            ),
            WorkerStats(
                worker_id="web-2-11bc", alive=True, in_flight=5, owned=5, last_beat_age_s=0.8
            ),
            WorkerStats(
                worker_id="web-3-d00d", alive=False, in_flight=None, owned=4, last_beat_age_s=125
            ),
        ],
        outcomes=OutcomeStats(
            minutes=15, total=42, by_status={"completed": 35, "failed": 3, "timed_out": 4}
        ),
        worker_events=WorkerEventStats(
            dead_workers_detected=1,
            handoffs=1,
            runs_released=6,
            recent=[
                WorkerEvent(
                    type="dead_worker", ts=NOW_MS - 60_000, worker_id="web-4", runs=4, by="web-1"
                ),
                WorkerEvent(type="handed_off", ts=NOW_MS - 600_000, worker_id="web-5", runs=2),
            ],
        ),
        dead_letters=DeadLetterStats(
            count=2, last_ts=NOW_MS - 3_000, last_reason="invalid_job: no run id"
        ),
    )


def test_render_table_shows_what_on_call_needs() -> None:
    text = render_table(sample_stats())
    lines = text.splitlines()
    assert lines[0] == (
        "runpoller stats · prefix runpoller · queue runpoller:queue · 2025-11-26 00:00:30 UTC"
    )
    assert "queue      3 ready, 1 deferred (next in 1m35s) · oldest waiting 2.4s" in lines
    assert "workers    2 live, 1 dead (not yet released); 12 runs in flight" in lines
    assert "  WORKER      STATE  IN FLIGHT  OWNED  LAST BEAT" in lines
    assert "  web-1-8f2a  live           7      7       0.3s ago" in lines
    assert "  web-3-d00d  DEAD           -      4      2m05s ago" in lines
    assert "outcomes   last 15 min: 42 runs ended · completed 35  failed 3  timed_out 4" in lines
    assert "events     last 15 min: 1 dead worker detected, 1 hand-off, 6 runs released" in lines
    assert "  23:59:30  dead worker web-4 (detected by web-1): 4 runs released" in lines
    assert "  23:50:30  web-5 stopped and handed off: 2 runs released" in lines
    assert "letters    2 dead letters; last at 00:00:27: invalid_job: no run id" in lines
    assert "\x1b" not in text


def test_render_table_caps_rows_and_handles_an_empty_cluster() -> None:
    stats = sample_stats()
    capped = render_table(stats, max_workers=1)
    assert "web-1-8f2a" in capped and "web-2-11bc" not in capped
    assert "  … 2 more workers" in capped.splitlines()
    empty = stats.model_copy(
        update={
            "queue": QueueStats(
                name="q", ready=0, deferred=0, oldest_ready_age_s=None, next_deferred_in_s=None
            ),
            "workers": [],
            "live_workers": 0,
            "dead_workers": 0,
            "in_flight": 0,
            "outcomes": OutcomeStats(minutes=5, total=0, by_status={}),
            "dead_letters": DeadLetterStats(count=0),
        }
    )
    text = render_table(empty)
    assert "WORKER" not in text
    assert "queue      0 ready, 0 deferred · no job waiting" in text.splitlines()
    assert "outcomes   last 5 min: 0 runs ended · none" in text.splitlines()
    assert "workers    0 live, 0 dead (not yet released); 0 runs in flight" in text.splitlines()
    assert "letters    0 dead letters" in text.splitlines()


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0, "0.0s"),
        (9.96, "10.0s"),
        (12.7, "12s"),
        (125, "2m05s"),
        (7260, "2h01m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
    ],
)
def test_format_age(seconds: float | None, shown: str) -> None:
    assert format_age(seconds) == shown


# ---------------------------------------------------------------------------- CLI plumbing


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runpoller")
    opscli.register(p.add_subparsers(dest="command", required=True))
    return p


def test_register_adds_stats_and_health_with_their_options() -> None:
    args = parser().parse_args(["stats", "--watch", "--interval", "0.5", "--minutes", "5"])
    assert args.func is opscli.cmd_stats
    assert (args.watch, args.interval, args.minutes, args.json) == (True, 0.5, 5, False)
    args = parser().parse_args(["health", "--ready", "--url", "http://w:9464"])
    assert args.func is opscli.cmd_health and args.ready and args.url == "http://w:9464"
    for bad in (["stats", "--interval", "0"], ["stats", "--minutes", "x"]):
        with pytest.raises(SystemExit):
            parser().parse_args(bad)


def test_stats_with_redis_unreachable_is_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    monkeypatch.delenv("RUNPOLLER_LIBRECHAT_CONFIG", raising=False)
    assert opscli.main(["stats", "--json"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("runpoller stats: Redis unreachable at redis://:***@127.0.0.1:1/0 (")
    assert err.count("\n") == 1 and "Traceback" not in err and "hunter2" not in err


def test_probe_url_and_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNPOLLER_METRICS_PORT", raising=False)
    assert opscli.probe_url(None, ready=False) == "http://127.0.0.1:9464/healthz"
    monkeypatch.setenv("RUNPOLLER_METRICS_PORT", "9500")
    assert opscli.probe_url(None, ready=True) == "http://127.0.0.1:9500/readyz"
    assert opscli.probe_url("worker-0:9464/", ready=True) == "http://worker-0:9464/readyz"
    assert opscli.probe_url("http://w/healthz", ready=False) == "http://w/healthz"


def test_fit_clips_to_the_terminal() -> None:
    text = "\n".join(f"line {i} " + "x" * 200 for i in range(50))
    fitted = opscli._fit(text, 80, 24).splitlines()
    assert len(fitted) == 23 and all(len(line) <= 79 for line in fitted)
    assert fitted[-1] == "… 28 more lines (enlarge the terminal)"
    assert opscli._fit("a\nb", 80, 24) == "a\nb"


async def test_watch_redraws_in_place_only_on_a_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeAsyncRedis()
    monkeypatch.setattr(opscli, "_redis", lambda _settings: fake)
    tty, plain, lines = io.StringIO(), io.StringIO(), io.StringIO()
    for out, is_tty, as_json in ((tty, True, False), (plain, False, False), (lines, False, True)):
        fake = FakeAsyncRedis()
        await seed(fake)
        await opscli.watch(
            settings(),
            interval=0.01,
            minutes=15,
            as_json=as_json,
            out=out,
            tty=is_tty,
            iterations=3,
        )
    drawn = tty.getvalue()
    assert drawn.count("\x1b[J") == 2 and drawn.count("runpoller stats ·") == 3
    assert "Ctrl-C to stop" in drawn
    assert "\x1b" not in plain.getvalue() and plain.getvalue().count("runpoller stats ·") == 3
    objects = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert len(objects) == 3 and all(o["queue"]["name"] == "rp:queue" for o in objects)
