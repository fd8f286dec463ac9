"""One OpenAPI operation → the (non-strict) parameters schema and the call mapping.

Parameters come from the path item and the operation (the operation's win for the same
name and location, as OpenAPI says). The request body must have a JSON media type. An
object body is flattened into the arguments when that loses nothing: when the body is
required, or has no required properties of its own. Any other body (array, scalar, union,
map, or an optional body with required fields) becomes one argument, `body`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runpoller_actions import pointer
from runpoller_actions.allof import merge_all_of
from runpoller_actions.arguments import Argument, Source, merge_arguments
from runpoller_actions.diagnostics import Note, OperationError
from runpoller_actions.dialect import drop_read_only, to_json_schema
from runpoller_actions.document import RawOperation, SpecDocument, server_url
from runpoller_actions.refs import Expander, RefError, follow

IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}


@dataclass(frozen=True)
class BuiltOperation:
    """What the converter needs from one operation, before the strict rewrite."""

    parameters: dict[str, Any]
    arguments: dict[str, Argument]
    server_url: str
    content_type: str | None
    notes: list[Note] = field(default_factory=list)


def _schema(expander: Expander, raw: Any, where: str) -> Any:
    """Expanded, JSON-Schema-dialect, allOf-merged form of a schema in the spec."""
    try:
        expanded = expander.expand(raw, where)
    except RefError as exc:
        raise OperationError(str(exc)) from None
    return merge_all_of(to_json_schema(expanded))


def _server(doc: SpecDocument, raw: RawOperation) -> str:
    for owner, where in ((raw.node, "the operation"), (raw.path_item, "the path item")):
        servers = owner.get("servers")
        if isinstance(servers, list) and servers:
            try:
                return server_url(servers, where)
            except ValueError as exc:
                raise OperationError(str(exc)) from None
    return doc.server_url


def _parameters(doc: SpecDocument, raw: RawOperation) -> list[tuple[Mapping[str, Any], str]]:
    """Resolved parameter objects; the operation's replace the path item's of the same key."""
    chosen: dict[tuple[str, str], tuple[Mapping[str, Any], str]] = {}
    item_pointer = raw.pointer.rsplit("/", 1)[0]
    for owner, base in ((raw.path_item, item_pointer), (raw.node, raw.pointer)):
        listed = owner.get("parameters")
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise OperationError(f"'parameters' must be a list (at {base}/parameters)")
        seen: set[tuple[str, str]] = set()
        for index, item in enumerate(listed):
            where = pointer.join(base, "parameters", index)
            try:
                param, where = follow(doc.root, item, where)
            except RefError as exc:
                raise OperationError(str(exc)) from None
            name, location = (
                (param.get("name"), param.get("in")) if isinstance(param, Mapping) else (None, None)
            )
            if not isinstance(name, str) or not name:
                raise OperationError(f"parameter at {where} has no 'name'")
            if location not in _DEFAULT_STYLE:
                raise OperationError(
                    f"parameter '{name}' has 'in: {location}'; expected path, query, header "
                    "or cookie"
                )
            assert isinstance(param, Mapping)
            key = (name, str(location))
            if key in seen:
                raise OperationError(f"parameter '{name}' in {location} is declared twice")
            seen.add(key)
            chosen[key] = (param, where)
    return list(chosen.values())


def _parameter_source(
    expander: Expander, param: Mapping[str, Any], where: str
) -> tuple[Source | None, Note | None]:
    name, location = str(param["name"]), str(param["in"])
    if location == "header" and name.lower() in IGNORED_HEADERS:
        return None, Note(where, f"header parameter '{name}' is ignored (OpenAPI reserves it)")
    content_type = None
    if "schema" in param:
        raw, at = param["schema"], pointer.join(where, "schema")
    elif isinstance(param.get("content"), Mapping) and param["content"]:
        content_type, media = next(iter(param["content"].items()))
        raw = media.get("schema", {}) if isinstance(media, Mapping) else {}
        at = pointer.join(where, "content", content_type, "schema")
    else:
        raw, at = {"type": "string"}, where
    schema = _schema(expander, raw, at)
    if not isinstance(schema, Mapping | bool):
        raise OperationError(f"parameter '{name}' has an invalid schema (at {at})")
    text = param.get("description")
    if isinstance(text, str) and text.strip() and isinstance(schema, Mapping):
        schema = {
            "description": text.strip(),
            **{k: v for k, v in schema.items() if k != "description"},
        }
    style = param.get("style") if isinstance(param.get("style"), str) else _DEFAULT_STYLE[location]
    explode = param.get("explode")
    argument = Argument(
        location=location,
        name=name,
        required=location == "path" or param.get("required") is True,
        style=None if content_type else style,
        explode=None
        if content_type
        else (explode if isinstance(explode, bool) else style == "form"),
        content_type=content_type,
    )
    return Source(argument, schema), None


def pick_json(content: Mapping[str, Any]) -> str | None:
    """The JSON media type to send: application/json, else any */*+json, else */*."""
    bases = {key: key.split(";")[0].strip().lower() for key in content}
    for test in (
        lambda b: b == "application/json",
        lambda b: b.endswith("+json") or b.endswith("/json"),
        lambda b: b in ("*/*", "application/*"),
    ):
        for key, base in bases.items():
            if test(base):
                return key
    return None


def _flattenable(schema: Any, required_body: bool) -> bool:
    """Can the body's properties become top-level arguments without losing a rule?"""
    if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
        return False
    kind = schema.get("type", "object")
    if kind != "object" or any(k in schema for k in ("anyOf", "oneOf", "allOf", "not", "if")):
        return False
    if isinstance(schema.get("additionalProperties"), Mapping) or "patternProperties" in schema:
        return False
    return required_body or not schema.get("required")


