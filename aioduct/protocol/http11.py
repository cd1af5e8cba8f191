"""A strict, sans-I/O HTTP/1.1 codec for the client side of a connection.

:class:`ClientCodec` never touches a socket. It turns a request into bytes
(:meth:`~ClientCodec.encode_request`, :meth:`~ClientCodec.encode_data`,
:meth:`~ClientCodec.encode_end`) and the bytes the server sends back into events
(:meth:`~ClientCodec.receive_data`, then :meth:`~ClientCodec.next_event` until it returns
:data:`NEED_DATA`)::

    codec = ClientCodec()
    sock.sendall(codec.encode_request("GET", "/", [("Host", "example.org")]))
    while type(event := codec.next_event()) is not EndOfMessage:
        if event is NEED_DATA:
            codec.receive_data(sock.recv(65536))  # b"" tells the codec the server closed
        else:
            ...  # InformationalResponse, Response, Data

The semantics are h11's: RFC 9112 message framing, the same keep-alive rules, the same
tolerance of real-world oddities (a missing reason phrase, control characters other than
CR/LF/NUL/VT/FF inside header values, chunk extensions). The implementation is not: h11
serves both roles and every state with a regex per line, while this codec serves one
client exchange at a time, so the common case -- a whole response in one read -- costs
one ``find`` for the head, one latin-1 decode, one ``split``, a handful of C-level scans
that validate every byte of the head at once, and a short loop whose per-header work is
a dict lookup (header names are checked once and memoised). The body is a slice of the
received ``bytes`` object, or that very object when it holds exactly the body.

Where the two differ, this codec refuses more. A client loses nothing by refusing a
malformed response, and the first few refusals below close doors that request smuggling
and response splitting have used:

* Line endings must be CRLF; h11 also accepts a bare LF.
* Obsolete line folding (a header line starting with SP or HTAB) is an error; h11 unfolds.
* A response with both Transfer-Encoding and Content-Length is an error; h11 lets
  Transfer-Encoding win.
* Only ``HTTP/1.0`` and ``HTTP/1.1`` status lines are accepted; h11 takes ``HTTP/d.d``.
* A chunk size has at most 16 hex digits (h11: 20), a chunk-size line is at most
  ``MAX_CHUNK_LINE`` bytes, and chunk extensions may not hold control characters other
  than HTAB; h11 discards extensions unread.
* Content-Length and Transfer-Encoding are refused in trailers (RFC 9110 §6.5.1 forbids
  framing fields there); h11 validates and passes them on.
* Bytes that arrive after a complete response make the connection non-reusable; h11 keeps
  them for a pipelined next response, which a non-pipelining client never asked for.
* Heads and trailer sections are bounded by ``max_head_bytes`` and ``max_headers``; h11
  bounds only unparsed bytes (16 KiB by default).
* Informational (1xx) responses are bounded per request: at most ``max_informational``
  of them, and ``max_head_bytes`` for all of them together; h11 reads them forever
  (CPython's CVE-2021-3737 class: a server answering ``100 Continue`` endlessly).

When sending, the codec checks what h11 checks -- the method and header names are tokens,
the target is visible ASCII, header values hold no CR/LF/NUL/VT/FF and no surrounding
whitespace, there is exactly one Host -- and it owns the framing: a body is announced with
Content-Length, and ``chunked=True`` (never a hand-written Transfer-Encoding header)
selects chunked encoding.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable
from typing import Final, TypeAlias

from aioduct.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

from .rules import (
    MAX_INFORMATIONAL_RESPONSES,
    TOKEN,
    check_method,
    check_target,
    first_value_error,
    name_error,
    show,
    value_error,
)

__all__ = [
    "MAX_CHUNK_LINE",
    "NEED_DATA",
    "ClientCodec",
    "Data",
    "EndOfMessage",
    "Event",
    "InformationalResponse",
    "NeedData",
    "Response",
]

Fields: TypeAlias = list[tuple[str, str]]

#: The longest chunk-size line (size, extensions, CRLF) the codec waits for.
MAX_CHUNK_LINE: Final = 4096


# -- events ------------------------------------------------------------------------------------


class _Event:
    """Value semantics for the event classes: equality and repr over ``__match_args__``.

    Plain ``__slots__`` classes rather than dataclasses because the parser builds several
    events per response and a frozen dataclass's ``__init__`` costs several times more.
    """

    __slots__ = ()
    __match_args__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__match_args__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Event)
        return self._values() == other._values()

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__match_args__)
        return f"{type(self).__name__}({fields})"


class InformationalResponse(_Event):
    """A 1xx interim response other than 101: 100 Continue, 102, 103 Early Hints.

    The final response is still to come; keep calling :meth:`ClientCodec.next_event`.
    """

    __slots__ = ("headers", "reason", "status")
    __match_args__ = ("status", "reason", "headers")

    def __init__(self, status: int, reason: str, headers: Fields) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers


class Response(_Event):
    """The final response head (or a 101, after which the connection changes protocol).

    ``headers`` are ``(name, value)`` pairs in arrival order with the server's name case,
    repeats kept, values latin-1 decoded and stripped of surrounding whitespace.
    ``http_version`` is ``"1.1"`` or ``"1.0"``.
    """

    __slots__ = ("headers", "http_version", "reason", "status")
    __match_args__ = ("status", "reason", "headers", "http_version")

    def __init__(self, status: int, reason: str, headers: Fields, http_version: str) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.http_version = http_version


class Data(_Event):
    """A piece of the response body: everything that was buffered, never split further."""

    __slots__ = ("data",)
    __match_args__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


class EndOfMessage(_Event):
    """The response body is complete; ``trailers`` come from a chunked body, else ``[]``."""

    __slots__ = ("trailers",)
    __match_args__ = ("trailers",)

    def __init__(self, trailers: Fields | None = None) -> None:
        self.trailers = [] if trailers is None else trailers


Event: TypeAlias = InformationalResponse | Response | Data | EndOfMessage


class NeedData(enum.Enum):
    """The type of :data:`NEED_DATA`; an enum so that ``event is NEED_DATA`` narrows types."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`ClientCodec.next_event` when no event can be produced from what has
