"""Every Lua script of runpoller/redis/scripts/, called directly, and every one of its returns.

The cases are :class:`ScriptCases`; this module runs them on fakeredis (Lua through lupa), and
tests/integration/redis/test_scripts.py runs the very same cases on a real Redis. Below them,
checks of the loader and of the files' headers, which need no Redis at all.
"""

from __future__ import annotations

import glob
import re
import time
import tomllib
from collections.abc import AsyncIterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from redis.asyncio import Redis

from runpoller.redis import scripts

REPO = Path(__file__).resolve().parents[3]
NOW_MS = 1_764_115_230_500
"""The caller's clock as the scripts take it (ARGV): index scores never come from Redis."""


async def call(
    client: Redis, name: scripts.ScriptName, keys: Sequence[Any], args: Sequence[Any]
) -> Any:
    """Run one script the way the worker does (registered, by SHA)."""
    return await scripts.register(client, name)(keys=list(keys), args=list(args))


async def types_and_data(client: Redis, stream: str) -> list[tuple[str, str]]:
    """A stream's entries as (type, data) pairs, the shape of runpoller's event streams."""
    return [
        (fields[b"type"].decode(), fields[b"data"].decode())
        for _, fields in await client.xrange(stream)
    ]


class ScriptCases:
    """The cases, for any ``client`` fixture (fakeredis here, a real Redis in integration)."""

    # ------------------------------------------------------------------ claim

    @staticmethod
    def claim_keys(ns: str, *run_ids: str, me: str = "w1") -> list[str]:
        """KEYS of claim.lua: owned set, active and ended indexes, then each run's hash,
        events stream and cancel request (``run_1`` alone by default)."""
        keys = [f"{ns}:owned:{me}", f"{ns}:runs:active", f"{ns}:runs:ended"]
        for run_id in run_ids or ("run_1",):
            keys += [f"{ns}:run:{run_id}", f"{ns}:events:{run_id}", f"{ns}:cancel:{run_id}"]
        return keys

    @staticmethod
    def claim_args(ns: str, *run_ids: str, me: str = "w1") -> list[Any]:
        """ARGV of claim.lua: a TTL, a MAXLEN and a time of their own, then each run's id, job,
        state and accepted event."""
        args: list[Any] = [me, f"{ns}:worker:", 60, 100, NOW_MS]
        for run_id in run_ids or ("run_1",):
            args += [run_id, '{"job":1}', '{"state":1}', '{"acc":1}']
        return args

    def one_claim(self, ns: str) -> tuple[list[str], str, str, str, str, str]:
        """The keys of a claim of ``run_1``, and its run, owned, events, active, ended keys."""
        keys = self.claim_keys(ns)
        owned, active, ended, run, events, _ = keys
        return keys, run, owned, events, active, ended

    async def test_claim_new_creates_the_record_owned_by_me(
        self, client: Redis, namespace: str
    ) -> None:
        keys, run, owned, events, active, ended = self.one_claim(namespace)
        await client.zadd(ended, {"run_1": NOW_MS - 5_000, "other": NOW_MS - 1})
        reply = await call(client, "claim", keys, self.claim_args(namespace))
        assert reply == [b"new", None, None, None]
        assert await client.hgetall(run) == {
            b"job": b'{"job":1}',
            b"state": b'{"state":1}',
            b"owner": b"w1",
        }
        assert 0 < await client.ttl(run) <= 60
        assert await client.smembers(owned) == {b"run_1"}
        assert await types_and_data(client, events) == [("accepted", '{"acc":1}')]
        assert 0 < await client.ttl(events) <= 60
        assert await client.zrange(active, 0, -1, withscores=True) == [(b"run_1", NOW_MS)]
        assert await client.zrange(ended, 0, -1) == [b"other"], "an expired run's entry goes"

    async def test_claim_done_when_the_run_is_final(self, client: Redis, namespace: str) -> None:
        keys, run, owned, events, active, ended = self.one_claim(namespace)
        await client.hset(run, mapping={"final": "1", "owner": ""})
        await client.hset(f"{namespace}:cancel:run_1", "reason", "stop")
        reply = await call(client, "claim", keys, self.claim_args(namespace))
        assert reply == [b"done", None, None, None], "no cancel read: nothing will run"
        assert await client.hgetall(run) == {b"final": b"1", b"owner": b""}
        assert not await client.exists(owned, events, active, ended)

    async def test_claim_owned_while_another_owner_beats(
        self, client: Redis, namespace: str
    ) -> None:
        keys, run, owned, events, active, ended = self.one_claim(namespace)
        await client.hset(run, mapping={"job": "j", "state": "s", "owner": "w2"})
        await client.set(f"{namespace}:worker:w2", "{}", px=60_000)
        reply = await call(client, "claim", keys, self.claim_args(namespace))
        assert reply == [b"owned", None, b"w2", None]
        assert await client.hget(run, "owner") == b"w2"
        assert not await client.exists(owned, events, active, ended)

    @pytest.mark.parametrize("owner", ["", "w1", "w2"], ids=["no-owner", "me", "dead-owner"])
    async def test_claim_resumed_takes_over_a_run_no_live_worker_holds(
        self, client: Redis, namespace: str, owner: str
    ) -> None:
        keys, run, owned, events, active, ended = self.one_claim(namespace)
        await client.hset(
            run, mapping={"job": "stored-job", "state": "stored-state", "owner": owner}
        )
        await client.zadd(active, {"run_1": NOW_MS - 9_000})
        if owner == "w1":  # my own heartbeat living does not make it "owned"
            await client.set(f"{namespace}:worker:w1", "{}", px=60_000)
        reply = await call(client, "claim", keys, self.claim_args(namespace))
        assert reply == [b"resumed", None, b"stored-job", b"stored-state"]
        assert await client.hgetall(run) == {
            b"job": b"stored-job",
            b"state": b"stored-state",
            b"owner": b"w1",
        }
        assert await client.smembers(owned) == {b"run_1"}
        assert not await client.exists(events), "a takeover writes no accepted event"
        assert await client.zrange(active, 0, -1, withscores=True) == [
            (b"run_1", NOW_MS - 9_000)
        ], "a takeover keeps the time the run was accepted"
        assert not await client.exists(ended)

    async def test_claim_resumed_lists_a_run_the_index_never_had(
        self, client: Redis, namespace: str
    ) -> None:
        # A run accepted before the index existed (an upgrade with runs in flight).
        keys, run, _, _, active, _ = self.one_claim(namespace)
        await client.hset(run, mapping={"job": "j", "state": "s", "owner": ""})
        reply = await call(client, "claim", keys, self.claim_args(namespace))
        assert reply == [b"resumed", None, b"j", b"s"]
        assert await client.zrange(active, 0, -1, withscores=True) == [(b"run_1", NOW_MS)]

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [({"reason": "user asked"}, b"user asked"), ({"requested_at": "123"}, b"")],
        ids=["with-reason", "without-reason"],
    )
    async def test_claim_returns_the_cancel_request_of_a_run_it_claims(
        self, client: Redis, namespace: str, fields: dict[str, str], expected: bytes
    ) -> None:
        keys = self.claim_keys(namespace, "run_1", "run_2")
        await client.hset(f"{namespace}:cancel:run_1", mapping=fields)
        await client.hset(f"{namespace}:cancel:run_2", mapping=fields)
        await client.hset(f"{namespace}:run:run_2", mapping={"job": "j", "state": "s"})
        reply = await call(client, "claim", keys, self.claim_args(namespace, "run_1", "run_2"))
        assert reply == [b"new", expected, None, None, b"resumed", expected, b"j", b"s"]

    async def test_claim_many_runs_in_one_call_each_as_alone(
        self, client: Redis, namespace: str
    ) -> None:
        ns = namespace
        await client.hset(f"{ns}:run:done", mapping={"final": "1", "owner": ""})
        await client.hset(f"{ns}:run:held", mapping={"job": "j", "state": "s", "owner": "w2"})
        await client.set(f"{ns}:worker:w2", "{}", px=60_000)
        await client.hset(f"{ns}:run:free", mapping={"job": "fj", "state": "fs", "owner": ""})
        await client.zadd(f"{ns}:runs:ended", {"a": 1, "b": 2, "free": 3})
        ids = ("a", "done", "held", "free", "b", "a")  # "a" twice: two jobs for one run
        reply = await call(client, "claim", self.claim_keys(ns, *ids), self.claim_args(ns, *ids))
        assert [reply[i : i + 4] for i in range(0, len(reply), 4)] == [
            [b"new", None, None, None],
            [b"done", None, None, None],
            [b"owned", None, b"w2", None],
            [b"resumed", None, b"fj", b"fs"],
            [b"new", None, None, None],
            [b"resumed", None, b'{"job":1}', b'{"state":1}'],
        ]
        assert await client.smembers(f"{ns}:owned:w1") == {b"a", b"free", b"b"}
        assert await client.zrange(f"{ns}:runs:active", 0, -1, withscores=True) == [
            (b"a", NOW_MS),
            (b"b", NOW_MS),
            (b"free", NOW_MS),
        ]
        assert await client.zrange(f"{ns}:runs:ended", 0, -1) == [b"free"]
        assert await types_and_data(client, f"{ns}:events:a") == [("accepted", '{"acc":1}')]
        assert await client.hget(f"{ns}:run:held", "owner") == b"w2"

    # ------------------------------------------------------------------ publish

    async def test_publish_1_writes_state_and_events_in_order(
        self, client: Redis, namespace: str
    ) -> None:
        run, events = f"{namespace}:run:r", f"{namespace}:events:r"
        await client.hset(run, mapping={"state": "old", "owner": "w1"})
        args = ["w1", "new", 100, "status", "a", "status", "b"]
        assert await call(client, "publish", [run, events], args) == 1
        assert await client.hget(run, "state") == b"new"
        assert await types_and_data(client, events) == [("status", "a"), ("status", "b")]

    @pytest.mark.parametrize("owner", ["", "w2"], ids=["no-owner", "other"])
    async def test_publish_0_when_not_the_owner(
        self, client: Redis, namespace: str, owner: str | None
    ) -> None:
        run, events = f"{namespace}:run:r", f"{namespace}:events:r"
        if owner is not None:
            await client.hset(run, mapping={"state": "old", "owner": owner})
        assert await call(client, "publish", [run, events], ["w1", "new", 100, "t", "d"]) == 0
        assert await client.hget(run, "state") == (None if owner is None else b"old")
        assert not await client.exists(events)

    async def test_publish_minus_2_when_the_record_is_gone(
        self, client: Redis, namespace: str
    ) -> None:
        run, events = f"{namespace}:run:r", f"{namespace}:events:r"
        assert await call(client, "publish", [run, events], ["w1", "new", 100, "t", "d"]) == -2
        assert not await client.exists(run, events)

    # ------------------------------------------------------------------ restore

    @staticmethod
    def restore_keys(ns: str) -> list[str]:
        """KEYS of restore.lua: run hash, owned set, active index."""
        return [f"{ns}:run:r", f"{ns}:owned:w1", f"{ns}:runs:active"]

    async def test_restore_1_recreates_a_lost_record_owned_by_me(
        self, client: Redis, namespace: str
    ) -> None:
        run, owned, active = keys = self.restore_keys(namespace)
        assert await call(client, "restore", keys, ["w1", "JOB", "STATE", 30, "r", NOW_MS]) == 1
        assert await client.hgetall(run) == {b"job": b"JOB", b"state": b"STATE", b"owner": b"w1"}
        assert 0 < await client.ttl(run) <= 30
        assert await client.smembers(owned) == {b"r"}
        assert await client.zrange(active, 0, -1, withscores=True) == [(b"r", NOW_MS)]

    async def test_restore_0_leaves_an_existing_record_alone(
        self, client: Redis, namespace: str
    ) -> None:
        run, owned, active = keys = self.restore_keys(namespace)
        await client.hset(run, mapping={"owner": "w2", "state": "theirs"})
        assert await call(client, "restore", keys, ["w1", "JOB", "STATE", 30, "r", NOW_MS]) == 0
        assert await client.hgetall(run) == {b"owner": b"w2", b"state": b"theirs"}
        assert not await client.exists(owned, active)

    # ------------------------------------------------------------------ finalize

    @staticmethod
    def finalize_keys(ns: str) -> list[str]:
        """KEYS of finalize.lua: run, events, result, owned, outcomes, active, ended."""
        return [
            f"{ns}:run:r",
            f"{ns}:events:r",
            f"{ns}:result:r",
            f"{ns}:owned:w1",
            f"{ns}:oc:1",
            f"{ns}:runs:active",
            f"{ns}:runs:ended",
        ]

    async def test_finalize_1_writes_the_final_event_once(
        self, client: Redis, namespace: str
    ) -> None:
        run, events, result, owned, outcomes, active, ended = keys = self.finalize_keys(namespace)
        await client.hset(run, mapping={"job": "j", "state": "s", "owner": "w1"})
        await client.sadd(owned, "r", "other")
        await client.zadd(active, {"r": NOW_MS - 20_000, "other": NOW_MS - 10_000})
        # Ended more than the TTL (30 s) ago: left for housekeeping to trim (trim_ended).
        await client.zadd(ended, {"gone": NOW_MS - 30_001, "edge": NOW_MS - 30_000, "kept": NOW_MS})
        args = ["w1", "final-state", 100, "FINAL", 30, "r", "completed", NOW_MS, "status", "done"]
        assert await call(client, "finalize", keys, args) == 1
        assert await client.hgetall(run) == {
            b"state": b"final-state",
            b"final": b"1",
            b"owner": b"",
        }
        assert await types_and_data(client, events) == [("status", "done"), ("final", "FINAL")]
        assert await client.get(result) == b"FINAL"
        for key in (run, events, result):
            assert 0 < await client.ttl(key) <= 30
        assert await client.smembers(owned) == {b"other"}
        assert await client.hgetall(outcomes) == {b"completed": b"1"}
        assert 7100 < await client.ttl(outcomes) <= 7200
        assert await client.zrange(active, 0, -1) == [b"other"]
        assert await client.zrange(ended, 0, -1, withscores=True) == [
            (b"gone", NOW_MS - 30_001),
            (b"edge", NOW_MS - 30_000),
            (b"kept", NOW_MS),
            (b"r", NOW_MS),
        ]

    async def test_finalize_sets_the_outcomes_ttl_only_with_a_new_field(
        self, client: Redis, namespace: str
    ) -> None:
        run, _, _, _, outcomes, _, _ = keys = self.finalize_keys(namespace)
        await client.hset(outcomes, "completed", 5)
        await client.expire(outcomes, 100)
        await client.hset(run, mapping={"owner": "w1"})
        args = ["w1", "s", 100, "F", 30, "r", "completed", NOW_MS]
        assert await call(client, "finalize", keys, args) == 1
        assert await client.hget(outcomes, "completed") == b"6"
        assert 0 < await client.ttl(outcomes) <= 100, "an existing field keeps the hash's TTL"

    async def test_finalize_0_when_already_final(self, client: Redis, namespace: str) -> None:
        run, events, result, owned, outcomes, active, ended = keys = self.finalize_keys(namespace)
        await client.hset(run, mapping={"final": "1", "owner": "w1", "state": "s"})
        args = ["w1", "x", 100, "F", 30, "r", "failed", NOW_MS]
        assert await call(client, "finalize", keys, args) == 0
        assert await client.hgetall(run) == {b"final": b"1", b"owner": b"w1", b"state": b"s"}
        assert not await client.exists(events, result, owned, outcomes, active, ended)

    @pytest.mark.parametrize("owner", ["", "w2"], ids=["no-owner", "other"])
    async def test_finalize_minus_1_when_not_the_owner(
        self, client: Redis, namespace: str, owner: str | None
    ) -> None:
        run, events, result, owned, outcomes, active, ended = keys = self.finalize_keys(namespace)
        if owner is not None:
            await client.hset(run, mapping={"owner": owner, "state": "s"})
        await client.sadd(owned, "r")
        await client.zadd(active, {"r": NOW_MS - 1})
        args = ["w1", "x", 100, "F", 30, "r", "failed", NOW_MS, "status", "x"]
        assert await call(client, "finalize", keys, args) == -1
        assert await client.hget(run, "state") == (None if owner is None else b"s")
        assert not await client.exists(events, result, outcomes, ended)
        assert await client.smembers(owned) == {b"r"}
        assert await client.zrange(active, 0, -1) == [b"r"]

    async def test_finalize_minus_2_when_the_record_is_gone(
        self, client: Redis, namespace: str
    ) -> None:
        keys = self.finalize_keys(namespace)
        args = ["w1", "x", 100, "F", 30, "r", "failed", NOW_MS, "status", "x"]
        assert await call(client, "finalize", keys, args) == -2
        assert not await client.exists(*keys)

    # ------------------------------------------------------------------ reject

    @staticmethod
    def reject_keys(ns: str) -> list[str]:
        """KEYS of reject.lua: run, events, result, active and ended indexes, outcomes."""
        return [
            f"{ns}:run:r",
            f"{ns}:events:r",
            f"{ns}:res:r",
            f"{ns}:runs:active",
            f"{ns}:runs:ended",
            f"{ns}:outcomes:1",
        ]

    async def test_reject_1_records_a_final_error_for_a_new_run(
        self, client: Redis, namespace: str
    ) -> None:
        run, events, result, active, ended, outcomes = keys = self.reject_keys(namespace)
        await client.zadd(active, {"r": NOW_MS - 40_000, "other": NOW_MS - 1})  # r: expired
        await client.zadd(ended, {"gone": NOW_MS - 30_001, "kept": NOW_MS - 30_000})
        args = [100, "ERR", 30, "r", NOW_MS, "error"]
        assert await call(client, "reject", keys, args) == 1
        # Counted where runpoller stats reads the minute's outcomes, like a finalize.
        assert await client.hgetall(outcomes) == {b"error": b"1"}
        assert 0 < await client.ttl(outcomes) <= 7200
        assert await client.hgetall(run) == {b"final": b"1", b"owner": b""}
        assert await types_and_data(client, events) == [("final", "ERR")]
        assert await client.get(result) == b"ERR"
        for key in (run, events, result):
            assert 0 < await client.ttl(key) <= 30
        assert await client.zrange(active, 0, -1) == [b"other"]
        assert await client.zrange(ended, 0, -1, withscores=True) == [
            (b"gone", NOW_MS - 30_001),  # housekeeping's to trim
            (b"kept", NOW_MS - 30_000),
            (b"r", NOW_MS),
        ]

    async def test_reject_0_when_the_run_exists(self, client: Redis, namespace: str) -> None:
        run, events, result, active, ended, outcomes = keys = self.reject_keys(namespace)
        await client.hset(run, mapping={"owner": "w2", "job": "j"})
        await client.zadd(active, {"r": NOW_MS - 1})
        assert await call(client, "reject", keys, [100, "ERR", 30, "r", NOW_MS, "error"]) == 0
        assert await client.hgetall(run) == {b"owner": b"w2", b"job": b"j"}
        assert not await client.exists(events, result, ended, outcomes)
        assert await client.zrange(active, 0, -1) == [b"r"]

    # ------------------------------------------------------------------ heartbeat

    async def test_heartbeat_0_then_1_while_the_lease_lives(
        self, client: Redis, namespace: str
    ) -> None:
        beat, workers = f"{namespace}:worker:w1", f"{namespace}:workers"
        assert await call(client, "heartbeat", [beat, workers], ["w1", 1000, 5000, "v1"]) == 0
        assert await client.get(beat) == b"v1"
        assert 4000 < await client.pttl(beat) <= 5000
        assert await client.zscore(workers, "w1") == 1000
        assert await call(client, "heartbeat", [beat, workers], ["w1", 2000, 5000, "v2"]) == 1
        assert await client.get(beat) == b"v2"
        assert await client.zscore(workers, "w1") == 2000

    async def test_heartbeat_0_after_the_lease_lapsed(self, client: Redis, namespace: str) -> None:
        beat, workers = f"{namespace}:worker:w1", f"{namespace}:workers"
        await call(client, "heartbeat", [beat, workers], ["w1", 1000, 5000, "v"])
        await client.delete(beat)  # what expiry does
        assert await call(client, "heartbeat", [beat, workers], ["w1", 3000, 5000, "v"]) == 0
        assert await client.exists(beat)

    # ------------------------------------------------------------------ release

    @staticmethod
    def release_keys(ns: str, wid: str = "dead") -> list[str]:
        """KEYS of release.lua: workers, orphans, the worker's heartbeat and owned set."""
        return [f"{ns}:workers", f"{ns}:orphans", f"{ns}:worker:{wid}", f"{ns}:owned:{wid}"]

    async def given_a_worker_with_runs(self, client: Redis, ns: str) -> None:
        """``dead`` owns r1 and r2; r3 is in its owned set but another worker took it over."""
        await client.zadd(f"{ns}:workers", {"dead": 1, "alive": 2})
        await client.sadd(f"{ns}:owned:dead", "r1", "r2", "r3")
        for run_id, owner in (("r1", "dead"), ("r2", "dead"), ("r3", "alive")):
            await client.hset(f"{ns}:run:{run_id}", mapping={"owner": owner, "job": "j"})

    async def test_release_n_hands_the_runs_still_owned_to_the_orphans(
        self, client: Redis, namespace: str
    ) -> None:
        await self.given_a_worker_with_runs(client, namespace)
        workers, orphans, _, owned = keys = self.release_keys(namespace)
        args = ["dead", f"{namespace}:run:", "0"]
        assert await call(client, "release", keys, args) == 2
        assert await client.smembers(orphans) == {b"r1", b"r2"}
        assert await client.hget(f"{namespace}:run:r1", "owner") == b""
        assert await client.hget(f"{namespace}:run:r2", "owner") == b""
        assert await client.hget(f"{namespace}:run:r3", "owner") == b"alive"
        assert not await client.exists(owned)
        assert await client.zrange(workers, 0, -1) == [b"alive"]
        # Released already: a second housekeeper is refused, and changes nothing.
        assert await call(client, "release", keys, args) == -1
        assert await client.smembers(orphans) == {b"r1", b"r2"}

    async def test_release_n_is_0_for_a_worker_that_held_nothing(
        self, client: Redis, namespace: str
    ) -> None:
        workers, orphans, _, _ = keys = self.release_keys(namespace)
        await client.zadd(workers, {"dead": 1})
        assert await call(client, "release", keys, ["dead", f"{namespace}:run:", "0"]) == 0
        assert not await client.exists(workers, orphans)

    async def test_release_minus_1_while_the_heartbeat_lives(
        self, client: Redis, namespace: str
    ) -> None:
        await self.given_a_worker_with_runs(client, namespace)
        workers, orphans, beat, owned = keys = self.release_keys(namespace)
        await client.set(beat, "{}", px=60_000)
        assert await call(client, "release", keys, ["dead", f"{namespace}:run:", "0"]) == -1
        assert not await client.exists(orphans)
        assert await client.scard(owned) == 3
        assert await client.zscore(workers, "dead") == 1
        assert await client.hget(f"{namespace}:run:r1", "owner") == b"dead"

    async def test_release_minus_1_when_no_longer_a_worker(
        self, client: Redis, namespace: str
    ) -> None:
        await self.given_a_worker_with_runs(client, namespace)
        workers, orphans, _, owned = keys = self.release_keys(namespace)
        await client.zrem(workers, "dead")
        assert await call(client, "release", keys, ["dead", f"{namespace}:run:", "0"]) == -1
        assert not await client.exists(orphans)
        assert await client.scard(owned) == 3

    async def test_release_forced_ignores_the_heartbeat_and_deletes_it(
        self, client: Redis, namespace: str
    ) -> None:
        await self.given_a_worker_with_runs(client, namespace)
        workers, orphans, beat, owned = keys = self.release_keys(namespace)
        await client.set(beat, "{}", px=60_000)
        assert await call(client, "release", keys, ["dead", f"{namespace}:run:", "1"]) == 2
        assert await client.smembers(orphans) == {b"r1", b"r2"}
        assert not await client.exists(beat, owned)
        assert await client.zscore(workers, "dead") is None
        # Forced, even a worker no longer in the zset is released (0: nothing left).
        assert await call(client, "release", keys, ["dead", f"{namespace}:run:", "1"]) == 0

    # ------------------------------------------------------------------ unlock

    async def test_unlock_1_deletes_the_lock_holding_my_token(
        self, client: Redis, namespace: str
    ) -> None:
        lock = f"{namespace}:orphans:lock"
        await client.set(lock, "mine", px=10_000)
        assert await call(client, "unlock", [lock], ["mine"]) == 1
        assert not await client.exists(lock)

    async def test_unlock_0_with_a_wrong_token_leaves_the_lock(
        self, client: Redis, namespace: str
    ) -> None:
        lock = f"{namespace}:orphans:lock"
        await client.set(lock, "theirs", px=10_000)
        assert await call(client, "unlock", [lock], ["mine"]) == 0
        assert await client.get(lock) == b"theirs"

    async def test_unlock_0_when_the_lock_is_gone(self, client: Redis, namespace: str) -> None:
        lock = f"{namespace}:orphans:lock"
        assert await call(client, "unlock", [lock], ["mine"]) == 0
        assert not await client.exists(lock)

    # ------------------------------------------------------------------ intake_take

    async def test_intake_take_returns_the_due_free_jobs_in_order(
        self, client: Redis, namespace: str
    ) -> None:
        queue, taken_set = f"{namespace}:queue", f"{namespace}:queue:taken:w1"
        now = int(time.time() * 1000)
        await client.zadd(queue, {"a": now - 10, "busy": now - 10, "later": now + 60_000, "b": now})
        busy = f"{namespace}:in-progress:busy"
        await client.set(busy, "1", px=60_000)
        ids = ["b", "missing", "later", "busy", "a"]
        keys = [queue, taken_set, *(f"{namespace}:in-progress:{i}" for i in ids)]
        args = [now, 40_000, "w1", 500, now, *ids]
        assert await call(client, "intake_take", keys, args) == [b"b", b"a"]
        for taken in ("a", "b"):
            assert await client.zscore(queue, taken) == now + 40_000, "hidden until the lease ends"
            assert await client.get(f"{namespace}:in-progress:{taken}") == b"w1", "held by me"
            assert 39_000 < await client.pttl(f"{namespace}:in-progress:{taken}") <= 40_000
        assert await client.zrange(taken_set, 0, -1, withscores=True) == [
            (b"a", now + 40_000.0),
            (b"b", now + 40_000.0),
        ], "recorded as mine until settled, by the end of its lease"
        assert 39_000 < await client.pttl(taken_set) <= 40_000
        assert await client.zscore(queue, "later") == now + 60_000
        assert await client.zscore(queue, "busy") == now - 10
        assert await client.get(busy) == b"1"
        assert await client.zscore(queue, "missing") is None
        assert not await client.exists(
            f"{namespace}:in-progress:missing", f"{namespace}:in-progress:later"
        )
        # Taken: the same batch again takes nothing.
        assert await call(client, "intake_take", keys, args) == []

    async def test_intake_take_takes_no_more_than_the_limit_and_leaves_the_rest_due(
        self, client: Redis, namespace: str
    ) -> None:
        queue, taken_set = f"{namespace}:queue", f"{namespace}:queue:taken:w1"
        now = int(time.time() * 1000)
        await client.zadd(queue, {"a": now - 3, "b": now - 2, "c": now - 1})
        ids = ["a", "b", "c"]
        keys = [queue, taken_set, *(f"{namespace}:in-progress:{i}" for i in ids)]
        assert await call(client, "intake_take", keys, [now, 40_000, "w1", 2, now, *ids]) == [
            b"a",
            b"b",
        ]
        assert await client.zscore(queue, "c") == now - 1, "still due, for another worker"
        assert not await client.exists(f"{namespace}:in-progress:c")
        assert await client.zrange(taken_set, 0, -1) == [b"a", b"b"]
        assert await call(client, "intake_take", keys, [now, 40_000, "w1", 0, now, *ids]) == []

    async def test_intake_take_only_takes_jobs_due_by_the_given_time(
        self, client: Redis, namespace: str
    ) -> None:
        # A worker above the cluster average leaves the freshest jobs to those below it.
        queue, taken_set = f"{namespace}:queue", f"{namespace}:queue:taken:w1"
        now = int(time.time() * 1000)
        await client.zadd(queue, {"old": now - 500, "fresh": now - 50})
        ids = ["fresh", "old"]
        keys = [queue, taken_set, *(f"{namespace}:in-progress:{i}" for i in ids)]
        args = [now, 40_000, "w1", 10, now - 200, *ids]
        assert await call(client, "intake_take", keys, args) == [b"old"]
        assert await client.zscore(queue, "fresh") == now - 50
        assert not await client.exists(f"{namespace}:in-progress:fresh")

    async def test_intake_take_drops_taken_entries_whose_lease_ended(
        self, client: Redis, namespace: str
    ) -> None:
        queue, taken_set = f"{namespace}:queue", f"{namespace}:queue:taken:w1"
        now = int(time.time() * 1000)
        await client.zadd(taken_set, {"old": now - 1, "current": now + 5_000})
        await client.zadd(queue, {"new": now})
        keys = [queue, taken_set, f"{namespace}:in-progress:new"]
        args = [now, 40_000, "w1", 10, now, "new"]
        assert await call(client, "intake_take", keys, args) == [b"new"]
        assert await client.zrange(taken_set, 0, -1) == [b"current", b"new"]

    async def test_intake_take_of_nothing_due_is_empty(self, client: Redis, namespace: str) -> None:
        queue, taken_set = f"{namespace}:queue", f"{namespace}:queue:taken:w1"
        assert await call(client, "intake_take", [queue, taken_set], [0, 40_000, "w1", 10, 0]) == []
        assert not await client.exists(queue, taken_set)

    # ------------------------------------------------------------------ intake_settle

    async def test_intake_settle_finishes_and_defers(self, client: Redis, namespace: str) -> None:
        queue, ns = f"{namespace}:queue", namespace
        taken_set = f"{ns}:queue:taken:w1"
        await client.zadd(queue, {"d1": 1, "d2": 2, "keep": 3, "deferred": 4})
        await client.zadd(taken_set, {"d1": 9, "d2": 9, "deferred": 9, "other": 9})
        for job_id in ("d1", "d2", "keep", "deferred"):
            for kind in ("in-progress", "job", "retry"):
                await client.set(f"{ns}:{kind}:{job_id}", "w1")
        await client.delete(f"{ns}:in-progress:d2")  # its lease ended: nobody holds it
        keys = [queue, taken_set]
        for job_id in ("d1", "d2"):
            keys += [f"{ns}:in-progress:{job_id}", f"{ns}:job:{job_id}", f"{ns}:retry:{job_id}"]
        keys += [f"{ns}:in-progress:deferred", f"{ns}:in-progress:gone"]
        args = ["w1", 2, "d1", "d2", "deferred", 9000, "gone", 9500]
        assert await call(client, "intake_settle", keys, args) == 4
        assert await client.zrange(queue, 0, -1, withscores=True) == [
            (b"keep", 3.0),
            (b"deferred", 9000.0),
        ], "finished jobs leave; a deferred one not in the queue is not added (XX)"
        for job_id in ("d1", "d2"):
            for kind in ("in-progress", "job", "retry"):
                assert not await client.exists(f"{ns}:{kind}:{job_id}")
        assert not await client.exists(f"{ns}:in-progress:deferred")
        assert await client.exists(f"{ns}:job:deferred", f"{ns}:retry:deferred") == 2
        assert (
            await client.exists(*(f"{ns}:{k}:keep" for k in ("in-progress", "job", "retry"))) == 3
        )
        assert await client.zrange(taken_set, 0, -1) == [b"other"], "settled: no longer taken"

    async def test_intake_settle_of_deferred_only_returns_their_number(
        self, client: Redis, namespace: str
    ) -> None:
        queue, lease = f"{namespace}:queue", f"{namespace}:in-progress:j"
        taken_set = f"{namespace}:queue:taken:w1"
        await client.zadd(queue, {"j": 1})
        await client.set(lease, "w1")
        assert (
            await call(client, "intake_settle", [queue, taken_set, lease], ["w1", 0, "j", 500]) == 1
        )
        assert await client.zscore(queue, "j") == 500
        assert not await client.exists(lease)

    async def test_intake_settle_leaves_jobs_another_worker_took_meanwhile(
        self, client: Redis, namespace: str
    ) -> None:
        # We were presumed dead: reaping gave our jobs back and w2 took them. Ours to settle
        # no longer: w2's lease, score and body stay as they are.
        ns, queue = namespace, f"{namespace}:queue"
        taken_set = f"{ns}:queue:taken:w1"
        await client.zadd(queue, {"done": 50_000, "deferred": 50_000})
        await client.zadd(taken_set, {"done": 9, "deferred": 9})
        for job_id in ("done", "deferred"):
            await client.set(f"{ns}:in-progress:{job_id}", "w2")
            await client.set(f"{ns}:job:{job_id}", "body")
        keys = [queue, taken_set, f"{ns}:in-progress:done", f"{ns}:job:done", f"{ns}:retry:done"]
        keys += [f"{ns}:in-progress:deferred"]
        args = ["w1", 1, "done", "deferred", 0]
        assert await call(client, "intake_settle", keys, args) == 0
        assert await client.zrange(queue, 0, -1, withscores=True) == [
            (b"deferred", 50_000.0),
            (b"done", 50_000.0),
        ]
        for job_id in ("done", "deferred"):
            assert await client.get(f"{ns}:in-progress:{job_id}") == b"w2"
            assert await client.get(f"{ns}:job:{job_id}") == b"body"
        assert not await client.exists(taken_set)

    # ------------------------------------------------------------------ intake_release

    async def test_intake_release_n_gives_a_dead_workers_taken_jobs_back_due_now(
        self, client: Redis, namespace: str
    ) -> None:
        ns, queue = namespace, f"{namespace}:queue"
        taken_set, heartbeat = f"{ns}:queue:taken:w2", f"{ns}:worker:w2"
        now = int(time.time() * 1000)
        lease_end = now + 40_000
        await client.zadd(queue, {"a": lease_end, "b": lease_end, "retaken": lease_end})
        await client.zadd(
            taken_set,
            {"a": lease_end, "b": lease_end, "retaken": lease_end, "settled": lease_end},
        )
        await client.zadd(taken_set, {"lapsed": now - 1})  # its lease already ended
        for job_id in ("a", "b"):
            await client.set(f"{ns}:in-progress:{job_id}", "w2", px=40_000)
        await client.set(f"{ns}:in-progress:retaken", "w3", px=40_000)
        await client.set(f"{ns}:in-progress:lapsed", "w4", px=40_000)
        args = ["w2", f"{ns}:in-progress:", now]
        assert await call(client, "intake_release", [queue, taken_set, heartbeat], args) == 2
        assert await client.zrange(queue, 0, -1, withscores=True) == [
            (b"a", float(now)),
            (b"b", float(now)),
            (b"retaken", float(lease_end)),
        ], "due at once; a job another worker holds now is left to it; none is added"
        assert not await client.exists(f"{ns}:in-progress:a", f"{ns}:in-progress:b")
        assert await client.get(f"{ns}:in-progress:retaken") == b"w3"
        assert await client.get(f"{ns}:in-progress:lapsed") == b"w4"
        assert not await client.exists(taken_set)
        assert await call(client, "intake_release", [queue, taken_set, heartbeat], args) == 0

    async def test_intake_release_minus_1_while_the_heartbeat_lives(
        self, client: Redis, namespace: str
    ) -> None:
        ns, queue = namespace, f"{namespace}:queue"
        taken_set, heartbeat = f"{ns}:queue:taken:w2", f"{ns}:worker:w2"
        now = int(time.time() * 1000)
        await client.zadd(queue, {"a": now + 40_000})
        await client.zadd(taken_set, {"a": now + 40_000})
        await client.set(f"{ns}:in-progress:a", "w2", px=40_000)
        await client.set(heartbeat, "{}", px=5_000)
        args = ["w2", f"{ns}:in-progress:", now]
        assert await call(client, "intake_release", [queue, taken_set, heartbeat], args) == -1
        assert await client.zscore(queue, "a") == now + 40_000
        assert await client.get(f"{ns}:in-progress:a") == b"w2"
        assert await client.zrange(taken_set, 0, -1) == [b"a"]

    # ------------------------------------------------------------------ ratelimit_take

    async def test_ratelimit_take_grants_batches_then_the_rest_then_0(
        self, client: Redis, namespace: str
    ) -> None:
        counter = f"{namespace}:ratelimit:kid:7"
        assert await call(client, "ratelimit_take", [counter], [10, 4, 121]) == 4
        assert 0 < await client.ttl(counter) <= 121
        assert await call(client, "ratelimit_take", [counter], [10, 4, 121]) == 4
        assert await call(client, "ratelimit_take", [counter], [10, 4, 121]) == 2
        assert await client.get(counter) == b"10"
        await client.expire(counter, 50)
        assert await call(client, "ratelimit_take", [counter], [10, 4, 121]) == 0
        assert await client.get(counter) == b"10"
        assert 0 < await client.ttl(counter) <= 50, "a refusal leaves the counter as it is"

    async def test_ratelimit_take_0_when_over_a_lowered_budget(
        self, client: Redis, namespace: str
    ) -> None:
        counter = f"{namespace}:ratelimit:kid:7"
        await client.set(counter, 12)
        assert await call(client, "ratelimit_take", [counter], [10, 4, 121]) == 0
        assert await client.get(counter) == b"12"


