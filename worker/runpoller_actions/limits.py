"""The API's size limits for strict schemas, counted on the rewriter's output.

Counting: a nesting level is an object or array schema (the root object is level 1; `anyOf`
branches add none; `$ref` is not followed and each `$defs` entry counts from its own root).
Properties and enum values are summed over the whole schema, `$defs` included. The character
budget counts property names, `$defs` names and enum/const values (strings by length, other
values by the length of their JSON text).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from runpoller_actions.diagnostics import Note

MAX_PROPERTIES = 5000
MAX_DEPTH = 10
MAX_ENUM_VALUES = 1000
MAX_CHARS = 120_000
LARGE_ENUM = 250
LARGE_ENUM_CHARS = 15_000


def _levels(node: Any) -> int:
    """Nesting levels below and including `node` (objects and arrays count; $ref does not)."""
    if not isinstance(node, Mapping) or "$ref" in node:
        return 0
    if "anyOf" in node:
        return max((_levels(b) for b in node["anyOf"]), default=0)
    kind = node.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    own = 1 if ("object" in kinds or "array" in kinds) else 0
    children = list(node.get("properties", {}).values())
    if isinstance(node.get("items"), Mapping):
        children.append(node["items"])
    return own + max((_levels(c) for c in children), default=0)


def _tally(node: Any, totals: dict[str, int], big_enums: list[int]) -> None:
    """Count properties, enum values and budget characters below `node`."""
    if not isinstance(node, Mapping):
        return
    props = node.get("properties")
    if isinstance(props, Mapping):
        totals["properties"] += len(props)
        totals["chars"] += sum(len(name) for name in props)
        for sub in props.values():
            _tally(sub, totals, big_enums)
    values = node.get("enum")
    if isinstance(values, list):
        totals["enum"] += len(values)
        sizes = [len(v) if isinstance(v, str) else len(json.dumps(v)) for v in values]
        totals["chars"] += sum(sizes)
        if len(values) > LARGE_ENUM and all(isinstance(v, str) for v in values):
            big_enums.append(sum(sizes))
    if "const" in node:
        value = node["const"]
        totals["chars"] += len(value) if isinstance(value, str) else len(json.dumps(value))
    for branch in node.get("anyOf", []):
        _tally(branch, totals, big_enums)
    _tally(node.get("items"), totals, big_enums)


def limit_errors(schema: dict[str, Any]) -> list[Note]:
    """The API limits a rewritten strict schema breaks (counted as docs/actions.md says)."""
    defs = schema.get("$defs", {})
    totals = {"properties": 0, "enum": 0, "chars": sum(len(name) for name in defs)}
    big_enums: list[int] = []
    for root in (schema, *defs.values()):
        _tally(root, totals, big_enums)
    errors: list[Note] = []
    if totals["properties"] > MAX_PROPERTIES:
        errors.append(
            Note(
                "",
                f"{totals['properties']} properties in total; strict mode allows "
                f"at most {MAX_PROPERTIES}",
            )
        )
    depth = max(_levels(root) for root in (schema, *defs.values()))
    if depth > MAX_DEPTH:
        errors.append(
            Note("", f"nested {depth} levels deep; strict mode allows at most {MAX_DEPTH}")
        )
    if totals["enum"] > MAX_ENUM_VALUES:
        errors.append(
            Note(
                "",
                f"{totals['enum']} enum values in total; strict mode allows at most "
                f"{MAX_ENUM_VALUES}",
            )
        )
    for size in big_enums:
        if size > LARGE_ENUM_CHARS:
            errors.append(
                Note(
                    "",
                    f"a string enum with more than {LARGE_ENUM} values has {size} "
                    f"characters; strict mode allows at most {LARGE_ENUM_CHARS}",
                )
            )
    if totals["chars"] > MAX_CHARS:
        errors.append(
            Note(
                "",
                f"{totals['chars']} characters of property names, definition names and "
                f"enum/const values; strict mode allows at most {MAX_CHARS}",
            )
        )
    return errors