#: been received: read more and call :meth:`ClientCodec.receive_data`. After the response
#: is complete (or the protocol switched) it is returned until the next cycle starts.
NEED_DATA: Final = NeedData.NEED_DATA


# -- header names ------------------------------------------------------------------------------

# The few fields the codec acts on; every other name is kind 0.
_CONTENT_LENGTH: Final = 1
_TRANSFER_ENCODING: Final = 2
_CONNECTION: Final = 3
_HOST: Final = 4
_UPGRADE: Final = 5
_KIND_BY_LOWER_NAME: Final = {
    "content-length": _CONTENT_LENGTH,
    "transfer-encoding": _TRANSFER_ENCODING,
    "connection": _CONNECTION,
    "host": _HOST,
    "upgrade": _UPGRADE,
}

# Valid header names as sent/received (any case) -> kind. A connection sees the same few
# dozen names over and over, so validating each distinct spelling once turns the per-header
# token check into a dict lookup. Bounded so that a hostile peer cannot grow it forever.
_NAME_KINDS: dict[str, int] = {}
_NAME_MEMO_SIZE: Final = 4096


def _learn_name(name: str) -> int | None:
    """The kind of a header name not seen before, or None if it is not a token."""
    if TOKEN.fullmatch(name) is None:
        return None
    kind = _KIND_BY_LOWER_NAME.get(name.lower(), 0)
    if len(_NAME_KINDS) < _NAME_MEMO_SIZE:
        _NAME_KINDS[name] = kind
    return kind


def _has_token(value: str, token: str) -> bool:
    """Whether the comma-separated, case-insensitive list ``value`` contains ``token``."""
    return token in [item.strip(" \t") for item in value.lower().split(",")]


_show = show


# -- parsing helpers ---------------------------------------------------------------------------

# Status lines repeat even more than header names; memoise the parse (bounded, as above).
_STATUS_LINES: dict[str, tuple[int, str, str]] = {}
_STATUS_MEMO_SIZE: Final = 512
_ANY_HTTP_VERSION: Final = re.compile(r"HTTP/[0-9]\.[0-9] ")


def _parse_status_line(line: str) -> tuple[int, str, str]:
    """``HTTP/1.x SSS reason`` -> (status, reason, version), as h11's grammar has it.

    The reason phrase is optional, the space before it is not when it is present, and the
    caller has already rejected NUL, CR, LF, VT and FF anywhere in the head.
    """
    version = line[5:8]
    if line[:5] != "HTTP/" or version not in ("1.1", "1.0") or line[8:9] != " ":
        if _ANY_HTTP_VERSION.match(line):
            raise RemoteProtocolError(
                f"unsupported HTTP version {line[:8]!r} in status line {_show(line)}"
            )
        raise RemoteProtocolError(
            f"invalid status line {_show(line)}: expected 'HTTP/1.1 <3 digits> <reason>'"
        )
    code = line[9:12]
    if len(code) != 3 or not code.isdecimal() or line[12:13] not in ("", " "):
        raise RemoteProtocolError(f"invalid status code in status line {_show(line)}")
    status = int(code)
    if status < 100:
        raise RemoteProtocolError(f"status code {code} is out of range in {_show(line)}")
    parsed = (status, line[13:], version)
    if len(_STATUS_LINES) < _STATUS_MEMO_SIZE:
        _STATUS_LINES[line] = parsed
    return parsed


# Whole field lines repeat too: a server sends the same Server, Content-Type, Connection
# and often Content-Length lines on every response. Memoising the parse of a line turns
# partition + name lookup + strip + tuple into one dict lookup. Only short lines are kept
# and the memo is emptied when full, so neither a hostile peer nor ever-changing lines
# (Date) can grow it without bound.
_FIELD_LINES: dict[str, tuple[tuple[str, str], int]] = {}
_FIELD_MEMO_SIZE: Final = 1024
_FIELD_MEMO_LINE: Final = 128


def _parse_fields(lines: list[str]) -> tuple[Fields, list[tuple[int, str]]]:
    """Field lines -> (fields, the (kind, value) of the fields the codec acts on).

    A value is whatever follows the colon, stripped of spaces and tabs (h11's
    ``OWS field-value OWS``). Raises :class:`_ForbiddenByte` for a line holding NUL, CR,
    LF, VT or FF, which the caller reports with the line's number.
    """
    fields: Fields = []
    specials: list[tuple[int, str]] = []
    append = fields.append
    known = _FIELD_LINES.get
    for line in lines:
        parsed = known(line)
        if parsed is None:
            parsed = _parse_field_line(line)
        field, kind = parsed
        if kind:
            specials.append((kind, field[1]))
        append(field)
    return fields, specials


class _ForbiddenByte(Exception):
    """A field line holds NUL, CR, LF, VT or FF (internal: the caller explains it)."""


def _parse_field_line(line: str) -> tuple[tuple[str, str], int]:
    """``name: value`` -> ((name, value), kind), memoised (see _FIELD_LINES).

    The line is checked for forbidden bytes here, once: memoised lines are known clean,
    so a head whose lines are all memoised needs no scan for them at all.
    """
    if _forbidden_in(line, 0):
        raise _ForbiddenByte
    name, colon, value = line.partition(":")
    kind = _NAME_KINDS.get(name)
    if kind is None or not colon:
        kind = _learn_name(name) if colon else None
        if kind is None:
            raise RemoteProtocolError(_bad_field_line(line))
    parsed = ((name, value.strip(" \t")), kind)
    if len(line) <= _FIELD_MEMO_LINE:
        if len(_FIELD_LINES) >= _FIELD_MEMO_SIZE:
            _FIELD_LINES.clear()
        _FIELD_LINES[line] = parsed
    return parsed