class TestScriptsOnFakeredis(ScriptCases):
    """The cases on fakeredis, each test with a server of its own."""

    @pytest.fixture
    async def client(self) -> AsyncIterator[Redis]:
        client = fakeredis.FakeAsyncRedis(server=fakeredis.FakeServer())
        yield client
        await client.aclose()


# ---------------------------------------------------------------------------- the loader


def header(name: scripts.ScriptName) -> list[str]:
    """The leading comment lines of a script."""
    lines = []
    for line in scripts.source(name).splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return lines


def test_every_lua_file_is_a_known_script_and_every_script_has_its_file() -> None:
    files = {p.name for p in resources.files(scripts).iterdir() if p.name.endswith(".lua")}
    assert files == {f"{name}.lua" for name in scripts.NAMES}


def test_pyproject_ships_the_lua_files() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["runpoller"]
    shipped = {
        Path(path).name
        for pattern in patterns
        for path in glob.glob(str(REPO / "worker" / "runpoller" / pattern))
    }
    assert {f"{name}.lua" for name in scripts.NAMES} <= shipped


def test_a_script_is_read_once_and_shared() -> None:
    assert scripts.source("heartbeat") is scripts.source("heartbeat")
    assert scripts.source("claim").startswith("-- claim: ")


def test_an_unknown_script_is_refused() -> None:
    with pytest.raises(ValueError, match="no Lua script named 'nope'"):
        scripts.source("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", scripts.NAMES)
