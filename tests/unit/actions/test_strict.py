from __future__ import annotations

from typing import Any

import pytest

from runpoller_actions import make_strict, validate_strict
from runpoller_actions.limits import (
    LARGE_ENUM,
    LARGE_ENUM_CHARS,
    MAX_CHARS,
    MAX_DEPTH,
    MAX_ENUM_VALUES,
    MAX_PROPERTIES,
)
from runpoller_actions.strict import make_nullable

from .helpers import body_spec, convert, messages, only_tool


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    result = make_strict(schema)
    assert result.errors == [], result.errors
    assert result.schema is not None
    assert validate_strict(result.schema) == []
    return result.schema


def errors(schema: Any) -> list[tuple[str, str]]:
    result = make_strict(schema)
    assert result.schema is None
    return [(n.pointer, n.message) for n in result.errors]


def warnings(schema: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n.pointer, n.message) for n in make_strict(schema).warnings]


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if required is not None:
        out["required"] = required
    return out


def test_limits_are_the_documented_ones() -> None:
    assert (MAX_PROPERTIES, MAX_DEPTH, MAX_ENUM_VALUES, MAX_CHARS) == (5000, 10, 1000, 120_000)
    assert (LARGE_ENUM, LARGE_ENUM_CHARS) == (250, 15_000)


def test_every_object_is_closed_and_fully_required_at_every_depth() -> None:
    schema = obj({"a": obj({"b": obj({"c": {"type": "string"}}, ["c"])})}, ["a"])
    assert strict(schema) == {
        "type": "object",
        "properties": {
            "a": {
                "type": "object",
                "properties": {
                    "b": {
                        "type": ["object", "null"],
                        "properties": {"c": {"type": "string"}},
                        "required": ["c"],
                        "additionalProperties": False,
                    }
                },
                "required": ["b"],
                "additionalProperties": False,
            }
        },
        "required": ["a"],
        "additionalProperties": False,
    }


def test_optional_properties_become_nullable() -> None:
    out = strict(obj({"s": {"type": "string"}, "e": {"enum": ["x", "y"]}, "k": {"const": 3}}))
    assert out["properties"] == {
        "s": {"type": ["string", "null"]},
        "e": {"type": ["string", "null"], "enum": ["x", "y", None]},
        "k": {"type": ["integer", "null"], "enum": [3, None]},
    }
    assert out["required"] == ["s", "e", "k"]


def test_already_nullable_optional_is_left_alone() -> None:
    out = strict(obj({"s": {"type": ["string", "null"]}}))
    assert out["properties"]["s"] == {"type": ["string", "null"]}


def test_make_nullable_on_ref_and_any_of() -> None:
    assert make_nullable({"$ref": "#/$defs/A"}) == {
        "anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]
    }
    union = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert make_nullable(union)["anyOf"][-1] == {"type": "null"}
    assert make_nullable(make_nullable(union)) == make_nullable(union)


def test_unsupported_keywords_are_removed_with_their_pointer() -> None:
    schema = obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a"},
            "n": {"type": "integer", "format": "int64", "minimum": 0, "default": 3},
            "when": {"type": "string", "format": "date-time"},
            "site": {"type": "string", "format": "uri"},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
        },
        ["name", "n", "when", "site", "tags"],
    )
    out = strict(schema)
    assert out["properties"]["name"] == {"type": "string", "pattern": "^a"}
    assert out["properties"]["n"] == {"type": "integer", "minimum": 0}
    assert out["properties"]["when"] == {"type": "string", "format": "date-time"}
    assert out["properties"]["site"] == {"type": "string"}
    assert dict(warnings(schema)) == {
        "/properties/name/minLength": "removed 'minLength' (not supported in strict mode)",
        "/properties/name/maxLength": "removed 'maxLength' (not supported in strict mode)",
        "/properties/n/format": "removed 'format' (format 'int64' is not supported in strict mode)",
        "/properties/n/default": "removed 'default' (not supported in strict mode)",
        "/properties/site/format": (
            "removed 'format' (format 'uri' is not supported in strict mode)"
        ),
        "/properties/tags/uniqueItems": "removed 'uniqueItems' (not supported in strict mode)",
    }


def test_free_form_map_is_closed_with_a_warning() -> None:
    schema = obj({"meta": {"type": "object", "additionalProperties": {"type": "string"}}}, ["meta"])
    out = strict(schema)
    assert out["properties"]["meta"] == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    ((where, message),) = warnings(schema)
    assert where == "/properties/meta/additionalProperties"
    assert "other keys can no longer be sent" in message


