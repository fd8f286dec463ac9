"""Tool names: `^[a-zA-Z0-9_-]{1,64}$`, unique, and the same every time for the same spec.

The API rejects any other name, and LibreChat passes `operationId` through verbatim (issue
#2400: long names broke assistant updates). Rule: take `operationId`, else `method_path`;
transliterate to ASCII, turn every run of other characters into one `_`, trim `_` at the
ends. Too long: keep 55 characters and add `_` + 8 hex digits of the SHA-256 of the original
text, so two long names that share a prefix stay apart. Duplicates: the first operation in
document order keeps the name, the next ones get `_2`, `_3`, ... (never a name some other
operation asked for).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass

MAX_LENGTH = 64
VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_RUN = re.compile(r"[^A-Za-z0-9_-]+")
_UNDERSCORES = re.compile(r"_{2,}")


@dataclass(frozen=True)
class NameRequest:
    """What an operation offers to name it: its operationId (maybe none) and method + path."""

    operation_id: str | None
    method: str
    path: str


def sanitize(raw: str) -> str:
    """Closest valid-character form of `raw`; may be empty."""
    ascii_text = unicodedata.normalize("NFKD", raw).encode("ascii", "ignore").decode("ascii")
    return _UNDERSCORES.sub("_", _INVALID_RUN.sub("_", ascii_text)).strip("_")


def shorten(name: str, original: str, limit: int = MAX_LENGTH) -> str:
    """Fit `name` into `limit` characters with a hash of `original` as the tail."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(original.encode("utf-8")).hexdigest()[:8]
    return name[: limit - len(digest) - 1].rstrip("_-") + "_" + digest


def fallback(method: str, path: str) -> str:
    """`GET /pets/{id}` → `get_pets_id`."""
    return shorten(sanitize(f"{method.lower()} {path}"), f"{method.lower()} {path}")


def base_name(request: NameRequest) -> tuple[str, str | None]:
    """(name before de-duplication, a note when it differs from the operationId)."""
    op_id = request.operation_id
    if not op_id:
        return fallback(request.method, request.path), None
    cleaned = shorten(sanitize(op_id), op_id)
    if not cleaned:
        name = fallback(request.method, request.path)
        return name, f"operationId '{op_id}' has no usable characters; using '{name}'"
    if cleaned != op_id:
        return cleaned, f"operationId '{op_id}' is not a valid tool name; using '{cleaned}'"
    return cleaned, None


def _with_suffix(base: str, n: int) -> str:
    suffix = f"_{n}"
    return base[: MAX_LENGTH - len(suffix)] + suffix


def assign_names(requests: list[NameRequest]) -> list[tuple[str, list[str]]]:
    """One unique valid name per request, in order, with the notes explaining changes."""
    bases = [base_name(r) for r in requests]
    wanted = Counter(name for name, _ in bases)
    taken: set[str] = set()
    out: list[tuple[str, list[str]]] = []
    for (name, note), request in zip(bases, requests, strict=True):
        notes = [note] if note else []
        if name in taken:
            n = 2
            while _with_suffix(name, n) in taken or _with_suffix(name, n) in wanted:
                n += 1
            renamed = _with_suffix(name, n)
            where = f"{request.method.upper()} {request.path}"
            notes.append(f"tool name '{name}' is already used; {where} is '{renamed}'")
            name = renamed
        taken.add(name)
        out.append((name, notes))
    return out
