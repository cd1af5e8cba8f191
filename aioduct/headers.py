"""Headers: a case-insensitive multi-map that keeps order, case and repeats.

HTTP headers are an ordered list of fields, not a dict: ``Set-Cookie`` repeats, order can
matter, and the server's spelling is worth showing. So the storage *is* the list of
``(name, value)`` pairs the codec produced, and a lower-cased index is built lazily on the
first lookup — a response whose headers are never looked up costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import TypeVar, Union, overload

T = TypeVar("T")

__all__ = ["Headers", "HeadersLike", "header_field"]

HeadersLike = Union[
    "Headers",
    Mapping[str, str] | Mapping[bytes, bytes],
    Iterable[tuple[str, str]] | Iterable[tuple[bytes, bytes]],
]


def header_field(name: object, value: object) -> tuple[str, str]:
    """One ``(name, value)`` field as text, from what a caller may pass.

    ``str`` stays as it is; ``bytes`` are decoded as latin-1, so they reach the wire
    byte for byte (the codec encodes fields as latin-1 and refuses CR, LF and NUL when
    the request is sent); an ``int`` becomes its decimal text. ``None`` is refused rather
    than sent as ``"None"`` or guessed to mean "remove this header": to send no such
    header, leave it out (``default_headers=False`` drops the defaults).
    """
    return _text(name, name, "name"), _text(value, name, "value")


def _text(item: object, name: object, part: str) -> str:
    if type(item) is str:
        return item
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item).decode("latin-1")
    if isinstance(item, int) and not isinstance(item, bool) and part == "value":
        return str(item)
    shown = name if part == "value" else item
    if item is None:
        raise TypeError(
            f"header {shown!r} has the value None: pass a str or bytes, or leave the "
            "header out (aioduct does not read None as 'remove')"
        )
    raise TypeError(
        f"header {part}s must be str or bytes, not {type(item).__name__} ({shown!r}: {item!r})"
    )


class Headers(MutableMapping[str, str]):
    """Ordered, case-insensitive HTTP headers.

    ``headers[name]`` joins repeated fields with ``", "`` (RFC 9110 §5.3); use
    :meth:`get_list` for fields that must not be joined, such as ``Set-Cookie``.
    Iteration yields each distinct name once, in first-seen order and original case;
    :meth:`multi_items` yields every field.
    """

    __slots__ = ("_index", "_list", "_scanned")

    def __init__(self, headers: HeadersLike | None = None) -> None:
        self._index: dict[str, list[str]] | None = None
        self._scanned = False
        if headers is None:
            self._list: list[tuple[str, str]] = []
        elif isinstance(headers, Headers):
            self._list = list(headers._list)
        elif isinstance(headers, Mapping):
            self._list = [
                (k, v) if type(k) is str and type(v) is str else header_field(k, v)
                for k, v in headers.items()
            ]
        else:
            self._list = [
                (k, v) if type(k) is str and type(v) is str else header_field(k, v)
                for k, v in headers
            ]

    @classmethod
    def _adopt(cls, pairs: list[tuple[str, str]]) -> Headers:
        """Wrap a list the codec built, without copying it (the hot path)."""
        self = cls.__new__(cls)
        self._list = pairs
        self._index = None
        self._scanned = False
        return self

    def _values(self, key: str) -> list[str] | None:
        """The values of the lower-case name ``key``, or None.

        The first lookup scans the list, which is cheaper than building the index when a
        response is asked one thing (its Content-Type, to decode the body); the index is
        built from the second lookup on.
        """
        index = self._index
        if index is not None:
            return index.get(key)
        if self._scanned:
            return self._lookup().get(key)
        self._scanned = True
        values = None
        for name, value in self._list:
            if name.lower() == key:
                if values is None:
                    values = [value]
                else:
                    values.append(value)
        return values

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for name, value in self._list:
                key = name.lower()
                if key in index:
                    index[key].append(value)
                else:
                    index[key] = [value]
            self._index = index
        return index

    # -- Mapping ---------------------------------------------------------------------------

    def __getitem__(self, name: str) -> str:
        values = self._values(name.lower())
        if values is None:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    @overload
    def get(self, name: str, /) -> str | None: ...
    @overload
    def get(self, name: str, default: str, /) -> str: ...
    @overload
    def get(self, name: str, default: T, /) -> str | T: ...
    def get(self, name: str, default: object = None, /) -> object:
        values = self._values(name.lower())
        if values is None:
            return default
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name``, in order (empty when absent)."""
        return list(self._lookup().get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._values(name.lower()) is not None

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._list:
            key = name.lower()
            if key not in seen:
                seen.add(key)
                yield name

    def __len__(self) -> int:
        return len(self._lookup())

    def multi_items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` field in order, repeats included."""
        return list(self._list)

    def raw(self) -> list[tuple[str, str]]:
        """The underlying field list (do not mutate; for serialisation)."""
        return self._list

    # -- MutableMapping ----------------------------------------------------------------------

    def __setitem__(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one field (kept at the first position)."""
        if type(name) is not str or type(value) is not str:
            name, value = header_field(name, value)
        key = name.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for item in self._list:
            if item[0].lower() == key:
                if not placed:
                    out.append((name, value))
                    placed = True
            else:
                out.append(item)
        if not placed:
            out.append((name, value))
        self._list = out
        self._index = None

    def __delitem__(self, name: str) -> None:
        key = name.lower()
        kept = [item for item in self._list if item[0].lower() != key]
        if len(kept) == len(self._list):
            raise KeyError(name)
        self._list = kept
        self._index = None

    def add(self, name: str, value: str) -> None:
        """Append a field, keeping any existing ones with the same name."""
        if type(name) is not str or type(value) is not str:
            name, value = header_field(name, value)
        self._list.append((name, value))
        self._index = None

    def setdefault(self, name: str, default: str = "") -> str:
        current = self.get(name)
        if current is None:
            self.add(name, default)
            return default
        return current

    def update(self, other: HeadersLike = (), /, **kw: str) -> None:  # type: ignore[override]
        """Replace fields by name from ``other`` (repeats in ``other`` are all kept)."""
        incoming = Headers(other)
        for key in {name.lower() for name, _ in incoming._list} | {k.lower() for k in kw}:
            self._list = [item for item in self._list if item[0].lower() != key]
        self._list.extend(incoming._list)
        self._list.extend(header_field(k, v) for k, v in kw.items())
        self._index = None

    def copy(self) -> Headers:
        return Headers(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return sorted((k.lower(), v) for k, v in self._list) == sorted(
                (k.lower(), v) for k, v in other._list
            )
        if isinstance(other, Mapping):
            return self == Headers(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [(k, "[secure]" if k.lower() in _SECRET_HEADERS else v) for k, v in self._list]
        return f"Headers({shown!r})"


_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
