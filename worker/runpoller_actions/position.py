"""Line and column of a JSON pointer in the spec text, so an error can say where to look.

Only asked for when a diagnostic carries a pointer into the spec (`#/...`), so nothing is
computed for a clean conversion. JSON: the containers along the pointer are scanned once each
(their members' offsets are cached; values that are not on the path are skipped with the C
decoder). YAML: the text is composed once into nodes, which carry their marks. Positions are
1-based and point at the value the pointer names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from runpoller_actions import pointer
from runpoller_actions.loader import yaml_loader

_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
_scanstring: Any = getattr(json.decoder, "scanstring")  # noqa: B009 - untyped in typeshed


def _skip(text: str, index: int) -> int:
    """The index of the first non-blank character at or after `index`."""
    found = _SPACE.match(text, index)
    return found.end() if found else index


def _tokens(where: str) -> list[str] | None:
    if not where.startswith("#"):
        return None
    rest = where[1:]
    if not rest:
        return []
    return [pointer.unescape(t) for t in rest[1:].split("/")] if rest.startswith("/") else None


@dataclass
class Positions:
    """Pointer → (line, column) for one spec text."""

    text: str
    _members: dict[int, dict[str, int]] = field(default_factory=dict)
    _root: Any = None
    _composed: bool = False

    @property
    def is_json(self) -> bool:
        stripped = self.text.lstrip("\ufeff \t\r\n")
        return stripped[:1] in ("{", "[")

    def locate(self, where: str) -> tuple[int, int] | None:
        """(line, column) of the value at `where` (`#/paths/~1a/get`), or None if not found."""
        tokens = _tokens(where)
        if tokens is None:
            return None
        try:
            if self.is_json:
                return self._json(tokens)
            return self._yaml(tokens)
        except (ValueError, yaml.YAMLError, RecursionError):
            return None

    def _line_column(self, offset: int) -> tuple[int, int]:
        line = self.text.count("\n", 0, offset) + 1
        return line, offset - (self.text.rfind("\n", 0, offset) + 1) + 1

    def _members_of(self, start: int) -> dict[str, int]:
        """Offsets of the values directly inside the container that starts at `start`."""
        cached = self._members.get(start)
        if cached is not None:
            return cached
        text, members = self.text, {}
        opening = text[start]
        index = start + 1
        position = 0
        while True:
            index = _skip(text, index)
            if text[index] in "}]":
                break
            if opening == "{":
                key, index = _scanstring(text, index + 1)
                index = _skip(text, index) + 1
                index = _skip(text, index)
            else:
                key, position = str(position), position + 1
            members[key] = index
            _, index = _DECODER.raw_decode(text, index)
            index = _skip(text, index)
            if text[index] == ",":
                index += 1
        self._members[start] = members
        return members

    def _json(self, tokens: list[str]) -> tuple[int, int] | None:
        offset = _skip(self.text, 1 if self.text.startswith("\ufeff") else 0)
        for token in tokens:
            if self.text[offset] not in "{[":
                return None
            found = self._members_of(offset).get(token)
            if found is None:
                return None
            offset = found
        return self._line_column(offset)

    def _yaml(self, tokens: list[str]) -> tuple[int, int] | None:
        if not self._composed:
            self._root = yaml.compose(self.text, Loader=yaml_loader())
            self._composed = True
        node = self._root
        for token in tokens:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if str(k.value) == token), None)
            elif isinstance(node, yaml.SequenceNode) and token.isdigit():
                index = int(token)
                node = node.value[index] if index < len(node.value) else None
            else:
                return None
            if node is None:
                return None
        if node is None:
            return None
        mark = node.start_mark
        return mark.line + 1, mark.column + 1
