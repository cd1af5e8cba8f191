"""RFC 7239 ``Forwarded``: build it for a request you forward, parse one you received.

A ``Forwarded`` value is a list of elements (one per proxy hop), each a ``;``-separated
list of ``name=value`` pairs whose values are tokens or quoted strings. Values that come
from a client (a Host header, an address) are attacker-controlled, so
:func:`format_forwarded` quotes everything that is not a token and refuses control
characters: a ``host`` of ``evil, for=127.0.0.1`` stays one quoted value instead of
forging a second hop. :func:`parse_forwarded` is strict in the same spirit: a
malformed value raises rather than being half-read, since it is the kind of header
people make trust decisions on.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Final

__all__ = ["format_forwarded", "parse_forwarded"]

_TCHAR: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_SPACE: Final = " \t"

Value = str | ipaddress.IPv4Address | ipaddress.IPv6Address | None


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TCHAR for c in text)


def _node(value: Value) -> str:
    """An address as RFC 7239 §6 writes it: IPv6 in brackets (then quoted)."""
    if isinstance(value, ipaddress.IPv6Address):
        return f"[{value}]"
    if isinstance(value, ipaddress.IPv4Address):
        return str(value)
    assert value is not None
    if ":" in value and not value.startswith("["):
        try:
            return f"[{ipaddress.IPv6Address(value)}]"
        except ValueError:
            pass
    return value


def _quote(text: str) -> str:
    if _is_token(text):
        return text
    for c in text:
        if (c < " " and c != "\t") or c == "\x7f":
            raise ValueError(
                f"a Forwarded value cannot contain control characters ({text!r}): it would "
                "let whoever supplied it inject header lines"
            )
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _element(params: Mapping[str, Value]) -> str:
    pairs: list[str] = []
    for raw_name, value in params.items():
        if value is None:
            continue
        name = "for" if raw_name == "for_" else raw_name
        if not _is_token(name):
            raise ValueError(f"{name!r} is not a valid Forwarded parameter name (a token)")
        text = _node(value) if name.lower() in ("for", "by") else value
        if not isinstance(text, str):
            text = str(text)
        pairs.append(f"{name}={_quote(text)}")
    if not pairs:
        raise ValueError("a Forwarded element needs at least one parameter")
    return ";".join(pairs)


def format_forwarded(*elements: Mapping[str, Value], **params: Value) -> str:
    """A ``Forwarded`` value: one element per mapping, or one from keyword arguments.

    >>> format_forwarded(for_="192.0.2.60", proto="https", by="_hidden")
    'for=192.0.2.60;proto=https;by=_hidden'
    >>> format_forwarded({"for": "2001:db8::1"}, {"for": "unknown"})
    'for="[2001:db8::1]", for=unknown'

    ``for``/``by`` may be IP addresses (IPv6 is bracketed and quoted), ``"unknown"`` or
    an obfuscated identifier (``"_hidden"``); ``for_`` is accepted for ``for`` (a Python
    keyword). Values that are not tokens are quoted; control characters raise
    ``ValueError``. ``None`` values are left out.
    """
    if params:
        elements = (*elements, params)
    if not elements:
        raise ValueError("format_forwarded() needs at least one element")
    return ", ".join(_element(element) for element in elements)


def _parse_quoted(value: str, i: int) -> tuple[str, int]:
    out: list[str] = []
    i += 1
    n = len(value)
    while i < n:
        c = value[i]
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(value[i + 1])
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    raise ValueError(f"unterminated quoted string in Forwarded value {value!r}")


def parse_forwarded(value: str | Iterable[str]) -> list[dict[str, str]]:
    """The elements of a ``Forwarded`` value (or of several field lines), first hop first.

    Each element is a dict of lower-cased parameter names to unquoted values; an IPv6
    node keeps its brackets (``"[2001:db8::1]:4711"``). Raises ``ValueError`` for a
    malformed value or a parameter repeated within one element (RFC 7239 §4), since
    both are signs of a forged or mangled header.
    """
    text = value if isinstance(value, str) else ", ".join(value)
    elements: list[dict[str, str]] = []
    element: dict[str, str] = {}
    i, n = 0, len(text)
    expect_pair = True
    while True:
        while i < n and text[i] in _SPACE:
            i += 1
        if i >= n:
            break
        c = text[i]
        if c in ",;":
            if expect_pair and c == ";":
                raise ValueError(f"empty parameter in Forwarded value {text!r}")
            if c == ",":
                if element:
                    elements.append(element)
                element = {}
            i += 1
            expect_pair = True
            continue
        if not expect_pair:
            raise ValueError(f"expected ',' or ';' at position {i} of Forwarded value {text!r}")
        start = i
        while i < n and text[i] in _TCHAR:
            i += 1
        name = text[start:i].lower()
        if not name or i >= n or text[i] != "=":
            raise ValueError(f"expected name=value at position {start} of Forwarded value {text!r}")
        i += 1
        if i < n and text[i] == '"':
            item, i = _parse_quoted(text, i)
        else:
            start = i
            while i < n and text[i] in _TCHAR:
                i += 1
            item = text[start:i]
            if not item:
                raise ValueError(f"empty value for {name!r} in Forwarded value {text!r}")
        if name in element:
            raise ValueError(f"parameter {name!r} repeated in one Forwarded element: {text!r}")
        element[name] = item
        expect_pair = False
    if element:
        elements.append(element)
    return elements
