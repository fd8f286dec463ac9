"""Merge `allOf` into one schema, the way spec authors mean it.

`allOf: [Base, {properties: {...}}]` almost always means "an object with the properties of
both". Strict mode does not accept `allOf` and many models read it poorly, so parts are merged
keyword by keyword: properties united (a property in two parts is merged recursively),
`required` united, types and enums intersected, bounds tightened, `additionalProperties: false`
kept if any part has it. A part that conflicts with what is merged so far (two different
patterns, disjoint types, two different `$ref`s...) stays behind in a shorter `allOf`; strict
mode then reports it as an error instead of guessing.

Descriptions and titles: the node's own win (`{description, allOf: [$ref]}`), else the last
part's (`allOf: [$ref, {description}]`, Box writes this 117 times: the property's text, not
the referenced schema's generic one). Other annotations come from the first part.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runpoller_actions.walk import ORIGIN, map_children

_ANNOTATIONS = frozenset(
    {"description", "title", "default", "examples", "deprecated", "readOnly", "writeOnly", ORIGIN}
)
# Said of the property rather than of its type: the node's own, else the last part's, wins.
_OWN_TEXT = ("description", "title")
_LOWER_BOUNDS = frozenset(
    {"minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties", "minContains"}
)
_UPPER_BOUNDS = frozenset(
    {"maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties", "maxContains"}
)


class _Conflict(Exception):
    """Two parts disagree on a keyword; they cannot become one schema."""


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [t for t in value if isinstance(t, str)]
    raise _Conflict  # not a type at all (null, false, an object): nothing to merge it with


def _merge_type(a: Any, b: Any) -> Any:
    left, right = _types(a), _types(b)
    both = [t for t in left if t in right]
    if "integer" in left and "number" in right and "integer" not in both:
        both.append("integer")
    if "number" in left and "integer" in right and "integer" not in both:
        both.append("integer")
    if not both:
        raise _Conflict
    return both[0] if len(both) == 1 else both


def _merge_value(key: str, a: Any, b: Any) -> Any:
    if a == b:
        return a
    if key in _ANNOTATIONS:
        return a
    number = (int, float)
    if key in _LOWER_BOUNDS | _UPPER_BOUNDS:
        if not isinstance(a, number) or not isinstance(b, number):
            raise _Conflict
        return max(a, b) if key in _LOWER_BOUNDS else min(a, b)
    if key == "type":
        return _merge_type(a, b)
    if key == "required" and isinstance(a, list) and isinstance(b, list):
        return [*a, *(r for r in b if r not in a)]
    if key == "enum" and isinstance(a, list) and isinstance(b, list):
        common = [v for v in a if v in b]
        if not common:
            raise _Conflict
        return common
    if key == "properties" and isinstance(a, Mapping) and isinstance(b, Mapping):
        out = dict(a)
        for name, sub in b.items():
            out[name] = _merge_two(out[name], sub) if name in out else sub
        return out
    if key in ("items", "additionalProperties"):
        if a is False or b is False:
            return False
        if a is True:
            return b
        if b is True:
            return a
        return _merge_two(a, b)
    if key == "uniqueItems" and isinstance(a, bool) and isinstance(b, bool):
        return a or b
    raise _Conflict


def _merge_two(a: Any, b: Any) -> dict[str, Any]:
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        raise _Conflict
    if ("$ref" in a) != ("$ref" in b) and not (set(b if "$ref" in a else a) <= _ANNOTATIONS):
        raise _Conflict
    out = dict(a)
    for key, value in b.items():
        out[key] = _merge_value(key, out[key], value) if key in out else value
    return out


def merge_parts(parts: list[Any]) -> dict[str, Any]:
    """Fold the parts left to right; parts that conflict are kept in a remaining `allOf`."""
    merged: dict[str, Any] = {}
    leftover: list[Any] = []
    for part in parts:
        try:
            merged = _merge_two(merged, part)
        except _Conflict:
            leftover.append(part)
    if leftover:
        merged = {**merged, "allOf": leftover}
    return merged


def merge_all_of(schema: Any, where: str = "") -> Any:
    """The schema with every `allOf` merged where it can be (inner ones first)."""
    if not isinstance(schema, Mapping):
        return schema
    node = map_children(schema, merge_all_of, where)
    parts = node.pop("allOf", None)
    if not isinstance(parts, list):
        return node if parts is None else {**node, "allOf": parts}
    own = set(node) - {ORIGIN}
    merged = merge_parts([node, *parts]) if own else merge_parts(parts)
    if ORIGIN in node:
        merged[ORIGIN] = node[ORIGIN]
    for key in _OWN_TEXT:
        if key in node:
            merged[key] = node[key]
            continue
        texts = [p[key] for p in parts if isinstance(p, Mapping) and key in p]
        if texts:
            merged[key] = texts[-1]
    return merged
