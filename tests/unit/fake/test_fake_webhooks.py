"""Webhooks from the fake: sent when a response ends (polled or not), signed, retried, faulted.

A tiny aiohttp receiver records every delivery; signatures are checked by the
``standardwebhooks`` library and bodies against the official spec's ``WebhookResponse*``.
The fake's clock is a ``FakeClock`` whose wall time starts now (the library refuses
timestamps more than 5 minutes off), so a response ends exactly when the test says.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jsonschema
import pytest
from aiohttp import web
from openai.types.webhooks.agent_session_action_required_webhook_event import (
    AgentSessionActionRequiredWebhookEvent,
)
from openai.types.webhooks.agent_session_created_webhook_event import (
    AgentSessionCreatedWebhookEvent,
)
from openai.types.webhooks.agent_session_failed_webhook_event import AgentSessionFailedWebhookEvent
from openai.types.webhooks.agent_session_idle_webhook_event import AgentSessionIdleWebhookEvent
from openai.types.webhooks.agent_session_in_progress_webhook_event import (
    AgentSessionInProgressWebhookEvent,
)
from pydantic import BaseModel
from standardwebhooks import Webhook, WebhookVerificationError

from runpoller.cli.main import main as cli_main
from runpoller_dev.devredis import free_port
from runpoller_fake import FakeServer, FakeState, running_fake_server
from runpoller_fake.testing import FakeClock, check_reply
from tests.unit.fake.conftest import ASSISTANTS_HEADERS
from tests.unit.fake.sdk_agents import no_extra
from tests.unit.webhooks.conftest import SCHEMA_OF, new_secret, spec_schemas

# Queued 50 ms, in progress 100 ms, then the end step.
QUICK = [{"status": "queued", "ms": 50}, {"status": "in_progress", "ms": 100}]


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]
    at: float

    @property
    def event(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.body)
        return body


class Receiver:
    """Records deliveries; answers ``answers`` in turn (then 200), or 401 to a delivery that
    ``secret`` (when set) did not sign."""

    def __init__(self) -> None:
        self.deliveries: list[Received] = []
        self.answers: list[int] = []
        self.secret: str | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        headers = {name.lower(): value for name, value in request.headers.items()}
        delivery = Received(await request.read(), headers, time.time())
        self.deliveries.append(delivery)
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(delivery.body, headers)
            except WebhookVerificationError:
                return web.Response(status=401)
        return web.Response(status=self.answers.pop(0) if self.answers else 200)

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.deliveries) < count:
            assert time.monotonic() < deadline, f"{len(self.deliveries)} of {count} deliveries"
            await asyncio.sleep(0.01)
        return self.deliveries


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=float(int(time.time())))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/hooks", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    recorder.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks"
    yield recorder
    await runner.cleanup()


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
async def hooked(control: httpx.AsyncClient, receiver: Receiver, secret: str) -> httpx.AsyncClient:
    """The control client, once the fake sends webhooks to ``receiver``."""
    reply = await control.post(
        "webhooks", json={"url": receiver.url, "secret": secret, "retry_backoff_ms": 10}
    )
    assert reply.status_code == 200, reply.text
    return control


async def create(control: httpx.AsyncClient, end: dict[str, Any] | None = None) -> str:
    steps = [*QUICK, end or {"status": "completed"}]
    reply = await control.post("responses", json={"script": {"steps": steps}})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["id"])


async def log(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    deliveries: list[dict[str, Any]] = (await control.get("webhooks/log")).json()["deliveries"]
    return deliveries


async def log_when_done(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The log once every delivery is done (answered 2xx, given up, or dropped)."""
    for _ in range(250):
        entries = await log(control)
        if all(entry["done"] for entry in entries):
            return entries
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries still under way: {entries}")


def verified(delivery: Received, secret: str) -> dict[str, Any]:
    """The event, once the library accepts its signature and the spec its body."""
    event: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
    jsonschema.Draft202012Validator(spec_schemas()[SCHEMA_OF[event["type"]]]).validate(event)
    return event


async def settle() -> None:
    """Long enough for the ticker (10 ms) to notice and a delivery to arrive."""
    await asyncio.sleep(0.15)