def _bad_field_line(line: str) -> str:
    """Explain why a received field line was rejected."""
    if line.startswith((" ", "\t")):
        return f"obsolete line folding (a header line starting with whitespace): {_show(line)}"
    name, colon, _ = line.partition(":")
    if not colon:
        return f"header line without a colon: {_show(line)}"
    if not name:
        return f"header line with an empty name: {_show(line)}"
    if name.rstrip(" \t") != name:
        return f"whitespace between header name and colon: {_show(line)}"
    return f"invalid character in header name {_show(name)}"


_RECEIVED_BAD: Final = (
    ("\x00", "a NUL byte"),
    ("\r", "a bare CR"),
    ("\n", "a bare LF (only CRLF line endings are accepted)"),
    ("\x0b", "a vertical tab"),
    ("\x0c", "a form feed"),
)


def _bad_characters(lines: list[str], what: str) -> str:
    """Explain which line of a head or trailer section holds a forbidden byte."""
    number, line, label = next(
        (number, line, label)
        for number, line in enumerate(lines, 1)
        for char, label in _RECEIVED_BAD
        if char in line
    )
    return f"{what} line {number} contains {label}: {_show(line)}"


def _forbidden_in(text: str, crlf: int) -> bool:
    """Whether ``text``, which holds ``crlf`` line breaks, has any byte h11 refuses.

    Counting CR and LF proves that every one of them belongs to a CRLF (so a bare CR or LF
    anywhere, in a value or a reason phrase, is caught); the remaining scans look for NUL,
    VT and FF. Five C-level passes over a few hundred bytes cost less than one regex.
    """
    return (
        text.count("\r") != crlf
        or text.count("\n") != crlf
        or "\x00" in text
        or "\x0b" in text
        or "\x0c" in text
    )


_HEX_DIGITS: Final = b"0123456789abcdefABCDEF"
# chunk-size [ ";" extensions ] [ OWS ]; extensions are skipped but may not hold CTLs.
_CHUNK_LINE: Final = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[\t\x20-\x7e\x80-\xff]*)?[ \t]*")


def _chunk_size_with_extensions(buf: bytes | bytearray, start: int, end: int) -> int:
    """The size on a chunk-size line that is more than bare hex digits, or an error."""
    match = _CHUNK_LINE.fullmatch(buf, start, end)
    if match is None:
        line = bytes(buf[start:end])
        raise RemoteProtocolError(
            f"invalid chunk-size line {line[:40]!r}: expected 1 to 16 hex digits, "
            "optionally followed by ';' and extensions"
        )
    return int(match[1], 16)


# -- serialising helpers -----------------------------------------------------------------------


def _render_fields(fields: Iterable[tuple[str, str]], parts: list[str]) -> list[tuple[int, str]]:
    """Append ``name: value\\r\\n`` for each field to ``parts``; return the special ones.

    Names are checked here (memoised); bytes that are illegal in values are checked on the
    joined text by :func:`_encode_text`, which is cheaper than a check per value.
    """
    specials: list[tuple[int, str]] = []
    append = parts.append
    kind_of = _NAME_KINDS.get
    for name, value in fields:
        kind = kind_of(name)
        if kind is None:
            kind = _learn_name(name)
            if kind is None:
                raise name_error(name)
        if kind:
            specials.append((kind, value))
        if value.strip(" \t") != value:
            raise value_error(name, value)
        append(f"{name}: {value}\r\n")
    return specials


def _encode_text(parts: list[str], fields: Iterable[tuple[str, str]]) -> bytes:
    """Join ``parts`` (one line each) and encode as latin-1, refusing illegal bytes."""
    # Method, target and names are already known to be clean ASCII: only values can fail.
    text = "".join(parts)
    if _forbidden_in(text, len(parts)):
        raise first_value_error(fields)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise first_value_error(fields) from None


# A client sends the same header list over and over (Host, User-Agent, Accept and the
# configured defaults), so the rendered and validated field block is memoised by the list's
# contents. Bounded like the other memos: small blocks only, emptied when full.
_FieldBlock: TypeAlias = tuple[bytes, int, int, bool, bool]
_FIELD_BLOCKS: dict[tuple[tuple[str, str], ...], _FieldBlock] = {}
_BLOCK_MEMO_SIZE: Final = 256
_BLOCK_MEMO_BYTES: Final = 2048


def _field_block(headers: list[tuple[str, str]]) -> _FieldBlock:
    """Headers -> (``name: value\\r\\n`` lines encoded, Host count, Content-Length or -1,
    Connection: close, Upgrade), validated; memoised (see _FIELD_BLOCKS)."""
    try:
        key = tuple(headers)
        block = _FIELD_BLOCKS.get(key)
    except TypeError:  # pairs given as lists: not hashable, never memoised
        key, block = None, None
    if block is not None:
        return block
    parts: list[str] = []
    specials = _render_fields(headers, parts)
    host = 0
    length = -1
    close = upgrade = False
    for kind, value in specials:
        if kind == _HOST:
            host += 1
        elif kind == _CONTENT_LENGTH:
            if length >= 0:
                raise LocalProtocolError("more than one Content-Length header")
            if not (value.isascii() and value.isdigit()):
                raise LocalProtocolError(
                    f"Content-Length must be a non-negative integer, not {_show(value)}"
                )
            length = int(value)
        elif kind == _TRANSFER_ENCODING:
            raise LocalProtocolError("do not set Transfer-Encoding yourself: pass chunked=True")
        elif kind == _CONNECTION:
            close = close or _has_token(value, "close")
        else:
            upgrade = upgrade or bool(value.strip(" \t,"))
    block = (_encode_text(parts, headers), host, length, close, upgrade)
    if key is not None and len(block[0]) <= _BLOCK_MEMO_BYTES:
        if len(_FIELD_BLOCKS) >= _BLOCK_MEMO_SIZE:
            _FIELD_BLOCKS.clear()
        _FIELD_BLOCKS[key] = block
    return block


