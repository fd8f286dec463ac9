"""Small builders for specs, so each test shows only the part it is about."""

from __future__ import annotations

from typing import Any

from runpoller_actions import Conversion, Tool, convert_document

SERVER = "https://api.example.com/v1"


def spec(paths: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A minimal valid OpenAPI 3.1 document around `paths`."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Test API", "version": "1"},
        "servers": [{"url": SERVER}],
        "paths": paths,
    }
    doc.update(extra)
    return doc


def body_spec(
    schema: Any, *, strict: bool | None = None, required: bool = True, **extra: Any
) -> dict[str, Any]:
    """One `POST /items` operation (operationId `create`) whose JSON body is `schema`."""
    operation: dict[str, Any] = {
        "operationId": "create",
        "requestBody": {"required": required, "content": {"application/json": {"schema": schema}}},
        "responses": {"200": {"description": "ok"}},
    }
    if strict is not None:
        operation["x-strict"] = strict
    return spec({"/items": {"post": operation}}, **extra)


def convert(doc: dict[str, Any], **kwargs: Any) -> Conversion:
    """Convert and fail loudly if anything raised."""
    return convert_document(doc, **kwargs)


def only_tool(result: Conversion) -> Tool:
    """The single tool of a one-operation spec (with the errors in the failure message)."""
    assert len(result.tools) == 1, [e.message for e in result.errors]
    return result.tools[0]


def messages(result: Conversion, kind: str = "errors") -> list[str]:
    """Rendered warnings or errors, for `in` checks."""
    return [d.render() for d in getattr(result, kind)]
