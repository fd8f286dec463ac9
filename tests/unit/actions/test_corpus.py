"""Every real spec in ../shared/corpus (and OpenAI's own) through the converter.

Plain and with `x-strict: true` added to every operation, both output formats: no internal
error, every tool passes the independent checker, tool counts stay above floors, and
LibreChat's own expectations for its test specs hold. Specs are parsed once per session.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from runpoller_actions import (
    FORMATS,
    Conversion,
    convert_document,
    validate_strict,
    validate_tool,
)
from runpoller_actions.convert import with_positions
from runpoller_actions.document import HTTP_METHODS
from runpoller_actions.loader import SpecLoadError, parse_spec
from runpoller_actions.walk import ORIGIN

SHARED = Path(__file__).resolve().parents[3].parent / "shared"
OPENAPI = SHARED / "corpus" / "openapi"
LIBRECHAT = SHARED / "corpus" / "librechat" / "specs"
OPENAI = SHARED / "openai-openapi" / "openapi.yaml"
SPECS = [*sorted(OPENAPI.iterdir()), OPENAI, *sorted(LIBRECHAT.iterdir())]

# Plain tool floors (issue 18). OpenAI's is 279, not the issue's 284: 9 of its 288
# operations have only a multipart body with a required file part, which fails by design.
FLOORS = {
    "stripe-spec3-2022-02-08.json": 390,
    "box-openapi.json": 292,
    "asana_oas.yaml": 246,
    "openapi.yaml": 279,
}


@functools.cache
def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


@functools.cache
def parsed(path: Path) -> dict[str, Any] | None:
    try:
        return parse_spec(text_of(path))
    except SpecLoadError:
        return None


def all_strict(root: dict[str, Any]) -> dict[str, Any]:
    """The spec with `x-strict: true` on every operation (copies only what changes)."""
    paths = root.get("paths")
    if not isinstance(paths, dict):
        return root
    new_paths = {
        path: {
            key: {**node, "x-strict": True}
            if key in HTTP_METHODS and isinstance(node, dict)
            else node
            for key, node in item.items()
        }
        if isinstance(item, dict)
        else item
        for path, item in paths.items()
    }
    return {**root, "paths": new_paths}


@functools.cache
def converted(path: Path, strict: bool) -> Conversion:
    root = parsed(path)
    assert root is not None, path
    return convert_document(all_strict(root) if strict else root)


def big(path: Path) -> bool:
    return path.name in FLOORS


@pytest.mark.parametrize("strict", [False, True], ids=["plain", "strict"])
@pytest.mark.parametrize("path", [p for p in SPECS if p.suffix != ".txt"], ids=lambda p: p.name)
def test_every_spec_converts_without_internal_errors(path: Path, strict: bool) -> None:
    if parsed(path) is None:
        pytest.fail(f"{path.name} does not parse")
    result = converted(path, strict)
    assert not [e for e in result.errors if "internal error" in e.message]
    failed = {e.operation for e in result.errors if e.operation}
    assert len(result.tools) + len(failed) == result.total
    for tool in result.tools:
        assert tool.strict is strict
        if strict:
            assert validate_strict(tool.parameters) == [], tool.name
    for fmt in FORMATS:
        document = result.to_json(fmt)
        assert [p for tool in document["tools"] for p in validate_tool(tool)] == []
        assert ORIGIN not in json.dumps(document)  # the private origin key never leaks


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_tool_count_floors(name: str) -> None:
    path = OPENAI if name == "openapi.yaml" else OPENAPI / name
    assert len(converted(path, False).tools) >= FLOORS[name]


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_strict_has_no_type_next_to_any_of_failures_left(name: str) -> None:
    path = OPENAI if name == "openapi.yaml" else OPENAPI / name
    result = converted(path, True)
    assert not [e for e in result.errors if "next to anyOf has no strict form" in e.message]
    # every operation-level failure points into the spec
    assert all(e.pointer and e.pointer.startswith("#/") for e in result.errors if e.operation)


def test_the_issue_s_real_patterns_now_convert_strictly() -> None:
    openai = {t.name for t in converted(OPENAI, True).tools}
    assert {"createChatCompletion", "createAssistant", "createVectorStore"} <= openai
    stripe = converted(OPENAPI / "stripe-spec3-2022-02-08.json", False)
    assert stripe.operations["PostAccounts"].content_type == "application/x-www-form-urlencoded"
    assert stripe.operations["PostAccounts"].arguments["metadata"].style == "deepObject"
    ignored = [w for w in stripe.warnings if "declares no fields; ignored" in w.message]
    assert len(ignored) == 215


def test_swagger_2_is_named_and_positions_are_found() -> None:
    result = converted(OPENAPI / "stripe-spec2-swagger-2020-04.json", False)
    assert [e.message[:40] for e in result.errors] == ["this is a Swagger 2.0 document; only Ope"]
    box = OPENAPI / "box-openapi.json"
    placed = with_positions(converted(box, False), text_of(box))
    assert placed.errors and all(e.line for e in placed.errors)


# LibreChat's expectations (packages/data-provider/specs/actions.spec.ts and the form spec).


def librechat(name: str) -> Conversion:
    return converted(LIBRECHAT / name, False)


def props(result: Conversion, tool: str) -> tuple[dict[str, Any], list[str]]:
    (found,) = [t for t in result.tools if t.name == tool]
    return found.parameters["properties"], found.parameters.get("required", [])


def test_librechat_form_spec_gives_a_form_encoded_submit_form() -> None:
    result = librechat("formOpenAPISpec.json")
    properties, required = props(result, "SubmitForm")
    assert properties == {
        "entry.123": {"type": "string", "description": "Name"},
        "entry.456": {"type": "string", "description": "Address"},
    }
    assert required == []
    operation = result.operations["SubmitForm"]
    assert operation.method == "POST"
    assert operation.to_json()["url"] == "https://docs.google.com/forms/formResponse"
    assert operation.content_type == "application/x-www-form-urlencoded"
    assert operation.arguments["entry.123"].location == "body"


def test_librechat_weather_spec() -> None:
    properties, required = props(librechat("getWeatherOpenapiSpec.json"), "GetCurrentWeather")
    assert properties["location"]["type"] == "string" and "location" in required
    locations = properties["locations"]
    assert "locations" not in required
    assert locations["description"] == "A list of locations to retrieve the weather for."
    assert locations["type"] == "array" and locations["items"]["type"] == "object"
    items = locations["items"]
    assert {k: v["type"] for k, v in items["properties"].items()} == {
        "city": "string",
        "state": "string",
        "countryCode": "string",
        "time": "string",
    }
    assert "time" not in items.get("required", [])


def test_librechat_whimsical_scholar_swapi_and_param_ref_specs() -> None:
    whimsical = librechat("whimsicalOpenapiSpec.json")
    properties, required = props(whimsical, "postRenderFlowchart")
    assert properties["mermaid"]["type"] == "string" and required == ["mermaid"]
    assert properties["title"]["type"] == "string"
    flow = whimsical.operations["postRenderFlowchart"]
    assert (flow.method, flow.path) == ("POST", "/ai.chatgpt.render-flowchart")

    scholar = librechat("scholarAIOpenapiSpec.yaml")
    assert [t.name for t in scholar.tools] == ["searchAbstracts", "getFullText", "saveCitation"]
    search, required = props(scholar, "searchAbstracts")
    assert set(required) == {"keywords", "query"}
    assert search["sort"]["enum"] == ["cited_by_count", "publication_date"]
    assert {"peer_reviewed_only", "start_year", "end_year", "offset"} <= set(search)
    full, required = props(scholar, "getFullText")
    assert required == ["pdf_url"] and full["chunk"]["type"] == "number"
    _, required = props(scholar, "saveCitation")
    assert required == ["doi", "zotero_user_id", "zotero_api_key"]

    swapi = librechat("swapidev.yaml")
    assert props(swapi, "getPeople") == ({}, [])
    person, required = props(swapi, "getPersonById")
    assert person["id"]["type"] == "string" and required == ["id"]

    point, required = props(librechat("weatherSpec_paramRef.json"), "getPoint")
    assert required == ["point"]
    assert point["point"]["pattern"] == r"^(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$"


def test_librechat_invalid_specs_are_refused_with_a_reason() -> None:
    # LibreChat: "Could not find a valid URL in `servers`" / "No paths found ...".
    assert "no servers" in librechat("noServerSpec.json").errors[0].message
    assert "has no 'url'" in librechat("emptyURLSpec.json").errors[0].message
    assert "no paths" in librechat("noPathsSpec.json").errors[0].message
    assert parsed(LIBRECHAT / "invalidSpec.txt") is None
    # LibreChat accepts an unknown $ref in a response (a warning there); responses are unused
    assert len(librechat("missingComponentSpec.json").tools) == 1
    # the cloud-metadata server converts, with a warning for whoever executes it
    metadata = librechat("maliciousSpec_metadata.json")
    assert any("link-local" in w.message for w in metadata.warnings)