# -- the codec ---------------------------------------------------------------------------------

# What our side of the exchange is doing.
_SEND_IDLE: Final = 0  # no request yet in this cycle
_SEND_LENGTH: Final = 1  # streaming a body counted against Content-Length
_SEND_CHUNKED: Final = 2  # streaming a chunked body
_SEND_DONE: Final = 3  # the request is complete
_OUR_STATES: Final = ("IDLE", "SEND_BODY", "SEND_BODY", "DONE")

# Framing of the response body, as decided from its head.
_UNDELIMITED: Final = -1
_CHUNKED: Final = -2

_Reader: TypeAlias = Callable[["ClientCodec"], Event | NeedData]


class ClientCodec:
    """One HTTP/1.1 connection seen from the client, one request/response cycle at a time.

    Send a request with :meth:`encode_request` (plus :meth:`encode_data` and
    :meth:`encode_end` when streaming its body), feed what the server sends to
    :meth:`receive_data` and pull events with :meth:`next_event`. After the
    :class:`EndOfMessage`, :attr:`reusable` says whether the connection may carry another
    request; :meth:`start_next_cycle` prepares for it.

    The receiving side is a tiny state machine whose state *is* the function that reads
    the next event (``_reader``), so :meth:`next_event` costs one call and no dispatch.
    Any :class:`~aioduct.errors.ProtocolError` leaves the codec dead: every later call
    raises an error of the same class, as after h11's ERROR state.

    ``max_head_bytes`` bounds the response head (and a trailer section), ``max_headers``
    the number of header lines in it; their errors name the :class:`~aioduct.ClientConfig`
    options a user sets, ``max_response_head_bytes`` and ``max_response_headers``.
    ``max_informational`` bounds the interim (1xx) responses to one request, whose heads
    together must also fit ``max_head_bytes``.
    """

    __slots__ = (
        "_buf",
        "_chunk_left",
        "_close_reason",
        "_connect",
        "_eof",
        "_error",
        "_head_request",
        "_interim",
        "_interim_bytes",
        "_length",
        "_max_head_bytes",
        "_max_headers",
        "_max_interim",
        "_pos",
        "_reader",
        "_received",
        "_remaining",
        "_request_close",
        "_scan",
        "_send",
        "_send_left",
        "_send_total",
        "_started",
        "_upgrade",
    )

    def __init__(
        self,
        *,
        max_head_bytes: int = 65536,
        max_headers: int = 100,
        max_informational: int = MAX_INFORMATIONAL_RESPONSES,
    ) -> None:
        self._max_head_bytes = max_head_bytes
        self._max_headers = max_headers
        self._max_interim = max_informational
        #: Interim (1xx) responses of this cycle, and their heads' bytes.
        self._interim = self._interim_bytes = 0
        # Received bytes not yet parsed are _buf[_pos:]. _buf is the caller's own bytes
        # object whenever nothing was left over from the previous read, so a body that
        # arrives in one piece is sliced out of it (or handed out as it is) without a
        # copy; leftovers are moved to a bytearray only when more data must be appended.
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._scan = 0  # where the search for the end of a head may resume
        self._eof = False
        self._started = False
        self._error: ProtocolError | None = None
        self._reader: _Reader = ClientCodec._read_idle
        self._send = _SEND_IDLE
        self._send_left = self._send_total = 0
        self._head_request = self._connect = self._upgrade = self._request_close = False
        self._close_reason: str | None = None
        self._length = self._remaining = self._received = 0
        self._chunk_left = -1

    def __repr__(self) -> str:
        return f"<ClientCodec our_state={self.our_state} their_state={self.their_state}>"

    # -- sending -------------------------------------------------------------------------------

    def encode_request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | None = None,
        *,
        chunked: bool = False,
    ) -> bytes:
        """Serialise a request head, with ``body`` appended when one is given.

        ``target`` is the request-target (origin-form ``/path?query``, or absolute-form
        for a proxy). ``headers`` go out in order and case as given; they must include
        exactly one Host. Framing:

        * ``body`` given: Content-Length is added (or, if present, must equal
          ``len(body)``) and the result is head and body in one ``bytes``. For a large
          body, send a Content-Length header with ``body=None`` instead and pass the body
          to :meth:`encode_data`, which returns it as it is, without copying.
        * ``chunked=True``: Transfer-Encoding: chunked is added; stream the body with
          :meth:`encode_data` and finish with :meth:`encode_end`.
        * a Content-Length header and no body: stream exactly that many bytes with
          :meth:`encode_data`, then call :meth:`encode_end` (counts are enforced).
        * otherwise the request has no body and is complete.
        """
        if self._error is not None:
            raise self._dead_error()
        try:
            if self._send != _SEND_IDLE:
                raise LocalProtocolError(
                    "encode_request() called while a request is already in progress; "
                    "finish the exchange and call start_next_cycle() first"
                )
            check_method(method)
            check_target(target)
            fields, host, length, close, upgrade = _field_block(headers)
            if host != 1:
                raise LocalProtocolError(
                    "an HTTP/1.1 request needs a Host header"
                    if host == 0
                    else f"a request may have one Host header, not {host}"
                )
            if chunked:
                if body is not None:
                    raise LocalProtocolError(
                        "chunked=True streams the body through encode_data(); pass body=None"
                    )
                if length >= 0:
                    raise LocalProtocolError("chunked=True conflicts with a Content-Length header")
                end = b"Transfer-Encoding: chunked\r\n\r\n"
                send = _SEND_CHUNKED
            elif body is not None:
                end = b"\r\n"
                if length < 0:
                    end = b"Content-Length: %d\r\n\r\n" % len(body)
                elif length != len(body):
                    raise LocalProtocolError(
                        f"Content-Length header says {length} bytes but the body has {len(body)}"
                    )
                send = _SEND_DONE
            else:
                end = b"\r\n"
                send = _SEND_DONE
                if length > 0:
                    send = _SEND_LENGTH
                    self._send_left = self._send_total = length
            # Method and target were checked above: both are ASCII.
            head = b"".join((f"{method} {target} HTTP/1.1\r\n".encode("ascii"), fields, end))
        except LocalProtocolError as exc:
            self._die(exc)
            raise
        self._send = send
        self._head_request = method == "HEAD"
        self._connect = method == "CONNECT"
        self._upgrade = upgrade
        self._request_close = close
        self._reader = ClientCodec._read_head
        return head + body if body else head

    def encode_data(self, data: bytes) -> bytes:
        """Frame a piece of a streamed request body.

        Chunked: one chunk (``b""`` for empty data, which would otherwise end the body).
        Content-Length: ``data`` itself, counted against the declared length.
        """
        if self._error is not None:
            raise self._dead_error()
        size = len(data)
        send = self._send
        if send == _SEND_CHUNKED:
            return b"%x\r\n%b\r\n" % (size, data) if size else b""
        if send == _SEND_LENGTH:
            left = self._send_left - size
            if left < 0:
                raise self._die(
                    LocalProtocolError(
                        f"too much request body: Content-Length is {self._send_total} "
                        f"but {self._send_total - left} bytes were given"
                    )
                )
            self._send_left = left
            return data
        if not size:
            return b""
        raise self._die(
            LocalProtocolError(
                "encode_data() called but no request body is being streamed "
                "(pass a Content-Length header or chunked=True to encode_request())"
            )
        )

    def encode_end(self, trailers: list[tuple[str, str]] | None = None) -> bytes:
        """Finish a streamed request body: the last chunk (with ``trailers``) if chunked.

        For a Content-Length body this checks that every promised byte was given and
        returns ``b""``; once the request is complete it is a no-op returning ``b""``.
        """
        if self._error is not None:
            raise self._dead_error()
        send = self._send
        try:
            if send == _SEND_CHUNKED:
                end = b"0\r\n\r\n"
                if trailers:
                    parts = ["0\r\n"]
                    for kind, _ in _render_fields(trailers, parts):
                        if kind in (_CONTENT_LENGTH, _TRANSFER_ENCODING, _HOST):
                            raise LocalProtocolError(
                                "Content-Length, Transfer-Encoding and Host are not "
                                "allowed in trailers"
                            )
                    parts.append("\r\n")
                    end = _encode_text(parts, trailers)
                self._send = _SEND_DONE
                return end
            if trailers:
                raise LocalProtocolError("trailers can only be sent with chunked=True")
            if send == _SEND_LENGTH:
                if self._send_left:
                    raise LocalProtocolError(
                        f"request body ended after {self._send_total - self._send_left} of "
                        f"the {self._send_total} bytes promised by Content-Length"
                    )
                self._send = _SEND_DONE
            elif send == _SEND_IDLE:
                raise LocalProtocolError("encode_end() called before encode_request()")
            return b""
        except LocalProtocolError as exc:
            self._die(exc)
            raise

    # -- receiving -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Add bytes received from the server; ``b""`` (any empty buffer) means EOF.

        A ``bytes`` object is kept by reference (the body is sliced out of it later); a
        ``bytearray`` or ``memoryview`` is copied, since its owner may reuse it.
        """
        if self._error is not None:
            raise self._dead_error()
        if not data:
            self._eof = True
            return
        if self._eof:
            raise self._die(LocalProtocolError("receive_data() got data after the EOF (b'')"))
        self._started = True
        buf = self._buf
        pos = self._pos
        if pos >= len(buf):
            self._buf = data if type(data) is bytes else bytes(data)
            self._pos = self._scan = 0
        elif type(buf) is bytearray:
            if pos:
                del buf[:pos]
                self._scan -= pos
                self._pos = 0
            buf += data
        else:
            rest = bytearray(memoryview(buf)[pos:])
            rest += data
            self._buf = rest
            self._scan -= pos
            self._pos = 0

    def next_event(self) -> Event | NeedData:
        """The next event parsed from the received bytes, or :data:`NEED_DATA`.

        Raises :class:`~aioduct.errors.RemoteProtocolError` when the server broke the
        protocol (or closed the connection mid-message).
        """
        try:
            return self._reader(self)
        except ProtocolError as exc:
            self._die(exc)
            raise

    def read_complete_body(self) -> bytes | None:
        """The rest of the body if all of it is buffered already, ending the message.

        A shortcut for the common case of a small response that arrived in one read:
        instead of pulling :class:`Data` and :class:`EndOfMessage`, take the body in one
        call. Returns ``None`` (and changes nothing) whenever events must be pulled: a
        chunked or EOF-delimited body, a body not fully received, or any other state.
        """
        reader = self._reader
        if reader is ClientCodec._read_length:
            pos = self._pos
            end = pos + self._remaining
            if len(self._buf) < end:
                return None
            self._remaining = 0
            self._pos = self._scan = end
            self._reader = ClientCodec._read_done
            return self._take(pos, end)
        if reader is ClientCodec._read_end:
            self._reader = ClientCodec._read_done
            return b""
        return None

    def length_body_left(self) -> int:
        """Bytes of a Content-Length body not yet handed out, or -1 for any other state.

        With :meth:`take_buffered_body` and :meth:`body_received`, a caller that knows
        how much is coming can receive the body into one buffer of its own (one copy
        instead of a ``bytes`` per read, their slices and a join).
        """
        return self._remaining if self._reader is ClientCodec._read_length else -1

    def take_buffered_body(self) -> memoryview:
        """The buffered part of a Content-Length body (at most all of it), consumed.

        The view is only valid until the next :meth:`receive_data`: copy it at once.
        """
        if self._reader is not ClientCodec._read_length:
            raise LocalProtocolError("take_buffered_body() outside a Content-Length body")
        pos = self._pos
        end = min(len(self._buf), pos + self._remaining)
        if end <= pos:
            return memoryview(b"")
        self._remaining -= end - pos
        self._pos = self._scan = end
        if not self._remaining:
            self._reader = ClientCodec._read_end
        return memoryview(self._buf)[pos:end]

    def body_received(self, count: int) -> None:
        """``count`` more bytes of the Content-Length body arrived outside the codec.

        When that completes the body, the next event is :class:`EndOfMessage`; after
        an EOF (``receive_data(b"")``) with bytes still missing, the next event raises
        the error for a truncated body, as if the bytes had come through the codec.
        """
        if self._reader is not ClientCodec._read_length or not 0 <= count <= self._remaining:
            raise LocalProtocolError(
                f"body_received({count}) with {self.length_body_left()} body bytes expected"
            )
        self._started = True
        self._remaining -= count
        if not self._remaining:
            self._reader = ClientCodec._read_end

    # -- cycle state ---------------------------------------------------------------------------

    @property
    def response_started(self) -> bool:
        """Whether any byte of this cycle's response has arrived.

        An EOF or reset while this is False on a reused connection means the server
        closed the idle connection before it saw the request: safe to retry.
        """
        return self._started

    @property
    def reusable(self) -> bool:
        """Whether the connection can carry another request now.

        True only after the :class:`EndOfMessage` of an HTTP/1.1 response, when neither
        side asked to close, the body was not delimited by EOF, the request body was sent
        completely, no EOF was received and no bytes arrived after the response.
        """
        return (
            self._reader is ClientCodec._read_done
            and self._close_reason is None
            and self._send == _SEND_DONE
            and not self._eof
            and self._pos >= len(self._buf)
        )

    def start_next_cycle(self) -> None:
        """Reset for the next request on the same connection; only legal when reusable."""
        if self._error is not None:
            raise self._dead_error()
        if not self.reusable:
            raise self._die(
                LocalProtocolError(
                    f"start_next_cycle() called but the connection is not reusable: "
                    f"{self._why_not_reusable()}"
                )
            )
        self._buf = b""
        self._pos = self._scan = 0
        self._started = False
        self._reader = ClientCodec._read_idle
        self._send = _SEND_IDLE
        self._interim = self._interim_bytes = 0

    @property
    def trailing_data(self) -> bytes:
        """Received bytes not consumed by the codec.

        After a 101 response (or a 2xx response to CONNECT) these are the first bytes of
        the new protocol.
        """
        return bytes(self._buf[self._pos :])

    @property
    def our_state(self) -> str:
        """Our side in h11's names: ``IDLE``, ``SEND_BODY``, ``DONE`` or ``ERROR``."""
        return "ERROR" if self._error is not None else _OUR_STATES[self._send]

    @property
    def their_state(self) -> str:
        """The server's side in h11's names.

        ``IDLE`` (no request yet), ``SEND_RESPONSE``, ``SEND_BODY``, ``DONE``,
        ``SWITCHED_PROTOCOL`` or ``ERROR``.
        """
        return _THEIR_STATES[self._reader]

    # -- internals: errors ---------------------------------------------------------------------

    def _die(self, exc: ProtocolError) -> ProtocolError:
        if self._error is None:
            self._error = exc
            self._reader = ClientCodec._read_dead
        return exc

    def _dead_error(self) -> ProtocolError:
        error = self._error
        assert error is not None
        return type(error)(f"the connection is unusable after an earlier error: {error}")

    def _why_not_reusable(self) -> str:
        if self._reader is not ClientCodec._read_done:
            return f"the response is not complete (their_state={self.their_state})"
        if self._close_reason is not None:
            return self._close_reason
        if self._send != _SEND_DONE:
            return "the request body was not sent completely"
        if self._pos < len(self._buf):
            return f"the server sent {len(self._buf) - self._pos} bytes after the response"
        return "the server closed the connection"

    # -- internals: readers, one per receiving state -------------------------------------------

    def _read_idle(self) -> Event | NeedData:
        raise LocalProtocolError(
            "next_event() called before encode_request(): the request method is needed "
            "to read the response"
        )

    def _read_dead(self) -> Event | NeedData:
        raise self._dead_error()

    def _read_done(self) -> Event | NeedData:
        return NEED_DATA

    def _read_switched(self) -> Event | NeedData:
        return NEED_DATA

    def _read_head(self) -> Event | NeedData:
        buf = self._buf
        pos = self._pos
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            self._await_block("response head")
            if self._eof:
                raise RemoteProtocolError(self._eof_in_head())
            return NEED_DATA
        if end + 4 - pos > self._max_head_bytes:
            raise RemoteProtocolError(
                f"response head exceeds max_response_head_bytes={self._max_head_bytes}"
            )
        self._pos = self._scan = end + 4
        head = buf[pos:end].decode("latin-1")
        lines = head.split("\r\n")
        count = len(lines) - 1
        status_line = lines[0]
        parsed = _STATUS_LINES.get(status_line)
        if parsed is None:
            # Memoised lines were checked when first seen; a new status line means a
            # check of the whole head, in order, as h11 would report it.
            if _forbidden_in(head, count):
                raise RemoteProtocolError(_bad_characters(lines, "response head"))
            parsed = _parse_status_line(status_line)
        if count > self._max_headers:
            raise RemoteProtocolError(
                f"response head has {count} header lines, more than "
                f"max_response_headers={self._max_headers}"
            )
        status, reason, version = parsed
        try:
            headers, specials = _parse_fields(lines[1:])
        except _ForbiddenByte:
            raise RemoteProtocolError(_bad_characters(lines, "response head")) from None
        length, close = _framing(specials) if specials else (_UNDELIMITED, False)
        if status < 200:
            if status != 101:
                self._count_interim(end + 4 - pos)
                return InformationalResponse(status, reason, headers)
            if not self._upgrade:
                raise RemoteProtocolError(
                    "server sent 101 Switching Protocols but the request did not ask to upgrade"
                )
            self._switch()
            return Response(status, reason, headers, version)
        if version != "1.1":
            self._close_reason = "the response is HTTP/1.0"
        elif close:
            self._close_reason = "the response has Connection: close"
        elif self._request_close:
            self._close_reason = "the request has Connection: close"
        if self._connect and status < 300:
            self._switch()
        elif self._head_request or status == 204 or status == 304:
            self._reader = ClientCodec._read_end
        elif length > 0:
            self._length = self._remaining = length
            self._reader = ClientCodec._read_length
        elif length == 0:
            self._reader = ClientCodec._read_end
        elif length == _CHUNKED:
            self._chunk_left = -1
            self._received = 0
            self._reader = ClientCodec._read_chunked
        else:
            self._close_reason = "the response body is delimited by the connection closing"
            self._reader = ClientCodec._read_until_eof
        return Response(status, reason, headers, version)

    def _count_interim(self, size: int) -> None:
        """Bound the 1xx responses to one request: their number and their bytes."""
        self._interim += 1
        self._interim_bytes += size
        if self._interim > self._max_interim:
            raise RemoteProtocolError(
                f"the server sent more than {self._max_interim} informational (1xx) "
                "responses to one request"
            )
        if self._interim_bytes > self._max_head_bytes:
            raise RemoteProtocolError(
                "the informational (1xx) responses to one request exceed "
                f"max_response_head_bytes={self._max_head_bytes} together"
            )

    def _switch(self) -> None:
        self._close_reason = "the connection switched protocols"
        self._reader = ClientCodec._read_switched

    def _await_block(self, what: str) -> None:
        """Between receives of an incomplete head or trailer section: enforce the limit and
        refuse a bare LF now, rather than waiting for a CRLF CRLF that may never come."""
        buf = self._buf
        pos = self._pos
        if len(buf) - pos > self._max_head_bytes:
            raise RemoteProtocolError(
                f"{what} exceeds max_response_head_bytes={self._max_head_bytes}"
            )
        lf = buf.find(b"\n", self._scan)
        while lf >= 0:
            if lf == pos or buf[lf - 1] != 0x0D:
                raise RemoteProtocolError(
                    f"{what} has a bare LF line ending; only CRLF is accepted"
                )
            lf = buf.find(b"\n", lf + 1)
        self._scan = max(pos, len(buf) - 3)

    def _eof_in_head(self) -> str:
        buffered = len(self._buf) - self._pos
        if not self._started:
            return "server closed the connection without sending a response"
        if not buffered:
            return "server closed the connection after an informational (1xx) response"
        return f"server closed the connection after {buffered} bytes of an incomplete response head"

    def _take(self, start: int, end: int) -> bytes:
        """``_buf[start:end]`` as bytes, with one copy (none if it is the whole buffer)."""
        buf = self._buf
        if type(buf) is bytes:
            return buf[start:end]
        return bytes(memoryview(buf)[start:end])

    def _read_end(self) -> Event | NeedData:
        self._reader = ClientCodec._read_done
        return EndOfMessage([])

    def _read_length(self) -> Event | NeedData:
        pos = self._pos
        available = len(self._buf) - pos
        if available <= 0:
            if self._eof:
                raise RemoteProtocolError(
                    f"peer closed connection after {self._length - self._remaining} of "
                    f"{self._length} body bytes"
                )
            return NEED_DATA
        remaining = self._remaining
        if available >= remaining:
            end = pos + remaining
            self._remaining = 0
            self._reader = ClientCodec._read_end
        else:
            end = pos + available
            self._remaining = remaining - available
        self._pos = self._scan = end
        return Data(self._take(pos, end))

    def _read_until_eof(self) -> Event | NeedData:
        pos = self._pos
        end = len(self._buf)
        if pos < end:
            self._pos = self._scan = end
            return Data(self._take(pos, end))
        if self._eof:
            self._reader = ClientCodec._read_done
            return EndOfMessage([])
        return NEED_DATA

    def _read_chunked(self) -> Event | NeedData:
        # _chunk_left: > 0 bytes of chunk data still to come; 0 the chunk's data is
        # complete and its CRLF is due; -1 a chunk-size line is due. Every chunk already
        # buffered is gathered into a single Data (slices of a bytes buffer, views of a
        # bytearray one, so that the join below is the only copy).
        buf = self._buf
        view = buf if type(buf) is bytes else memoryview(buf)
        pos = self._pos
        size = len(buf)
        left = self._chunk_left
        pieces: list[bytes | memoryview] = []
        while True:
            if left < 0:
                eol = buf.find(b"\r\n", pos, pos + MAX_CHUNK_LINE)
                if eol < 0:
                    if size - pos >= MAX_CHUNK_LINE:
                        raise RemoteProtocolError(
                            f"chunk-size line longer than {MAX_CHUNK_LINE} bytes"
                        )
                    break
                digits = buf[pos:eol]
                if len(digits) <= 16 and digits and not digits.strip(_HEX_DIGITS):
                    left = int(digits, 16)
                else:
                    left = _chunk_size_with_extensions(buf, pos, eol)
                pos = eol + 2
                if not left:
                    self._reader = ClientCodec._read_trailers
                    break
            if left:
                end = pos + left
                if end > size:
                    if pos < size:
                        pieces.append(view[pos:size])
                        left = end - size
                        pos = size
                    break
                pieces.append(view[pos:end])
                pos = end
                left = 0
            if not buf.startswith(b"\r\n", pos):
                if size - pos >= 2 or (size > pos and buf[pos] != 0x0D):
                    raise RemoteProtocolError("chunk data is not followed by CRLF")
                break
            pos += 2
            left = -1
        self._pos = self._scan = pos
        self._chunk_left = left
        if pieces:
            data = b"".join(pieces)
            self._received += len(data)
            return Data(data)
        if self._reader is not ClientCodec._read_chunked:
            return self._read_trailers()
        if self._eof:
            raise RemoteProtocolError(
                f"peer closed connection inside a chunked body after {self._received} body bytes"
            )
        return NEED_DATA

    def _read_trailers(self) -> Event | NeedData:
        buf = self._buf
        pos = self._pos
        if buf[pos : pos + 2] == b"\r\n":
            self._pos = self._scan = pos + 2
            self._reader = ClientCodec._read_done
            return EndOfMessage([])
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            self._await_block("trailer section")
            if self._eof:
                raise RemoteProtocolError(
                    "peer closed connection inside the trailer section of a chunked body"
                )
            return NEED_DATA
        if end + 4 - pos > self._max_head_bytes:
            raise RemoteProtocolError(
                f"trailer section exceeds max_response_head_bytes={self._max_head_bytes}"
            )
        text = buf[pos:end].decode("latin-1")
        lines = text.split("\r\n")
        if _forbidden_in(text, len(lines) - 1):
            raise RemoteProtocolError(_bad_characters(lines, "trailer section"))
        if len(lines) > self._max_headers:
            raise RemoteProtocolError(
                f"trailer section has {len(lines)} lines, more than "
                f"max_response_headers={self._max_headers}"
            )
        trailers, specials = _parse_fields(lines)
        for kind, _ in specials:
            if kind in (_CONTENT_LENGTH, _TRANSFER_ENCODING):
                raise RemoteProtocolError(
                    "Content-Length and Transfer-Encoding are not allowed in trailers"
                )
        self._pos = self._scan = end + 4
        self._reader = ClientCodec._read_done
        return EndOfMessage(trailers)


