"""One OpenAPI operation → the (non-strict) parameters schema and the call mapping.

Parameters come from the path item and the operation (the operation's win for the same
name and location, as OpenAPI says). The request body is sent as JSON when it has a JSON
media type, else as `application/x-www-form-urlencoded` or `multipart/form-data` (fields
that are scalars, arrays of scalars, deepObject-encoded objects; no file parts): the mapping
records the content type and each field's encoding. An optional body that declares no fields
is ignored with a note; any other media type fails the operation. An object body is
flattened into the arguments when that loses nothing: when the body is required, or has no
required properties of its own. Any other body (array, scalar, union,
map, or an optional body with required fields) becomes one argument, `body`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runpoller_actions import pointer
from runpoller_actions.allof import merge_all_of
from runpoller_actions.arguments import Argument, Source, merge_arguments
from runpoller_actions.diagnostics import Note, OperationError
from runpoller_actions.dialect import drop_read_only, to_json_schema
from runpoller_actions.document import RawOperation, SpecDocument, server_url
from runpoller_actions.refs import Expander, RefError, follow
from runpoller_actions.walk import ORIGIN, strip_origins

IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_TEMPLATE = re.compile(r"\{([^{}]+)\}")
_DEFAULT_STYLE = {"path": "simple", "query": "form", "header": "simple", "cookie": "form"}


Encoding = dict[str, tuple[str | None, bool | None, str | None]]  # field → style, explode, type


@dataclass(frozen=True)
class Body:
    """The request body as arguments, how to send it, and notes."""

    sources: list[Source] = field(default_factory=list)
    content_type: str | None = None
    encoding: Encoding = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


@dataclass(frozen=True)
class BuiltOperation:
    """What the converter needs from one operation, before the strict rewrite."""

    parameters: dict[str, Any]
    arguments: dict[str, Argument]
    server_url: str
    content_type: str | None
    notes: list[Note] = field(default_factory=list)
    encoding: Encoding = field(default_factory=dict)


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


FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
_SCALARS = frozenset({"string", "number", "integer", "boolean", "null"})
_TYPELESS_NOTES = frozenset({"description", "title", "readOnly", "writeOnly", "deprecated", ORIGIN})


def _media_kind(content: Mapping[str, Any]) -> tuple[str, str] | None:
    """(media key, how it is sent): JSON first, then a form, then multipart."""
    key = pick_json(content)
    if key is not None:
        return key, "json"
    bases = {k: k.split(";")[0].strip().lower() for k in content}
    for wanted in (FORM, MULTIPART):
        for key, base in bases.items():
            if base == wanted:
                return key, wanted
    return None


def _is_empty(schema: Any) -> bool:
    """A body schema that lets nothing be sent: no properties, no items, no type but object."""
    if schema is True or schema is None:
        return True
    if not isinstance(schema, Mapping):
        return False
    if schema.get("type", "object") != "object" or schema.get("properties"):
        return False
    rest = (
        set(schema) - _TYPELESS_NOTES - {"type", "properties", "additionalProperties", "required"}
    )
    return not rest and schema.get("additionalProperties", False) is False


def _declares_nothing(schema_of: Callable[[str], Any], key: str) -> bool:
    """Is the schema of media type `key` empty? (One that cannot be expanded is not.)"""
    try:
        return _is_empty(strip_origins(schema_of(key)))
    except OperationError:
        return False


def _shapes(schema: Any) -> set[str]:
    """What a form field's value is: 'scalar', 'array' (of scalars), 'object', 'file'."""
    if not isinstance(schema, Mapping):
        return {"object"}
    found: set[str] = set()
    for key in ("anyOf", "oneOf"):
        for branch in schema.get(key) or []:
            found |= _shapes(branch)
    if found and not ({"type", "properties", "items"} & schema.keys()):
        return found
    if schema.get("format") in ("binary", "base64") or (
        {"contentMediaType", "contentEncoding"} & schema.keys()
    ):
        return found | {"file"}
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind or [])
    if "array" in kinds:
        items = _shapes(schema.get("items", {"type": "string"}))
        found |= {"file"} if "file" in items else ({"array"} if items <= {"scalar"} else {"object"})
    if "object" in kinds or (not kinds and "properties" in schema):
        found.add("object")
    if kinds & _SCALARS or not (found or kinds):
        found.add("scalar")
    return found


