from __future__ import annotations

import pytest

from runpoller_actions.loader import SpecLoadError, parse_spec


def test_json_error_has_line_and_column() -> None:
    text = '{\n  "openapi": "3.1.0",\n  "paths": [\n    "x": 1\n  ]\n}'
    with pytest.raises(SpecLoadError, match=r"invalid JSON at line 4, column 8: Expecting"):
        parse_spec(text)


def test_yaml_error_has_line_and_column() -> None:
    text = "openapi: 3.0.0\npaths:\n  /a:\n    get: [unclosed\n"
    with pytest.raises(SpecLoadError, match=r"invalid YAML at line \d+, column \d+"):
        parse_spec(text)


def test_text_starting_like_json_is_reported_as_json() -> None:
    with pytest.raises(SpecLoadError, match="invalid JSON"):
        parse_spec("  {'single': 'quotes'}")


def test_yaml_dates_stay_strings_and_keys_become_strings() -> None:
    data = parse_spec("openapi: 3.0.0\nx-date: 2023-10-29\nresponses:\n  200: ok\n")
    assert data["x-date"] == "2023-10-29"
    assert data["responses"] == {"200": "ok"}


def test_nan_is_rejected_in_json() -> None:
    with pytest.raises(SpecLoadError, match="NaN"):
        parse_spec('{"a": NaN}')


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[1, 2]", "not a list"),
        ("just words", "not a single str value"),
        ("42", "not a single int value"),
    ],
)
def test_top_level_must_be_an_object(text: str, message: str) -> None:
    with pytest.raises(SpecLoadError, match=message):
        parse_spec(text)


def test_byte_order_mark_is_ignored() -> None:
    assert parse_spec('\ufeff{"openapi": "3.1.0"}') == {"openapi": "3.1.0"}


def test_recursive_yaml_alias_is_an_error_not_a_crash() -> None:
    with pytest.raises(SpecLoadError, match="nested too deeply"):
        parse_spec("a: &x [*x]\n")
