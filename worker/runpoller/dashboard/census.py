"""How the runs in flight split by phase (polling, awaiting tool outputs, cancelling, ...).

No counter in Redis says it: each run's phase lives in its record's ``state``. A census reads
the active index a chunk at a time (``ZRANGE`` by rank, then one pipelined ``HMGET`` per
chunk), never the keyspace. It costs one read per run in flight, so it is not done per page:
the overview shows the latest census and starts a new one in the background when that is
older than ``max_age_s``, one at a time (an idle dashboard reads nothing; the first overview
says "counting" rather than wait). Runs that start or end
during a census may be counted once, twice or not at all: the counts are as of ``as_of``,
give or take the runs that moved while it ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import Counter
from collections.abc import Callable

from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.exceptions import RedisError

from runpoller.protocol import Keys

CHUNK = 500
"""Index entries read per round trip."""
MAX_RUNS = 200_000
"""A census stops after this many entries (and says so): its cost stays bounded."""
_PHASE = re.compile(rb'"phase":\s*"([a-z_]+)"')


class Census(BaseModel):
    as_of: int = Field(description="When the census started, epoch ms (0: none taken yet).")
    took_ms: float = Field(description="How long it took.")
    scanned: int = Field(description="Entries of the active index read.")
    by_phase: dict[str, int] = Field(description="Runs in flight by engine phase.")
    by_owner: dict[str, int] = Field(description="Runs in flight by owning worker.")
    unowned: int = Field(description="Runs in flight that no worker owns now (being handed on).")
    truncated: bool = Field(description="Stopped at the cap: more runs are in flight.")


EMPTY = Census(as_of=0, took_ms=0, scanned=0, by_phase={}, by_owner={}, unowned=0, truncated=False)


async def take(redis: Redis, keys: Keys, *, clock: Callable[[], float] = time.time) -> Census:
    """One census of ``keys.runs_active``."""
    started = clock()
    mono = time.monotonic()
    phases: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    unowned = scanned = 0
    start = 0
    while scanned < MAX_RUNS:
        members = await redis.zrange(keys.runs_active, start, start + CHUNK - 1)
        if not members:
            break
        async with redis.pipeline(transaction=False) as pipe:
            for member in members:
                pipe.hmget(keys.run(_text(member)), ["state", "owner", "final"])
            rows = await pipe.execute()
        for state, owner, final in rows:
            if final is not None or (state is None and owner is None):
                continue  # ended meanwhile, or a record that expired unfinished
            match = _PHASE.search(state or b"")
            phases[match.group(1).decode() if match else "unknown"] += 1
            if owner:
                owners[_text(owner)] += 1
            else:
                unowned += 1
        scanned += len(members)
        start += CHUNK
        if len(members) < CHUNK:
            break
    return Census(
        as_of=int(started * 1000),
        took_ms=round((time.monotonic() - mono) * 1000, 1),
        scanned=scanned,
        by_phase=dict(sorted(phases.items())),
        by_owner=dict(sorted(owners.items())),
        unowned=unowned,
        truncated=scanned >= MAX_RUNS,
    )


class CensusCache:
    """The latest census, renewed in the background when it is older than ``max_age_s``."""

    def __init__(self, redis: Redis, keys: Keys, *, max_age_s: float = 5.0) -> None:
        self.redis = redis
        self.keys = keys
        self.max_age_s = max_age_s
        self.latest = EMPTY
        self._task: asyncio.Task[None] | None = None
        self._taken_at = -float("inf")  # monotonic
        self._failure: Exception | None = None

    def get(self) -> Census:
        """The latest census (``as_of`` 0: none finished yet), never waiting for one: a new
        one starts when it is older than ``max_age_s`` and none is running."""
        if time.monotonic() - self._taken_at > self.max_age_s and self._task is None:
            self._task = asyncio.create_task(self._renew())
        return self.latest

    @property
    def failure(self) -> str | None:
        """Why the last census failed (None: it did not)."""
        return None if self._failure is None else f"{type(self._failure).__name__}"

    async def _renew(self) -> None:
        try:
            self.latest = await take(self.redis, self.keys)
            self._taken_at = time.monotonic()
            self._failure = None
        except (RedisError, OSError) as exc:
            self._failure = exc
        finally:
            self._task = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
