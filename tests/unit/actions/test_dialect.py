from __future__ import annotations

from runpoller_actions.dialect import add_null, drop_read_only, to_json_schema


def test_nullable_becomes_a_type_union() -> None:
    assert to_json_schema({"type": "string", "nullable": True}) == {"type": ["string", "null"]}


def test_nullable_false_is_just_dropped() -> None:
    assert to_json_schema({"type": "string", "nullable": False}) == {"type": "string"}


def test_nullable_enum_gets_null_as_a_value() -> None:
    assert to_json_schema({"type": "string", "enum": ["a"], "nullable": True}) == {
        "type": ["string", "null"],
        "enum": ["a", None],
    }


def test_nullable_without_type_wraps_in_any_of_and_keeps_the_description_outside() -> None:
    schema = {"description": "d", "oneOf": [{"type": "string"}], "nullable": True}
    assert to_json_schema(schema) == {
        "description": "d",
        "anyOf": [{"oneOf": [{"type": "string"}]}, {"type": "null"}],
    }


def test_add_null_extends_an_existing_any_of() -> None:
    assert add_null({"anyOf": [{"type": "string"}]}) == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }


def test_openapi_3_0_exclusive_bounds() -> None:
    schema = {"type": "number", "minimum": 1, "exclusiveMinimum": True, "exclusiveMaximum": False}
    assert to_json_schema(schema) == {"type": "number", "exclusiveMinimum": 1}


def test_openapi_only_keywords_are_dropped_everywhere() -> None:
    schema = {
        "type": "object",
        "example": {},
        "x-internal": True,
        "discriminator": {"propertyName": "kind"},
        "properties": {"a": {"type": "string", "xml": {"name": "A"}, "example": "x"}},
    }
    assert to_json_schema(schema) == {"type": "object", "properties": {"a": {"type": "string"}}}


def test_constraints_are_kept() -> None:
    schema = {"type": "string", "minLength": 1, "maxLength": 9, "pattern": "^a", "format": "uri"}
    assert to_json_schema(schema) == schema


def test_read_only_properties_are_not_request_arguments() -> None:
    schema = {
        "type": "object",
        "required": ["id", "name"],
        "properties": {"id": {"type": "integer", "readOnly": True}, "name": {"type": "string"}},
    }
    assert drop_read_only(schema) == {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}},
    }


def test_input_is_not_modified() -> None:
    schema = {"type": "string", "nullable": True}
    to_json_schema(schema)
    assert schema == {"type": "string", "nullable": True}
