"""`validate_strict`: does a schema meet the strict-mode rules? Written apart from the rewriter.

The rules (OpenAI Structured Outputs, see docs/actions.md) are encoded here a second time, as
a table of allowed keywords and an iterative walk, without importing anything from
`strict.py`. The converter and the tests run every strict tool through this checker, so a
slip in the rewriter is caught by a different piece of code instead of by the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runpoller_actions import pointer

# Rule table: which keywords a node may carry, by the type(s) it declares.
_ALWAYS = frozenset({"type", "description", "title", "enum", "const"})
_PER_TYPE: dict[str, frozenset[str]] = {
    "string": frozenset({"pattern", "format"}),
    "number": frozenset(
        {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
    ),
    "integer": frozenset(
        {"multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum"}
    ),
    "boolean": frozenset(),
    "null": frozenset(),
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "minItems", "maxItems"}),
}
_FORMATS = ("date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid")
_UNION_SIBLINGS = frozenset({"anyOf", "description", "title"})

# OpenAI's documented limits. Schema limits: Structured Outputs guide, "Supported schemas" →
# "Limitations" (platform.openai.com/docs/guides/structured-outputs; also in
# ../shared/reference/openai-api.md §6): "A schema may have up to 5000 object properties
# total, with up to 10 levels of nesting" (an older version of the guide said 100 and 5);
# "In total, the string length of all property names, definition names, enum values, and
# const values cannot exceed 120,000 characters"; "A schema may have up to 1000 enum values
# across all enum properties"; "For a single enum property with string values, the total
# string length of all enum values cannot exceed 15,000 characters when there are more than
# 250 enum values".
_LIMIT_PROPERTIES = 5000
# Nesting: the guide counts "levels of nesting" of objects without saying how; the API's own
# error ("6 levels of nesting exceeds limit of 5") is about nested objects. We count object
# AND array schemas (the stricter of the readings that costs no real spec a tool: the deepest
# corpus tool, OpenAI's createFineTuningJob, has exactly 10; 8 counting objects only), never
# anyOf wrappers, which the rewriter flattens anyway (docs/actions.md, "Which nesting count").
_LIMIT_LEVELS = 10
_LIMIT_ENUM_VALUES = 1000
_LIMIT_CHARS = 120_000
_BIG_ENUM_COUNT = 250
_BIG_ENUM_CHARS = 15_000
# Function names: OpenAPI spec `FunctionObject.name` ("Must be a-z, A-Z, 0-9, or contain
# underscores and dashes, with a maximum length of 64"; ../shared/openai-openapi/openapi.yaml).
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Descriptions: 1024 characters, the project's limit from description.py (the Assistants API
# rejects longer function descriptions; the OpenAPI spec gives no maxLength and the Responses
# API documents none; one conversion serves both).
_LIMIT_DESCRIPTION = 1024
# Tools per request: Chat Completions `tools` "A max of 128 functions are supported";
# Assistants `tools` "There can be a maximum of 128 tools per assistant" (maxItems: 128).
LIMIT_TOOLS = 128


@dataclass(frozen=True)
class Problem:
    """One broken rule: where (JSON pointer), which rule, and a sentence."""

    pointer: str
    rule: str
    message: str


def _chars(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value))


def _declared_types(node: Mapping[str, Any]) -> list[str] | None:
    kind = node.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list) and all(isinstance(k, str) for k in kind) and kind:
        return list(kind)
    return None


Pending = tuple[Any, str, int]  # (schema node, its pointer, nesting level of its parent)


@dataclass
class _Checker:
    """One pass over a schema: a work list of nodes, problems and running totals."""

    defs: Mapping[str, Any]
    problems: list[Problem] = field(default_factory=list)
    totals: dict[str, int] = field(
        default_factory=lambda: {"properties": 0, "enum": 0, "chars": 0, "levels": 0}
    )

    def report(self, at: str, rule: str, message: str) -> None:
        self.problems.append(Problem(at, rule, message))

    def run(self, roots: list[Pending]) -> None:
        pending = list(roots)
        while pending:
            node, at, parent_level = pending.pop()
            pending.extend(self.visit(node, at, parent_level, is_root=at == ""))

    def visit(self, node: Any, at: str, parent_level: int, is_root: bool) -> list[Pending]:
        """Check one node; return its children to check next."""
        if not isinstance(node, Mapping):
            self.report(at, "schema-object", "every schema must be a JSON object (no true/false)")
            return []
        if "$defs" in node and not is_root:
            self.report(pointer.join(at, "$defs"), "defs", "$defs is only allowed at the root")
        if "description" in node and not isinstance(node["description"], str):
            self.report(
                pointer.join(at, "description"), "description", "description must be a string"
            )
        if "$ref" in node:
            self.ref(node, at)
            return []
        if "anyOf" in node:
            return self.union(node, at, parent_level)
        return self.typed(node, at, parent_level, is_root)

    def ref(self, node: Mapping[str, Any], at: str) -> None:
        ref = node["$ref"]
        extra = sorted(str(k) for k in node if k != "$ref")
        if extra:
            self.report(at, "ref", f"$ref must stand alone; found {', '.join(extra)} next to it")
        if ref == "#":
            return
        if not (isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in self.defs):
            self.report(pointer.join(at, "$ref"), "ref", f"$ref {ref!r} does not point into $defs")

    def union(self, node: Mapping[str, Any], at: str, parent_level: int) -> list[Pending]:
        extra = sorted(str(k) for k in node if k not in _UNION_SIBLINGS)
        if extra:
            self.report(
                at, "anyof", f"anyOf allows only description/title next to it: {', '.join(extra)}"
            )
        branches = node["anyOf"]
        if not isinstance(branches, list) or not branches:
            self.report(pointer.join(at, "anyOf"), "anyof", "anyOf must be a non-empty list")
            return []
        return [(b, pointer.join(at, "anyOf", i), parent_level) for i, b in enumerate(branches)]

    def typed(
        self, node: Mapping[str, Any], at: str, parent_level: int, is_root: bool
    ) -> list[Pending]:
        types = _declared_types(node)
        if types is None:
            if "type" in node or not ("enum" in node or "const" in node):
                self.report(at, "type", "a schema needs a type (a string or a non-empty list)")
                return []
            types = []
        unknown = [t for t in types if t not in _PER_TYPE]
        if unknown:
            self.report(pointer.join(at, "type"), "type", f"unknown type {unknown[0]!r}")
            return []
        allowed = set(_ALWAYS).union(*(_PER_TYPE[t] for t in types))
        if is_root:
            allowed.add("$defs")
        for key in node:
            if key not in allowed:
                self.report(pointer.join(at, key), "keyword", f"keyword {key!r} is not supported")
        if "format" in node and node["format"] not in _FORMATS:
            self.report(
                pointer.join(at, "format"), "format", f"format {node['format']!r} is not supported"
            )
        if "enum" in node:
            self.enum(node["enum"], pointer.join(at, "enum"))
        if "const" in node:
            self.totals["chars"] += _chars(node["const"])
        level = parent_level + (1 if {"object", "array"} & set(types) else 0)
        self.totals["levels"] = max(self.totals["levels"], level)
        children: list[Pending] = []
        if "object" in types:
            children += self.closed_object(node, at, level)
        if "array" in types:
            if "items" in node:
                children.append((node["items"], pointer.join(at, "items"), level))
            else:
                self.report(at, "items", "an array needs an 'items' schema")
        return children

    def enum(self, values: Any, at: str) -> None:
        if not isinstance(values, list) or not values:
            self.report(at, "enum", "enum must be a non-empty list")
            return
        self.totals["enum"] += len(values)
        self.totals["chars"] += sum(_chars(v) for v in values)
        if len(values) > _BIG_ENUM_COUNT and all(isinstance(v, str) for v in values):
            size = sum(len(v) for v in values)
            if size > _BIG_ENUM_CHARS:
                self.report(
                    at,
                    "big-enum",
                    f"string enum of {len(values)} values has {size} characters "
                    f"(limit {_BIG_ENUM_CHARS})",
                )

    def closed_object(self, node: Mapping[str, Any], at: str, level: int) -> list[Pending]:
        props = node.get("properties")
        if not isinstance(props, Mapping):
            self.report(at, "properties", "an object needs 'properties' (it may be empty)")
            props = {}
        if node.get("additionalProperties") is not False:
            self.report(at, "additional-properties", "an object needs additionalProperties: false")
        names = [str(n) for n in props]
        required = node.get("required")
        if not isinstance(required, list):
            self.report(at, "required", "an object needs 'required' listing every property")
        else:
            listed = [str(r) for r in required]
            missing = [n for n in names if n not in listed]
            stray = [r for r in listed if r not in names]
            if missing:
                self.report(
                    pointer.join(at, "required"),
                    "required",
                    f"properties not listed in required: {', '.join(missing)}",
                )
            if stray:
                self.report(
                    pointer.join(at, "required"),
                    "required",
                    f"required names without a property: {', '.join(stray)}",
                )
            if len(set(listed)) != len(listed):
                self.report(pointer.join(at, "required"), "required", "required has duplicates")
        self.totals["properties"] += len(names)
        self.totals["chars"] += sum(len(n) for n in names)
        return [(sub, pointer.join(at, "properties", n), level) for n, sub in props.items()]

    def limits(self) -> None:
        checks = (
            ("properties", _LIMIT_PROPERTIES, "max-properties", "properties in total"),
            ("levels", _LIMIT_LEVELS, "max-depth", "levels of nesting"),
            ("enum", _LIMIT_ENUM_VALUES, "max-enum-values", "enum values in total"),
            ("chars", _LIMIT_CHARS, "max-chars", "characters of names and enum/const values"),
        )
        for total, limit, rule, what in checks:
            if self.totals[total] > limit:
                self.report("", rule, f"{self.totals[total]} {what} (limit {limit})")


def validate_strict(schema: Any) -> list[Problem]:
    """Every rule `schema` breaks as a strict function-parameters schema; [] when it is fine."""
    if not isinstance(schema, Mapping):
        return [Problem("", "root-object", "the root must be an object schema")]
    defs = schema.get("$defs", {})
    checker = _Checker(defs if isinstance(defs, Mapping) else {})
    if not isinstance(defs, Mapping):
        checker.report("/$defs", "defs", "$defs must be an object")
    if "anyOf" in schema or "oneOf" in schema:
        checker.report("", "root-object", "the root must not be a union (anyOf)")
    if schema.get("type") != "object":
        checker.report("", "root-object", "the root must have type 'object'")
    checker.totals["chars"] += sum(len(str(name)) for name in checker.defs)
    roots: list[Pending] = [(schema, "", 0)]
    roots += [(sub, pointer.join("/$defs", name), 0) for name, sub in checker.defs.items()]
    checker.run(roots)
    checker.limits()
    return checker.problems


def validate_tool(tool: Mapping[str, Any]) -> list[Problem]:
    """Problems of one function tool in either shape (Assistants `function` or Responses flat).

    Name and description rules always; the strict-mode rules on `parameters` when `strict`.
    """
    body = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
    assert isinstance(body, Mapping)
    problems: list[Problem] = []
    name = body.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        problems.append(Problem("/name", "name", f"name {name!r} must match {_NAME.pattern}"))
    text = body.get("description", "")
    if not isinstance(text, str):
        problems.append(Problem("/description", "description", "description must be a string"))
    elif len(text) > _LIMIT_DESCRIPTION:
        problems.append(
            Problem(
                "/description",
                "description-length",
                f"description has {len(text)} characters (limit {_LIMIT_DESCRIPTION})",
            )
        )
    if body.get("strict") is True:
        problems += [
            Problem("/parameters" + p.pointer, p.rule, p.message)
            for p in validate_strict(body.get("parameters"))
        ]
    return problems


def validate_tools(tools: list[Mapping[str, Any]]) -> list[Problem]:
    """Problems of one request's tool list: each tool's, duplicate names, and the count."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        problems += [
            Problem(f"/{index}{p.pointer}", p.rule, p.message) for p in validate_tool(tool)
        ]
        body = tool.get("function") if isinstance(tool.get("function"), Mapping) else tool
        name = body.get("name") if isinstance(body, Mapping) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(Problem(f"/{index}/name", "name", f"duplicate name {name!r}"))
            seen.add(name)
    if len(tools) > LIMIT_TOOLS:
        problems.append(
            Problem("", "max-tools", f"{len(tools)} tools in one request (limit {LIMIT_TOOLS})")
        )
    return problems
