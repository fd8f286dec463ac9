"""POST /webhooks/openai: what is accepted, what is refused, and what each writes to Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import fakeredis
import pytest
from aiohttp.test_utils import TestClient

from runpoller.config import Settings
from runpoller.webhooks import Receiver
from tests.unit.webhooks.conftest import (
    PATH,
    PREFIX,
    Post,
    counted,
    event,
    everything,
    new_secret,
    sign,
    wakes,
)

WAKE_TYPES = ["response.completed", "response.failed", "response.cancelled", "response.incomplete"]


@pytest.mark.parametrize("event_type", WAKE_TYPES)
async def test_a_signed_response_event_appends_one_wake(
    post: Post,
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    event_type: str,
) -> None:
    delivery = sign(event(event_type, "resp_42"), secrets[0], webhook_id="wh_one")
    assert await post(delivery) == (200, {"ok": True, "result": "accepted"})
    assert await wakes(redis) == [
        {"object_id": "resp_42", "type": event_type, "webhook_id": "wh_one"}
    ]
    assert await redis.get(f"{PREFIX}:webhook:wh_one") == b"1"
    assert 86_000 < await redis.ttl(f"{PREFIX}:webhook:wh_one") <= 86_400
    assert counted(receiver, event_type, "accepted") == 1


@pytest.mark.parametrize("which", [0, 1])
async def test_every_secret_of_a_rotation_is_accepted(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, which: int
) -> None:
    status, _ = await post(sign(event("response.completed"), secrets[which]))
    assert status == 200
    assert len(await wakes(redis)) == 1


async def test_a_header_with_several_signatures_is_accepted_when_one_matches(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis
) -> None:
    good = sign(event("response.completed"), secrets[1])
    other = sign(good.body, new_secret(), webhook_id=good.headers["webhook-id"])
    header = f"v1a,ignored {other.headers['webhook-signature']} {good.headers['webhook-signature']}"
    status, _ = await post(good, **{"webhook-signature": header})
    assert status == 200
    assert len(await wakes(redis)) == 1


async def test_a_duplicate_webhook_id_is_answered_200_and_writes_nothing_more(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, receiver: Receiver
) -> None:
    delivery = sign(event("response.failed"), secrets[0], webhook_id="wh_again")
    assert (await post(delivery))[0] == 200
    # OpenAI's retry: same id, signed again later (another timestamp).
    retry = sign(delivery.body, secrets[1], webhook_id="wh_again", at=time.time() + 5)
    assert await post(retry) == (200, {"ok": True, "result": "duplicate"})
    assert len(await wakes(redis)) == 1
    assert counted(receiver, "response.failed", "duplicate") == 1


@pytest.mark.parametrize("event_type", ["batch.completed", "fine_tuning.job.succeeded"])
async def test_an_unknown_event_type_is_counted_and_writes_nothing(
    post: Post,
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    event_type: str,
) -> None:
    body = event(event_type, "batch_abc" if event_type.startswith("batch") else "ftjob_abc")
    assert await post(sign(body, secrets[0])) == (200, {"ok": True, "result": "unknown_type"})
    assert await everything(redis) == []
    assert counted(receiver, event_type, "unknown_type") == 1


async def test_a_type_that_does_not_look_like_one_is_counted_as_other(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, receiver: Receiver
) -> None:
    body = {"id": "evt_1", "type": "Weird Type/" + "x" * 100, "created_at": 1, "data": {}}
    assert (await post(sign(body, secrets[0])))[0] == 200
    assert counted(receiver, "other", "unknown_type") == 1
    assert await everything(redis) == []


# ---------------------------------------------------------------- refused: nothing written


async def refused(
    post: Post,
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    delivery: Any,
    status: int,
    result: str,
    **headers: str,
) -> dict[str, Any]:
    got_status, body = await post(delivery, **headers)
    assert (got_status, body["ok"], body["result"]) == (status, False, result)
    assert await everything(redis) == []
    assert counted(receiver, "", result) == 1
    return body


async def test_a_signature_by_another_secret_is_refused(
    post: Post, redis: fakeredis.FakeAsyncRedis, receiver: Receiver
) -> None:
    await refused(
        post, redis, receiver, sign(event("response.completed"), new_secret()), 401, "bad_signature"
    )


async def test_a_body_changed_after_signing_is_refused(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, receiver: Receiver
) -> None:
    delivery = sign(event("response.completed", "resp_mine"), secrets[0])
    delivery.body = delivery.body.replace(b"resp_mine", b"resp_evil")
    await refused(post, redis, receiver, delivery, 401, "bad_signature")


async def test_a_signature_over_another_webhook_id_is_refused(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, receiver: Receiver
) -> None:
    delivery = sign(event("response.completed"), secrets[0])
    await refused(
        post, redis, receiver, delivery, 401, "bad_signature", **{"webhook-id": "wh_other"}
    )


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_missing_header_is_refused(
    client: TestClient[Any, Any],
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    missing: str,
) -> None:
    delivery = sign(event("response.completed"), secrets[0])
    del delivery.headers[missing]
    response = await client.post(PATH, data=delivery.body, headers=delivery.headers)
    assert response.status == 401
    assert (await response.json())["result"] == "bad_signature"
    assert await everything(redis) == []


# Signature entries the library cannot split or decode, and timestamps that are not whole
# Unix seconds (the library would read them as floats).
UNREADABLE = [("webhook-signature", v) for v in ("garbage", "v1,", "v1,not base64!")] + [
    ("webhook-signature", v) for v in ("v1,AAAA,BBBB", "v2,AAAA", "v1,QUJD")
]
UNREADABLE += [
    ("webhook-timestamp", v)
    for v in ("1.5e9", "-1", "+1700000000", "now", "1700000000.0", "1_700_000_000")
]


@pytest.mark.parametrize(("header", "value"), UNREADABLE)
async def test_an_unreadable_signature_or_timestamp_is_refused_not_an_error(
    post: Post,
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    header: str,
    value: str,
) -> None:
    delivery = sign(event("response.completed"), secrets[0])
    await refused(post, redis, receiver, delivery, 401, "bad_signature", **{header: value})


@pytest.mark.parametrize("offset_s", [-301, -3600, 301, 3600])
async def test_a_timestamp_outside_five_minutes_is_refused_as_stale(
    post: Post,
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    offset_s: int,
) -> None:
    # Correctly signed, but too old (a replay) or too far ahead.
    delivery = sign(event("response.completed"), secrets[0], at=time.time() + offset_s)
    await refused(post, redis, receiver, delivery, 401, "stale")


@pytest.mark.parametrize("offset_s", [-240, 240])
async def test_a_timestamp_within_five_minutes_is_accepted(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, offset_s: int
) -> None:
    delivery = sign(event("response.completed"), secrets[0], at=time.time() + offset_s)
    assert (await post(delivery))[0] == 200


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"type": 5}',
        # A response event without its response id, or with one no URL may carry.
        json.dumps({"id": "evt_1", "type": "response.completed", "created_at": 1, "data": {}}),
        json.dumps(
            {"id": "e", "type": "response.completed", "created_at": 1, "data": {"id": "../x"}}
        ),
        json.dumps(
            {"id": "e", "type": "response.failed", "created_at": "1", "data": {"id": "resp_1"}}
        ),
        json.dumps(
            {
                "id": "e",
                "object": "thing",
                "type": "response.failed",
                "created_at": 1,
                "data": {"id": "resp_1"},
            }
        ),
    ],
)
async def test_a_signed_body_that_is_not_the_event_is_refused_as_malformed(
    post: Post,
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
    body: bytes | str,
) -> None:
    reply = await refused(post, redis, receiver, sign(body, secrets[0]), 400, "malformed")
    assert reply["reason"]


async def test_a_body_that_is_not_utf8_is_refused_as_malformed(
    client: TestClient[Any, Any],
    secrets: list[str],
    redis: fakeredis.FakeAsyncRedis,
    receiver: Receiver,
) -> None:
    delivery = sign(event("response.completed"), secrets[0])
    response = await client.post(PATH, data=b"\xff\xfe" + delivery.body, headers=delivery.headers)
    assert response.status == 400
    assert await everything(redis) == []


# ---------------------------------------------------------------- size


@pytest.fixture
def small(secrets: list[str]) -> Settings:
    return Settings(
        webhook_secrets=",".join(secrets), key_prefix=PREFIX, webhook_max_body_bytes=1000
    )


async def test_an_oversized_body_is_refused_from_its_content_length(
    small: Settings, secrets: list[str], redis: fakeredis.FakeAsyncRedis
) -> None:
    from aiohttp.test_utils import TestServer

    from runpoller.webhooks import build_app

    receiver = Receiver(small, redis)
    delivery = sign(event("response.completed", padding="x" * 2000), secrets[0])
    async with TestClient(TestServer(build_app(receiver))) as client:
        response = await client.post(PATH, data=delivery.body, headers=delivery.headers)
        assert response.status == 413
        assert (await response.json())["result"] == "too_large"
        # At the limit exactly: read and accepted.
        body = event("response.completed", padding="")
        body["padding"] = "x" * (1000 - len(json.dumps(body)))
        at_limit = sign(body, secrets[0])
        assert len(at_limit.body) == 1000
        response = await client.post(PATH, data=at_limit.body, headers=at_limit.headers)
        assert response.status == 200
    assert counted(receiver, "", "too_large") == 1
    assert len(await wakes(redis)) == 1


async def test_an_oversized_chunked_body_is_refused_while_read(
    small: Settings, secrets: list[str], redis: fakeredis.FakeAsyncRedis
) -> None:
    from aiohttp.test_utils import TestServer

    from runpoller.webhooks import build_app

    receiver = Receiver(small, redis)
    delivery = sign(event("response.completed", padding="x" * 200_000), secrets[0])

    async def chunks() -> Any:  # no Content-Length: Transfer-Encoding: chunked
        for start in range(0, len(delivery.body), 500):
            yield delivery.body[start : start + 500]

    async with TestClient(TestServer(build_app(receiver))) as client:
        response = await client.post(PATH, data=chunks(), headers=delivery.headers)
        assert response.status == 413
    assert await everything(redis) == []
    assert counted(receiver, "", "too_large") == 1


# ---------------------------------------------------------------- Redis down, probes, metrics


async def test_redis_unreachable_is_503_so_openai_sends_it_again(
    post: Post,
    secrets: list[str],
    server: fakeredis.FakeServer,
    receiver: Receiver,
    client: TestClient[Any, Any],
) -> None:
    server.connected = False
    status, body = await post(sign(event("response.cancelled"), secrets[0]))
    assert (status, body["result"]) == (503, "unavailable")
    assert counted(receiver, "response.cancelled", "unavailable") == 1
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["ok"] is False
    server.connected = True
    assert (await client.get("/readyz")).status == 200


async def test_healthz_and_metrics(
    post: Post, secrets: list[str], client: TestClient[Any, Any]
) -> None:
    await post(sign(event("response.completed"), secrets[0]))
    await post(sign(event("response.completed"), new_secret()))
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["ok"] is True
    text = await (await client.get("/metrics")).text()
    assert 'runpoller_webhooks_total{result="accepted",type="response.completed"} 1.0' in text
    assert 'runpoller_webhooks_total{result="bad_signature",type=""} 1.0' in text
    # Its own registry: none of the worker's metrics.
    assert "runpoller_runs_in_flight" not in text


async def test_only_post_is_served(client: TestClient[Any, Any]) -> None:
    assert (await client.get(PATH)).status == 405
