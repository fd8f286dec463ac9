from __future__ import annotations

from typing import Any

import pytest

from runpoller_actions import convert_document, convert_text

from .helpers import SERVER, spec

GET = {"get": {"responses": {"200": {"description": "ok"}}}}


def errors_of(doc: dict[str, Any]) -> list[str]:
    result = convert_document(doc)
    assert not result.tools
    return [e.message for e in result.errors]


def test_swagger_2_is_named_and_nothing_else_is_reported() -> None:
    errors = errors_of({"swagger": "2.0", "info": {}, "paths": {}})
    assert len(errors) == 1
    assert "Swagger 2.0" in errors[0]
    assert "OpenAPI 3" in errors[0]


def test_missing_openapi_field() -> None:
    doc = spec({"/a": GET})
    del doc["openapi"]
    assert errors_of(doc) == ["not an OpenAPI document: there is no 'openapi' version field"]


@pytest.mark.parametrize("version", ["2.0", "4.0.0", "3.3.0", "three"])
def test_unsupported_version(version: str) -> None:
    errors = errors_of(spec({"/a": GET}, openapi=version))
    assert errors == [f"OpenAPI version '{version}' is not supported (3.0.x and 3.1.x are)"]


@pytest.mark.parametrize("version", ["3.0.0", "3.0.3", "3.1.0", "3.1.1", 3.1])
def test_supported_versions(version: object) -> None:
    result = convert_document(spec({"/a": GET}, openapi=version))
    assert len(result.tools) == 1


def test_openapi_3_2_is_read_as_3_1_with_a_warning() -> None:
    result = convert_document(spec({"/a": GET}, openapi="3.2.0"))
    assert len(result.tools) == 1
    assert [w.message for w in result.warnings] == ["OpenAPI 3.2.0 is read as 3.1"]


@pytest.mark.parametrize("servers", [None, [], [{}], [{"url": ""}]])
def test_no_servers(servers: object) -> None:
    doc = spec({"/a": GET}, servers=servers)
    if servers is None:
        del doc["servers"]
    (error,) = errors_of(doc)
    assert "servers" in error


@pytest.mark.parametrize("url", ["/v1", "api.example.com/v1", "//api.example.com"])
def test_relative_server_is_an_error(url: str) -> None:
    (error,) = errors_of(spec({"/a": GET}, servers=[{"url": url}]))
    assert f"server URL '{url}'" in error
    assert "relative" in error or "http" in error


def test_non_http_server_is_an_error() -> None:
    (error,) = errors_of(spec({"/a": GET}, servers=[{"url": "ftp://example.com"}]))
    assert "must use http or https" in error


def test_server_variables_use_their_defaults() -> None:
    servers = [
        {
            "url": "{scheme}://{host}/v{major}/",
            "variables": {
                "scheme": {"default": "https", "enum": ["https", "http"]},
                "host": {"default": "api.example.com"},
                "major": {"default": "2"},
            },
        }
    ]
    result = convert_document(spec({"/a": GET}, servers=servers))
    assert result.operations["get_a"].server_url == "https://api.example.com/v2"


def test_server_variable_without_default_is_an_error() -> None:
    (error,) = errors_of(spec({"/a": GET}, servers=[{"url": "https://{region}.example.com"}]))
    assert "variable 'region' with no default" in error


@pytest.mark.parametrize("paths", [None, {}, []])
def test_no_paths(paths: object) -> None:
    doc = spec({})
    doc["paths"] = paths
    if paths is None:
        del doc["paths"]
    assert errors_of(doc) == ["no paths: the spec defines no operations"]


def test_webhooks_only_document_says_so() -> None:
    doc = spec({})
    doc["webhooks"] = {"newPet": {"post": {}}}
    assert errors_of(doc) == ["no paths: the spec defines no operations (it only has webhooks)"]


def test_paths_without_operations() -> None:
    errors = errors_of(spec({"/a": {"parameters": []}}))
    assert len(errors) == 1
    assert errors[0].startswith("no operations")


def test_all_document_problems_are_reported_together() -> None:
    doc = {"openapi": "9.9", "paths": {}}
    errors = errors_of(doc)
    assert len(errors) == 3
    assert any("9.9" in e for e in errors)
    assert any("servers" in e for e in errors)
    assert any("no paths" in e for e in errors)


def test_operation_level_server_overrides_the_root() -> None:
    paths = {
        "/a": {"get": {"servers": [{"url": "https://other.example.com/"}], "responses": {}}},
        "/b": {"servers": [{"url": "https://item.example.com"}], **GET},
        "/c": GET,
    }
    ops = convert_document(spec(paths)).operations
    assert ops["get_a"].server_url == "https://other.example.com"
    assert ops["get_b"].server_url == "https://item.example.com"
    assert ops["get_c"].server_url == SERVER


def test_bad_operation_level_server_fails_only_that_operation() -> None:
    paths = {"/a": {"get": {"servers": [{"url": "/relative"}]}}, "/b": GET}
    result = convert_document(spec(paths))
    assert [t.name for t in result.tools] == ["get_b"]
    assert "relative" in result.errors[0].message


def test_path_item_ref_is_followed_and_a_broken_one_reported() -> None:
    doc = spec(
        {"/a": {"$ref": "#/x-items/A"}, "/b": {"$ref": "#/x-items/Missing"}},
        **{"x-items": {"A": GET}},
    )
    result = convert_document(doc)
    assert [t.name for t in result.tools] == ["get_a"]
    assert [e.message for e in result.errors] == [
        "path '/b': unresolvable $ref '#/x-items/Missing' (used at #/paths/~1b)"
    ]


def test_garbage_inside_a_valid_skeleton_never_raises() -> None:
    doc = spec({"/a": {"get": 5, "post": {"parameters": "nope"}, "put": {"requestBody": 3}}})
    result = convert_document(doc)
    assert [t.name for t in result.tools] == ["put_a"]
    assert len(result.errors) == 2


def test_convert_text_reports_parse_errors() -> None:
    result = convert_text("openapi: [")
    assert not result.tools
    assert result.errors[0].message.startswith("invalid YAML at line")