# The framing fields of a server's responses repeat as well (Content-Length of the same
# resource, Connection: keep-alive): their validated meaning is memoised, bounded as above.
_FRAMINGS: dict[tuple[tuple[int, str], ...], tuple[int, bool]] = {}
_FRAMING_MEMO_SIZE: Final = 256
_FRAMING_MEMO_VALUE: Final = 64


def _framing(specials: list[tuple[int, str]]) -> tuple[int, bool]:
    """Validate a head's framing fields -> (body length or _CHUNKED/_UNDELIMITED, close).

    Runs on every head, 1xx and bodiless ones included, because h11 validates them all.
    """
    key = tuple(specials)
    framing = _FRAMINGS.get(key)
    if framing is None:
        framing = _decide_framing(specials)
        if all(len(value) <= _FRAMING_MEMO_VALUE for _, value in specials):
            if len(_FRAMINGS) >= _FRAMING_MEMO_SIZE:
                _FRAMINGS.clear()
            _FRAMINGS[key] = framing
    return framing


def _decide_framing(specials: list[tuple[int, str]]) -> tuple[int, bool]:
    """:func:`_framing` for fields not seen together before."""
    length: str | None = None
    chunked = close = False
    for kind, value in specials:
        if kind == _CONTENT_LENGTH:
            if not value.isdecimal() or len(value) > 20:
                value = _odd_content_length(value)
            if length is None:
                length = value
            elif length != value:
                raise RemoteProtocolError(
                    f"response has conflicting Content-Length values {length!r} and {value!r}"
                )
        elif kind == _TRANSFER_ENCODING:
            if chunked:
                raise RemoteProtocolError("response has more than one Transfer-Encoding header")
            if value.lower() != "chunked":
                raise RemoteProtocolError(
                    f"response has Transfer-Encoding {_show(value)}; only 'chunked' is supported"
                )
            chunked = True
        elif kind == _CONNECTION and not close and "close" in value.lower():
            close = _has_token(value, "close")
    if chunked:
        if length is not None:
            raise RemoteProtocolError("response has both Transfer-Encoding and Content-Length")
        return _CHUNKED, close
    return (_UNDELIMITED if length is None else int(length)), close


def _odd_content_length(value: str) -> str:
    """Accept ``n, n, n`` (RFC 9110 §8.6 allows it; h11 does too), refuse anything else."""
    items = {item.strip(" \t") for item in value.split(",")}
    if len(items) != 1:
        raise RemoteProtocolError(
            f"response has conflicting Content-Length values in {_show(value)}"
        )
    (item,) = items
    if not item.isdecimal() or len(item) > 20:
        raise RemoteProtocolError(
            f"response has invalid Content-Length {_show(value)}: must be at most 20 digits"
        )
    return item


_THEIR_STATES: Final[dict[_Reader, str]] = {
    ClientCodec._read_idle: "IDLE",
    ClientCodec._read_head: "SEND_RESPONSE",
    ClientCodec._read_length: "SEND_BODY",
    ClientCodec._read_chunked: "SEND_BODY",
    ClientCodec._read_trailers: "SEND_BODY",
    ClientCodec._read_until_eof: "SEND_BODY",
    ClientCodec._read_end: "SEND_BODY",
    ClientCodec._read_done: "DONE",
    ClientCodec._read_switched: "SWITCHED_PROTOCOL",
    ClientCodec._read_dead: "ERROR",
}
