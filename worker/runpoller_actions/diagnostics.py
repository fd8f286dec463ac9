"""Warnings and errors as data, so the CLI, the JSON output and tests all read the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Note:
    """A finding inside one schema: a JSON pointer into that schema and a sentence.

    `source` is where the schema node came from in the spec (`#/...`), when known.
    """

    pointer: str
    message: str
    source: str | None = None


@dataclass(frozen=True)
class Diagnostic:
    """One readable problem: which operation (if any), where, and what.

    `pointer` is into the spec (`#/...`) when the place is known there, else into the tool's
    parameters (`/...`); `schema_pointer` is the parameters location of a spec-located strict
    error; `line`/`column` locate a spec pointer in the text (`convert_text` only).
    """

    message: str
    operation: str | None = None
    where: str | None = None
    pointer: str | None = None
    schema_pointer: str | None = None
    line: int | None = None
    column: int | None = None

    def to_json(self) -> dict[str, Any]:
        """Stable shape for `--json` output: every key present, absent ones null."""
        return {
            "operation": self.operation,
            "where": self.where,
            "pointer": self.pointer,
            "schema_pointer": self.schema_pointer,
            "line": self.line,
            "column": self.column,
            "message": self.message,
        }

    def render(self) -> str:
        """One line: `name (GET /x) #/pointer (line L, column C): message [parameters /p]`."""
        place = self.pointer or None
        if place and self.line is not None:
            place += f" (line {self.line}, column {self.column})"
        head = " ".join(
            part
            for part in (self.operation, f"({self.where})" if self.where else None, place)
            if part
        )
        text = f"{head}: {self.message}" if head else self.message
        if self.schema_pointer is not None and self.schema_pointer != self.pointer:
            text += f" [parameters {self.schema_pointer or '/'}]"
        return text


class SpecError(Exception):
    """The document as a whole cannot be converted; carries one message per problem."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


class OperationError(Exception):
    """One operation cannot be converted; the others still can."""

    def __init__(self, message: str, pointer: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer
