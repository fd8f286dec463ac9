from __future__ import annotations

import json
from typing import Any

import pytest

from runpoller_actions import convert_document, convert_text, validate_strict

from .helpers import SERVER, body_spec, convert, messages, spec

BODY = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "note": {"type": "string"}},
}


def op(**fields: Any) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": BODY}}},
        **fields,
    }


def strict_flags(doc: dict[str, Any]) -> dict[str, bool]:
    return {t.name: t.strict for t in convert(doc).tools}


def test_x_strict_on_the_operation() -> None:
    doc = spec(
        {
            "/a": {"post": op(operationId="on", **{"x-strict": True})},
            "/b": {"post": op(operationId="off")},
        }
    )
    assert strict_flags(doc) == {"on": True, "off": False}


def test_root_and_path_defaults_and_operation_override() -> None:
    doc = spec(
        {
            "/a": {"post": op(operationId="root_default")},
            "/b": {"x-strict": False, "post": op(operationId="path_off")},
            "/c": {"x-strict": False, "post": op(operationId="op_on", **{"x-strict": True})},
            "/d": {"post": op(operationId="op_off", **{"x-strict": False})},
        },
        **{"x-strict": True},
    )
    assert strict_flags(doc) == {
        "root_default": True,
        "path_off": False,
        "op_on": True,
        "op_off": False,
    }


def test_default_strict_argument_is_the_last_fallback() -> None:
    doc = spec({"/a": {"post": op(operationId="a")}})
    assert convert_document(doc, default_strict=True).tools[0].strict is True
    doc["x-strict"] = False
    assert convert_document(doc, default_strict=True).tools[0].strict is False


def test_non_boolean_x_strict_is_ignored_with_a_warning() -> None:
    doc = spec({"/a": {"post": op(operationId="a", **{"x-strict": "true"})}}, **{"x-strict": 1})
    result = convert(doc)
    assert result.tools[0].strict is False
    assert "root 'x-strict' is not true or false; ignored" in messages(result, "warnings")
    assert any("operation 'x-strict' is not true" in m for m in messages(result, "warnings"))


def test_strict_tool_shape_in_both_formats() -> None:
    result = convert(body_spec(BODY, strict=True))
    assistants = result.to_json("assistants")["tools"][0]
    responses = result.to_json("responses")["tools"][0]
    assert assistants["type"] == responses["type"] == "function"
    assert assistants["function"] == {k: v for k, v in responses.items() if k != "type"}
    assert responses["strict"] is True
    assert responses["parameters"] == {
        "type": "object",
        "properties": {"name": {"type": "string"}, "note": {"type": ["string", "null"]}},
        "required": ["name", "note"],
        "additionalProperties": False,
    }


def test_json_output_has_exactly_the_documented_keys() -> None:
    out = convert(body_spec(BODY)).to_json()
    assert list(out) == ["tools", "operations", "warnings", "errors"]
    assert out["operations"]["create"] == {
        "method": "POST",
        "server_url": SERVER,
        "path": "/items",
        "url": SERVER + "/items",
        "operation_id": "create",
        "content_type": "application/json",
        "strict": False,
        "arguments": {
            "name": {"in": "body", "name": "name", "required": True},
            "note": {"in": "body", "name": "note", "required": False},
        },
    }
    json.dumps(out)


def test_one_bad_operation_does_not_stop_the_others() -> None:
    doc = spec(
        {
            "/good": {"get": {"operationId": "good"}},
            "/bad": {"post": op(operationId="bad", parameters=[{"$ref": "#/nowhere"}])},
            "/form": {
                "post": {
                    "operationId": "form",
                    "requestBody": {"content": {"text/plain": {"schema": {"type": "string"}}}},
                }
            },
        }
    )
    result = convert(doc)
    assert [t.name for t in result.tools] == ["good"]
    assert [e.operation for e in result.errors] == ["bad", "form"]
    assert result.ok


def test_all_operations_failing_means_not_ok() -> None:
    result = convert(spec({"/a": {"get": "nope"}}))
    assert not result.ok
    assert messages(result) == ["get_a (GET /a): the operation is not an object"]


def test_absurdly_deep_schema_is_an_error_not_a_crash() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"x": schema}}
    result = convert(body_spec(schema))
    assert "nested too deeply" in messages(result)[0]


def test_empty_parameters_object_for_an_operation_without_inputs() -> None:
    result = convert(spec({"/ping": {"get": {"x-strict": True}}}))
    (tool,) = result.tools
    assert tool.parameters == {
        "type": "object",
        "properties": {},
        "required": [],
        "additionalProperties": False,
    }
    assert validate_strict(tool.parameters) == []
    assert tool.description == "GET /ping"


@pytest.mark.parametrize("fmt", ["assistants", "responses"])
def test_text_entry_point(fmt: str) -> None:
    text = json.dumps(body_spec(BODY, strict=True))
    out = convert_text(text).to_json(fmt)  # type: ignore[arg-type]
    assert len(out["tools"]) == 1
    assert out["errors"] == []


def test_a_converter_bug_in_one_operation_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import runpoller_actions.convert as module
    from runpoller_actions.operation import build_operation as real

    def flaky(doc: Any, raw: Any) -> Any:
        if raw.path == "/boom":
            raise KeyError("surprise")
        return real(doc, raw)

    monkeypatch.setattr(module, "build_operation", flaky)
    result = convert(spec({"/boom": {"get": {}}, "/fine": {"get": {}}}))
    assert [t.name for t in result.tools] == ["get_fine"]
    assert messages(result) == [
        "get_boom (GET /boom): internal error while converting (KeyError: 'surprise'); "
        "please report it with the spec"
    ]


def test_path_with_a_query_or_fragment_is_a_warning() -> None:
    doc = spec({"/responses?beta=true": {"post": op()}, "/token#refresh": {"get": op()}})
    found = [w.message for w in convert(doc).warnings if "query or fragment" in w.message]
    assert len(found) == 2
    assert found[0].startswith("path '/responses?beta=true' contains a query or fragment")


def test_more_tools_than_one_request_accepts_is_a_warning() -> None:
    paths = {f"/p{i}": {"get": {"operationId": f"p{i}"}} for i in range(129)}
    result = convert(spec(paths))
    assert len(result.tools) == 129
    assert messages(result, "warnings") == [
        "129 tools: one API request accepts at most 128; send a subset"
    ]
    assert convert(spec(dict(list(paths.items())[:128]))).warnings == []


def test_server_on_a_link_local_address_is_a_warning() -> None:
    doc = spec({"/": {"get": op()}}, servers=[{"url": "http://169.254.169.254/latest/"}])
    assert messages(convert(doc), "warnings") == [
        "server URL 'http://169.254.169.254/latest' is a link-local address (169.254.169.254); "
        "an executor should refuse to call it unless that is intended"
    ]
