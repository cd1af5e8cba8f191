"""Request validation at build time: a request that can never be sent contacts nobody.

Every way a request comes into being -- :class:`~aioduct.Request` (so ``Client`` and
``BlockingClient`` requests, redirect hops and prepared requests), :class:`~aioduct.Job`
for the bulk engines, and the default headers of a :class:`~aioduct.ClientConfig` --
passes the method and its fields through :func:`check_request` once, when it is built,
before any DNS lookup, connect or handshake. The URL needs no check here: an
:class:`~aioduct.URL` cannot hold a request target, host or scheme that is unsafe to send
(:mod:`aioduct.url`).

The rules are :mod:`aioduct.protocol.rules`, the same the HTTP/1.1 codec and the HTTP/2
protocol apply again as a second line, so what passes here is sendable over either
protocol, and what fails fails with the same :class:`~aioduct.LocalProtocolError` and
message whichever line catches it.

This runs on every request, so it is cheap: a known method is a set lookup, a field
name is checked once per process (valid names are remembered, a bounded set) and the
values are scanned for forbidden characters in one pass over their concatenation.
Values are never remembered: they hold credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from .errors import LocalProtocolError
from .protocol.rules import (
    BAD_VALUE_CHAR,
    KNOWN_METHODS,
    TOKEN,
    check_method,
    first_value_error,
    name_error,
    show,
    value_error,
)

__all__ = ["check_fields", "check_request"]

#: Field names known to be tokens. Bounded: a program that invents names without end
#: (or an attacker feeding them in) only costs the regex again.
_VALID_NAMES: set[str] = set()
_VALID_NAMES_MAX: Final = 4096


def check_fields(fields: Sequence[tuple[str, str]]) -> None:
    """Refuse any field whose name is not a token or whose value breaks the rules."""
    names = _VALID_NAMES
    values = []
    for name, value in fields:
        if name not in names:
            if type(name) is not str or TOKEN.fullmatch(name) is None:
                raise name_error(str(name))
            if len(names) < _VALID_NAMES_MAX:
                names.add(name)
        if type(value) is not str:
            raise TypeError(f"header {name!r} value must be a str, not {type(value).__name__}")
        if value.strip(" \t") != value:
            raise value_error(name, value)
        values.append(value)
    if BAD_VALUE_CHAR.search("".join(values)) is not None:
        raise first_value_error(fields)


def check_request(
    method: str, fields: Sequence[tuple[str, str]], protocol: str | None = None
) -> None:
    """Refuse a request whose method, fields or ``:protocol`` cannot go on the wire."""
    if method not in KNOWN_METHODS:
        check_method(method)
    if fields:
        check_fields(fields)
    if protocol is not None and TOKEN.fullmatch(protocol) is None:
        raise LocalProtocolError(f"invalid protocol {show(protocol)}: must be an RFC 9110 token")
