"""The client library for calling apps: enqueue runs, follow their events, answer tool calls.

Works with the app's own ``redis.asyncio`` connection; speaks exactly the protocol in
docs/protocol.md (an app in another language does the same with plain Redis commands).
Loads redis, pydantic and cryptography: none of the worker's runtime (arq, aiohttp,
uvloop, httpx, prometheus_client); tests/unit/test_client.py keeps it so.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from redis.asyncio import Redis

from runpoller.protocol import FN_RUN, Event, FinalEvent, Keys, parse_job
from runpoller.protocol.serde import serialize_job
from runpoller.secrets import encrypt, is_encrypted, parse_key_ring

_EVENT = TypeAdapter(Event)
ARQ_JOB_PREFIX = "arq:job:"
JOB_EXPIRES_MS = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One event read from a run's stream, with its stream id (to resume from)."""

    id: str
    event: Event


class RunpollerClient:
    def __init__(
        self,
        redis: Redis,
        *,
        queue_name: str = "runpoller:queue",
        key_prefix: str = "runpoller",
        secret_keys: str | None = None,
    ) -> None:
        """``secret_keys`` is ``RUNPOLLER_SECRET_KEYS``: job API keys are encrypted with the
        first key before they reach Redis."""
        self.redis = redis
        self.queue_name = queue_name
        self.keys = Keys(key_prefix)
        self._ring = parse_key_ring(secret_keys) if secret_keys else {}

    async def enqueue(self, job: Mapping[str, Any]) -> str:
        """Validate and enqueue a job; returns the logical run id. Idempotent per run id.

        ``job`` is the job object of docs/protocol.md, e.g.
        ``{"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_1"}``.
        """
        parsed = parse_job(dict(job))
        run_id = parsed.run_key
        now_ms = int(time.time() * 1000)
        payload = dict(job)
        key = payload.get("api_key")
        if isinstance(key, str) and not is_encrypted(key):
            if not self._ring:
                raise ValueError(
                    "api_key would be stored in plaintext: pass secret_keys "
                    "(RUNPOLLER_SECRET_KEYS) to encrypt it"
                )
            kid, secret = next(iter(self._ring.items()))
            payload["api_key"] = encrypt(key, kid, secret)
        body = serialize_job({"f": FN_RUN, "a": [payload], "k": {}, "t": None, "et": now_ms})
        job_key = ARQ_JOB_PREFIX + f"run:{run_id}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(job_key, body, px=JOB_EXPIRES_MS, nx=True)
            pipe.zadd(self.queue_name, {f"run:{run_id}": now_ms}, nx=True)
            await pipe.execute()
        return run_id

    async def events(
        self, run_id: str, *, after: str = "0-0", block_ms: int = 5000
    ) -> AsyncIterator[StreamEvent]:
        """Every event of the run from ``after`` on, until (and including) the final one."""
        key = self.keys.events(run_id)
        last = after
        while True:
            reply = await self.redis.xread({key: last}, block=block_ms, count=100)
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    data = fields.get(b"data", fields.get("data"))
                    event = _EVENT.validate_json(data)
                    yield StreamEvent(last, event)
                    if isinstance(event, FinalEvent):
                        return

    async def result(self, run_id: str) -> FinalEvent | None:
        raw = await self.redis.get(self.keys.result(run_id))
        return None if raw is None else FinalEvent.model_validate_json(raw)

    async def wait(self, run_id: str, timeout: float | None = None) -> FinalEvent:
        """The final event, waiting up to ``timeout`` seconds (TimeoutError after)."""

        async def _follow() -> FinalEvent:
            async for item in self.events(run_id):
                if isinstance(item.event, FinalEvent):
                    return item.event
            raise RuntimeError("event stream ended without a final event")

        existing = await self.result(run_id)
        if existing is not None:
            return existing
        return await asyncio.wait_for(_follow(), timeout)

    async def submit_tool_outputs(
        self, run_id: str, round_: int, outputs: Mapping[str, str]
    ) -> str:
        """Answer one round of tool calls (``{tool_call_id: output}``); returns the entry id."""
        body = json.dumps(
            [{"tool_call_id": call_id, "output": output} for call_id, output in outputs.items()]
        )
        entry: Any = await self.redis.xadd(
            self.keys.replies,
            {"run_id": run_id, "round": str(round_), "outputs": body},
            maxlen=100_000,
            approximate=True,
        )
        return entry.decode() if isinstance(entry, bytes) else str(entry)
