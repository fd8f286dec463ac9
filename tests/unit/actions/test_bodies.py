"""Request bodies that are not JSON: forms, multipart, empty optional bodies, the rest."""

from __future__ import annotations

from typing import Any

from runpoller_actions import validate_strict
from runpoller_actions.arguments import Argument

from .helpers import convert, messages, only_tool, spec

BODY = "#/paths/~1items/post/requestBody"


def body_op(content: dict[str, Any], required: bool = True, **extra: Any) -> dict[str, Any]:
    operation = {
        "operationId": "op",
        "requestBody": {"required": required, "content": content},
        **extra,
    }
    return spec({"/items": {"post": operation}})


FIELDS = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "description": "Your name"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "age": {"type": "integer"},
    },
}


def test_form_body_fields_become_arguments_and_the_mapping_says_form() -> None:
    result = convert(body_op({"application/x-www-form-urlencoded": {"schema": FIELDS}}))
    tool = only_tool(result)
    assert tool.parameters == {
        "type": "object",
        "properties": FIELDS["properties"],
        "required": ["name"],
    }
    operation = result.operations["op"]
    assert operation.content_type == "application/x-www-form-urlencoded"
    assert operation.arguments["name"] == Argument("body", "name", True, "form", True)
    assert operation.arguments["tags"] == Argument("body", "tags", False, "form", True)
    assert result.errors == [] and result.warnings == []


def test_json_is_still_preferred_over_a_form() -> None:
    content = {
        "application/x-www-form-urlencoded": {"schema": FIELDS},
        "application/json": {"schema": FIELDS},
    }
    assert convert(body_op(content)).operations["op"].content_type == "application/json"


def test_deep_object_form_fields_keep_their_encoding() -> None:
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "address": {"anyOf": [{"type": "object", "properties": {}}, {"enum": [""]}]},
        },
    }
    encoding = {
        "metadata": {"style": "deepObject", "explode": True},
        "address": {"style": "deepObject", "explode": True},
    }
    media = {"schema": schema, "encoding": encoding}
    result = convert(body_op({"application/x-www-form-urlencoded": media}))
    args = result.operations["op"].arguments
    assert args["metadata"] == Argument("body", "metadata", False, "deepObject", True)
    assert args["address"] == Argument("body", "address", False, "deepObject", True)


def test_form_object_without_deep_object_encoding_fails_with_its_pointer() -> None:
    schema = {"type": "object", "properties": {"meta": {"type": "object"}}}
    result = convert(body_op({"application/x-www-form-urlencoded": {"schema": schema}}))
    assert not result.tools
    (error,) = result.errors
    assert error.pointer == (
        f"{BODY}/content/application~1x-www-form-urlencoded/schema/properties/meta"
    )
    assert "form field 'meta' holds objects" in error.message
    assert "deepObject" in error.message


def test_multipart_without_files_is_sent_as_multipart() -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "options": {"type": "object"}},
    }
    result = convert(body_op({"multipart/form-data": {"schema": schema}}))
    operation = result.operations["op"]
    assert operation.content_type == "multipart/form-data"
    assert operation.arguments["title"] == Argument("body", "title", False)
    assert operation.arguments["options"] == Argument(
        "body", "options", False, content_type="application/json"
    )


def test_multipart_file_part_fails_only_that_operation() -> None:
    upload = {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "purpose": {"type": "string"},
        },
    }
    doc = body_op({"multipart/form-data": {"schema": upload}})
    doc["paths"]["/other"] = {"get": {"operationId": "other"}}
    result = convert(doc)
    assert [t.name for t in result.tools] == ["other"]
    assert messages(result) == [
        f"op (POST /items) {BODY}/content/multipart~1form-data/schema/properties/file: "
        "multipart field 'file' is a file part; a function tool's arguments are JSON values, "
        "so a file cannot be sent"
    ]


def test_arrays_of_files_and_content_media_types_are_file_parts_too() -> None:
    for field in (
        {"type": "array", "items": {"type": "string", "format": "binary"}},
        {"type": "string", "contentMediaType": "image/png"},
    ):
        schema = {"type": "object", "properties": {"f": field}}
        result = convert(body_op({"multipart/form-data": {"schema": schema}}))
        assert "is a file part" in result.errors[0].message


def test_empty_optional_body_of_any_media_type_is_ignored_with_a_note() -> None:
    empty = {"type": "object", "properties": {}, "additionalProperties": False}
    doc = body_op(
        {"application/x-www-form-urlencoded": {"schema": empty}, "application/xml": {}},
        required=False,
        parameters=[{"name": "q", "in": "query", "schema": {"type": "string"}}],
    )
    result = convert(doc)
    tool = only_tool(result)
    assert list(tool.parameters["properties"]) == ["q"]
    assert result.operations["op"].content_type is None
    assert [(w.pointer, w.message) for w in result.warnings] == [
        (
            BODY,
            "the optional request body (application/x-www-form-urlencoded, application/xml) "
            "declares no fields; ignored",
        )
    ]


def test_a_required_empty_body_is_not_ignored() -> None:
    result = convert(body_op({"application/json": {"schema": {"type": "object"}}}))
    assert "body" in only_tool(result).parameters["properties"]


def test_other_media_types_fail_with_the_content_pointer() -> None:
    result = convert(body_op({"application/octet-stream": {}}))
    (error,) = result.errors
    assert error.pointer == f"{BODY}/content"
    assert "no media type a tool can send (application/octet-stream)" in error.message


def test_form_body_in_strict_mode() -> None:
    result = convert(
        body_op({"application/x-www-form-urlencoded": {"schema": FIELDS}}, **{"x-strict": True})
    )
    tool = only_tool(result)
    assert validate_strict(tool.parameters) == []
    assert tool.parameters["properties"]["age"] == {"type": ["integer", "null"]}


def test_the_mapping_lists_every_form_field_s_encoding_even_for_a_whole_body() -> None:
    # an optional body with required fields cannot be flattened: it is one argument `body`
    media = {"schema": FIELDS, "encoding": {"tags": {"style": "spaceDelimited", "explode": False}}}
    result = convert(body_op({"application/x-www-form-urlencoded": media}, required=False))
    operation = result.operations["op"]
    assert list(operation.arguments) == ["body"]
    assert operation.to_json()["encoding"] == {
        "name": {"style": "form", "explode": True},
        "tags": {"style": "spaceDelimited", "explode": False},
        "age": {"style": "form", "explode": True},
    }
    multipart = convert(body_op({"multipart/form-data": {"schema": FIELDS}}))
    assert multipart.operations["op"].to_json()["encoding"] == {"name": {}, "tags": {}, "age": {}}
    json_body = convert(body_op({"application/json": {"schema": FIELDS}}))
    assert "encoding" not in json_body.operations["op"].to_json()


def test_only_the_chosen_media_type_must_expand() -> None:
    broken = {"schema": {"$ref": "#/components/schemas/Nope"}}
    for required in (True, False):
        content = {"application/xml": broken, "application/json": {"schema": FIELDS}}
        result = convert(body_op(content, required=required))
        assert result.errors == [] and result.operations["op"].content_type == "application/json"
