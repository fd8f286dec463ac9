"""`$ref` expansion: one self-contained schema per tool.

Theory of operation: references are inlined, because the tool schema travels without the
spec. A reference met again while it is still being expanded (a recursive schema, like a tree
node whose children are nodes) cannot be inlined; it becomes `{"$ref": "#/$defs/Name"}` and
its expansion goes into `$defs`, which the caller puts at the root of the tool's parameters.
Draft 2019-09 `$recursiveRef: "#"` (used by the OpenAI spec) is read as a reference to the
innermost schema being expanded. Only local references (`#/...`) exist here: the tool cannot
fetch other files. Expansions that do not depend on the stack are memoised. Every expanded
node carries its place in the spec under the private key `walk.ORIGIN`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runpoller_actions import pointer
from runpoller_actions.walk import ORIGIN, SCHEMA_KEYS, SCHEMA_LIST_KEYS, SCHEMA_MAP_KEYS

MAX_NODES = 200_000
MAX_REF_CHAIN = 32

# Annotations that may sit next to a `$ref` and simply override the target's.
REF_SIBLING_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "default",
        "example",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "nullable",
    }
)
_DEF_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


class RefError(Exception):
    """A reference that cannot be followed; the message names it and where it was used."""


@dataclass
class Expander:
    """Expands schemas of one operation; `defs` collects the recursive ones."""

    root: Mapping[str, Any]
    defs: dict[str, Any] = field(default_factory=dict)
    _def_names: dict[str, str] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict)
    _nodes: int = 0

    def expand(self, node: Any, where: str) -> Any:
        """Expanded copy of `node` found at document pointer `where`."""
        result, _ = self._expand(node, where, ())
        return result

    def _def_ref(self, ref: str) -> dict[str, Any]:
        """The `$defs` reference for a recursive `ref`, building the definition once."""
        name = self._def_names.get(ref)
        if name is None:
            base = _DEF_NAME.sub("_", pointer.last_token(ref)).strip("_") or "Schema"
            name, n = base, 2
            while name in self.defs:
                name, n = f"{base}_{n}", n + 1
            self._def_names[ref] = name
            self.defs[name] = {}
            target = pointer.resolve(self.root, ref)
            self.defs[name], _ = self._expand(target, ref, (ref,))
        return {"$ref": f"#/$defs/{name}"}

    def _follow(self, ref: Any, where: str, stack: tuple[str, ...]) -> tuple[Any, frozenset[str]]:
        if not isinstance(ref, str):
            shown = json.dumps(ref, default=str)[:40]
            raise RefError(f"$ref must be a string, got {shown} (used at {where})")
        if not ref.startswith("#"):
            raise RefError(
                f"external $ref '{ref}' is not supported: bundle the spec into one file "
                f"(used at {where})"
            )
        try:
            target = pointer.resolve(self.root, ref)
        except LookupError:
            raise RefError(f"unresolvable $ref '{ref}' (used at {where})") from None
        if ref in stack:
            return self._def_ref(ref), frozenset({ref})
        if ref in self._memo:
            return self._memo[ref], frozenset()
        result, deps = self._expand(target, ref, (*stack, ref))
        deps = deps - {ref}
        if not deps:
            self._memo[ref] = result
        return result, deps

    def _expand(self, node: Any, where: str, stack: tuple[str, ...]) -> tuple[Any, frozenset[str]]:
        if not isinstance(node, Mapping):
            return node, frozenset()
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise RefError(f"schema too large after expanding $refs (at {where})")
        if "$dynamicRef" in node:
            raise RefError(f"$dynamicRef is not supported (used at {where})")
        target_ref: Any = None
        if "$ref" in node:
            target_ref = node["$ref"]
        elif "$recursiveRef" in node:
            if not stack:
                raise RefError(f"$recursiveRef used outside a referenced schema (at {where})")
            target_ref = stack[-1]
        if target_ref is not None:
            target, deps = self._follow(target_ref, where, stack)
            siblings = {k: v for k, v in node.items() if k not in ("$ref", "$recursiveRef")}
            if not siblings:
                return target, deps
            rest, more = self._expand(siblings, where, stack)
            if set(siblings) <= REF_SIBLING_ANNOTATIONS and isinstance(target, Mapping):
                return {**target, **rest, ORIGIN: target.get(ORIGIN, where)}, deps | more
            return {"allOf": [target, rest], ORIGIN: where}, deps | more
        out: dict[str, Any] = {ORIGIN: where}
        found: frozenset[str] = frozenset()
        for key, value in node.items():
            here = pointer.join(where, key)
            if key in ("$defs", "definitions", "$recursiveAnchor"):
                continue  # reachable through references; inlined where used
            if isinstance(value, list) and (key in SCHEMA_KEYS or key in SCHEMA_LIST_KEYS):
                out[key], d = self._expand_list(value, here, stack)
            elif key in SCHEMA_KEYS:
                out[key], d = self._expand(value, here, stack)
            elif key in SCHEMA_MAP_KEYS and isinstance(value, Mapping):
                mapped: dict[str, Any] = {}
                d = frozenset()
                for name, sub in value.items():
                    mapped[name], dd = self._expand(sub, pointer.join(here, name), stack)
                    d |= dd
                out[key] = mapped
            else:
                out[key], d = value, frozenset()
            found |= d
        return out, found

    def _expand_list(
        self, items: list[Any], where: str, stack: tuple[str, ...]
    ) -> tuple[list[Any], frozenset[str]]:
        out: list[Any] = []
        deps: frozenset[str] = frozenset()
        for index, item in enumerate(items):
            expanded, d = self._expand(item, pointer.join(where, index), stack)
            out.append(expanded)
            deps |= d
        return out, deps


def follow(root: Mapping[str, Any], node: Any, where: str) -> tuple[Any, str]:
    """Follow a chain of `$ref`s on a non-schema object (parameter, request body)."""
    seen: list[str] = []
    while isinstance(node, Mapping) and "$ref" in node:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise RefError(f"$ref '{ref}' is not a local reference (used at {where})")
        if ref in seen or len(seen) >= MAX_REF_CHAIN:
            raise RefError(f"$ref '{ref}' refers to itself in a loop (used at {where})")
        seen.append(ref)
        try:
            node = pointer.resolve(root, ref)
        except LookupError:
            raise RefError(f"unresolvable $ref '{ref}' (used at {where})") from None
        where = ref
    return node, where
