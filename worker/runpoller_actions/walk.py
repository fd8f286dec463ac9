"""Where subschemas live inside a schema, so each pass can rebuild a tree without mutating it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from runpoller_actions import pointer

# Keys whose value is one schema (or, for old-style tuple `items`, a list of schemas).
SCHEMA_KEYS = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "if",
        "then",
        "else",
        "contains",
        "propertyNames",
        "additionalItems",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
SCHEMA_LIST_KEYS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
SCHEMA_MAP_KEYS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs"})

Visit = Callable[[Any, str], Any]


def map_children(node: Mapping[str, Any], visit: Visit, where: str) -> dict[str, Any]:
    """A copy of `node` with `visit(subschema, its pointer)` applied to each direct subschema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        here = pointer.join(where, key)
        if isinstance(value, list) and (key in SCHEMA_KEYS or key in SCHEMA_LIST_KEYS):
            out[key] = [visit(item, pointer.join(here, i)) for i, item in enumerate(value)]
        elif key in SCHEMA_KEYS:
            out[key] = visit(value, here)
        elif key in SCHEMA_MAP_KEYS and isinstance(value, Mapping):
            out[key] = {name: visit(sub, pointer.join(here, name)) for name, sub in value.items()}
        else:
            out[key] = value
    return out


# Private key the expander puts on every schema node: the JSON pointer of that node in the
# spec, so strict-mode errors can point into the input. Stripped from every emitted schema.
ORIGIN = "$$origin"


def strip_origins(value: Any) -> Any:
    """A copy of `value` without `ORIGIN` keys, at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_origins(v) for k, v in value.items() if k != ORIGIN}
    if isinstance(value, list):
        return [strip_origins(v) for v in value]
    return value
