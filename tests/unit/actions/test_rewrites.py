"""The faithful strict rewrites found in real specs (Box, OpenAI, Asana), each before → after."""

from __future__ import annotations

import json
from typing import Any

import yaml

from runpoller_actions import convert_text, make_strict, validate_strict

from .helpers import body_spec, convert, only_tool

USER = {
    "type": "object",
    "description": "A generic user.",
    "properties": {"gid": {"type": "string"}, "name": {"type": "string"}},
}


def body_with(prop: dict[str, Any], strict: bool = True, **schemas: Any) -> dict[str, Any]:
    """`POST /items` whose required JSON body has one optional property `p`."""
    schema = {"type": "object", "properties": {"p": prop}}
    return body_spec(schema, strict=strict, components={"schemas": {"User": USER, **schemas}})


def strict_p(prop: dict[str, Any], **schemas: Any) -> Any:
    tool = only_tool(convert(body_with(prop, **schemas)))
    assert validate_strict(tool.parameters) == []
    return tool.parameters["properties"]["p"]


def test_sibling_type_is_merged_into_each_branch() -> None:
    # Box: `type: object` next to a oneOf of objects.
    prop = {
        "type": "object",
        "oneOf": [
            {"properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ],
    }
    closed = {"required": None, "additionalProperties": False}
    first = {"type": "object", "properties": {"a": {"type": "string"}}, **closed}
    second = {"type": "object", "properties": {"b": {"type": "integer"}}, **closed}
    first["required"], second["required"] = ["a"], ["b"]
    assert strict_p(prop) == {"anyOf": [first, second, {"type": "null"}]}


def test_all_of_is_distributed_over_a_nullable_any_of() -> None:
    # OpenAI `top_logprobs`: allOf of (integer or null) and a plain integer is an integer.
    prop = {
        "allOf": [
            {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 20}, {"type": "null"}]},
            {"type": "integer", "minimum": 0, "maximum": 20, "description": "How many."},
        ]
    }
    result = convert(body_with(prop))
    assert only_tool(result).parameters["properties"]["p"] == {
        "type": ["integer", "null"],  # null again only because `p` is optional
        "minimum": 0,
        "maximum": 20,
        "description": "How many.",
    }
    assert any("anyOf branch dropped" in w.message for w in result.warnings)


def test_distribution_keeps_null_when_both_parts_allow_it() -> None:
    prop = {
        "allOf": [
            {"anyOf": [{"type": "integer"}, {"type": "null"}]},
            {"type": "integer", "nullable": True, "maximum": 5},
        ]
    }
    schema = {"type": "object", "properties": {"p": prop}, "required": ["p"]}
    tool = only_tool(convert(body_spec(schema, strict=True, openapi="3.0.3")))
    assert tool.parameters["properties"]["p"] == {
        "anyOf": [{"type": "integer", "maximum": 5}, {"type": "null"}]
    }


def test_read_only_nullable_part_drops_the_property_from_the_request() -> None:
    # Asana `assigned_by`: allOf [$ref, {readOnly, nullable, description}].
    prop = {
        "allOf": [
            {"$ref": "#/components/schemas/User"},
            {"readOnly": True, "nullable": True, "description": "Who assigned it."},
        ]
    }
    for strict in (False, True):
        tool = only_tool(convert(body_with(prop, strict=strict)))
        assert "p" not in tool.parameters["properties"]


def test_nullable_part_keeps_nullability_and_the_property_description() -> None:
    prop = {
        "allOf": [
            {"$ref": "#/components/schemas/User"},
            {"nullable": True, "description": "Who assigned it."},
        ]
    }
    plain = only_tool(convert(body_with(prop, strict=False))).parameters["properties"]["p"]
    assert plain["description"] == "Who assigned it."
    assert plain["anyOf"][1] == {"type": "null"}
    assert plain["anyOf"][0]["properties"] == USER["properties"]
    rewritten = strict_p(prop)
    assert rewritten["description"] == "Who assigned it."
    assert [b.get("type") for b in rewritten["anyOf"]] == ["object", "null"]


def test_property_description_wins_over_the_referenced_one() -> None:
    # Box: allOf [$ref, {description}] (117 times).
    prop = {"allOf": [{"$ref": "#/components/schemas/User"}, {"description": "The owner."}]}
    plain = only_tool(convert(body_with(prop, strict=False))).parameters["properties"]["p"]
    assert plain["description"] == "The owner."
    own = {"description": "Mine.", "allOf": [{"$ref": "#/components/schemas/User"}]}
    plain = only_tool(convert(body_with(own, strict=False))).parameters["properties"]["p"]
    assert plain["description"] == "Mine."


def test_nested_any_of_is_flattened() -> None:
    schema = {
        "type": "object",
        "properties": {
            "p": {
                "anyOf": [
                    {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    {"anyOf": [{"type": "boolean"}, {"type": "string"}]},
                ]
            }
        },
        "required": ["p"],
    }
    result = make_strict(schema)
    assert result.schema is not None
    assert result.schema["properties"]["p"] == {
        "anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]
    }


def test_no_faithful_rewrite_points_into_the_spec_with_line_and_column() -> None:
    doc = body_with(
        {"$ref": "#/components/schemas/Bad"},
        Bad={
            "type": "object",
            "properties": {"x": {"pattern": "^a", "anyOf": [{"pattern": "^b"}]}},
        },
    )
    bad = "#/components/schemas/Bad/properties/x/anyOf/0"
    for text in (json.dumps(doc, indent=2), yaml.safe_dump(doc, sort_keys=False)):
        (error,) = convert_text(text).errors
        assert error.pointer == bad
        assert error.schema_pointer == "/properties/p/properties/x/anyOf/0"
        assert error.line is not None and error.column is not None
        line = text.splitlines()[error.line - 1][error.column - 1 :]
        assert "pattern" in line or line.startswith("{")  # the branch itself
        assert error.render().startswith(f"create (POST /items) {bad} (line {error.line}, ")
