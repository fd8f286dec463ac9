"""OpenAI's own SDK as an independent judge: the receiver accepts exactly the deliveries
``OpenAI(webhook_secret=...).webhooks.verify_signature`` accepts (for whole-second
timestamps, the only kind the API sends), and ``unwrap`` reads the same event from them."""

from __future__ import annotations

import time
from typing import Any

import fakeredis
import openai
import pytest

from tests.unit.webhooks.conftest import Delivery, Post, event, new_secret, sign, wakes


def variants(secret: str) -> list[tuple[str, Delivery, dict[str, str]]]:
    """(name, delivery, header overrides): good ones and each way of getting it wrong."""
    now = time.time()

    def fresh(**kw: Any) -> Delivery:
        return sign(event("response.completed", "resp_judge"), kw.pop("key", secret), **kw)

    good = fresh()
    other = fresh(key=new_secret(), webhook_id=good.headers["webhook-id"])
    tampered = fresh()
    tampered.body = tampered.body.replace(b"resp_judge", b"resp_other")
    return [
        ("good", good, {}),
        ("good, four minutes old", fresh(at=now - 240), {}),
        ("good, four minutes ahead", fresh(at=now + 240), {}),
        ("another secret", other, {}),
        ("tampered body", tampered, {}),
        ("six minutes old", fresh(at=now - 360), {}),
        ("six minutes ahead", fresh(at=now + 360), {}),
        ("other id", fresh(), {"webhook-id": "wh_else"}),
        ("other timestamp", fresh(), {"webhook-timestamp": str(int(now) - 1)}),
        (
            "two signatures, second good",
            good,
            {
                "webhook-signature": f"{other.headers['webhook-signature']} "
                f"{good.headers['webhook-signature']}"
            },
        ),
        (
            "unknown version first",
            good,
            {"webhook-signature": f"v9,abc {good.headers['webhook-signature']}"},
        ),
        ("garbage signature", good, {"webhook-signature": "nonsense"}),
        ("empty signature", good, {"webhook-signature": "v1,"}),
    ]


@pytest.mark.parametrize("index", range(13))
async def test_the_receiver_agrees_with_the_openai_sdk(
    post: Post, secrets: list[str], redis: fakeredis.FakeAsyncRedis, index: int
) -> None:
    secret = secrets[0]
    name, delivery, overrides = variants(secret)[index]
    headers = {**delivery.headers, **overrides}
    sdk_accepts = sdk_verdict(secret, delivery, headers)
    status, _ = await post(delivery, **overrides)
    assert (status == 200) == sdk_accepts, name
    if sdk_accepts:
        sdk = openai.OpenAI(api_key="sk-unused", webhook_secret=secret)
        unwrapped = sdk.webhooks.unwrap(delivery.body, headers)
        assert (await wakes(redis))[-1]["object_id"] == unwrapped.data.id
        assert (await wakes(redis))[-1]["type"] == unwrapped.type


def sdk_verdict(secret: str, delivery: Delivery, headers: dict[str, str]) -> bool:
    sdk = openai.OpenAI(api_key="sk-unused", webhook_secret=secret)
    try:
        sdk.webhooks.verify_signature(delivery.body, headers)
    except openai.InvalidWebhookSignatureError:
        return False
    return True


def test_the_cases_are_not_all_one_verdict() -> None:
    secret = new_secret()
    cases = variants(secret)
    accepted = [n for n, d, o in cases if sdk_verdict(secret, d, {**d.headers, **o})]
    assert len(cases) == 13
    assert accepted == [
        "good",
        "good, four minutes old",
        "good, four minutes ahead",
        "two signatures, second good",
        "unknown version first",
    ]
