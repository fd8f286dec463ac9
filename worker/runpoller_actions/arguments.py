"""One arguments object from path, query, header and cookie parameters and the JSON body.

Collision rule (no silent overwrites): when two sources want the same argument name, the
one whose location comes first in path > query > header > cookie > body keeps the name;
each other one is renamed `<location>_<name>` (`body_id`, `query_id`), with `_2`, `_3`, ...
if that is taken too. Every rename is a warning, and the operation mapping records each
argument's real location and name, so the caller still sends `id` to the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LOCATIONS = ("path", "query", "header", "cookie", "body")
BODY_ARGUMENT = "body"


@dataclass(frozen=True)
class Argument:
    """Where one tool argument goes in the HTTP request."""

    location: str
    name: str | None  # None: the argument is the whole JSON body
    required: bool
    style: str | None = None
    explode: bool | None = None
    content_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Mapping entry: `in`, `name`, `required`, and serialisation hints when set."""
        out: dict[str, Any] = {"in": self.location, "name": self.name, "required": self.required}
        for key, value in (
            ("style", self.style),
            ("explode", self.explode),
            ("content_type", self.content_type),
        ):
            if value is not None:
                out[key] = value
        return out

    def describe(self) -> str:
        """`the query parameter 'id'` / `the request body`, for messages."""
        if self.name is None:
            return "the whole request body"
        if self.location == "body":
            return f"the body property '{self.name}'"
        return f"the {self.location} parameter '{self.name}'"


@dataclass(frozen=True)
class Source:
    """An argument and its JSON Schema, before names are settled."""

    argument: Argument
    schema: Any

    @property
    def wanted(self) -> str:
        """The argument name this source asks for."""
        return self.argument.name if self.argument.name is not None else BODY_ARGUMENT


@dataclass(frozen=True)
class Merged:
    """The settled arguments: properties in source order, their targets, and rename notes."""

    properties: dict[str, Any]
    required: list[str]
    arguments: dict[str, Argument]
    notes: list[str]


def merge_arguments(sources: list[Source]) -> Merged:
    """Apply the collision rule; the order of `sources` is kept in the output."""
    wanted = {s.wanted for s in sources}
    by_priority = sorted(
        range(len(sources)), key=lambda i: LOCATIONS.index(sources[i].argument.location)
    )
    final: dict[int, str] = {}
    owner: dict[str, int] = {}
    notes: list[str] = []
    for i in by_priority:
        source = sources[i]
        name = source.wanted
        if name in owner:
            base = f"{source.argument.location}_{name}"
            candidate, n = base, 2
            while candidate in owner or candidate in wanted:
                candidate, n = f"{base}_{n}", n + 1
            first = sources[owner[name]].argument.describe()
            notes.append(
                f"argument name '{name}' is used by {first} and {source.argument.describe()}; "
                f"the latter is exposed as '{candidate}'"
            )
            name = candidate
        final[i] = name
        owner[name] = i
    ordered = [(final[i], sources[i]) for i in range(len(sources))]
    return Merged(
        properties={name: s.schema for name, s in ordered},
        required=[name for name, s in ordered if s.argument.required],
        arguments={name: s.argument for name, s in ordered},
        notes=notes,
    )
