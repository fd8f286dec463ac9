"""Webhooks: what OpenAI sends when a background response ends, signed and retried.

When a response enters ``completed``, ``failed``, ``cancelled`` or ``incomplete``, one event
(``WebhookResponseCompleted`` and siblings in the spec: ``id`` ``evt_…``, ``object: "event"``,
``type``, ``created_at`` the instant it ended, ``data: {id}``) is POSTed to the configured URL
with the Standard Webhooks headers ``webhook-id`` (``wh_…``, the same on every attempt),
``webhook-timestamp`` (whole Unix seconds of the attempt) and ``webhook-signature``
(``v1,<base64>``, signed by the ``standardwebhooks`` library with the configured secret). An
answer other than 2xx (redirects are not followed), a connection error or a timeout is tried
again, ``max_attempts`` in all, after ``retry_backoff_ms`` doubling each time.

Responses end lazily (``lifecycle.py``): an object's status is computed when it is observed.
So the fake does not wait to be asked: each response's end instant, known from its script
when it is created, goes into a heap, and a ticker (every ``TICK_S`` of real time) brings
every response whose end is due up to date. The lifecycle calls ``response_ended`` when it
enters its end status, whoever brought it there (a poll, a cancel, the ticker): that happens
once per response, so it is sent once (unless a ``duplicate`` fault says otherwise). Nothing
is sent (or logged) while no URL is configured.

Agents API sessions (``agents.py``) send ``agent.session.*`` events the same way, whenever
a session's status changes (``data``: the session id, its ``environment_type``, and for
``action_required`` the first ``required_action.type``); their turns are watched by the same
ticker.

Faults (``WebhookFault``, ``POST /_fake/webhooks/faults``) apply to deliveries, one per ended
response, in the order they are made; see the model. ``GET /_fake/webhooks/log`` lists them.
"""

from __future__ import annotations

import asyncio
import base64
import heapq
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from pydantic import Field, model_validator
from standardwebhooks import Webhook

from runpoller_fake.script import FaultCounter, _Model

if TYPE_CHECKING:
    from runpoller_fake.agents import Session, Turn
    from runpoller_fake.lifecycle import Response
    from runpoller_fake.state import FakeState

TICK_S = 0.01
EVENT_TYPES = {
    "completed": "response.completed",
    "failed": "response.failed",
    "cancelled": "response.cancelled",
    "incomplete": "response.incomplete",
}
# A session's status as the Agents API's webhooks name it (``openai.types.webhooks``).
SESSION_EVENT_TYPES = {
    "created": "agent.session.created",
    "in_progress": "agent.session.in_progress",
    "requires_action": "agent.session.action_required",
    "idle": "agent.session.idle",
    "failed": "agent.session.failed",
}
_TURN = "turn:"
USER_AGENT = "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)"
_SECRET = re.compile(r"\Awhsec_[A-Za-z0-9+/]+={0,2}\Z")


def check_secret(secret: str) -> str:
    """``secret`` if it is a ``whsec_<base64>`` signing secret; ValueError (never quoting it)."""
    if not _SECRET.match(secret):
        raise ValueError("a webhook secret looks like whsec_<base64>")
    try:
        Webhook(secret)
    except Exception:
        raise ValueError("a webhook secret looks like whsec_<base64>") from None
    return secret


def check_url(url: str) -> str:
    if not re.match(r"\Ahttps?://[^/\s]+", url):
        raise ValueError("a webhook URL is http:// or https://host[:port]/path")
    return url


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookFault(_Model):
    """What goes wrong with the next deliveries (one delivery per ended response).

    ``delay_ms`` waits before the first attempt; ``duplicate`` sends the event a second time
    (same ``webhook-id`` and body, once the first has its answer); ``drop`` never sends it;
    ``reorder`` holds it until the next delivery has been sent (or dropped), then sends it;
    ``bad_signature`` signs every attempt with another secret. ``skip`` lets the first N
    deliveries through; ``times`` caps how many are affected (default: all). Effects of every
    matching fault add up; ``drop`` excludes the others.
    """

    delay_ms: float | None = Field(None, ge=0)
    duplicate: bool = False
    drop: bool = False
    reorder: bool = False
    bad_signature: bool = False
    times: int | None = Field(None, ge=1)
    skip: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_effect(self) -> WebhookFault:
        others = self.duplicate or self.reorder or self.bad_signature or self.delay_ms is not None
        if not (self.drop or others):
            raise ValueError(
                "a webhook fault needs 'delay_ms', 'duplicate', 'drop', 'reorder' or "
                "'bad_signature'"
            )
        if self.drop and others:
            raise ValueError("'drop' excludes the other effects")
        return self


