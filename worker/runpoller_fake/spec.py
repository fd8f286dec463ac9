"""Validate JSON objects against the official OpenAI OpenAPI schemas.

The schemas are the subset extracted by ``scripts/extract_openai_schemas.py``. The spec is
OpenAPI 3.1 but still uses 3.0's ``nullable: true`` (and 2019-09's ``$recursiveRef``), which a
Draft 2020-12 validator would ignore or misread; both are rewritten once at load time so real
``null`` values validate and recursion is followed. ``oneOf`` is read as ``anyOf``: the spec
uses it for unions whose branches overlap (a plain input message matches both
``EasyInputMessage`` and ``InputMessage``), so strict exclusivity would reject what the SDK sends.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["enum_values", "problems", "schema_names", "source", "validate"]

_BASE_URI = "urn:openai-openapi"
_MAX_MESSAGE = 300
_SHALLOW = frozenset({"type", "enum", "const"})
_ANNOTATIONS = frozenset({"nullable", "description", "title", "deprecated", "default"})


def _only_nullable(node: Any) -> bool:
    return isinstance(node, dict) and node.get("nullable") is True and set(node) <= _ANNOTATIONS


def _normalise(node: Any) -> Any:
    """Rewrite ``nullable: true`` into an ``anyOf`` with ``{"type": "null"}``; oneOf as anyOf."""
    if isinstance(node, list):
        return [_normalise(item) for item in node]
    if not isinstance(node, dict):
        return node
    nullable = node.get("nullable") is True
    out = {key: _normalise(value) for key, value in node.items() if key != "nullable"}
    if "oneOf" in out and "anyOf" not in out:
        out["anyOf"] = out.pop("oneOf")
    # `allOf: [{$ref: X}, {nullable: true}]` makes the whole allOf nullable.
    all_of = node.get("allOf")
    if isinstance(all_of, list) and any(_only_nullable(item) for item in all_of):
        nullable = True
        out["allOf"] = [_normalise(item) for item in all_of if not _only_nullable(item)]
    if not nullable:
        return out
    return {"anyOf": [out, {"type": "null"}]}


def _resolve_recursive(name: str, node: Any) -> Any:
    """Turn ``$recursiveRef: "#"`` inside a ``$recursiveAnchor`` schema into a plain ``$ref``."""
    if isinstance(node, list):
        return [_resolve_recursive(name, item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "$recursiveAnchor":
            continue
        if key == "$recursiveRef" and value == "#":
            out["$ref"] = f"#/components/schemas/{name}"
        else:
            out[key] = _resolve_recursive(name, value)
    return out


@cache
def _document() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("openai_schemas.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _schemas() -> dict[str, Any]:
    raw = _document()["components"]["schemas"]
    return {
        name: _normalise(
            _resolve_recursive(name, schema) if "$recursiveAnchor" in schema else schema
        )
        for name, schema in raw.items()
    }


@cache
def _registry() -> Registry[Any]:
    document = {"components": {"schemas": _schemas()}}
    resource: Resource[Any] = DRAFT202012.create_resource(document)
    registry: Registry[Any] = Registry().with_resource(_BASE_URI, resource)
    return registry


@cache
def _validator(schema_name: str) -> Any:
    if schema_name not in _schemas():
        raise KeyError(f"unknown schema {schema_name!r}")
    ref = {"$ref": f"{_BASE_URI}#/components/schemas/{schema_name}"}
    return jsonschema.Draft202012Validator(ref, registry=_registry())


def schema_names() -> list[str]:
    """Names of the schemas available to :func:`validate`."""
    return sorted(_schemas())


def enum_values(schema_name: str) -> list[str]:
    """The ``enum`` of a top-level string schema (e.g. ``ResponseErrorCode``)."""
    values: list[str] = _document()["components"]["schemas"][schema_name]["enum"]
    return values


def source() -> dict[str, Any]:
    """Where the schemas came from (repository, commit, sha256 of the spec file)."""
    header: dict[str, Any] = _document()["x-source"]
    return header


def _pointer(path: Any) -> str:
    parts = [str(part).replace("~", "~0").replace("/", "~1") for part in path]
    return "/" + "/".join(parts)


def _relevance(error: Any) -> tuple[int, bool]:
    # A branch that failed deep inside matched the instance's shape better than one whose type
    # or const was wrong at the top.
    return (len(error.path), error.validator not in _SHALLOW)


def _tag_mismatch(error: Any) -> bool:
    """A branch refused because the object's ``type`` names another variant of the union."""
    return error.validator in ("enum", "const") and list(error.relative_path) == ["type"]


def _matching_branches(error: Any) -> list[Any]:
    """The errors of the union branches whose ``type`` tag the object matches (all, if none):
    a function tool without ``strict`` is told that, not that it is no ``file_search`` tool."""
    refused = {e.relative_schema_path[0] for e in error.context if _tag_mismatch(e)}
    kept = [e for e in error.context if e.relative_schema_path[0] not in refused]
    return kept or list(error.context)


def _tags_if_none_match(error: Any) -> tuple[Any, list[Any]] | None:
    """(the object's type, every type the union allows) when no branch's tag matches it."""
    branches: dict[Any, list[Any]] = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    allowed: list[Any] = []
    for errors in branches.values():
        tag = next((e for e in errors if _tag_mismatch(e)), None)
        if tag is None:
            return None
        values = tag.validator_value if tag.validator == "enum" else [tag.validator_value]
        allowed += [v for v in values if v not in allowed]
    return (error.instance.get("type"), allowed) if allowed else None


def _describe(error: Any) -> tuple[str, str]:
    # anyOf/oneOf failures only say "not valid under any"; the most relevant branch says why.
    path = None
    while error.context:
        tags = _tags_if_none_match(error)
        if tags is not None:
            path, message = [*error.absolute_path, "type"], f"{tags[0]!r} is not one of {tags[1]}"
            break
        error = max(_matching_branches(error), key=_relevance)
    if path is None:
        path, message = list(error.absolute_path), error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 3] + "..."
    return _pointer(path), message


def problems(schema_name: str, instance: object) -> list[tuple[str, str]]:
    """``(JSON pointer, message)`` for each problem of ``instance``; empty = valid."""
    errors = _validator(schema_name).iter_errors(instance)
    return sorted(_describe(error) for error in errors)


def validate(schema_name: str, instance: object) -> list[str]:
    """Problems of ``instance`` against ``#/components/schemas/<schema_name>``; empty = valid."""
    return [f"{pointer}: {message}" for pointer, message in problems(schema_name, instance)]
