"""Per-job API keys encrypted at rest: AES-256-GCM, random nonce per value, key ids for rotation.

Format (documented in docs/protocol.md, so any language can produce it)::

    enc:v1:<key id>:<base64url(nonce[12] || ciphertext || tag[16])>

The associated data is the fixed string ``runpoller-api-key-v1``. Workers hold every key id
they accept (``RUNPOLLER_SECRET_KEYS``: ``kid:base64key,kid2:base64key``); the first one is
the one clients encrypt with, the others still decrypt (rotation).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = "enc:v1:"
AAD = b"runpoller-api-key-v1"
NONCE_BYTES = 12


MASK = "**********"
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:api_?key|authorization|password|passwd|secret|secret_keys?|token|credentials?)$"
)
_SECRET_TEXT = (
    (
        re.compile(r'(?i)(\b(?:api[_-]?key|password|secret|token)\b"?\s*[:=]\s*"?)[^\s"&,;}]+'),
        r"\1" + MASK,
    ),
    (re.compile(r"sk-[A-Za-z0-9_\-]{6,}"), MASK),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/\-]+=*"), MASK),
    (re.compile(r"(://[^:/@\s]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
)


def is_secret_name(key: object) -> bool:
    """Whether a field name says its value is a secret (``api_key``, ``x-api-key``, ...)."""
    return isinstance(key, str) and bool(_SECRET_NAME.search(key.lower().replace("-", "_")))


def scrub(text: str) -> str:
    """Blank API keys, bearer tokens and URL passwords in free text we are about to store."""
    for pattern, replacement in _SECRET_TEXT:
        text = pattern.sub(replacement, text)
    return text


def scrub_value(value: Any, depth: int = 0) -> Any:
    """:func:`scrub` through strings, bytes and (a few levels of) nested containers."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if depth >= 5:
        return value
    if isinstance(value, dict):
        return {
            k: MASK if is_secret_name(k) else scrub_value(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return type(value)(scrub_value(v, depth + 1) for v in value)
    return value


class SecretError(ValueError):
    """A key ring or ciphertext that cannot be used; the message never contains secrets."""


def parse_key_ring(text: str) -> dict[str, bytes]:
    """``kid:base64key,...`` → {kid: 32-byte key}, in order (the first is current)."""
    ring: dict[str, bytes] = {}
    for index, entry in enumerate(part.strip() for part in text.split(",") if part.strip()):
        kid, sep, encoded = entry.partition(":")
        if not sep or not kid or ":" in encoded:
            raise SecretError(f"entry {index + 1} must look like <key id>:<base64 key>")
        try:
            standard = encoded.replace("-", "+").replace("_", "/")
            key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise SecretError(f"key {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise SecretError(f"key {kid!r} must be 32 bytes (AES-256), got {len(key)}")
        if kid in ring:
            raise SecretError(f"key id {kid!r} appears twice")
        ring[kid] = key
    return ring


def new_key() -> str:
    """A fresh random key, base64url-encoded, for ``RUNPOLLER_SECRET_KEYS``."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def is_encrypted(value: str) -> bool:
    return value.startswith(PREFIX)


def encrypt(plaintext: str, kid: str, key: bytes) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), AAD)
    body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return f"{PREFIX}{kid}:{body}"


def decrypt(value: str, ring: Mapping[str, bytes]) -> str:
    if not is_encrypted(value):
        raise SecretError("the value is not an encrypted key (expected enc:v1:<kid>:<data>)")
    kid, sep, body = value[len(PREFIX) :].partition(":")
    if not sep:
        raise SecretError("the encrypted key has no key id")
    key = ring.get(kid)
    if key is None:
        raise SecretError(f"unknown key id {kid!r} (not in RUNPOLLER_SECRET_KEYS)")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise SecretError("the encrypted key is not valid base64url") from None
    if len(raw) <= NONCE_BYTES + 16:
        raise SecretError("the encrypted key is too short")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], AAD).decode()
    except (InvalidTag, UnicodeDecodeError):
        raise SecretError(
            f"the encrypted key does not decrypt with key id {kid!r} (tampered or wrong key)"
        ) from None
