"""RunControl's scripts on a real Redis: answering a cancel of an ended run, and recording
why a reply no run could take was not applied (cancel_ended.lua, reply_unapplied.lua)."""

from __future__ import annotations

import json

import pytest
from redis.asyncio import Redis

from runpoller.protocol import Keys
from runpoller.redis.control import REPLY_STATUS_TTL_S, RunControl

pytestmark = pytest.mark.integration


@pytest.fixture
def control(redis: Redis, namespace: str) -> RunControl:
    return RunControl(redis, Keys(namespace))


async def request_cancel(redis: Redis, keys: Keys, run_id: str) -> None:
    await redis.hset(keys.cancel(run_id), mapping={"reason": "stop", "requested_at": 1})  # type: ignore[misc]


def final(status: str, ts: int, cancel: dict[str, str] | None = None) -> str:
    return json.dumps(
        {"type": "final", "run_id": "r", "ts": ts, "status": status, "cancel": cancel}
    )


async def test_a_cancel_request_reads_the_apps_reason_or_none(
    control: RunControl, redis: Redis
) -> None:
    assert await control.cancel_request("r1") is None
    await request_cancel(redis, control.keys, "r1")
    assert await control.cancel_request("r1") == "stop"
    await redis.hset(control.keys.cancel("r2"), "requested_at", 5)  # type: ignore[misc]
    assert await control.cancel_request("r2") == "", "no reason given is still a request"


async def test_a_cancel_of_an_ended_run_is_answered_in_the_request_once(
    control: RunControl, redis: Redis
) -> None:
    keys = control.keys
    await request_cancel(redis, keys, "r1")
    assert not await control.answer_cancel_of_ended("r1"), "not ended: left to the owner"
    assert not await redis.hexists(keys.cancel("r1"), "outcome")  # type: ignore[misc]
    await redis.set(keys.result("r1"), final("completed", 10))
    assert await control.answer_cancel_of_ended("r1")
    await redis.set(keys.result("r1"), final("failed", 10))  # a second answer changes nothing
    assert await control.answer_cancel_of_ended("r1")
    fields = await redis.hgetall(keys.cancel("r1"))  # type: ignore[misc]
    assert fields[b"outcome"] == b"already_ended" and fields[b"final_status"] == b"completed"


async def test_a_cancel_that_ended_the_run_is_answered_as_cancelled(
    control: RunControl, redis: Redis
) -> None:
    keys = control.keys
    await request_cancel(redis, keys, "r1")
    await redis.set(keys.result("r1"), final("cancelled", 10, {"reason": "app"}))
    assert await control.answer_cancel_of_ended("r1")
    assert await redis.hget(keys.cancel("r1"), "outcome") == b"cancelled"  # type: ignore[misc]


async def test_no_request_no_answer(control: RunControl, redis: Redis) -> None:
    await redis.set(control.keys.result("r1"), final("completed", 10))
    assert not await control.answer_cancel_of_ended("r1")
    assert not await redis.exists(control.keys.cancel("r1")), "no request is created"


async def test_a_reply_for_a_run_that_does_not_exist_is_recorded_rejected(
    control: RunControl, redis: Redis
) -> None:
    keys = control.keys
    assert await control.reply_unapplied("1700000000000-0", "ghost", 2)
    raw = await redis.get(keys.reply_status("1700000000000-0"))
    assert raw is not None
    assert json.loads(raw) == {
        "status": "rejected",
        "run_id": "ghost",
        "round": 2,
        "problem": "no run ghost exists (never enqueued, or its record expired)",
    }
    ttl = await redis.ttl(keys.reply_status("1700000000000-0"))
    assert 0 < ttl <= REPLY_STATUS_TTL_S
    assert not await control.reply_unapplied("1700000000000-0", "ghost", 2), "recorded once"


async def test_a_reply_written_after_the_run_ended_is_recorded_and_one_before_is_not(
    control: RunControl, redis: Redis
) -> None:
    keys = control.keys
    await redis.hset(keys.run("r1"), mapping={"final": "1", "owner": ""})  # type: ignore[misc]
    await redis.set(keys.result("r1"), final("cancelled", 5_000))
    # Written before the end: its owner used it (or said why on the stream); not ours to judge.
    assert not await control.reply_unapplied("4999-0", "r1", 1)
    assert await redis.get(keys.reply_status("4999-0")) is None
    assert await control.reply_unapplied("5001-0", "r1", 1)
    raw = await redis.get(keys.reply_status("5001-0"))
    assert raw is not None
    assert (
        json.loads(raw)["problem"] == "the run had ended (cancelled) before this reply was written"
    )


async def test_a_reply_for_a_run_in_flight_is_left_to_its_owner(
    control: RunControl, redis: Redis
) -> None:
    keys = control.keys
    await redis.hset(keys.run("r1"), mapping={"owner": "w2", "state": "{}"})  # type: ignore[misc]
    assert not await control.reply_unapplied("9000-0", "r1", 1)
    assert await redis.get(keys.reply_status("9000-0")) is None
