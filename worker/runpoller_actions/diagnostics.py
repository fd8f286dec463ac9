"""Warnings and errors as data, so the CLI, the JSON output and tests all read the same thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Note:
    """A finding inside one schema: a JSON pointer into that schema and a sentence."""

    pointer: str
    message: str


@dataclass(frozen=True)
class Diagnostic:
    """One readable problem: which operation (if any), where, and what."""

    message: str
    operation: str | None = None
    where: str | None = None
    pointer: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Stable shape for `--json` output: every key present, absent ones null."""
        return {
            "operation": self.operation,
            "where": self.where,
            "pointer": self.pointer,
            "message": self.message,
        }

    def render(self) -> str:
        """One line for a terminal: `name (GET /x) /pointer: message`."""
        head = " ".join(
            part
            for part in (
                self.operation,
                f"({self.where})" if self.where else None,
                self.pointer or None,
            )
            if part
        )
        return f"{head}: {self.message}" if head else self.message


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