async def test_a_completed_response_sends_one_signed_delivery_unpolled(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    response_id = await create(hooked)
    clock.advance(0.149)
    await settle()
    assert receiver.deliveries == []  # not ended yet
    clock.advance(0.001)
    [delivery] = await receiver.wait_for(1)
    event = verified(delivery, secret)
    assert event["type"] == "response.completed" and event["object"] == "event"
    assert event["data"] == {"id": response_id}
    assert event["id"].startswith("evt_")
    assert event["created_at"] == int(clock.wall())  # when it ended, not when it was noticed
    headers = delivery.headers
    assert headers["webhook-id"].startswith("wh_")
    assert headers["webhook-timestamp"].isdigit()
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("OpenAI/")
    requests = (await hooked.get("log")).json()["requests"]
    assert [r["endpoint"] for r in requests] == []  # nobody polled (created via /_fake)
    clock.advance(5)
    await settle()
    assert len(receiver.deliveries) == 1
    [entry] = await log(hooked)
    assert entry | {"sent_at": None} == {
        "seq": 0,
        "event_id": event["id"],
        "webhook_id": headers["webhook-id"],
        "type": "response.completed",
        "response_id": response_id,
        "created_at": event["created_at"],
        "faults": [],
        "duplicate": False,
        "status": 200,
        "attempts": 1,
        "answers": [200],
        "sent_at": None,
        "done": True,
    }


async def test_a_poll_that_sees_the_end_sends_it_once(
    hooked: httpx.AsyncClient,
    client: httpx.AsyncClient,
    receiver: Receiver,
    clock: FakeClock,
    secret: str,
) -> None:
    response_id = await create(hooked)
    clock.advance(1)
    for _ in range(3):  # the first poll brings it to its end, before the ticker does
        assert (await client.get(f"responses/{response_id}")).json()["status"] == "completed"
    await settle()
    [delivery] = await receiver.wait_for(1)
    assert verified(delivery, secret)["data"]["id"] == response_id


@pytest.mark.parametrize(
    ("end", "event_type"),
    [
        ({"status": "failed", "last_error": {"code": "server_error"}}, "response.failed"),
        ({"status": "incomplete", "reason": "max_output_tokens"}, "response.incomplete"),
    ],
)
async def test_other_end_statuses(
    hooked: httpx.AsyncClient,
    receiver: Receiver,
    clock: FakeClock,
    secret: str,
    end: dict[str, Any],
    event_type: str,
) -> None:
    response_id = await create(hooked, end)
    clock.advance(1)
    [delivery] = await receiver.wait_for(1)
    event = verified(delivery, secret)
    assert (event["type"], event["data"]["id"]) == (event_type, response_id)


async def test_a_cancel_sends_response_cancelled(
    hooked: httpx.AsyncClient, client: httpx.AsyncClient, receiver: Receiver, secret: str
) -> None:
    reply = await hooked.post("responses", json={"script": "never_ends"})
    response_id = reply.json()["id"]
    await settle()
    assert receiver.deliveries == []
    assert (await client.post(f"responses/{response_id}/cancel")).status_code == 200
    assert (await client.post(f"responses/{response_id}/cancel")).status_code == 200  # idempotent
    [delivery] = await receiver.wait_for(1)
    assert verified(delivery, secret)["type"] == "response.cancelled"
    await settle()
    assert len(receiver.deliveries) == 1


async def test_runs_send_nothing(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock
) -> None:
    await hooked.post("runs", json={"script": "complete"})
    clock.advance(5)
    await settle()
    assert receiver.deliveries == [] and await log(hooked) == []


async def test_retried_on_500_with_the_same_id_and_body(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    receiver.answers = [500, 503]
    await create(hooked)
    clock.advance(1)
    deliveries = await receiver.wait_for(3)
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    verified(deliveries[-1], secret)
    [entry] = await log_when_done(hooked)
    assert (entry["status"], entry["attempts"], entry["answers"]) == (200, 3, [500, 503, 200])


async def test_gives_up_after_max_attempts(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock
) -> None:
    receiver.answers = [500] * 10
    await hooked.post("webhooks", json={"max_attempts": 3})
    await create(hooked)
    clock.advance(1)
    await receiver.wait_for(3)
    await settle()
    assert len(receiver.deliveries) == 3
    [entry] = await log_when_done(hooked)
    assert (entry["status"], entry["attempts"]) == (500, 3)


async def test_connection_errors_are_retried(
    control: httpx.AsyncClient, clock: FakeClock, secret: str
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody"
    body = {"url": url, "secret": secret, "max_attempts": 2, "retry_backoff_ms": 0}
    assert (await control.post("webhooks", json=body)).status_code == 200
    await create(control)
    clock.advance(1)
    for _ in range(200):
        if await log(control):
            break
        await asyncio.sleep(0.02)
    [entry] = await log_when_done(control)
    assert entry["answers"] == ["connection_error", "connection_error"]


async def set_faults(control: httpx.AsyncClient, faults: Any) -> dict[str, Any]:
    reply = await control.post("webhooks/faults", json=faults)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def end_two(control: httpx.AsyncClient, clock: FakeClock) -> tuple[str, str]:
    """Two responses, the first ending before the second."""
    first = await create(control)
    clock.advance(0.15)
    await settle()
    second = await create(control)
    clock.advance(0.15)
    return first, second


async def test_drop(hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock) -> None:
    await set_faults(hooked, {"drop": True, "times": 1})
    first, second = await end_two(hooked, clock)
    [delivery] = await receiver.wait_for(1)
    await settle()
    assert len(receiver.deliveries) == 1 and delivery.event["data"]["id"] == second
    entries = await log(hooked)
    assert [(e["response_id"], e["status"], e["attempts"]) for e in entries] == [
        (first, "dropped", 0),
        (second, 200, 1),
    ]
    assert entries[0]["faults"] == ["drop"]
    [fault] = (await hooked.get("webhooks/faults")).json()["faults"]
    assert (fault["seen"], fault["fired"]) == (2, 1)


async def test_duplicate(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    await set_faults(hooked, [{"duplicate": True, "times": 1}])
    await create(hooked)
    clock.advance(1)
    first, second = await receiver.wait_for(2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert verified(first, secret) == verified(second, secret)
    entries = await log(hooked)
    assert [e["duplicate"] for e in entries] == [False, True]
    assert entries[0]["event_id"] == entries[1]["event_id"]


async def test_delay(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    await set_faults(hooked, {"faults": [{"delay_ms": 400}]})
    await create(hooked)
    clock.advance(1)
    await settle()
    assert receiver.deliveries == []
    [entry] = await log(hooked)
    assert (entry["status"], entry["faults"]) == ("pending", ["delay"])
    [delivery] = await receiver.wait_for(1)
    verified(delivery, secret)


async def test_reorder(hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock) -> None:
    await set_faults(hooked, {"reorder": True, "times": 1})
    first, second = await end_two(hooked, clock)
    deliveries = await receiver.wait_for(2)
    assert [d.event["data"]["id"] for d in deliveries] == [second, first]
    entries = await log_when_done(hooked)
    assert [(e["response_id"], e["status"]) for e in entries] == [(first, 200), (second, 200)]


async def test_bad_signature(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    receiver.secret = secret
    await set_faults(hooked, {"bad_signature": True, "times": 1})
    await hooked.post("webhooks", json={"max_attempts": 2})
    first, second = await end_two(hooked, clock)
    deliveries = await receiver.wait_for(3)
    bad = [d for d in deliveries if d.event["data"]["id"] == first]
    assert len(bad) == 2
    for delivery in bad:
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(delivery.body, delivery.headers)
    [good] = [d for d in deliveries if d.event["data"]["id"] == second]
    verified(good, secret)
    statuses = [(e["status"], e["attempts"]) for e in await log_when_done(hooked)]
    assert statuses == [(401, 2), (200, 1)]


@pytest.mark.parametrize(
    "fault",
    [{}, {"drop": True, "duplicate": True}, {"delay_ms": -1}, {"times": 0, "drop": True}, []],
)
async def test_bad_faults_are_400(control: httpx.AsyncClient, fault: Any) -> None:
    body = fault if fault != [] else "nope"
    reply = await control.post("webhooks/faults", json=body)
    assert reply.status_code == 400, reply.text
    assert (await control.get("webhooks/faults")).json() == {"faults": []}


async def test_configuration(control: httpx.AsyncClient, secret: str) -> None:
    assert (await control.get("webhooks")).json()["url"] is None
    for body in (
        {"url": "http://127.0.0.1:1/x"},
        {"url": "http://127.0.0.1:1/x", "secret": "not-a-secret"},
        {"url": "ftp://x", "secret": secret},
        {"url": "http://127.0.0.1:1/x", "secret": secret, "max_attempts": 0},
        {"colour": "red"},
    ):
        reply = await control.post("webhooks", json=body)
        assert reply.status_code == 400, body
        assert secret not in reply.text
    good = await control.post("webhooks", json={"url": "http://127.0.0.1:1/x", "secret": secret})
    assert good.json()["url"] == "http://127.0.0.1:1/x" and good.json()["secret_set"] is True
    shown = (await control.get("webhooks")).text
    assert secret not in shown and secret.removeprefix("whsec_")[:10] not in shown
    off = await control.post("webhooks", json={"url": None})
    assert off.json()["url"] is None


async def test_nothing_is_sent_without_a_url(
    control: httpx.AsyncClient, receiver: Receiver, clock: FakeClock
) -> None:
    await create(control)
    clock.advance(1)
    await settle()
    assert await log(control) == []


async def test_reset_forgets_log_and_faults_keeps_the_url(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock
) -> None:
    await set_faults(hooked, {"drop": True})
    await create(hooked)
    clock.advance(1)
    await settle()
    assert len(await log(hooked)) == 1
    await hooked.post("reset")
    assert await log(hooked) == [] and (await hooked.get("webhooks/faults")).json()["faults"] == []
    assert (await hooked.get("webhooks")).json()["url"] == receiver.url


async def test_start_fake_server_configures_webhooks(receiver: Receiver, secret: str) -> None:
    state = FakeState()
    async with running_fake_server(
        state=state, webhook_url=receiver.url, webhook_secret=secret
    ) as server:
        await real_time_response(server)
        [delivery] = await receiver.wait_for(1)
        assert verified(delivery, secret)["type"] == "response.completed"


async def real_time_response(server: FakeServer) -> str:
    """A response created through /v1 with the real clock, ending 150 ms later."""
    script = json.dumps({"steps": [*QUICK, {"status": "completed"}]})
    body = {"model": "gpt-4o", "input": "Hi", "background": True}
    async with httpx.AsyncClient(
        base_url=server.base_url,
        headers=ASSISTANTS_HEADERS,
        event_hooks={"response": [check_reply]},
    ) as http:
        reply = await http.post("/responses", json={**body, "metadata": {"fake_scenario": script}})
    return str(reply.json()["id"])


@pytest.mark.parametrize(
    "args",
    [
        ["--webhook-url", "http://127.0.0.1:1/x"],
        ["--webhook-url", "http://127.0.0.1:1/x", "--webhook-secret", "oops"],
        ["--webhook-url", "nope", "--webhook-secret", new_secret()],
    ],
)
def test_cli_refuses_half_or_bad_webhook_options(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main(["fake-openai", "--port", "0", *args])
    assert "runpoller fake-openai:" in str(exc.value.code)
    assert "oops" not in str(exc.value.code)


# --- Agents API session webhooks (agent.session.*), checked with openai-python's models ---

AGENT_EVENT_MODELS: dict[str, type[BaseModel]] = {
    "agent.session.created": AgentSessionCreatedWebhookEvent,
    "agent.session.in_progress": AgentSessionInProgressWebhookEvent,
    "agent.session.action_required": AgentSessionActionRequiredWebhookEvent,
    "agent.session.idle": AgentSessionIdleWebhookEvent,
    "agent.session.failed": AgentSessionFailedWebhookEvent,
}


def session_events(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    out = []
    for delivery in receiver.deliveries:
        event: dict[str, Any] = Webhook(secret).verify(delivery.body, delivery.headers)
        no_extra(AGENT_EVENT_MODELS[event["type"]].model_validate(event))
        out.append(event)
    return out


async def test_a_turn_with_a_function_call_announces_each_session_status_unpolled(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    body = (
        await hooked.post("agents/sessions", json={"script": "tool_call", "input": "Hi"})
    ).json()
    session_id = body["session"]["id"]
    await receiver.wait_for(2)
    clock.advance(0.1)  # the turn asks for its function call: nobody polls
    await receiver.wait_for(3)
    seen = session_events(receiver, secret)
    assert [e["type"] for e in seen] == [
        "agent.session.created",
        "agent.session.in_progress",
        "agent.session.action_required",
    ]
    assert all(e["data"]["id"] == session_id for e in seen)
    assert seen[2]["data"] == {"id": session_id, "required_action": {"type": "function_call"}}
    assert seen[0]["data"] == {"id": session_id, "environment_type": "none"}


async def test_a_failed_session_and_an_ended_turn_are_announced(
    hooked: httpx.AsyncClient, receiver: Receiver, clock: FakeClock, secret: str
) -> None:
    await hooked.post("agents/sessions", json={"script": "complete", "input": "Hi"})
    await hooked.post("agents/sessions", json={"script": "session_fail", "input": "Hi"})
    await receiver.wait_for(4)
    clock.advance(0.2)
    await receiver.wait_for(6)
    await settle()
    types = sorted(e["type"] for e in session_events(receiver, secret))
    assert types == sorted(
        ["agent.session.created", "agent.session.in_progress"] * 2
        + ["agent.session.idle", "agent.session.failed"]
    )
