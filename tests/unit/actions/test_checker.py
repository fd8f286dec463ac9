from __future__ import annotations

from typing import Any

import pytest

from runpoller_actions import validate_strict, validate_tool, validate_tools

GOOD: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "who", "pattern": "^[a-z]+$"},
        "when": {"type": ["string", "null"], "format": "date"},
        "size": {"type": "integer", "minimum": 1, "maximum": 9},
        "kind": {"enum": ["a", "b"]},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "node": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]},
        "self": {"$ref": "#"},
    },
    "required": ["name", "when", "size", "kind", "tags", "node", "self"],
    "additionalProperties": False,
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
            "required": ["next"],
            "additionalProperties": False,
        }
    },
}


def rules(schema: Any) -> list[tuple[str, str]]:
    return [(p.pointer, p.rule) for p in validate_strict(schema)]


def with_prop(prop: Any, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"x": prop},
        "required": ["x"],
        "additionalProperties": False,
        **extra,
    }


def test_a_valid_schema_has_no_problems() -> None:
    assert validate_strict(GOOD) == []


@pytest.mark.parametrize(
    "schema", [[], {"anyOf": [GOOD]}, {**GOOD, "type": "array"}, {**GOOD, "type": ["object"]}]
)
def test_root_must_be_a_plain_object(schema: Any) -> None:
    assert ("", "root-object") in rules(schema)


@pytest.mark.parametrize(
    ("prop", "expected"),
    [
        (True, ("/properties/x", "schema-object")),
        ({}, ("/properties/x", "type")),
        ({"type": "int"}, ("/properties/x/type", "type")),
        ({"type": "string", "minLength": 1}, ("/properties/x/minLength", "keyword")),
        ({"type": "string", "format": "uri"}, ("/properties/x/format", "format")),
        ({"type": "integer", "pattern": "x"}, ("/properties/x/pattern", "keyword")),
        ({"type": "string", "default": "a"}, ("/properties/x/default", "keyword")),
        ({"type": "string", "enum": []}, ("/properties/x/enum", "enum")),
        ({"type": "array"}, ("/properties/x", "items")),
        ({"allOf": [{"type": "string"}]}, ("/properties/x", "type")),
        ({"anyOf": []}, ("/properties/x/anyOf", "anyof")),
        ({"anyOf": [{"type": "string"}], "type": "string"}, ("/properties/x", "anyof")),
        ({"$ref": "#/$defs/Nope"}, ("/properties/x/$ref", "ref")),
        ({"$ref": "#/components/schemas/A"}, ("/properties/x/$ref", "ref")),
        ({"type": "string", "description": 3}, ("/properties/x/description", "description")),
    ],
)
def test_node_rules(prop: Any, expected: tuple[str, str]) -> None:
    assert expected in rules(with_prop(prop))


def test_ref_must_stand_alone() -> None:
    schema = with_prop({"$ref": "#/$defs/A", "description": "d"}, **{"$defs": {"A": chain(1)}})
    assert rules(schema) == [("/properties/x", "ref")]


@pytest.mark.parametrize(
    ("obj", "rule"),
    [
        ({"type": "object", "properties": {}, "required": []}, "additional-properties"),
        (
            {"type": "object", "properties": {}, "required": [], "additionalProperties": True},
            "additional-properties",
        ),
        ({"type": "object", "required": [], "additionalProperties": False}, "properties"),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "additionalProperties": False,
            },
            "required",
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": [],
                "additionalProperties": False,
            },
            "required",
        ),
        (
            {
                "type": "object",
                "properties": {},
                "required": ["ghost"],
                "additionalProperties": False,
            },
            "required",
        ),
    ],
)
def test_object_rules_apply_at_depth(obj: dict[str, Any], rule: str) -> None:
    assert ("/properties/x", rule) in rules(with_prop(obj)) or (
        "/properties/x/required",
        rule,
    ) in rules(with_prop(obj))


def test_defs_only_at_the_root() -> None:
    inner = {**GOOD, "$defs": {}}
    assert ("/properties/x/$defs", "defs") in rules(with_prop(inner, **{"$defs": GOOD["$defs"]}))


def chain(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(levels):
        schema = with_prop(schema)
    return schema


def test_nesting_limit() -> None:
    assert validate_strict(chain(10)) == []
    assert rules(chain(11)) == [("", "max-depth")]


def test_arrays_count_as_a_level() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5):
        schema = {"type": "array", "items": with_prop(schema)}
    assert rules(with_prop(schema)) == [("", "max-depth")]


def test_property_limit() -> None:
    props = {f"p{i}": {"type": "string"} for i in range(5001)}
    schema = {
        "type": "object",
        "properties": props,
        "required": list(props),
        "additionalProperties": False,
    }
    assert rules(schema) == [("", "max-properties")]


def test_enum_limits() -> None:
    assert rules(with_prop({"enum": list(range(1001))})) == [("", "max-enum-values")]
    long_values = ["v" * 61 + str(i) for i in range(251)]
    assert rules(with_prop({"enum": long_values})) == [("/properties/x/enum", "big-enum")]


def test_character_budget_counts_names_and_values() -> None:
    schema = with_prop({"enum": ["x" * 60_000, "y" * 60_000]})
    assert rules(schema) == [("", "max-chars")]


@pytest.mark.parametrize("junk", [None, 3, "s", [1, {}], {"properties": 5}, {"type": []}])
def test_never_raises_on_junk(junk: Any) -> None:
    validate_strict(junk)
    validate_strict(with_prop(junk))


def tool(**fields: Any) -> dict[str, Any]:
    body = {"name": "ok_name-1", "description": "d", "parameters": GOOD, "strict": True}
    return {"type": "function", "function": {**body, **fields}}


def found(problems: list[Any]) -> list[tuple[str, str]]:
    return [(p.pointer, p.rule) for p in problems]


def test_a_good_tool_in_both_shapes() -> None:
    assert validate_tool(tool()) == []
    assert validate_tool({"type": "function", **tool()["function"]}) == []


def test_tool_name_description_and_strict_parameters() -> None:
    assert found(validate_tool(tool(name="a.b"))) == [("/name", "name")]
    assert found(validate_tool(tool(name="x" * 65))) == [("/name", "name")]
    assert found(validate_tool(tool(description="x" * 1025))) == [
        ("/description", "description-length")
    ]
    loose = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert found(validate_tool(tool(parameters=loose))) == [
        ("/parameters", "additional-properties"),
        ("/parameters", "required"),
    ]
    assert validate_tool(tool(parameters=loose, strict=False)) == []


def test_tools_per_request_and_duplicate_names() -> None:
    many = [tool(name=f"t{i}") for i in range(129)]
    assert found(validate_tools(many)) == [("", "max-tools")]
    assert validate_tools(many[:128]) == []
    assert found(validate_tools([tool(), tool()])) == [("/1/name", "name")]
