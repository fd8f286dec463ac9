from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runpoller_actions.description import DESCRIPTION_LIMIT, describe, trim

from .helpers import convert, messages, only_tool, spec


def test_summary_and_description_are_combined() -> None:
    assert (
        describe("List pets", "Returns all pets.", "GET /pets") == "List pets\n\nReturns all pets."
    )


def test_description_that_repeats_the_summary_is_used_once() -> None:
    assert describe("List pets", "List pets in the store.", "x") == "List pets in the store."


def test_fallback_when_neither_is_there() -> None:
    assert describe(None, "  ", "GET /pets") == "GET /pets"
    assert describe(3, None, "GET /pets") == "GET /pets"


def test_short_text_is_unchanged() -> None:
    assert trim("a" * DESCRIPTION_LIMIT) == "a" * DESCRIPTION_LIMIT


def test_long_text_is_cut_at_a_word_with_an_ellipsis() -> None:
    text = ("word " * 400).strip()
    out = trim(text)
    assert len(out) <= DESCRIPTION_LIMIT
    assert out.endswith("word…")


def test_text_without_spaces_is_cut_hard() -> None:
    out = trim("x" * 5000)
    assert out == "x" * (DESCRIPTION_LIMIT - 1) + "…"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=3000), st.integers(min_value=2, max_value=2000))
def test_trim_always_fits(text: str, limit: int) -> None:
    out = trim(text, limit)
    assert len(out) <= limit
    if len(text) <= limit:
        assert out == text


def test_trimming_is_reported() -> None:
    doc = spec({"/a": {"get": {"operationId": "a", "description": "long " * 300}}})
    result = convert(doc)
    assert len(only_tool(result).description) <= DESCRIPTION_LIMIT
    assert any("description trimmed from 1499 to" in m for m in messages(result, "warnings"))
