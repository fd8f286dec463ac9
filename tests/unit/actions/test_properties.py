"""Property tests: generated schemas through the whole converter.

Strict output must always pass the independent checker (or the operation must fail with a
reason); non-strict output must carry the original schema unchanged; and no input, however
broken, may make the converter raise.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runpoller_actions import convert_document, validate_strict

from .helpers import body_spec, spec

# 150 examples keeps the suite fast; ACTIONS_EXAMPLES=5000 for a deeper hunt.
SETTINGS = settings(
    max_examples=int(os.environ.get("ACTIONS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NAMES = st.sampled_from(["a", "b", "id", "name", "x-y", "body", "tags", "when"])
TEXT = st.text(alphabet="abc xyz", max_size=12)
SMALL = st.integers(min_value=0, max_value=20)


def _typed(kind: str, **optional: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    kinds = st.sampled_from([kind, [kind, "null"]])
    return st.fixed_dictionaries({"type": kinds}, optional={"description": TEXT, **optional})


LEAVES = st.one_of(
    _typed(
        "string",
        minLength=SMALL,
        maxLength=SMALL,
        pattern=st.just("^[a-z]*$"),
        format=st.sampled_from(["date", "uuid", "email", "uri", "int64", "byte"]),
        default=TEXT,
    ),
    _typed("integer", minimum=SMALL, maximum=SMALL, multipleOf=st.just(2), format=st.just("int32")),
    _typed("number", exclusiveMinimum=SMALL, maximum=SMALL, default=st.just(1.5)),
    _typed("boolean", default=st.booleans()),
    st.fixed_dictionaries(
        {"enum": st.lists(TEXT, min_size=1, max_size=4, unique=True)},
        optional={"type": st.just("string"), "description": TEXT},
    ),
    st.fixed_dictionaries({"const": st.one_of(TEXT, SMALL)}),
)


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    props = draw(st.dictionaries(NAMES, children, max_size=4))
    out: dict[str, Any] = {"type": draw(st.sampled_from(["object", ["object", "null"]]))}
    if draw(st.booleans()):
        out["description"] = draw(TEXT)
    out["properties"] = props
    required = draw(st.lists(st.sampled_from(sorted(props)), unique=True)) if props else []
    if required:
        out["required"] = required
    extra = draw(st.sampled_from([None, False, True, {"type": "string"}]))
    if extra is not None:
        out["additionalProperties"] = extra
    return out


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    arrays = st.fixed_dictionaries(
        {"type": st.just("array"), "items": children},
        optional={"minItems": SMALL, "maxItems": SMALL, "uniqueItems": st.booleans()},
    )
    unions = st.fixed_dictionaries(
        {"anyOf": st.lists(children, min_size=1, max_size=3)}, optional={"description": TEXT}
    )
    one_ofs = st.fixed_dictionaries({"oneOf": st.lists(children, min_size=2, max_size=3)})
    return st.one_of(objects(children), arrays, unions, one_ofs)


SCHEMAS = st.recursive(LEAVES, _containers, max_leaves=10)
OBJECT_SCHEMAS = objects(SCHEMAS)


def _levels(node: Any) -> int:
    """Test-side nesting count, to tell an expected depth error from a bug."""
    if not isinstance(node, dict):
        return 0
    branches = node.get("anyOf", node.get("oneOf"))
    if branches is not None:
        return max(_levels(b) for b in branches)
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    own = 1 if {"object", "array"} & set(kinds) else 0
    children = [*node.get("properties", {}).values(), node.get("items")]
    return own + max((_levels(c) for c in children), default=0)


@SETTINGS
@given(OBJECT_SCHEMAS)
def test_every_strict_output_passes_the_checker(schema: dict[str, Any]) -> None:
    result = convert_document(body_spec(schema, strict=True))
    if result.tools:
        (tool,) = result.tools
        assert tool.strict is True
        assert validate_strict(tool.parameters) == []
        Draft202012Validator.check_schema(tool.parameters)
    else:
        assert result.errors
        assert _levels(schema) + 1 > 10, [e.render() for e in result.errors]
        assert all("levels deep" in e.message for e in result.errors)
    for warning in result.warnings:  # every removal names its place in the parameters
        assert warning.pointer is not None
        assert warning.pointer.startswith("/")


@SETTINGS
@given(SCHEMAS, st.booleans())
def test_non_strict_output_keeps_the_original_schema(schema: Any, body_required: bool) -> None:
    result = convert_document(body_spec(schema, strict=False, required=body_required))
    (tool,) = result.tools
    params = tool.parameters
    arguments = result.operations["create"].arguments
    if "body" in arguments and arguments["body"].name is None:
        assert params["properties"]["body"] == schema
    else:
        assert schema["type"] in ("object", ["object", "null"]) or "properties" in schema
        assert params["properties"] == schema["properties"]
        expected = schema.get("required", []) if body_required else []
        assert sorted(params.get("required", [])) == sorted(expected)  # a set, order is free


JSONISH_KEYS = st.sampled_from(
    [
        "openapi",
        "paths",
        "servers",
        "url",
        "get",
        "post",
        "parameters",
        "requestBody",
        "content",
        "application/json",
        "schema",
        "$ref",
        "type",
        "properties",
        "items",
        "allOf",
        "anyOf",
        "oneOf",
        "required",
        "name",
        "in",
        "x-strict",
        "nullable",
        "enum",
        "additionalProperties",
        "operationId",
        "$recursiveRef",
    ]
)
JSONISH_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from(
        ["object", "string", "array", "query", "path", "#", "#/components/schemas/A", "x.yaml#/a"]
    ),
    st.text(max_size=4),
)
JSONISH = st.recursive(
    JSONISH_LEAVES,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(JSONISH_KEYS, c, max_size=4),
    max_leaves=25,
)


@SETTINGS
@given(JSONISH, JSONISH, st.sampled_from([True, False, None, "yes"]))
def test_converter_never_raises_on_broken_input(
    operation: Any, component: Any, strict: Any
) -> None:
    op = operation if isinstance(operation, dict) else {"parameters": operation}
    if strict is not None:
        op = {**op, "x-strict": strict}
    doc = spec({"/a/{id}": {"post": op}}, components={"schemas": {"A": component}})
    result = convert_document(doc)
    for tool in result.tools:
        if tool.strict:
            assert validate_strict(tool.parameters) == []
    assert result.tools or result.errors
    assert not any("internal error" in e.message for e in result.errors)


@SETTINGS
@given(JSONISH)
def test_converter_never_raises_on_any_document(document: Any) -> None:
    if isinstance(document, dict):
        result = convert_document(document)
        assert not any("internal error" in e.message for e in result.errors)


@SETTINGS
@given(JSONISH, JSONISH, st.booleans())
def test_converter_never_raises_on_broken_schemas(
    schema: Any, component: Any, strict: bool
) -> None:
    doc = body_spec(schema, strict=strict, components={"schemas": {"A": component}})
    doc["paths"]["/items"]["post"]["parameters"] = [
        {"name": "q", "in": "query", "schema": component}
    ]
    result = convert_document(doc)
    for tool in result.tools:
        if tool.strict:
            assert validate_strict(tool.parameters) == []
    assert result.tools or result.errors
    assert not any("internal error" in e.message for e in result.errors)
