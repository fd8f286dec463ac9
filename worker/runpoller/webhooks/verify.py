"""Standard Webhooks verification with several secrets at once (rotation).

The signature itself is the ``standardwebhooks`` library's (HMAC-SHA256 over
``<webhook-id>.<webhook-timestamp>.<body>``, constant-time compare, 5-minute tolerance either
side of now). Around it only header hygiene: the library raises ``ValueError`` on a
signature entry that is not ``<version>,<base64>`` and reads a timestamp as a float, so
entries that cannot be a ``v1`` signature are dropped first (others in the header still
count, as the spec and OpenAI's SDK have it) and the timestamp must be whole seconds.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping, Sequence

from standardwebhooks import Webhook, WebhookVerificationError

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")

_TIMESTAMP = re.compile(r"\A[0-9]{1,12}\Z")
_WEBHOOK_ID = re.compile(r"\A[!-~]{1,256}\Z")  # printable ASCII, no space: it names a key
_V1_ENTRY = re.compile(r"\Av1,[A-Za-z0-9+/]+={0,2}\Z")


class Rejected(Exception):
    """A delivery refused before anything is written: the HTTP status and the metric's
    ``result`` label. The message is for the sender and the log; it never holds a secret."""

    def __init__(self, status: int, result: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.result = result
        self.reason = reason


def _bad_signature(reason: str) -> Rejected:
    return Rejected(401, "bad_signature", reason)


class Verifier:
    """Accepts a delivery signed by any one of ``secrets`` (``whsec_<base64>``)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("the webhook receiver needs at least one secret")
        self._webhooks = [Webhook(secret) for secret in secrets]

    def verify(self, body: bytes, headers: Mapping[str, str]) -> str:
        """The delivery's ``webhook-id`` if one secret signed ``body`` with these headers
        within the tolerance; else :class:`Rejected` (401; 400 for a body or id that cannot
        be read)."""
        webhook_id, timestamp, signature = (headers.get(name, "") for name in HEADERS)
        if not (webhook_id and timestamp and signature):
            raise _bad_signature("missing webhook-id, webhook-timestamp or webhook-signature")
        if not _TIMESTAMP.match(timestamp):
            raise _bad_signature("webhook-timestamp is not whole Unix seconds")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Rejected(400, "malformed", "the body is not UTF-8") from None
        entries = [e for e in signature.split() if _V1_ENTRY.match(e) and _decodes(e[3:])]
        checked = {"webhook-id": webhook_id, "webhook-timestamp": timestamp}
        checked["webhook-signature"] = " ".join(entries) or "v1,"
        problem = ""
        for webhook in self._webhooks:
            try:
                webhook.verify(text, checked, json_parse=False)
            except WebhookVerificationError as exc:
                problem = str(exc)
            except ValueError:  # a signature the library cannot split or decode
                problem = "No matching signature found"
            else:
                if not _WEBHOOK_ID.match(webhook_id):
                    raise Rejected(400, "malformed", "webhook-id is not 1-256 printable characters")
                return webhook_id
            if "timestamp too" in problem:  # the window is the same for every secret
                raise Rejected(401, "stale", "webhook-timestamp is outside the 5-minute window")
        raise _bad_signature("no signature matches")


def _decodes(text: str) -> bool:
    try:
        binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return False
    return True
