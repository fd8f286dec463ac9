from __future__ import annotations

from typing import Any

import pytest

from runpoller_actions.refs import Expander, RefError, follow
from runpoller_actions.walk import ORIGIN, strip_origins

from .helpers import body_spec, convert, only_tool

ROOT: dict[str, Any] = {
    "components": {
        "schemas": {
            "Name": {"type": "string", "minLength": 1},
            "Pet": {
                "type": "object",
                "properties": {"name": {"$ref": "#/components/schemas/Name"}},
            },
            "Owner": {
                "type": "object",
                "properties": {
                    "pets": {"type": "array", "items": {"$ref": "#/components/schemas/Pet"}}
                },
            },
            "Node": {
                "type": "object",
                "properties": {
                    "value": {"type": "integer"},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                },
            },
            "A": {"type": "object", "properties": {"b": {"$ref": "#/components/schemas/B"}}},
            "B": {"type": "object", "properties": {"a": {"$ref": "#/components/schemas/A"}}},
            "Tree": {
                "$recursiveAnchor": True,
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$recursiveRef": "#"}}},
            },
            "a/b~c": {"type": "boolean"},
        }
    }
}


def expand(schema: Any) -> tuple[Any, dict[str, Any]]:
    expander = Expander(ROOT)
    return strip_origins(expander.expand(schema, "#/test")), strip_origins(expander.defs)


def test_every_expanded_node_records_where_it_is_in_the_spec() -> None:
    expanded = Expander(ROOT).expand({"$ref": "#/components/schemas/Owner"}, "#/test")
    assert expanded[ORIGIN] == "#/components/schemas/Owner"
    pets = expanded["properties"]["pets"]
    assert pets[ORIGIN] == "#/components/schemas/Owner/properties/pets"
    assert pets["items"][ORIGIN] == "#/components/schemas/Pet"
    assert pets["items"]["properties"]["name"][ORIGIN] == "#/components/schemas/Name"


def test_local_ref_is_inlined() -> None:
    assert expand({"$ref": "#/components/schemas/Name"}) == (
        {"type": "string", "minLength": 1},
        {},
    )


def test_nested_refs_are_inlined_all_the_way_down() -> None:
    out, defs = expand({"$ref": "#/components/schemas/Owner"})
    assert out["properties"]["pets"]["items"]["properties"]["name"] == {
        "type": "string",
        "minLength": 1,
    }
    assert defs == {}


def test_escaped_pointer_tokens() -> None:
    assert expand({"$ref": "#/components/schemas/a~1b~0c"})[0] == {"type": "boolean"}


def test_recursive_schema_becomes_defs() -> None:
    out, defs = expand({"$ref": "#/components/schemas/Node"})
    assert out["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert defs["Node"]["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert defs["Node"]["properties"]["value"] == {"type": "integer"}


def test_mutual_recursion_terminates_with_one_definition() -> None:
    out, defs = expand({"$ref": "#/components/schemas/A"})
    assert out["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}
    assert list(defs) == ["A"]
    assert defs["A"]["properties"]["b"]["properties"]["a"] == {"$ref": "#/$defs/A"}


def test_recursive_ref_from_2019_09_points_at_the_enclosing_schema() -> None:
    out, defs = expand({"$ref": "#/components/schemas/Tree"})
    assert out["properties"]["kids"]["items"] == {"$ref": "#/$defs/Tree"}
    assert "$recursiveAnchor" not in out
    assert defs["Tree"]["properties"]["kids"]["items"] == {"$ref": "#/$defs/Tree"}


def test_annotation_siblings_override_the_target() -> None:
    out, _ = expand({"$ref": "#/components/schemas/Name", "description": "the pet's name"})
    assert out == {"type": "string", "minLength": 1, "description": "the pet's name"}


def test_constraint_siblings_become_all_of() -> None:
    out, _ = expand({"$ref": "#/components/schemas/Name", "maxLength": 5})
    assert out == {"allOf": [{"type": "string", "minLength": 1}, {"maxLength": 5}]}


def test_unresolvable_ref_names_it_and_where_it_was_used() -> None:
    with pytest.raises(RefError) as info:
        expand({"properties": {"x": {"$ref": "#/components/schemas/Missing"}}})
    assert str(info.value) == (
        "unresolvable $ref '#/components/schemas/Missing' (used at #/test/properties/x)"
    )


def test_unresolvable_ref_inside_a_component_points_into_the_component() -> None:
    root = {"components": {"schemas": {"P": {"properties": {"q": {"$ref": "#/nope"}}}}}}
    with pytest.raises(RefError, match=r"used at #/components/schemas/P/properties/q"):
        Expander(root).expand({"$ref": "#/components/schemas/P"}, "#/x")


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("other.yaml#/Pet", "external \\$ref 'other.yaml#/Pet' is not supported"),
        ("https://example.com/s.json", "external"),
        (5, "must be a string"),
    ],
)
def test_bad_refs(ref: Any, message: str) -> None:
    with pytest.raises(RefError, match=message):
        expand({"$ref": ref})


def test_follow_resolves_chains_and_detects_loops() -> None:
    root = {
        "components": {
            "parameters": {
                "P": {"$ref": "#/components/parameters/Q"},
                "Q": {"name": "q", "in": "query"},
                "L": {"$ref": "#/components/parameters/L"},
            }
        }
    }
    node, where = follow(root, {"$ref": "#/components/parameters/P"}, "#/here")
    assert node == {"name": "q", "in": "query"}
    assert where == "#/components/parameters/Q"
    with pytest.raises(RefError, match="loop"):
        follow(root, {"$ref": "#/components/parameters/L"}, "#/here")


def test_unresolvable_ref_fails_only_its_operation() -> None:
    doc = body_spec({"$ref": "#/components/schemas/Nope"})
    doc["paths"]["/other"] = {"get": {"operationId": "fine"}}
    result = convert(doc)
    assert [t.name for t in result.tools] == ["fine"]
    (error,) = result.errors
    assert error.operation == "create"
    assert error.where == "POST /items"
    assert "unresolvable $ref '#/components/schemas/Nope'" in error.message
    assert "#/paths/~1items/post/requestBody/content/application~1json/schema" in error.message


def test_recursive_body_puts_defs_at_the_parameters_root() -> None:
    doc = body_spec({"$ref": "#/components/schemas/Node"}, components=ROOT["components"])
    params = only_tool(convert(doc)).parameters
    assert params["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
    assert set(params["$defs"]) == {"Node"}
