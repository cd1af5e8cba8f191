"""What a client may put on the wire: methods, request targets, field names and values.

One rule set for every protocol, so that a request is either sendable over HTTP/1.1 and
HTTP/2 alike or refused before any byte leaves -- and refused with the same message
whichever layer notices. :mod:`aioduct.validation` applies these rules when a request is
built; the HTTP/1.1 codec and the HTTP/2 protocol apply them again as a second line, so a
request that bypassed the first (a caller driving a codec directly) still cannot split a
message or smuggle a field.

The rules are RFC 9110's grammar, with h11's long-standing choices where the RFC leaves
room:

* a method and a field name are tokens (``tchar``); so a field name can never hold a
  colon, whitespace, CR/LF or be empty -- and a pseudo-header (``:path``) is not a name
  a caller can send;
* a field value holds no CR, LF or NUL (RFC 9110 §5.5, RFC 9113 §8.2.1), no VT or FF
  (h11 refuses them), no leading or trailing space or tab (RFC 9113 §8.2.1; h11 too), and
  nothing beyond latin-1, which is how HTTP/1.1 puts a ``str`` on the wire;
* a request target (and an authority) is visible ASCII without spaces: everything else
  must be percent-encoded, as :class:`aioduct.URL` does.

It also holds the one receiving bound both protocols share, on interim responses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from ..errors import LocalProtocolError

__all__ = [
    "KNOWN_METHODS",
    "MAX_INFORMATIONAL_RESPONSES",
    "TOKEN",
    "check_method",
    "check_name",
    "check_scheme",
    "check_target",
    "check_value",
    "first_value_error",
    "name_error",
    "show",
    "value_error",
]

#: Interim (1xx) responses accepted before the final response of one request, on any
#: protocol; more is a flood (CPython's CVE-2021-3737 class). CPython's ``http.client``,
#: Ruby's net-http and fasthttp stop at the same number; a server sends 100 Continue
#: once and 103 Early Hints a few times. Their bytes are bounded too, by each protocol's
#: head limit (``max_response_head_bytes``, ``max_header_list_size``).
MAX_INFORMATIONAL_RESPONSES: Final = 100

#: RFC 9110 §5.6.2 ``token``: methods, field names, ``:protocol``.
TOKEN: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
#: RFC 3986 §3.1 ``scheme``.
SCHEME: Final = re.compile(r"[A-Za-z][-+.0-9A-Za-z]*")
#: Methods that need no check (tokens by inspection).
KNOWN_METHODS: Final = frozenset(
    ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
)
#: A character no field value may hold (see the module docstring): the complement of
#: ``\x01-\x09`` (HTAB included) and ``\x0e-\xff``.
BAD_VALUE_CHAR: Final = re.compile(r"[^\x01-\x09\x0e-\xff]")
_BAD_VALUE_LABELS: Final = (
    ("\r", "CR"),
    ("\n", "LF"),
    ("\x00", "NUL"),
    ("\x0b", "a vertical tab"),
    ("\x0c", "a form feed"),
)


def show(text: str) -> str:
    """A repr short enough for an error message."""
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def check_method(method: str) -> None:
    """Refuse a method that is not a token (CR/LF, spaces, NUL, empty)."""
    if method not in KNOWN_METHODS and TOKEN.fullmatch(method) is None:
        raise LocalProtocolError(f"invalid method {show(method)}: must be an RFC 9110 token")


def check_scheme(scheme: str) -> None:
    """Refuse a scheme that is not RFC 3986's ``ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )``."""
    if SCHEME.fullmatch(scheme) is None:
        raise LocalProtocolError(f"invalid scheme {show(scheme)}")


def check_target(target: str, what: str = "request target") -> None:
    """Refuse a request target (or authority) that is not visible ASCII without spaces."""
    if not target or not target.isascii() or not target.isprintable() or " " in target:
        raise LocalProtocolError(
            f"invalid {what} {show(target)}: must be visible ASCII "
            "without spaces (percent-encode everything else)"
        )


def check_name(name: str) -> None:
    """Refuse a field name that is not a token (so no ``:``, whitespace, CR/LF, or ``""``)."""
    if TOKEN.fullmatch(name) is None:
        raise name_error(name)


def name_error(name: str) -> LocalProtocolError:
    """The error for a field name known not to be a token."""
    return LocalProtocolError(f"invalid header name {show(name)}: must be an RFC 9110 token")


def check_value(name: str, value: str) -> None:
    """Refuse a field value that breaks any of the module's value rules."""
    if BAD_VALUE_CHAR.search(value) is not None or value.strip(" \t") != value:
        raise value_error(name, value)


def value_error(name: str, value: str) -> LocalProtocolError:
    """The error for a value known to break a rule, naming the rule it breaks."""
    for char, label in _BAD_VALUE_LABELS:
        if char in value:
            return LocalProtocolError(f"header {name!r} value contains {label}: {show(value)}")
    if max(value, default="") > "\xff":
        return LocalProtocolError(
            f"header {name!r} value {show(value)} is not latin-1 encodable; "
            "percent-encode or RFC 8187-encode it"
        )
    return LocalProtocolError(
        f"header {name!r} has leading or trailing whitespace in its value "
        f"{show(value)}; strip it first"
    )


def first_value_error(fields: Iterable[tuple[str, str]]) -> LocalProtocolError:
    """The error for the first bad value of ``fields`` (one is known to be bad)."""
    for name, value in fields:
        try:
            check_value(name, value)
        except LocalProtocolError as exc:
            return exc
    raise AssertionError("first_value_error() called on valid fields")
