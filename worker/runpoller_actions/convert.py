"""Spec in, tools out: the pipeline, with every failure turned into a message.

load → document checks → names for all operations (before any can fail, so one broken
operation never renames another) → per operation: build the parameters schema, then the
strict rewrite and the independent check when `x-strict` says so. The strict flag comes from
the operation, else its path item, else the document root, else `default_strict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from runpoller_actions.checker import LIMIT_TOOLS, validate_strict
from runpoller_actions.description import DESCRIPTION_LIMIT, describe, trim
from runpoller_actions.diagnostics import Diagnostic, OperationError, SpecError
from runpoller_actions.document import RawOperation, SpecDocument, iter_operations, open_document
from runpoller_actions.document import x_strict as read_x_strict
from runpoller_actions.loader import SpecLoadError, parse_spec
from runpoller_actions.naming import NameRequest, assign_names
from runpoller_actions.operation import build_operation
from runpoller_actions.position import Positions
from runpoller_actions.strict import make_strict
from runpoller_actions.tools import Conversion, Operation, Tool
from runpoller_actions.walk import strip_origins

# A spec may yield more tools than one request accepts (checker.LIMIT_TOOLS, with its
# source); they all still convert, the caller picks a subset per request: a warning.
MAX_TOOLS_PER_REQUEST = LIMIT_TOOLS


def _is_strict(doc: SpecDocument, raw: RawOperation, default: bool) -> tuple[bool, list[str]]:
    notes: list[str] = []
    for owner, label in ((raw.node, "operation"), (raw.path_item, "path item")):
        if isinstance(owner, Mapping) and "x-strict" in owner:
            value = read_x_strict(owner)
            if value is not None:
                return value, notes
            notes.append(f"{label} 'x-strict' is not true or false; ignored")
    if doc.strict_default is not None:
        return doc.strict_default, notes
    return default, notes


def _convert_one(
    doc: SpecDocument, raw: RawOperation, name: str, default_strict: bool
) -> tuple[Tool | None, Operation | None, list[Diagnostic], list[Diagnostic]]:
    """(tool, operation, warnings, errors) for one operation."""

    def diag(message: str, at: str | None = None) -> Diagnostic:
        return Diagnostic(message, operation=name, where=raw.where, pointer=at)

    warnings: list[Diagnostic] = []
    strict, notes = _is_strict(doc, raw, default_strict)
    warnings += [diag(n) for n in notes]
    try:
        built = build_operation(doc, raw)
    except OperationError as exc:
        return None, None, warnings, [diag(exc.message, exc.pointer)]
    warnings += [diag(n.message, n.pointer) for n in built.notes]
    if "?" in raw.path or "#" in raw.path:
        warnings.append(
            diag(
                f"path '{raw.path}' contains a query or fragment; it is copied into the "
                "tool's URL as written (OpenAPI paths should not have one)",
                raw.pointer,
            )
        )
    parameters = strip_origins(built.parameters)
    if strict:
        result = make_strict(built.parameters)
        warnings += [diag(n.message, n.pointer) for n in result.warnings]
        if result.schema is None:
            errors = [
                Diagnostic(
                    f"no faithful strict form: {n.message}",
                    operation=name,
                    where=raw.where,
                    pointer=n.source or n.pointer,
                    schema_pointer=n.pointer if n.source else None,
                )
                for n in result.errors
            ]
            return None, None, warnings, errors
        problems = validate_strict(result.schema)
        if problems:
            errors = [
                diag(f"strict rewrite failed its check ({p.rule}): {p.message}", p.pointer)
                for p in problems
            ]
            return None, None, warnings, errors
        parameters = result.schema
    node = raw.node
    text = describe(node.get("summary"), node.get("description"), raw.where)
    short = trim(text)
    if short != text:
        warnings.append(
            diag(
                f"description trimmed from {len(text)} to {len(short)} characters "
                f"(limit {DESCRIPTION_LIMIT})"
            )
        )
    op_id = node.get("operationId")
    tool = Tool(name=name, description=short, parameters=parameters, strict=strict)
    operation = Operation(
        method=raw.method.upper(),
        server_url=built.server_url,
        path=raw.path,
        operation_id=op_id if isinstance(op_id, str) else None,
        content_type=built.content_type,
        strict=strict,
        arguments=built.arguments,
        encoding=built.encoding,
    )
    return tool, operation, warnings, []


def convert_document(root: Mapping[str, Any], *, default_strict: bool = False) -> Conversion:
    """Convert parsed spec data; never raises for a bad spec (see `Conversion.errors`)."""
    try:
        doc = open_document(root)
    except SpecError as exc:
        return Conversion(errors=[Diagnostic(m) for m in exc.messages])
    warnings = [Diagnostic(w) for w in doc.warnings]
    errors: list[Diagnostic] = []
    raws: list[RawOperation] = []
    for item in iter_operations(doc):
        if isinstance(item, SpecError):
            errors += [Diagnostic(m) for m in item.messages]
        else:
            raws.append(item)
    requests = [
        NameRequest(
            r.node.get("operationId")
            if isinstance(r.node, Mapping) and isinstance(r.node.get("operationId"), str)
            else None,
            r.method,
            r.path,
        )
        for r in raws
    ]
    tools: list[Tool] = []
    operations: dict[str, Operation] = {}
    for raw, (name, notes) in zip(raws, assign_names(requests), strict=True):
        warnings += [Diagnostic(n, operation=name, where=raw.where) for n in notes]
        try:
            tool, operation, more_warnings, more_errors = _convert_one(
                doc, raw, name, default_strict
            )
        except RecursionError:
            tool, operation, more_warnings = None, None, []
            more_errors = [
                Diagnostic("schemas nested too deeply to convert", operation=name, where=raw.where)
            ]
        except Exception as exc:  # a converter bug must not cost the user the other tools
            tool, operation, more_warnings = None, None, []
            more_errors = [
                Diagnostic(
                    f"internal error while converting ({type(exc).__name__}: {exc}); "
                    "please report it with the spec",
                    operation=name,
                    where=raw.where,
                )
            ]
        warnings += more_warnings
        errors += more_errors
        if tool is not None and operation is not None:
            tools.append(tool)
            operations[name] = operation
    if not raws and not errors:
        errors.append(Diagnostic("no operations found under 'paths'"))
    if len(tools) > MAX_TOOLS_PER_REQUEST:
        warnings.append(
            Diagnostic(
                f"{len(tools)} tools: one API request accepts at most {MAX_TOOLS_PER_REQUEST}; "
                "send a subset"
            )
        )
    return Conversion(
        tools=tools,
        operations=operations,
        warnings=warnings,
        errors=errors,
        title=doc.title,
        version=doc.version,
        total=len(raws),
    )


def convert_text(text: str, *, default_strict: bool = False) -> Conversion:
    """Convert spec text (JSON or YAML); never raises for a bad spec."""
    try:
        root = parse_spec(text)
    except SpecLoadError as exc:
        return Conversion(errors=[Diagnostic(str(exc))])
    return with_positions(convert_document(root, default_strict=default_strict), text)


def with_positions(result: Conversion, text: str) -> Conversion:
    """`result` with line and column added to every diagnostic that points into the spec."""
    positions = Positions(text)

    def place(items: list[Diagnostic]) -> list[Diagnostic]:
        out = []
        for item in items:
            found = positions.locate(item.pointer) if item.pointer else None
            out.append(replace(item, line=found[0], column=found[1]) if found else item)
        return out

    if not any(d.pointer and d.pointer.startswith("#") for d in result.errors + result.warnings):
        return result
    return replace(result, warnings=place(result.warnings), errors=place(result.errors))