@dataclass(slots=True)
class Effects:
    delay_s: float = 0.0
    duplicate: bool = False
    drop: bool = False
    reorder: bool = False
    bad_signature: bool = False

    def names(self) -> list[str]:
        names = [n for n in ("duplicate", "drop", "reorder", "bad_signature") if getattr(self, n)]
        return (["delay"] if self.delay_s else []) + names


@dataclass(slots=True)
class Delivery:
    """One event on its way; ``entry`` is its line in the log, updated as it goes."""

    webhook_id: str
    body: str
    effects: Effects
    entry: dict[str, Any] = field(default_factory=dict)


class WebhookSender:
    """The webhook endpoint configuration, the deliveries' log and faults, and the ticker."""

    def __init__(
        self,
        state: FakeState,
        *,
        url: str | None = None,
        secret: str | None = None,
        max_attempts: int = 4,
        retry_backoff_ms: float = 100.0,
        timeout_ms: float = 5000.0,
    ) -> None:
        self._state = state
        self.url: str | None = None
        self.secret: str | None = None
        self.max_attempts = max_attempts
        self.retry_backoff_ms = retry_backoff_ms
        self.timeout_ms = timeout_ms
        self.configure(url=url, secret=secret)
        self.faults: list[FaultCounter[WebhookFault]] = []
        self.log: list[dict[str, Any]] = []
        self._due: list[tuple[float, int, str]] = []
        self._seq = 0
        self._held: list[Delivery] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def configure(self, *, url: str | None, secret: str | None) -> None:
        """Send to ``url`` signed with ``secret`` (both, or ``url`` None: send nothing)."""
        if url is not None:
            check_url(url)
            if secret is None:
                raise ValueError("a webhook URL needs a signing secret")
            check_secret(secret)
        elif secret is not None:
            check_secret(secret)
        self.url, self.secret = url, secret

    def describe(self) -> dict[str, Any]:
        """The configuration, without the secret."""
        return {
            "url": self.url,
            "secret_set": self.secret is not None,
            "max_attempts": self.max_attempts,
            "retry_backoff_ms": self.retry_backoff_ms,
            "timeout_ms": self.timeout_ms,
        }

    def set_faults(self, faults: Iterable[WebhookFault]) -> None:
        self.faults = [FaultCounter(fault) for fault in faults]

    def reset(self) -> None:
        """Forget the log, faults, held deliveries and watched responses (config stays)."""
        self.faults = []
        self.log = []
        self._held = []
        self._due = []

    # -- noticing ends --------------------------------------------------------------------

    def watch(self, response: Response) -> None:
        """Remember when ``response`` ends if nothing else happens, for the ticker."""
        end = response.terminal_at()
        if end is not None and not response.terminal:
            self._seq += 1
            heapq.heappush(self._due, (end, self._seq, response.id))

    def watch_turn(self, turn: Turn) -> None:
        """Remember when an agent turn next moves, for the ticker (its session's webhooks)."""
        at = turn.next_change_at()
        if at is not None:
            self._seq += 1
            heapq.heappush(self._due, (at, self._seq, _TURN + turn.id))

    def tick(self) -> None:
        """Bring every response whose end is due (and every agent turn whose next step is)
        up to date, which sends its webhook."""
        now = self._state.now()
        while self._due and self._due[0][0] <= now + 1e-9:
            _, _, response_id = heapq.heappop(self._due)
            if response_id.startswith(_TURN):
                turn = self._state.turns.get(response_id.removeprefix(_TURN))
                if turn is not None:
                    turn.advance(now)  # its steps re-watch it
                continue
            response = self._state.responses.get(response_id)
            if response is not None and not response.terminal:
                response.advance(now)
                if not response.terminal:
                    self.watch(response)

    async def run_ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self.tick()

    def response_ended(self, response: Response, t: float) -> None:
        """The lifecycle's hook: ``response`` entered its end status at monotonic ``t``."""
        event_type = EVENT_TYPES.get(response.status)
        if event_type is None or self.url is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # driven without a server (a unit test of the lifecycle)
            return
        self._send(event_type, response.wall(t), {"id": response.id})

    def session_changed(self, session: Session, status: str, t: float, action: str | None) -> None:
        """A session's hook: its status became ``status`` at monotonic ``t`` (``action``: the
        type of the first required action, for ``requires_action``)."""
        if self.url is None:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # driven without a server
            return
        data: dict[str, Any] = {"id": session.id}
        if action is not None:
            data["required_action"] = {"type": action}
        else:  # the fake's sessions run in no environment (``{"type": "none"}``)
            data["environment_type"] = "none"
        self._send(SESSION_EVENT_TYPES[status], session.wall(t), data)

    def _send(self, event_type: str, created_at: int, data: dict[str, Any]) -> None:
        event = {
            "id": "evt_" + secrets.token_hex(16),
            "object": "event",
            "type": event_type,
            "created_at": created_at,
            "data": data,
        }
        delivery = Delivery(
            "wh_" + secrets.token_hex(16), json.dumps(event, separators=(",", ":")), self._effects()
        )
        delivery.entry = self._log_entry(delivery, event)
        effects = delivery.effects
        if effects.drop:
            delivery.entry.update(status="dropped", done=True)
            self._release_held()
        elif effects.reorder:
            delivery.entry["status"] = "held"
            self._held.append(delivery)
        else:
            self._spawn(self._deliver(delivery, release=True))

    def _effects(self) -> Effects:
        effects = Effects()
        for counter in self.faults:
            if not counter.fires():
                continue
            fault = counter.fault
            effects.delay_s += (fault.delay_ms or 0.0) / 1000.0
            effects.duplicate |= fault.duplicate
            effects.drop |= fault.drop
            effects.reorder |= fault.reorder
            effects.bad_signature |= fault.bad_signature
        if effects.drop:
            return Effects(drop=True)
        return effects

    def _log_entry(
        self, delivery: Delivery, event: dict[str, Any], *, duplicate: bool = False
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "seq": len(self.log),
            "event_id": event["id"],
            "webhook_id": delivery.webhook_id,
            "type": event["type"],
            "response_id": event["data"]["id"],
            "created_at": event["created_at"],
            "faults": delivery.effects.names(),
            "duplicate": duplicate,
            "status": "pending",
            "attempts": 0,
            "answers": [],
            "sent_at": None,
            "done": False,
        }
        self.log.append(entry)
        return entry

    # -- sending ----------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _release_held(self) -> None:
        held, self._held = self._held, []
        for delivery in held:
            delivery.entry["status"] = "pending"
            self._spawn(self._deliver(delivery, release=False))

    async def _deliver(self, delivery: Delivery, *, release: bool) -> None:
        try:
            if delivery.effects.delay_s:
                await self._state.sleep(delivery.effects.delay_s)
            await self._attempts(delivery)
            if delivery.effects.duplicate:
                event = json.loads(delivery.body)
                copy = Delivery(delivery.webhook_id, delivery.body, delivery.effects)
                copy.entry = self._log_entry(copy, event, duplicate=True)
                await self._attempts(copy)
        finally:
            if release:
                self._release_held()

    async def _attempts(self, delivery: Delivery) -> None:
        """Up to ``max_attempts`` tries; the entry is ``done`` after the last (or a 2xx)."""
        try:
            await self._try(delivery)
        finally:
            delivery.entry["done"] = True

    async def _try(self, delivery: Delivery) -> None:
        entry = delivery.entry
        secret = new_secret() if delivery.effects.bad_signature else self.secret
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                await self._state.sleep(self.retry_backoff_ms / 1000.0 * 2 ** (attempt - 2))
            url = self.url
            if url is None or secret is None:  # switched off meanwhile
                entry["status"] = "unconfigured"
                return
            entry["attempts"] = attempt
            answer = await self._post(url, secret, delivery)
            entry["answers"].append(answer)
            entry["status"] = answer
            if isinstance(answer, int) and 200 <= answer < 300:
                return

    async def _post(self, url: str, secret: str, delivery: Delivery) -> int | str:
        now = self._state.wall(self._state.now())
        at = datetime.fromtimestamp(int(now), tz=UTC)
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(delivery.webhook_id, at, delivery.body),
        }
        delivery.entry["sent_at"] = now
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url,
                data=delivery.body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self.timeout_ms / 1000.0),
            ) as reply:
                await reply.read()
                return reply.status
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "connection_error"

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


async def webhook_context(app: web.Application) -> AsyncIterator[None]:
    """aiohttp cleanup context: the ticker and the sender's HTTP client live with the app."""
    from runpoller_fake.ops import STATE_KEY

    sender = app[STATE_KEY].webhooks
    ticker = asyncio.get_running_loop().create_task(sender.run_ticker())
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await sender.close()
