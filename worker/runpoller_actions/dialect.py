"""OpenAPI's schema dialect → plain JSON Schema, keeping every constraint.

OpenAPI 3.0 writes `nullable: true` and boolean `exclusiveMinimum`; 3.1 is JSON Schema
2020-12 (and real 3.1 specs still use `nullable`). Both become 2020-12 forms here. Keywords
that only mean something to OpenAPI tooling (`example`, `xml`, `discriminator`, `x-*`, ...)
are dropped: they constrain nothing and the model cannot use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runpoller_actions.walk import map_children

OPENAPI_ONLY = frozenset(
    {
        "example",
        "xml",
        "externalDocs",
        "discriminator",
        "$schema",
        "$id",
        "$comment",
        "$anchor",
        "$dynamicAnchor",
        "$recursiveAnchor",
    }
)


def add_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The same schema, also accepting null."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"] if kind != "null" else "null"
    elif isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    else:
        notes: dict[str, Any] = {k: out.pop(k) for k in ("description", "title") if k in out}
        if not out:
            return {**notes}
        if "anyOf" in out and len(out) == 1 and isinstance(out["anyOf"], list):
            return {**notes, "anyOf": [*out["anyOf"], {"type": "null"}]}
        return {**notes, "anyOf": [out, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _exclusive_bounds(node: dict[str, Any]) -> None:
    """3.0 `exclusiveMinimum: true` + `minimum: m` → 2020-12 `exclusiveMinimum: m`."""
    for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        value = node.get(flag)
        if isinstance(value, bool):
            del node[flag]
            if value and bound in node:
                node[flag] = node.pop(bound)


def to_json_schema(schema: Any, where: str = "") -> Any:
    """Plain JSON Schema for an OpenAPI schema (recursively; the input is not changed)."""
    if not isinstance(schema, Mapping):
        return schema
    node = map_children(schema, to_json_schema, where)
    node = {k: v for k, v in node.items() if k not in OPENAPI_ONLY and not k.startswith("x-")}
    _exclusive_bounds(node)
    nullable = node.pop("nullable", False)
    return add_null(node) if nullable is True else node


def drop_read_only(schema: Any, where: str = "") -> Any:
    """Remove `readOnly` properties: the server sets them, a request never sends them."""
    if not isinstance(schema, Mapping):
        return schema
    node = map_children(schema, drop_read_only, where)
    props = node.get("properties")
    if isinstance(props, Mapping):
        gone = {
            name for name, sub in props.items() if isinstance(sub, Mapping) and sub.get("readOnly")
        }
        if gone:
            node["properties"] = {k: v for k, v in props.items() if k not in gone}
            if isinstance(node.get("required"), list):
                node["required"] = [r for r in node["required"] if r not in gone]
    return node
