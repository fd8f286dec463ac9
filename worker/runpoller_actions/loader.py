"""Turn spec text into plain JSON data, or one message that points at the broken line.

JSON is tried when the text starts like JSON (`{` or `[`), YAML otherwise, so a broken JSON
file is reported as JSON (with the JSON parser's line and column) instead of as a puzzling
YAML error. YAML is read with the safe loader (libyaml's C parser when PyYAML has it: Asana's
spec loads in 0.6 s instead of 4 s), minus timestamp parsing (dates stay strings, as
JSON Schema expects), and mapping keys are turned into strings (`200:` → `"200"`).
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml


class SpecLoadError(Exception):
    """The text is not a JSON or YAML object; the message says where and why."""


_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeBase):  # type: ignore[valid-type,misc]
    """Safe loader that leaves `2023-01-01` as a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _reject_constant(name: str) -> Any:
    """JSON output must stay JSON: refuse NaN and Infinity on the way in."""
    raise SpecLoadError(f"invalid JSON: {name} is not a JSON number")


def _plain(value: Any) -> Any:
    """Reduce YAML's richer values to JSON ones (string keys, no sets, finite floats)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SpecLoadError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except RecursionError:
        raise SpecLoadError("invalid JSON: nested too deeply to read") from None


def _parse_yaml(text: str) -> Any:
    try:
        return _plain(yaml.load(text, Loader=_Loader))  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        if mark is None:
            raise SpecLoadError(f"invalid YAML: {problem}") from None
        raise SpecLoadError(
            f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
        ) from None
    except yaml.YAMLError as exc:
        raise SpecLoadError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise SpecLoadError("invalid YAML: nested too deeply to read") from None


def parse_spec(text: str) -> dict[str, Any]:
    """Parse a spec; the result is a dict of plain JSON values."""
    text = text.removeprefix("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        raise SpecLoadError("the spec is empty")
    data = _parse_json(text) if stripped[0] in "{[" else _parse_yaml(text)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single {type(data).__name__} value"
        raise SpecLoadError(f"the spec must be a JSON or YAML object at the top level, not {kind}")
    return data


def yaml_loader() -> type[yaml.SafeLoader]:
    """The loader `parse_spec` uses for YAML (also for finding positions in it)."""
    return _Loader
