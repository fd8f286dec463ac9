from __future__ import annotations

import json

import yaml

from runpoller_actions.position import Positions

DOC = {"paths": {"/a/b": {"post": {"x": [1, {"y~z": "here"}]}}}, "other": {"k": "v"}}


def where(text: str, found: tuple[int, int] | None) -> str:
    assert found is not None
    line, column = found
    return text.splitlines()[line - 1][column - 1 :]


def test_json_and_yaml_positions_name_the_value() -> None:
    target = "#/paths/~1a~1b/post/x/1/y~0z"
    for text in (json.dumps(DOC, indent=2), json.dumps(DOC), yaml.safe_dump(DOC)):
        assert where(text, Positions(text).locate(target)).startswith(('"here"', "here"))


def test_unknown_or_foreign_pointers_have_no_position() -> None:
    text = json.dumps(DOC)
    positions = Positions(text)
    assert positions.locate("#/paths/~1nope") is None
    assert positions.locate("#/paths/~1a~1b/post/x/7") is None
    assert positions.locate("/properties/a") is None  # a pointer into a tool, not the spec
    assert Positions("{broken").locate("#/a") is None


def test_root_and_bom() -> None:
    assert Positions('\ufeff{"a": 1}').locate("#/a") == (1, 8)
    assert Positions("a:\n  b: 1\n").locate("#/a/b") == (2, 6)