def _form_arguments(
    media: Mapping[str, Any], schema: Mapping[str, Any], kind: str, at: str
) -> Encoding:
    """(style, explode, content_type) per form field; OperationError for what cannot be sent."""
    encoding = media.get("encoding")
    encoding = encoding if isinstance(encoding, Mapping) else {}
    out: Encoding = {}
    for name, prop in schema["properties"].items():
        where = pointer.join(at, "properties", name)
        how = encoding.get(name)
        how = how if isinstance(how, Mapping) else {}
        shapes = _shapes(prop)
        if "file" in shapes:
            label = "multipart field" if kind == MULTIPART else "form field"
            raise OperationError(
                f"{label} '{name}' is a file part; a function tool's arguments are "
                "JSON values, so a file cannot be sent",
                where,
            )
        part_type = how.get("contentType") if isinstance(how.get("contentType"), str) else None
        if kind == MULTIPART:
            if "object" in shapes and part_type is None:
                part_type = "application/json"  # OpenAPI's default for object parts
            out[name] = (None, None, part_type)
            continue
        style = how.get("style") if isinstance(how.get("style"), str) else "form"
        explode = how.get("explode")
        explode = explode if isinstance(explode, bool) else style == "form"
        if "object" in shapes and style != "deepObject":
            raise OperationError(
                f"form field '{name}' holds objects; without 'encoding: {{{name}: {{style: "
                "deepObject}}' there is no agreed way to write it in "
                f"{FORM}",
                where,
            )
        out[name] = (style, explode, part_type)
    return out


def _body(doc: SpecDocument, expander: Expander, raw: RawOperation) -> Body:
    body = raw.node.get("requestBody")
    if body is None:
        return Body()
    where = pointer.join(raw.pointer, "requestBody")
    try:
        body, where = follow(doc.root, body, where)
    except RefError as exc:
        raise OperationError(str(exc)) from None
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(body, Mapping) or not isinstance(content, Mapping) or not content:
        return Body()
    required = body.get("required") is True

    def schema_of(key: str) -> Any:
        media = content[key]
        raw_schema = media.get("schema", {}) if isinstance(media, Mapping) else {}
        return _schema(expander, raw_schema, pointer.join(where, "content", key, "schema"))

    if not required and all(_declares_nothing(schema_of, key) for key in content):
        found = ", ".join(str(k) for k in content)
        note = Note(where, f"the optional request body ({found}) declares no fields; ignored")
        return Body(notes=[note])
    chosen = _media_kind(content)
    if chosen is None:
        found = ", ".join(str(k) for k in content)
        raise OperationError(
            f"the request body has no media type a tool can send ({found}); supported: JSON, "
            f"{FORM}, and {MULTIPART} without file parts",
            pointer.join(where, "content"),
        )
    key, kind = chosen
    media = content[key] if isinstance(content[key], Mapping) else {}
    at = pointer.join(where, "content", key, "schema")
    schema = drop_read_only(schema_of(key))
    content_type = "application/json" if "*" in key else key
    encodings: Encoding = {}
    if kind != "json":
        if not isinstance(schema, Mapping) or not isinstance(schema.get("properties"), Mapping):
            raise OperationError(
                f"a {kind} body must be an object with 'properties' (one per form field)", at
            )
        encodings = _form_arguments(media, schema, kind, at)
    if _flattenable(schema, required):
        inner_required = schema.get("required")
        inner_required = inner_required if isinstance(inner_required, list) else []
        sources = []
        for name, prop in schema["properties"].items():
            style, explode, part_type = encodings.get(name, (None, None, None))
            argument = Argument(
                "body", name, required and name in inner_required, style, explode, part_type
            )
            sources.append(Source(argument, prop))
        return Body(sources, content_type, encodings)
    text = body.get("description")
    if isinstance(text, str) and text.strip() and isinstance(schema, Mapping):
        schema = {
            "description": text.strip(),
            **{k: v for k, v in schema.items() if k != "description"},
        }
    return Body([Source(Argument("body", None, required), schema)], content_type, encodings)


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
    body = _body(doc, expander, raw)
    notes.extend(body.notes)
    merged = merge_arguments(sources + body.sources)
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
        content_type=body.content_type,
        notes=notes,
        encoding=body.encoding,
    )
