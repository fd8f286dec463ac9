from __future__ import annotations

from typing import Any

from runpoller_actions.allof import merge_all_of

from .helpers import body_spec, convert, only_tool

BASE = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}


def test_properties_and_required_are_united() -> None:
    schema = {
        "allOf": [
            BASE,
            {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}},
        ]
    }
    assert merge_all_of(schema) == {
        "type": "object",
        "required": ["name", "id"],
        "properties": {"name": {"type": "string"}, "id": {"type": "integer"}},
    }


def test_siblings_of_all_of_take_part_and_keep_their_description() -> None:
    schema = {"description": "outer", "allOf": [{"description": "inner", "type": "string"}]}
    assert merge_all_of(schema) == {"description": "outer", "type": "string"}


def test_bounds_tighten_and_enums_intersect() -> None:
    schema = {
        "allOf": [
            {"type": "integer", "minimum": 1, "maximum": 10, "enum": [1, 2, 3]},
            {"type": "number", "minimum": 2, "maximum": 20, "enum": [2, 3, 4]},
        ]
    }
    assert merge_all_of(schema) == {"type": "integer", "minimum": 2, "maximum": 10, "enum": [2, 3]}


def test_same_property_in_two_parts_is_merged_recursively() -> None:
    schema = {
        "allOf": [
            {"properties": {"n": {"type": "string", "minLength": 1}}},
            {"properties": {"n": {"maxLength": 5}}},
        ]
    }
    assert merge_all_of(schema) == {
        "properties": {"n": {"type": "string", "minLength": 1, "maxLength": 5}}
    }


def test_closed_object_stays_closed() -> None:
    merged = merge_all_of({"allOf": [BASE, {"additionalProperties": False}]})
    assert merged["additionalProperties"] is False


def test_nested_all_of_is_merged_inside_out() -> None:
    schema = {"properties": {"x": {"allOf": [{"type": "string"}, {"pattern": "^a"}]}}}
    assert merge_all_of(schema) == {"properties": {"x": {"type": "string", "pattern": "^a"}}}


def test_conflicting_part_stays_in_all_of() -> None:
    schema: dict[str, Any] = {
        "allOf": [{"type": "string", "pattern": "^a"}, {"pattern": "b$"}, {"maxLength": 3}]
    }
    assert merge_all_of(schema) == {
        "type": "string",
        "pattern": "^a",
        "maxLength": 3,
        "allOf": [{"pattern": "b$"}],
    }


def test_disjoint_types_conflict() -> None:
    merged = merge_all_of({"allOf": [{"type": "string"}, {"type": "integer"}]})
    assert merged == {"type": "string", "allOf": [{"type": "integer"}]}


def test_nullable_and_non_nullable_types_intersect() -> None:
    merged = merge_all_of({"allOf": [{"type": ["object", "null"]}, {"type": "object"}]})
    assert merged == {"type": "object"}


def test_petstore_style_all_of_becomes_one_flat_body() -> None:
    components = {
        "schemas": {
            "NewPet": {
                "type": "object",
                "required": ["name"],
                "properties": {"name": {"type": "string"}, "tag": {"type": "string"}},
            },
            "Pet": {
                "allOf": [
                    {"$ref": "#/components/schemas/NewPet"},
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "integer"}},
                    },
                ]
            },
        }
    }
    params = only_tool(
        convert(body_spec({"$ref": "#/components/schemas/Pet"}, components=components))
    ).parameters
    assert params == {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tag": {"type": "string"},
            "id": {"type": "integer"},
        },
        "required": ["name", "id"],
    }


def test_unmergeable_all_of_fails_in_strict_mode_with_its_pointer() -> None:
    schema = {
        "type": "object",
        "properties": {"code": {"allOf": [{"type": "string"}, {"type": "integer"}]}},
    }
    result = convert(body_spec(schema, strict=True))
    assert not result.tools
    (error,) = result.errors
    assert error.pointer == (
        "#/paths/~1items/post/requestBody/content/application~1json/schema/properties/code/allOf"
    )
    assert error.schema_pointer == "/properties/code/allOf"
    assert "allOf" in error.message


def test_a_type_that_is_no_type_is_kept_apart_not_a_crash() -> None:
    # Found by the property test: `type: null` beside `allOf: [{type: false}]` (a broken
    # spec) ended the whole operation in "internal error"; such parts cannot be merged, so
    # they stay in a remaining allOf for the checks after to judge.
    schema = {"type": None, "allOf": [{"type": False}]}
    assert merge_all_of(schema) == {"type": None, "allOf": [{"type": False}]}
