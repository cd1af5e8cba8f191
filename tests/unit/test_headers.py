"""Headers: case-insensitive, ordered, repeats kept."""

from __future__ import annotations

import pytest

from aioduct import Headers


def test_lookup_is_case_insensitive_and_joins_repeats() -> None:
    h = Headers([("Set-Cookie", "a=1"), ("Content-Type", "text/plain"), ("set-cookie", "b=2")])
    assert h["content-type"] == "text/plain"
    assert h["SET-COOKIE"] == "a=1, b=2"
    assert h.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert "CONTENT-type" in h
    assert h.get("missing") is None
    assert h.get("missing", "x") == "x"
    assert list(h) == ["Set-Cookie", "Content-Type"]
    assert len(h) == 2


def test_setitem_replaces_all_in_place_and_add_appends() -> None:
    h = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    h["a"] = "9"
    assert h.multi_items() == [("a", "9"), ("B", "2")]
    h.add("B", "4")
    assert h.get_list("b") == ["2", "4"]
    del h["b"]
    assert h.multi_items() == [("a", "9")]


def test_update_replaces_by_name() -> None:
    h = Headers({"Accept": "*/*", "User-Agent": "x"})
    h.update({"accept": "text/html"})
    assert h.multi_items() == [("User-Agent", "x"), ("accept", "text/html")]


def test_equality_ignores_name_case_and_repr_hides_secrets() -> None:
    assert Headers({"A": "1"}) == Headers({"a": "1"})
    assert Headers({"a": "1"}) == {"A": "1"}
    shown = repr(Headers({"Authorization": "Bearer secret", "X": "y"}))
    assert "secret" not in shown and "'y'" in shown


def test_lookups_agree_before_and_after_the_index_is_built() -> None:
    h = Headers._adopt([("Set-Cookie", "a=1"), ("X-One", "1"), ("set-cookie", "b=2")])
    assert h._index is None
    assert h.get("SET-COOKIE") == "a=1, b=2"  # first lookup: a scan, no index
    assert h._index is None
    assert h["x-one"] == "1"  # second lookup builds the index
    assert h._index is not None
    assert "X-ONE" in h and "x-two" not in h and h.get("x-two") is None
    h["X-One"] = "2"  # a mutation drops the index; the next lookup rebuilds it
    assert h["x-one"] == "2" and h.get_list("set-cookie") == ["a=1", "b=2"]
    fresh = Headers._adopt([("A", "1")])
    assert "a" in fresh and "b" not in Headers._adopt([("A", "1")])
    with pytest.raises(KeyError):
        Headers._adopt([("A", "1")])["b"]
