"""OpenAPI's schema dialect → plain JSON Schema, keeping every constraint.

OpenAPI 3.0 writes `nullable: true` and boolean `exclusiveMinimum`; 3.1 is JSON Schema
2020-12 (and real 3.1 specs still use `nullable`). Both become 2020-12 forms here. Keywords
that only mean something to OpenAPI tooling (`example`, `xml`, `discriminator`, `x-*`, ...)
are dropped: they constrain nothing and the model cannot use them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runpoller_actions.walk import ORIGIN, map_children

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


# Annotations that stay on the outside when a typeless schema becomes `anyOf: [it, null]`
# (so `readOnly` is still seen on the property, and the description stays in front).
_HOISTED = ("description", "title", "readOnly", "writeOnly", "deprecated", ORIGIN)
_PART_ANNOTATIONS = frozenset({"description", "title", "readOnly", "writeOnly", "deprecated"})


def add_null(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The same schema, also accepting null."""
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"] if kind != "null" else "null"
    elif isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    else:
        notes: dict[str, Any] = {k: out.pop(k) for k in _HOISTED if k in out}
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
    node = map_children(_hoist_nullable_parts(schema), to_json_schema, where)
    node = {k: v for k, v in node.items() if k not in OPENAPI_ONLY and not k.startswith("x-")}
    _exclusive_bounds(node)
    nullable = node.pop("nullable", False)
    return add_null(node) if nullable is True else node


def _is_nullable_note(part: Any) -> bool:
    """An `allOf` part that only says "nullable" plus annotations (no type of its own)."""
    if not isinstance(part, Mapping) or part.get("nullable") is not True:
        return False
    extra = set(part) - _PART_ANNOTATIONS - OPENAPI_ONLY - {"nullable", ORIGIN}
    return not any(not k.startswith("x-") for k in extra)


def _hoist_nullable_parts(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """`allOf: [$ref, {nullable: true, readOnly: true, description}]` → nullable node.

    OpenAPI 3.0 ignores `nullable` without a `type` in the same schema, but that is how
    authors say "this property may be null" next to a `$ref`. Such a part's annotations move
    to the node itself (its own ones win), and the node becomes nullable; if the part were
    left in the `allOf`, null would be rejected by the other parts and its `readOnly` lost.
    """
    parts = schema.get("allOf")
    if not isinstance(parts, list) or not any(_is_nullable_note(p) for p in parts):
        return schema
    kept = [p for p in parts if not _is_nullable_note(p)]
    out = {k: v for k, v in schema.items() if k != "allOf"}
    for part in parts:
        if _is_nullable_note(part):
            for key in _PART_ANNOTATIONS & part.keys():
                out.setdefault(key, part[key])
    out["nullable"] = True
    if kept:
        out["allOf"] = kept
    return out


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
