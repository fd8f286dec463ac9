from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from runpoller_actions.naming import VALID, NameRequest, assign_names, fallback, sanitize

from .helpers import convert, spec


def names(*requests: tuple[str | None, str, str]) -> list[str]:
    return [name for name, _ in assign_names([NameRequest(*r) for r in requests])]


def test_valid_operation_id_is_kept() -> None:
    assert names(("listPets", "get", "/pets")) == ["listPets"]


def test_invalid_characters_become_underscores() -> None:
    assert sanitize("find pet by id") == "find_pet_by_id"
    assert sanitize("pets.list/v2 (beta)") == "pets_list_v2_beta"
    assert sanitize("  __x__  ") == "x"


def test_non_ascii_is_transliterated() -> None:
    assert sanitize("créer-élève") == "creer-eleve"


def test_fallback_from_method_and_path() -> None:
    assert fallback("GET", "/users/{id}/posts") == "get_users_id_posts"
    assert fallback("get", "/") == "get"
    assert names((None, "delete", "/a/{b}")) == ["delete_a_b"]


def test_operation_id_with_no_usable_characters_falls_back() -> None:
    ((name, notes),) = assign_names([NameRequest("日本語", "post", "/orders")])
    assert name == "post_orders"
    assert "no usable characters" in notes[0]


def test_long_names_are_cut_with_a_hash_and_stay_apart() -> None:
    a, b = names(("x" * 80 + "A", "get", "/a"), ("x" * 80 + "B", "get", "/b"))
    assert len(a) == len(b) == 64
    assert a != b
    assert a[:55] == "x" * 55
    assert VALID.match(a)


def test_duplicates_get_numbered_in_document_order() -> None:
    result = names(("op", "get", "/a"), ("op", "get", "/b"), ("op", "get", "/c"))
    assert result == ["op", "op_2", "op_3"]


def test_suffix_never_takes_a_name_another_operation_asked_for() -> None:
    result = names(("op", "get", "/a"), ("op", "get", "/b"), ("op_2", "get", "/c"))
    assert result == ["op", "op_3", "op_2"]


def test_sanitised_names_that_collide_are_numbered() -> None:
    assert names(("get pet", "get", "/a"), ("get_pet", "get", "/b")) == ["get_pet", "get_pet_2"]


def test_a_broken_operation_does_not_rename_the_others() -> None:
    doc = spec(
        {
            "/a": {"get": {"operationId": "x", "parameters": "broken"}},
            "/b": {"get": {"operationId": "x"}},
        }
    )
    assert [t.name for t in convert(doc).tools] == ["x_2"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.text(max_size=100)),
            st.sampled_from(["get", "post", "delete"]),
            st.text(max_size=40).map(lambda s: "/" + s),
        ),
        max_size=12,
    )
)
def test_names_are_always_valid_unique_and_deterministic(
    requests: list[tuple[str | None, str, str]],
) -> None:
    first = names(*requests)
    assert all(VALID.match(n) for n in first)
    assert len(set(first)) == len(first)
    assert names(*requests) == first
