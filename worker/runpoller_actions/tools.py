"""The converter's results as values, and their two wire shapes (Assistants and Responses)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from runpoller_actions.arguments import Argument
from runpoller_actions.diagnostics import Diagnostic

Format = Literal["assistants", "responses"]
FORMATS: tuple[Format, ...] = ("assistants", "responses")


@dataclass(frozen=True)
class Tool:
    """A function tool, independent of the API that will receive it."""

    name: str
    description: str
    parameters: dict[str, Any]
    strict: bool

    def render(self, fmt: Format) -> dict[str, Any]:
        """Assistants: `{type, function: {...}}`; Responses: `{type, name, ...}` (flat)."""
        body = {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
            "strict": self.strict,
        }
        if fmt == "assistants":
            return {"type": "function", "function": body}
        return {"type": "function", **body}


@dataclass(frozen=True)
class Operation:
    """How to make the HTTP call behind a tool: the caller's half of the conversion."""

    method: str
    server_url: str
    path: str
    operation_id: str | None
    content_type: str | None
    strict: bool
    arguments: dict[str, Argument]
    # Form and multipart bodies: field → (style, explode, content type), for every field
    # (also when the body is one argument `body`); empty for JSON.
    encoding: dict[str, tuple[str | None, bool | None, str | None]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Mapping entry; `url` is `server_url + path` with `{name}` still to fill."""
        out = {
            "method": self.method,
            "server_url": self.server_url,
            "path": self.path,
            "url": self.server_url + self.path,
            "operation_id": self.operation_id,
            "content_type": self.content_type,
            "strict": self.strict,
            "arguments": {name: arg.to_json() for name, arg in self.arguments.items()},
        }
        if self.encoding:
            out["encoding"] = {
                name: {
                    key: value
                    for key, value in zip(("style", "explode", "content_type"), how, strict=True)
                    if value is not None
                }
                for name, how in self.encoding.items()
            }
        return out


@dataclass(frozen=True)
class Conversion:
    """Everything one spec turned into, including what went wrong where."""

    tools: list[Tool] = field(default_factory=list)
    operations: dict[str, Operation] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    title: str = ""
    version: str = ""
    total: int = 0

    @property
    def ok(self) -> bool:
        """At least one tool came out (the CLI's exit status)."""
        return bool(self.tools)

    def to_json(self, fmt: Format = "assistants") -> dict[str, Any]:
        """The `--json` document: tools, operations, warnings, errors."""
        return {
            "tools": [tool.render(fmt) for tool in self.tools],
            "operations": {name: op.to_json() for name, op in self.operations.items()},
            "warnings": [w.to_json() for w in self.warnings],
            "errors": [e.to_json() for e in self.errors],
        }
