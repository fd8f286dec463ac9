from __future__ import annotations

from typing import Any

from runpoller_actions.arguments import Argument, Source, merge_arguments

from .helpers import convert, messages, only_tool, spec


def param(name: str, where: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": {"type": "string"}, **extra}


def operation(**fields: Any) -> dict[str, Any]:
    return spec({"/items/{id}": {"post": {"operationId": "op", **fields}}})


def json_body(schema: Any, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def test_parameters_and_body_properties_share_one_object() -> None:
    doc = operation(
        parameters=[param("id", "path"), param("verbose", "query")],
        requestBody=json_body(
            {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
        ),
    )
    result = convert(doc)
    tool = only_tool(result)
    assert list(tool.parameters["properties"]) == ["id", "verbose", "name"]
    assert tool.parameters["required"] == ["id", "name"]
    args = result.operations["op"].arguments
    assert args["id"] == Argument("path", "id", True, "simple", False)
    assert args["verbose"] == Argument("query", "verbose", False, "form", True)
    assert args["name"] == Argument("body", "name", True)


def test_body_property_never_overwrites_a_parameter() -> None:
    doc = operation(
        parameters=[param("id", "path", description="path id")],
        requestBody=json_body(
            {"type": "object", "properties": {"id": {"type": "integer"}, "name": {}}}
        ),
    )
    result = convert(doc)
    props = only_tool(result).parameters["properties"]
    assert props["id"] == {"description": "path id", "type": "string"}
    assert props["body_id"] == {"type": "integer"}
    assert result.operations["op"].arguments["body_id"] == Argument("body", "id", False)
    assert any(
        "argument name 'id' is used by the path parameter 'id' and the body property 'id'; "
        "the latter is exposed as 'body_id'" in m
        for m in messages(result, "warnings")
    )


def test_collision_priority_does_not_depend_on_declaration_order() -> None:
    sources = [
        Source(Argument("body", "id", False), {"type": "integer"}),
        Source(Argument("header", "id", False), {"type": "string"}),
        Source(Argument("query", "id", False), {"type": "boolean"}),
    ]
    merged = merge_arguments(sources)
    assert list(merged.properties) == ["body_id", "header_id", "id"]
    assert merged.arguments["id"].location == "query"
    assert len(merged.notes) == 2


def test_renamed_argument_does_not_take_a_name_someone_asked_for() -> None:
    sources = [
        Source(Argument("path", "id", True), {}),
        Source(Argument("query", "id", False), {}),
        Source(Argument("body", "query_id", False), {}),
    ]
    merged = merge_arguments(sources)
    assert list(merged.properties) == ["id", "query_id_2", "query_id"]
    assert merged.arguments["query_id"].location == "body"


def test_operation_parameters_replace_path_item_parameters() -> None:
    doc = spec(
        {
            "/a": {
                "parameters": [param("q", "query", description="path level"), param("h", "header")],
                "get": {
                    "operationId": "op",
                    "parameters": [param("q", "query", description="operation level")],
                },
            }
        }
    )
    props = only_tool(convert(doc)).parameters["properties"]
    assert props == {
        "q": {"description": "operation level", "type": "string"},
        "h": {"type": "string"},
    }


def test_duplicate_parameter_is_an_error() -> None:
    result = convert(operation(parameters=[param("q", "query"), param("q", "query")]))
    assert messages(result) == ["op (POST /items/{id}): parameter 'q' in query is declared twice"]


def test_reserved_headers_are_skipped_with_a_warning() -> None:
    result = convert(operation(parameters=[param("Accept", "header"), param("X-Trace", "header")]))
    assert list(only_tool(result).parameters["properties"]) == ["X-Trace", "id"]
    assert any("'Accept' is ignored" in m for m in messages(result, "warnings"))


def test_undeclared_path_parameter_is_added_as_a_string() -> None:
    result = convert(operation())
    assert only_tool(result).parameters == {
        "type": "object",
        "properties": {"id": {"type": "string"}},
        "required": ["id"],
    }
    assert any("'id' is not declared" in m for m in messages(result, "warnings"))


def test_optional_body_with_required_fields_is_wrapped() -> None:
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "string"}}}
    result = convert(
        operation(parameters=[param("id", "path")], requestBody=json_body(schema, False))
    )
    params = only_tool(result).parameters
    assert params["properties"]["body"] == schema
    assert params["required"] == ["id"]
    assert result.operations["op"].arguments["body"] == Argument("body", None, False)


def test_optional_body_without_required_fields_is_flattened() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    result = convert(
        operation(parameters=[param("id", "path")], requestBody=json_body(schema, False))
    )
    assert list(only_tool(result).parameters["properties"]) == ["id", "a"]


def test_array_body_is_one_argument_with_the_body_description() -> None:
    body = json_body({"type": "array", "items": {"type": "string"}})
    body["description"] = "names to add"
    result = convert(operation(parameters=[param("id", "path")], requestBody=body))
    assert only_tool(result).parameters["properties"]["body"] == {
        "description": "names to add",
        "type": "array",
        "items": {"type": "string"},
    }
    assert only_tool(result).parameters["required"] == ["id", "body"]


def test_map_body_is_not_flattened() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}}
    result = convert(operation(parameters=[param("id", "path")], requestBody=json_body(schema)))
    assert only_tool(result).parameters["properties"]["body"] == schema


def test_first_json_media_type_wins_and_is_recorded() -> None:
    body = {
        "content": {
            "application/xml": {"schema": {"type": "object"}},
            "application/merge-patch+json": {"schema": {"type": "object", "properties": {}}},
        },
        "required": True,
    }
    result = convert(operation(parameters=[param("id", "path")], requestBody=body))
    assert result.operations["op"].content_type == "application/merge-patch+json"


def test_a_body_no_tool_can_send_is_a_clear_error_with_its_pointer() -> None:
    body = {
        "required": True,
        "content": {"application/xml": {"schema": {"type": "object"}}, "text/plain": {}},
    }
    result = convert(operation(parameters=[param("id", "path")], requestBody=body))
    assert messages(result) == [
        "op (POST /items/{id}) #/paths/~1items~1{id}/post/requestBody/content: the request "
        "body has no media type a tool can send (application/xml, text/plain); supported: "
        "JSON, application/x-www-form-urlencoded, and multipart/form-data without file parts"
    ]


def test_parameter_with_content_instead_of_schema() -> None:
    filt = {
        "name": "filter",
        "in": "query",
        "content": {"application/json": {"schema": {"type": "object", "properties": {}}}},
    }
    result = convert(operation(parameters=[param("id", "path"), filt]))
    assert result.operations["op"].arguments["filter"].to_json() == {
        "in": "query",
        "name": "filter",
        "required": False,
        "content_type": "application/json",
    }


def test_invalid_parameters_are_reported() -> None:
    result = convert(operation(parameters=[{"in": "query"}]))
    assert "has no 'name'" in messages(result)[0]
    result = convert(operation(parameters=[{"name": "x", "in": "body"}]))
    assert "expected path, query, header or cookie" in messages(result)[0]