def test_the_header_names_every_key_and_argument_the_script_uses(
    name: scripts.ScriptName,
) -> None:
    lines = header(name)
    text = "\n".join(lines)
    assert lines[0].startswith(f"-- {name}: "), "the first line says what the script is for"
    assert re.search(r"^-- KEYS\[1\] ", text, re.M), "the header lists KEYS"
    assert re.search(r"^-- Returns", text, re.M), "the header lists the returns"
    body = scripts.source(name)[len(text) :]
    for kind in ("KEYS", "ARGV"):
        for index in sorted(set(re.findall(rf"{kind}\[(\d+)\]", body)), key=int):
            listed = re.search(rf"^-- {kind}\[{index}(\]|\.\.|\+)", text, re.M)
            ranged = re.search(rf"^-- {kind}\[\d+(\.\.|\+i)", text, re.M)
            assert listed or ranged, f"{name}.lua uses {kind}[{index}] without naming it"


@pytest.mark.parametrize("name", scripts.NAMES)
def test_keys_built_inside_a_script_are_said_so(name: scripts.ScriptName) -> None:
    body = scripts.source(name)[len("\n".join(header(name))) :]
    builds_keys = re.search(r"ARGV\[\d+\] \.\.", body) is not None
    assert builds_keys == ("Not declared:" in "\n".join(header(name)))
