"""The header-pair table a worker and the parent share: numbers in, the same pairs out."""

from __future__ import annotations

import pytest

from aioduct.local import pairs
from aioduct.local.pairs import PairReader, PairWriter


def test_pairs_go_once_then_by_number() -> None:
    writer, reader = PairWriter(), PairReader()
    first = (("Server", "nginx"), ("Content-Length", "13"))
    second = (("Server", "nginx"), ("Content-Length", "14"), ("Server", "nginx"))
    numbers = [writer.numbers(first), writer.numbers(second)]
    pairs_from, new = writer.take()
    assert numbers == [[0, 1], [0, 2, 0]] and (pairs_from, new) == (0, [*first, second[1]])
    reader.add(pairs_from, new)
    assert [reader.headers(n) for n in numbers] == [first, second]
    assert writer.numbers(first) == [0, 1] and writer.take() == (3, [])  # nothing new
    assert reader.headers([1, 0])[0] is reader.headers([1])[0]  # the same pair objects
    twice = (("Set-Cookie", "a=1"), ("Server", "nginx"), ("Set-Cookie", "a=1"))
    assert writer.numbers(twice) == [3, 0, 3]  # a new pair twice in one response: one number
    assert writer.take() == (3, [("Set-Cookie", "a=1")])


def test_a_full_table_starts_over_at_the_next_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pairs, "MAX_PAIRS", 3)
    writer, reader = PairWriter(), PairReader()
    batch = [writer.numbers(((f"X-{i}", "v"),)) for i in range(4)]  # one batch may overshoot
    reader.add(*writer.take())
    assert [reader.headers(n) for n in batch] == [((f"X-{i}", "v"),) for i in range(4)]
    again = writer.numbers((("X-9", "v"),))
    pairs_from, new = writer.take()
    assert (again, pairs_from, new) == ([0], 0, [("X-9", "v")])
    reader.add(pairs_from, new)
    assert reader.pairs == [("X-9", "v")]
    with pytest.raises(ValueError, match="new header pairs from 5, but only 1 known"):
        reader.add(5, [("A", "b")])
