"""Rewrite a tool's parameters schema into the strict subset, or say why it cannot be done.

What strict mode needs (OpenAI Structured Outputs): every object closed
(`additionalProperties: false`) and every property listed in `required`; an optional
property is expressed as "required but may be null". Only some keywords are understood
(see `KEYWORDS_BY_TYPE`); others are removed, each with a warning naming its JSON pointer.

"Faithful" here means: the strict schema accepts the same arguments as the original, except
for the removed keywords (each reported), closed objects (a free-form map is reported), and
`null` standing for "not sent" on formerly optional properties (the caller drops such nulls).
Keywords next to `anyOf` are distributed into its branches (`X and (A or B)` is
`(X and A) or (X and B)`; branches that can never match are dropped, one left is the schema
itself), and a plain `anyOf` inside an `anyOf` is spliced into it. Errors carry the spec
location of the node (`walk.ORIGIN`) as `Note.source`.
When that is impossible the operation fails with one error per place: an object root is
missing, an `allOf` whose parts conflict, a schema with no type (any JSON value), an array
with no item schema, or one of the API limits (properties, nesting, enum values, characters).

`validate_strict` in `checker.py` encodes the same rules separately; the converter runs it
on every result, so a bug here shows up as an error, not as a tool the API rejects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runpoller_actions import pointer
from runpoller_actions.allof import merge_parts
from runpoller_actions.diagnostics import Note
from runpoller_actions.limits import limit_errors
from runpoller_actions.walk import ORIGIN

SUPPORTED_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
)
_NUMBER = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"})
KEYWORDS_BY_TYPE: dict[str, frozenset[str]] = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
    "string": frozenset({"pattern", "format"}),
    "number": _NUMBER,
    "integer": _NUMBER,
    "boolean": frozenset(),
    "null": frozenset(),
}
KEYWORDS_ANY_TYPE = frozenset({"type", "description", "title", "enum", "const"})
ANNOTATIONS = frozenset({"description", "title"})

_STRING_HINTS = frozenset({"pattern", "format", "minLength", "maxLength"})
_OBJECT_HINTS = frozenset({"properties", "required", "additionalProperties", "patternProperties"})


@dataclass(frozen=True)
class StrictResult:
    """The strict schema (None when impossible), removal warnings, and errors."""

    schema: dict[str, Any] | None
    warnings: list[Note]
    errors: list[Note]


def _value_type(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def make_nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The strict way to say "optional": the same schema, also accepting null."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    if "anyOf" in schema:
        branches = schema["anyOf"]
        for branch in branches:
            kind = branch.get("type") if isinstance(branch, Mapping) else None
            if kind == "null" or (isinstance(kind, list) and "null" in kind):
                return schema
        return {**schema, "anyOf": [*branches, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or [])
    if "null" not in kinds:
        out["type"] = [*kinds, "null"]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _types_of(node: Mapping[str, Any]) -> set[str] | None:
    """The declared types of a schema, `integer` implied by `number`; None if undeclared."""
    kind = node.get("type")
    if isinstance(kind, str):
        kinds = {kind}
    elif isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        kinds = set(kind)
    else:
        return None
    return kinds | {"integer"} if "number" in kinds else kinds


def _is_plain_union(node: Any) -> bool:
    """`{anyOf: [...]}` with at most annotations beside it: its branches can be spliced."""
    return (
        isinstance(node, Mapping)
        and isinstance(node.get("anyOf"), list)
        and set(node) <= {"anyOf", *ANNOTATIONS}
    )


@dataclass
class _Rewriter:
    warnings: list[Note] = field(default_factory=list)
    errors: list[Note] = field(default_factory=list)
    origin: str | None = None  # where in the spec the node being rewritten came from
    origin_at: str = ""  # ...and where that node is in the parameters schema

    def fail(self, at: str, message: str) -> dict[str, Any]:
        source = self.origin
        if source is not None and at.startswith(self.origin_at):
            source += at[len(self.origin_at) :]  # the same keyword below the spec's node
        self.errors.append(Note(at, message, source))
        return {}

    def drop(self, at: str, key: str, why: str = "not supported in strict mode") -> None:
        self.warnings.append(Note(pointer.join(at, key), f"removed '{key}' ({why})"))

    def types(self, node: Mapping[str, Any], at: str) -> list[str] | None:
        kind = node.get("type")
        if isinstance(kind, str):
            kinds = [kind]
        elif isinstance(kind, list) and kind and all(isinstance(k, str) for k in kind):
            kinds = list(dict.fromkeys(kind))
        elif kind is not None:
            self.fail(pointer.join(at, "type"), f"'type' must be a string or list, not {kind!r}")
            return None
        else:
            kinds = self.infer(node)
            if not kinds:
                self.fail(
                    at,
                    "this schema has no type (it accepts any JSON value); strict mode needs "
                    "a type for every value",
                )
                return None
        unknown = [k for k in kinds if k not in KEYWORDS_BY_TYPE]
        if unknown:
            self.fail(pointer.join(at, "type"), f"unknown type '{unknown[0]}'")
            return None
        return kinds

    @staticmethod
    def infer(node: Mapping[str, Any]) -> list[str]:
        """A type the keywords imply, for schemas that leave `type` out."""
        if _OBJECT_HINTS & node.keys():
            return ["object"]
        if "items" in node or "prefixItems" in node:
            return ["array"]
        values = node["enum"] if isinstance(node.get("enum"), list) else None
        if values is None and "const" in node:
            values = [node["const"]]
        if values:
            kinds = [_value_type(v) for v in values]
            if None in kinds:
                return []
            found = [k for k in dict.fromkeys(kinds) if k is not None]
            if "number" in found and "integer" in found:
                found.remove("integer")
            return found
        if _STRING_HINTS & node.keys():
            return ["string"]
        if _NUMBER & node.keys():
            return ["number"]
        return []

    def node(self, schema: Any, at: str) -> dict[str, Any]:
        saved = self.origin, self.origin_at
        if isinstance(schema, Mapping):
            found = schema.get(ORIGIN)
            if isinstance(found, str):
                self.origin, self.origin_at = found, at
            schema = {k: v for k, v in schema.items() if k != ORIGIN}
        try:
            return self.rewrite(schema, at)
        finally:
            self.origin, self.origin_at = saved

    def rewrite(self, schema: Any, at: str) -> dict[str, Any]:
        if schema is True or (isinstance(schema, Mapping) and not schema):
            return self.fail(at, "this schema accepts any JSON value; strict mode needs a type")
        if not isinstance(schema, Mapping):
            return self.fail(at, f"not a schema: {json.dumps(schema)[:40]}")
        if "allOf" in schema:
            return self.fail(
                pointer.join(at, "allOf"),
                "allOf parts conflict, so they cannot be merged into one schema "
                "(strict mode has no allOf)",
            )
        node = dict(schema)
        if "oneOf" in node:
            if "anyOf" in node:
                return self.fail(at, "both oneOf and anyOf here; strict mode cannot combine them")
            self.warnings.append(
                Note(
                    pointer.join(at, "oneOf"), "oneOf rewritten as anyOf (strict mode has no oneOf)"
                )
            )
            node = {("anyOf" if k == "oneOf" else k): v for k, v in node.items()}
        if "$ref" in node:
            for key in node:
                if key != "$ref":
                    self.drop(at, key, "strict mode allows nothing next to $ref")
            return {"$ref": node["$ref"]}
        if "anyOf" in node:
            return self.union(node, at)
        return self.typed(node, at)

    def union(self, node: dict[str, Any], at: str) -> dict[str, Any]:
        branches = node["anyOf"]
        if not isinstance(branches, list) or not branches:
            return self.fail(pointer.join(at, "anyOf"), "anyOf must be a non-empty list")
        out: dict[str, Any] = {}
        shared: dict[str, Any] = {}
        for key, value in node.items():
            if key == "anyOf":
                continue
            if key in ANNOTATIONS:
                out[key] = value
            elif key in KEYWORDS_ANY_TYPE or any(key in s for s in KEYWORDS_BY_TYPE.values()):
                shared[key] = value
            else:
                self.drop(at, key)
        if shared:
            distributed = self.distribute(shared, branches, at)
            if distributed is None:
                return {}
            branches = distributed
        if len(branches) == 1:  # X and (A) is X and A: no union left
            only = branches[0]
            single = dict(only) if isinstance(only, Mapping) else only
            if isinstance(single, dict):
                for key, value in out.items():
                    single.setdefault(key, value)
            return self.node(single, pointer.join(at, "anyOf", 0))
        flat: list[Any] = []
        for i, branch in enumerate(branches):
            rewritten = self.node(branch, pointer.join(at, "anyOf", i))
            for part in rewritten["anyOf"] if _is_plain_union(rewritten) else [rewritten]:
                if part not in flat:  # nested anyOf spliced in; a repeated branch adds nothing
                    flat.append(part)
        out["anyOf"] = flat
        return out

    def distribute(self, shared: dict[str, Any], branches: list[Any], at: str) -> list[Any] | None:
        """`X` next to `anyOf: [A, B]` → `anyOf: [X∧A, X∧B]` (the same set of values).

        A branch whose types are disjoint from X's can never match and is dropped; a branch
        that cannot be merged with X (a `$ref`, conflicting constraints) makes this fail.
        """
        keys = ", ".join(f"'{k}'" for k in shared)
        wanted = _types_of(shared)
        out: list[Any] = []
        for i, branch in enumerate(branches):
            here = pointer.join(at, "anyOf", i)
            if (
                branch is True
                or branch == {}
                or (isinstance(branch, Mapping) and set(branch) == {ORIGIN})
            ):
                out.append(dict(shared))
                continue
            if not isinstance(branch, Mapping) or "$ref" in branch:
                self.fail(here, f"{keys} next to anyOf cannot be merged into this branch")
                return None
            kinds = _types_of(branch)
            if wanted is not None and kinds is not None and not (wanted & kinds):
                self.warnings.append(
                    Note(here, f"anyOf branch dropped: it can never match next to {keys}")
                )
                continue
            merged = merge_parts([branch, shared])
            if "allOf" in merged:
                self.fail(here, f"{keys} next to anyOf conflicts with this branch; no strict form")
                return None
            out.append(merged)
        if not out:
            self.fail(at, f"no anyOf branch can match next to {keys}")
            return None
        return out

    def typed(self, node: dict[str, Any], at: str) -> dict[str, Any]:
        kinds = self.types(node, at)
        if kinds is None:
            return {}
        allowed = KEYWORDS_ANY_TYPE.union(*(KEYWORDS_BY_TYPE[k] for k in kinds))
        out: dict[str, Any] = {"type": kinds[0] if len(kinds) == 1 else kinds}
        for key, value in node.items():
            if key == "type":
                continue
            if key in ("properties", "required", "additionalProperties", "items") and (
                key in allowed
            ):
                continue  # rebuilt below
            if key == "format" and ("string" not in kinds or value not in SUPPORTED_FORMATS):
                self.drop(at, key, f"format {value!r} is not supported in strict mode")
            elif key == "enum" and (not isinstance(value, list) or not value):
                return self.fail(pointer.join(at, key), "enum must be a non-empty list")
            elif key in allowed:
                out[key] = value
            else:
                self.drop(at, key)
        if "object" in kinds:
            self.close_object(node, at, out)
        if "array" in kinds:
            items = node.get("items")
            if isinstance(items, Mapping) or items is True:
                out["items"] = self.node(items, pointer.join(at, "items"))
            elif isinstance(items, list) or "prefixItems" in node:
                return self.fail(at, "tuple arrays (a schema per position) have no strict form")
            else:
                return self.fail(at, "this array has no 'items' schema; strict mode needs one")
        return out

    def close_object(self, node: Mapping[str, Any], at: str, out: dict[str, Any]) -> None:
        props = node.get("properties", {})
        if not isinstance(props, Mapping):
            self.fail(pointer.join(at, "properties"), "'properties' must be an object")
            return
        required = node.get("required", [])
        required = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        for name in required:
            if name not in props:
                self.fail(
                    pointer.join(at, "required"),
                    f"'{name}' is required but has no schema under 'properties'",
                )
        closed: dict[str, Any] = {}
        for name, sub in props.items():
            rewritten = self.node(sub, pointer.join(at, "properties", name))
            closed[name] = (
                rewritten if name in required or not rewritten else make_nullable(rewritten)
            )
        extra = node.get("additionalProperties", False)
        if extra is not False:
            self.warnings.append(
                Note(
                    pointer.join(at, "additionalProperties"),
                    "removed 'additionalProperties' (strict mode allows only the declared "
                    "properties, so other keys can no longer be sent)",
                )
            )
        out["properties"] = closed
        out["required"] = list(closed)
        out["additionalProperties"] = False


def make_strict(schema: Any) -> StrictResult:
    """Strict form of a parameters schema (its `$defs` included), or the reasons it has none."""
    rewriter = _Rewriter()
    if not isinstance(schema, Mapping):
        return StrictResult(None, [], [Note("", "the parameters schema is not an object")])
    if "anyOf" in schema or "oneOf" in schema:
        return StrictResult(
            None,
            [],
            [
                Note(
                    "",
                    "the parameters are a union (anyOf/oneOf) at the root; strict "
                    "mode needs a single object there",
                )
            ],
        )
    if schema.get("type", "object") != "object":
        return StrictResult(
            None,
            [],
            [
                Note(
                    "/type",
                    f"the parameters schema has type {schema.get('type')!r}; "
                    "strict mode needs an object at the root",
                )
            ],
        )
    body = {k: v for k, v in schema.items() if k != "$defs"}
    out = rewriter.node({**body, "type": "object"}, "")
    defs = schema.get("$defs")
    if isinstance(defs, Mapping) and defs:
        out["$defs"] = {
            name: rewriter.node(sub, pointer.join("/$defs", name)) for name, sub in defs.items()
        }
    if rewriter.errors:
        return StrictResult(None, rewriter.warnings, rewriter.errors)
    problems = limit_errors(out)
    if problems:
        return StrictResult(None, rewriter.warnings, problems)
    return StrictResult(out, rewriter.warnings, [])
