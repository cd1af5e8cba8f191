"""Header pairs sent once per worker, then by number (HPACK's dynamic table, in spirit).

Decoding a Result's headers was a quarter of the parent's work per small result: five
pairs are eleven objects to allocate (and, when the caller drops the Result, to free),
ten strings to validate as UTF-8. Yet nearly every pair a worker sees repeats -- the same
server, content type, connection, often the same length -- so a worker numbers each
distinct pair the first time it sends it, and afterwards sends only the number. The
parent keeps the same numbering in a list and builds a Result's headers from pair
objects it already has: no string is decoded twice, no pair allocated twice.

Both sides see the pairs in the same order (one stream, batches read in order), so the
numbering needs no acknowledgement. It is bounded: once a worker's table holds
:data:`MAX_PAIRS` pairs or :data:`MAX_BYTES` of text, the worker starts a fresh one at
its next batch (``ResultBatch.pairs_from == 0``), so unique values (dates, cookies) cost
what they cost before, plus a dictionary entry, and never grow without limit.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_BYTES", "MAX_PAIRS", "PairReader", "PairWriter"]

Pair = tuple[str, str]
#: Distinct pairs a table holds before it starts over.
MAX_PAIRS: Final = 4096
#: Characters of names and values a table holds before it starts over.
MAX_BYTES: Final = 1 << 20


class PairWriter:
    """The worker's table: numbers pairs, remembers the new ones for the next batch."""

    __slots__ = ("chars", "index", "new", "new_from")

    def __init__(self) -> None:
        self.index: dict[Pair, int] = {}
        self.chars = 0
        self.new: list[Pair] = []
        """Pairs numbered since the last batch (numbers ``new_from``, ``new_from + 1``...)."""
        self.new_from = 0

    def numbers(self, headers: tuple[Pair, ...]) -> list[int]:
        """The numbers of ``headers``' pairs (new ones are numbered on the way)."""
        index = self.index
        numbers = []
        for pair in headers:
            number = index.get(pair)
            if number is None:
                number = index[pair] = len(index)
                self.new.append(pair)
                self.chars += len(pair[0]) + len(pair[1])
            numbers.append(number)
        return numbers

    def take(self) -> tuple[int, list[Pair]]:
        """``(pairs_from, pairs)`` for the batch being sent; a full table starts over
        after it (the next batch's numbers start at 0)."""
        taken = (self.new_from, self.new)
        if len(self.index) >= MAX_PAIRS or self.chars >= MAX_BYTES:
            self.index = {}
            self.chars = 0
        self.new = []
        self.new_from = len(self.index)
        return taken


class PairReader:
    """The parent's copy of one worker's table."""

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs: list[Pair] = []

    def add(self, pairs_from: int, pairs: list[Pair]) -> None:
        """Take in a batch's new pairs (``pairs_from == 0``: the table started over)."""
        table = self.pairs
        if pairs_from > len(table):
            raise ValueError(f"new header pairs from {pairs_from}, but only {len(table)} known")
        del table[pairs_from:]
        table.extend(pairs)

    def headers(self, numbers: list[int]) -> tuple[Pair, ...]:
        return tuple(map(self.pairs.__getitem__, numbers))
