"""The receiver's one write: a wake-up on ``<prefix>:wakes``, once per ``webhook-id``."""

from __future__ import annotations

from redis.asyncio import Redis

from runpoller.protocol import Keys

DEDUP_TTL_S = 86_400
WAKES_MAXLEN = 100_000

# The marker and the entry in one script: a receiver that dies between the two can neither
# drop a wake (marker set, no entry, OpenAI's retry called a duplicate) nor write it twice.
_RECORD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*',
  'object_id', ARGV[3], 'type', ARGV[4], 'webhook_id', ARGV[5])
return 1
"""


def dedup_key(keys: Keys, webhook_id: str) -> str:
    """Set (``1``, a day) once a delivery with this ``webhook-id`` has been recorded."""
    return f"{keys.prefix}:webhook:{webhook_id}"


class WakeStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._record = redis.register_script(_RECORD)

    async def record(self, webhook_id: str, object_id: str, event_type: str) -> bool:
        """Append the wake-up; False (nothing written) when this webhook-id was seen."""
        written = await self._record(
            keys=[dedup_key(self.keys, webhook_id), self.keys.wakes],
            args=[DEDUP_TTL_S, WAKES_MAXLEN, object_id, event_type, webhook_id],
        )
        return bool(written)

    async def ping(self) -> None:
        await self.redis.ping()