def test_one_of_becomes_any_of() -> None:
    schema = obj({"v": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}, ["v"])
    assert strict(schema)["properties"]["v"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert warnings(schema) == [
        ("/properties/v/oneOf", "oneOf rewritten as anyOf (strict mode has no oneOf)")
    ]


def test_ref_keeps_nothing_next_to_it_and_defs_are_rewritten() -> None:
    schema = {
        **obj({"n": {"$ref": "#/$defs/Node", "description": "x"}}, ["n"]),
        "$defs": {"Node": obj({"next": {"$ref": "#/$defs/Node"}})},
    }
    out = strict(schema)
    assert out["properties"]["n"] == {"$ref": "#/$defs/Node"}
    assert out["$defs"]["Node"]["properties"]["next"] == {
        "anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]
    }


def test_missing_type_is_inferred_from_keywords() -> None:
    out = strict(
        obj({"p": {"properties": {}}, "s": {"pattern": "a"}, "i": {"items": {"type": "string"}}})
    )
    assert out["properties"]["p"]["type"] == ["object", "null"]
    assert out["properties"]["s"]["type"] == ["string", "null"]
    assert out["properties"]["i"]["type"] == ["array", "null"]


@pytest.mark.parametrize(
    ("prop", "pointer", "text"),
    [
        ({}, "/properties/x", "accepts any JSON value"),
        ({"description": "anything"}, "/properties/x", "has no type"),
        ({"type": "int"}, "/properties/x/type", "unknown type 'int'"),
        ({"type": "array"}, "/properties/x", "no 'items' schema"),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "/properties/x", "tuple"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "/properties/x/allOf", "allOf"),
        (
            {"pattern": "^a", "anyOf": [{"type": "string", "pattern": "^b"}]},
            "/properties/x/anyOf/0",
            "conflicts with this branch",
        ),
        ({"type": "string", "anyOf": [{"type": "integer"}]}, "/properties/x", "no anyOf branch"),
        (
            {"type": "object", "anyOf": [{"$ref": "#/$defs/A"}]},
            "/properties/x/anyOf/0",
            "cannot be merged",
        ),
        ({"type": "string", "enum": []}, "/properties/x/enum", "non-empty"),
    ],
)
def test_no_faithful_rewrite_is_an_error_at_its_pointer(
    prop: dict[str, Any], pointer: str, text: str
) -> None:
    ((where, message),) = errors(obj({"x": prop}, ["x"]))
    assert where == pointer
    assert text in message


def test_required_name_without_schema_is_an_error() -> None:
    assert errors(obj({}, ["ghost"])) == [
        ("/required", "'ghost' is required but has no schema under 'properties'")
    ]


@pytest.mark.parametrize(
    ("schema", "text"),
    [
        ({"anyOf": [obj({}), obj({})]}, "union"),
        ({"type": "array", "items": {"type": "string"}}, "object at the root"),
        ([1], "not an object"),
    ],
)
def test_root_must_be_one_object(schema: Any, text: str) -> None:
    ((_, message),) = errors(schema)
    assert text in message


def nested(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = obj({"x": schema}, ["x"])
    return schema


def test_ten_levels_are_fine_eleven_are_not() -> None:
    strict(nested(10))
    assert errors(nested(11)) == [("", "nested 11 levels deep; strict mode allows at most 10")]


def test_too_many_properties() -> None:
    schema = obj({f"p{i}": {"type": "string"} for i in range(5001)})
    assert errors(schema) == [("", "5001 properties in total; strict mode allows at most 5000")]


def test_too_many_enum_values() -> None:
    schema = obj({"a": {"enum": list(range(600))}, "b": {"enum": list(range(401))}}, ["a", "b"])
    assert errors(schema) == [("", "1001 enum values in total; strict mode allows at most 1000")]


def test_large_string_enum_character_limit() -> None:
    values = [f"{i:03d}" + "v" * 60 for i in range(251)]
    ((_, message),) = errors(obj({"a": {"enum": values}}, ["a"]))
    assert "more than 250 values" in message


def test_character_budget() -> None:
    props = {("k" * 40) + str(i): {"type": "string"} for i in range(3000)}
    ((_, message),) = errors(obj(props))
    assert "characters of property names" in message
    assert "at most 120000" in message


def test_errors_fail_one_operation_and_keep_the_warnings() -> None:
    result = convert(
        body_spec(obj({"a": {}, "b": {"type": "string", "maxLength": 3}}), strict=True)
    )
    assert not result.tools
    assert messages(result) == [
        "create (POST /items) #/paths/~1items/post/requestBody/content/application~1json/"
        "schema/properties/a: no faithful strict form: this schema accepts any JSON value; "
        "strict mode needs a type [parameters /properties/a]"
    ]
    assert len(result.warnings) == 1


def test_librechat_gap_optional_and_nested_fields_now_work() -> None:
    schema = obj(
        {
            "expr": {"type": "string"},
            "precision": {"type": "integer"},
            "options": obj({"unit": {"type": "string"}}),
        },
        ["expr"],
    )
    tool = only_tool(convert(body_spec(schema, strict=True)))
    assert tool.strict is True
    assert validate_strict(tool.parameters) == []
    assert tool.parameters["properties"]["options"]["additionalProperties"] is False