def _body_sources(
    doc: SpecDocument, expander: Expander, raw: RawOperation
) -> tuple[list[Source], str | None]:
    body = raw.node.get("requestBody")
    if body is None:
        return [], None
    where = pointer.join(raw.pointer, "requestBody")
    try:
        body, where = follow(doc.root, body, where)
    except RefError as exc:
        raise OperationError(str(exc)) from None
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(content, Mapping) or not content:
        return [], None
    key = pick_json(content)
    if key is None:
        found = ", ".join(str(k) for k in content)
        raise OperationError(
            f"the request body is not JSON (content types: {found}); only JSON request "
            "bodies can be sent by a tool"
        )
    media = content[key]
    raw_schema = media.get("schema", {}) if isinstance(media, Mapping) else {}
    at = pointer.join(where, "content", key, "schema")
    schema = drop_read_only(_schema(expander, raw_schema, at))
    required = body.get("required") is True
    content_type = "application/json" if "*" in key else key
    if _flattenable(schema, required):
        inner_required = schema.get("required")
        inner_required = inner_required if isinstance(inner_required, list) else []
        return [
            Source(
                Argument("body", name, required and name in inner_required),
                prop,
            )
            for name, prop in schema["properties"].items()
        ], content_type
    text = body.get("description")
    if isinstance(text, str) and text.strip() and isinstance(schema, Mapping):
        schema = {
            "description": text.strip(),
            **{k: v for k, v in schema.items() if k != "description"},
        }
    return [Source(Argument("body", None, required), schema)], content_type


def build_operation(doc: SpecDocument, raw: RawOperation) -> BuiltOperation:
    """Parameters schema and mapping for one operation; OperationError if it cannot be built."""
    if not isinstance(raw.node, Mapping):
        raise OperationError("the operation is not an object")
    expander = Expander(doc.root)
    notes: list[Note] = []
    sources: list[Source] = []
    for param, where in _parameters(doc, raw):
        source, note = _parameter_source(expander, param, where)
        if note is not None:
            notes.append(note)
        if source is not None:
            sources.append(source)
    declared = {s.argument.name for s in sources if s.argument.location == "path"}
    for name in _TEMPLATE.findall(raw.path):
        if name not in declared:
            notes.append(
                Note(raw.pointer, f"path parameter '{name}' is not declared; added as a string")
            )
            sources.append(
                Source(Argument("path", name, True, "simple", False), {"type": "string"})
            )
    body_sources, content_type = _body_sources(doc, expander, raw)
    merged = merge_arguments(sources + body_sources)
    notes.extend(Note(raw.pointer, text) for text in merged.notes)
    parameters: dict[str, Any] = {"type": "object", "properties": merged.properties}
    if merged.required:
        parameters["required"] = merged.required
    if expander.defs:
        parameters["$defs"] = {
            name: drop_read_only(merge_all_of(to_json_schema(schema)))
            for name, schema in expander.defs.items()
        }
    return BuiltOperation(
        parameters=parameters,
        arguments=merged.arguments,
        server_url=_server(doc, raw),
        content_type=content_type,
        notes=notes,
    )
