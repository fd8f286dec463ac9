"""JSON Pointer (RFC 6901) helpers: every warning and error names a place this way."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote


def escape(token: str | int) -> str:
    """Escape one reference token (`~` → `~0`, `/` → `~1`)."""
    return str(token).replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    """Undo `escape`; order matters so `~01` stays `~1`."""
    return token.replace("~1", "/").replace("~0", "~")


def join(base: str, *tokens: str | int) -> str:
    """Append tokens to a pointer (`""` is the root, `"#"` the root of a document)."""
    return base + "".join("/" + escape(token) for token in tokens)


def resolve(document: Any, ref: str) -> Any:
    """Follow a local reference like `#/components/schemas/Pet`; LookupError if it dangles."""
    if not ref.startswith("#"):
        raise LookupError(ref)
    fragment = unquote(ref[1:])
    if fragment == "":
        return document
    if not fragment.startswith("/"):
        raise LookupError(ref)
    node = document
    for raw in fragment[1:].split("/"):
        token = unescape(raw)
        if isinstance(node, Mapping) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise LookupError(ref)
    return node


def last_token(ref: str) -> str:
    """The name a reference points at (`#/components/schemas/Pet` → `Pet`)."""
    return unescape(unquote(ref).rsplit("/", 1)[-1])
