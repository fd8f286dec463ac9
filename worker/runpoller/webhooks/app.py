"""The receiver's aiohttp application and :func:`serve`, what ``runpoller webhooks`` runs.

A delivery goes through, in order: the body size (``Content-Length``, then counted while
read, so an oversized body is never held whole), the signature (401), the body (400), then
one Redis script (docs/operations.md, "Webhooks"). Only the last writes anything.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runpoller.config import Settings
from runpoller.protocol import Keys
from runpoller.redis.url import connect
from runpoller.webhooks.events import Malformed, parse_event
from runpoller.webhooks.metrics import WebhookMetrics
from runpoller.webhooks.store import WakeStore
from runpoller.webhooks.verify import HEADERS, Rejected, Verifier

WEBHOOK_PATH = "/webhooks/openai"
_CHUNK = 64 * 1024

log = structlog.get_logger("runpoller.webhooks")


@dataclass(frozen=True)
class Outcome:
    status: int
    result: str
    type: str = ""
    reason: str = ""
    webhook_id: str = ""
    object_id: str = ""


class Receiver:
    """Handles ``POST /webhooks/openai``: verify, read, record once, answer."""

    def __init__(
        self, settings: Settings, redis: Redis, metrics: WebhookMetrics | None = None
    ) -> None:
        self.verifier = Verifier(settings.webhook_secret_list)
        self.store = WakeStore(redis, Keys(settings.key_prefix))
        self.max_body = settings.webhook_max_body_bytes
        self.metrics = metrics or WebhookMetrics()

    async def handle(self, request: web.Request) -> web.Response:
        outcome = await self._outcome(request)
        self.metrics.count(outcome.type, outcome.result)
        fields = {"result": outcome.result, "status": outcome.status, "type": outcome.type}
        if outcome.webhook_id:
            fields.update(webhook_id=outcome.webhook_id, object_id=outcome.object_id)
        if outcome.status < 300:
            log.info("webhook.received", **fields)
        else:
            log.info("webhook.refused", reason=outcome.reason, remote=request.remote, **fields)
        body: dict[str, object] = {"ok": outcome.status < 300, "result": outcome.result}
        if outcome.reason:
            body["reason"] = outcome.reason
        return web.json_response(body, status=outcome.status)

    async def _outcome(self, request: web.Request) -> Outcome:
        too_large = Outcome(413, "too_large", reason=f"the body exceeds {self.max_body} bytes")
        length = request.content_length
        if length is not None and length > self.max_body:
            return too_large
        headers = {name: request.headers.get(name, "") for name in HEADERS}
        if not all(headers.values()):  # before reading a body nobody signed
            return Outcome(401, "bad_signature", reason="missing webhook-* headers")
        body = await self._read(request)
        if body is None:
            return too_large
        try:
            webhook_id = self.verifier.verify(body, headers)
            event = parse_event(body)
        except Rejected as exc:
            return Outcome(exc.status, exc.result, reason=exc.reason)
        except Malformed as exc:
            return Outcome(400, "malformed", reason=str(exc))
        if event.object_id is None:
            return Outcome(200, "unknown_type", type=event.label, webhook_id=webhook_id)
        seen = {"type": event.type, "webhook_id": webhook_id, "object_id": event.object_id}
        try:
            fresh = await self.store.record(webhook_id, event.object_id, event.type)
        except (RedisError, OSError) as exc:
            reason = f"Redis did not answer ({type(exc).__name__}); send it again"
            return Outcome(503, "unavailable", reason=reason, **seen)
        return Outcome(200, "accepted" if fresh else "duplicate", **seen)

    async def _read(self, request: web.Request) -> bytes | None:
        """The body, or None as soon as it is longer than the limit."""
        body = bytearray()
        async for chunk in request.content.iter_chunked(_CHUNK):
            body += chunk
            if len(body) > self.max_body:
                return None
        return bytes(body)


def build_app(receiver: Receiver) -> web.Application:
    """``POST /webhooks/openai``; ``/healthz`` (the loop answers), ``/readyz`` (Redis
    answers: otherwise deliveries get 503) and ``/metrics``, as ``runpoller health`` reads
    them."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "reason": "receiving webhooks"})

    async def readyz(_request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            await asyncio.wait_for(receiver.store.ping(), 1)
        except (RedisError, OSError, TimeoutError) as exc:
            body = {"ok": False, "reason": f"redis unreachable ({type(exc).__name__})"}
            return web.json_response(body, status=503)
        ms = round((time.monotonic() - started) * 1000)
        return web.json_response({"ok": True, "reason": f"redis answered in {ms} ms"})

    async def metrics(_request: web.Request) -> web.Response:
        body = receiver.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, receiver.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT."""
    redis: Redis = connect(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=2, health_check_interval=30
    )
    runner = web.AppRunner(build_app(Receiver(settings, redis)), access_log=None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.webhook_host, settings.webhook_port)
        await site.start()
        host, port = runner.addresses[0][:2]
        log.info(
            "webhooks.listening",
            host=host,
            port=port,
            path=WEBHOOK_PATH,
            secrets=len(settings.webhook_secret_list),
        )
        await stop.wait()
        log.info("webhooks.stopping")
    finally:
        await runner.cleanup()
        await redis.aclose()
