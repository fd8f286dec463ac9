"""arq's job serializer: JSON (not pickle), so any language can enqueue with plain Redis.

Bodies that cannot be decoded, or that name an unknown function, are re-routed to the
``runpoller.dead_letter`` job instead of failing inside arq, so every bad job leaves a record
and none is retried forever. Job payloads are wrapped so arq's log lines never print them
(they may carry an API key).
"""

from __future__ import annotations

import json
import time
from typing import Any

from runpoller.protocol.jobs import FN_DEAD_LETTER, FN_RESUME, FN_RUN

KNOWN_FUNCTIONS = frozenset({FN_RUN, FN_RESUME, FN_DEAD_LETTER})
_ARQ_FIELDS = ("f", "a", "k", "t", "et")


class Payload(dict[str, Any]):
    """A job dict whose repr hides its content (arq logs job arguments)."""

    def __repr__(self) -> str:
        return f"<job kind={self.get('kind')!r} id={self.get('id') or self.get('run_id')!r}>"


def _default(value: Any) -> Any:
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def serialize_job(data: Any) -> bytes:
    return json.dumps(data, default=_default, separators=(",", ":")).encode()


def _dead(raw: bytes | str, reason: str) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return {
        "f": FN_DEAD_LETTER,
        "a": [text[:4096], reason],
        "k": {},
        "t": None,
        "et": int(time.time() * 1000),
    }


def deserialize_job(raw: bytes) -> dict[str, Any]:
    """Decode an arq job body; anything unusable becomes a dead-letter job."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _dead(raw, f"job body is not JSON: {exc}")
    if not isinstance(body, dict):
        return _dead(raw, "job body must be a JSON object")
    missing = [name for name in _ARQ_FIELDS if name not in body]
    if missing:
        return _dead(raw, f"job body lacks the arq fields {', '.join(missing)}")
    if not isinstance(body["f"], str) or body["f"] not in KNOWN_FUNCTIONS:
        return _dead(raw, f"unknown job function {body['f']!r}")
    if not isinstance(body["a"], list) or not isinstance(body["k"], dict):
        return _dead(raw, "job body fields a (array) and k (object) have the wrong types")
    if not isinstance(body["et"], int):
        return _dead(raw, "job body field et must be an integer (epoch ms)")
    body["a"] = [Payload(a) if isinstance(a, dict) else a for a in body["a"]]
    return body
