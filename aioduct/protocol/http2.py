"""Sans-I/O HTTP/2 client protocol (RFC 9113): bytes in, events out.

:class:`H2Protocol` holds one client connection's state and never touches a socket: the
connection layer feeds it received bytes (:meth:`H2Protocol.receive_data`), gets back a
list of this module's small events, and writes whatever :meth:`H2Protocol.data_to_send`
returns. Requests are streams (:meth:`H2Protocol.send_request`), request bodies go out
through :meth:`H2Protocol.send_body` only as far as the peer's flow-control windows
allow (the caller waits for :class:`WindowUpdated` before offering the rest), and
received DATA is credited back with :meth:`H2Protocol.acknowledge` -- which the
connection layer calls when the *reader* consumed the bytes, so a slow consumer holds
the server back instead of growing a buffer.

The framing layer, the stream states and flow control are written here for the client
side only (the ``h2`` library served before; its generic machinery -- a state machine
object per stream and per connection, an event object per frame, header validation
passes -- cost about 50 µs per request, most of aioduct's HTTP/2 overhead). HPACK is
jh2's Rust coder when ``jh2`` is installed (the ``http2-fast`` extra), else ``hpack``'s
pure-Python one behind memoising subclasses (:class:`_MemoEncoder`, :class:`_MemoDecoder`).
``tests/http2`` runs this protocol against ``h2``'s server side.

Time is an input (``now=``) for the adaptive window: a PING measures the round trip,
the bytes received meanwhile estimate the bandwidth-delay product, and the windows grow
to twice the estimate when it approaches them (the BDP algorithm hyper and gRPC use).

A peer that breaks the protocol raises :class:`~aioduct.errors.RemoteProtocolError`
(with a GOAWAY queued, naming the error), a stream-level error resets only its stream
(:class:`StreamReset` with ``remote=False``), and a request that cannot be encoded
raises :class:`~aioduct.errors.LocalProtocolError`.
"""

from __future__ import annotations

import importlib
import os
import re
import struct
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any, Final, Protocol

import hpack

from ..errors import LocalProtocolError, RemoteProtocolError
from .rules import (
    MAX_INFORMATIONAL_RESPONSES,
    TOKEN,
    check_method,
    check_name,
    check_scheme,
    check_target,
    check_value,
    show,
)

#: jh2's Rust HPACK coder (the ``http2-fast`` extra), unless AIODUCT_HPACK=python.
_rust_hpack: Any = None
if os.environ.get("AIODUCT_HPACK", "").lower() != "python":
    try:
        _rust_hpack = importlib.import_module("jh2._hazmat")
    except ImportError:
        pass

__all__ = [
    "ConnectionTerminated",
    "DataReceived",
    "H2Protocol",
    "InformationalResponse",
    "PingAcked",
    "ResponseReceived",
    "SettingsChanged",
    "StreamEnded",
    "StreamReset",
    "TooManyStreamsError",
    "TrailersReceived",
    "WindowUpdated",
    "error_name",
    "hpack_backend",
]

#: Headers that are meaningful only on one HTTP/1.1 connection (RFC 9113 §8.2.2).
_HOP_BY_HOP: Final = frozenset(
    ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host")
)
#: The adaptive window never grows past this (hyper's and gRPC's ceiling).
_BDP_MAX_WINDOW: Final = 16 * 1024 * 1024
#: PING payload that marks a bandwidth-delay sample (keep-alive PINGs use another).
BDP_PING: Final = b"aioductB"
KEEPALIVE_PING: Final = b"aioductK"

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6).
_DATA: Final = 0x0
_HEADERS: Final = 0x1
_PRIORITY: Final = 0x2
_RST_STREAM: Final = 0x3
_SETTINGS: Final = 0x4
_PUSH_PROMISE: Final = 0x5
_PING: Final = 0x6
_GOAWAY: Final = 0x7
_WINDOW_UPDATE: Final = 0x8
_CONTINUATION: Final = 0x9
# Flags.
_END_STREAM: Final = 0x1
_ACK: Final = 0x1
_END_HEADERS: Final = 0x4
_PADDED: Final = 0x8
_PRIORITY_FLAG: Final = 0x20

# Error codes (RFC 9113 §7).
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
STREAM_CLOSED: Final = 0x5
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB
_ERROR_NAMES: Final = (
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "INTERNAL_ERROR",
    "FLOW_CONTROL_ERROR",
    "SETTINGS_TIMEOUT",
    "STREAM_CLOSED",
    "FRAME_SIZE_ERROR",
    "REFUSED_STREAM",
    "CANCEL",
    "COMPRESSION_ERROR",
    "CONNECT_ERROR",
    "ENHANCE_YOUR_CALM",
    "INADEQUATE_SECURITY",
    "HTTP_1_1_REQUIRED",
)

# SETTINGS identifiers (RFC 9113 §6.5.2, RFC 8441).
_S_HEADER_TABLE_SIZE: Final = 0x1
_S_ENABLE_PUSH: Final = 0x2
_S_MAX_CONCURRENT_STREAMS: Final = 0x3
_S_INITIAL_WINDOW_SIZE: Final = 0x4
_S_MAX_FRAME_SIZE: Final = 0x5
_S_MAX_HEADER_LIST_SIZE: Final = 0x6
_S_ENABLE_CONNECT_PROTOCOL: Final = 0x8

#: The HPACK table our encoder keeps, whatever larger SETTINGS_HEADER_TABLE_SIZE the
#: server allows: the RFC 7541 default (and nghttp2's). The server's value only permits
#: a table that large; taken as it is, a server saying 2^32-1 would let the table of a
#: long-lived connection grow with every distinct request field.
_MAX_ENCODER_TABLE: Final = 4096
#: CONTINUATION frames accepted after one HEADERS at least (nghttp2's default), whatever
#: the header list and frame sizes allow (see H2Protocol).
_MIN_CONTINUATIONS: Final = 8

_MAX_WINDOW: Final = 2**31 - 1
_MAX_STREAM_ID: Final = 2**31 - 1
_DEFAULT_WINDOW: Final = 65535
_MIN_FRAME: Final = 16384
_MAX_FRAME: Final = 2**24 - 1
#: Before the server's SETTINGS: no stream limit (the connection layer waits for them).
_UNLIMITED_STREAMS: Final = 2**32 + 1

_FRAME_HEADER: Final = struct.Struct(">HBBBL")
_unpack_header: Final = _FRAME_HEADER.unpack_from
_U32: Final = struct.Struct(">L")
_unpack_u32: Final = _U32.unpack_from
_SETTING: Final = struct.Struct(">HL")
_GOAWAY_HEAD: Final = struct.Struct(">LL")


def _frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _FRAME_HEADER.pack(n >> 8, n & 0xFF, kind, flags, stream_id) + payload


def _frame_head(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    return _FRAME_HEADER.pack(length >> 8, length & 0xFF, kind, flags, stream_id)


class TooManyStreamsError(Exception):
    """Opening a stream now would exceed the server's SETTINGS_MAX_CONCURRENT_STREAMS."""


class _ConnectionError(Exception):
    """Internal: the peer broke the protocol; the connection ends with ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _StreamError(Exception):
    """Internal: the peer broke the protocol on one stream; only it is reset."""

    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(stream_id, code)
        self.stream_id = stream_id
        self.code = code


class _Event:
    __slots__ = ()

    def __repr__(self) -> str:
        names: tuple[str, ...] = self.__slots__
        fields = ", ".join(f"{n}={getattr(self, n)!r}" for n in names)
        return f"{type(self).__name__}({fields})"


class ResponseReceived(_Event):
    """The final response head of a stream (``end_stream``: no body follows)."""

    __slots__ = ("end_stream", "headers", "status", "stream_id")

    def __init__(
        self, stream_id: int, status: int, headers: list[tuple[str, str]], end_stream: bool
    ) -> None:
        self.stream_id = stream_id
        self.status = status
        self.headers = headers
        self.end_stream = end_stream


class InformationalResponse(_Event):
    """A 1xx interim response on a stream."""

    __slots__ = ("headers", "status", "stream_id")

    def __init__(self, stream_id: int, status: int, headers: list[tuple[str, str]]) -> None:
        self.stream_id = stream_id
        self.status = status
        self.headers = headers


class DataReceived(_Event):
    """Body bytes of a stream. ``flow_length`` (padding included) is what to acknowledge."""

    __slots__ = ("data", "end_stream", "flow_length", "stream_id")

    def __init__(self, stream_id: int, data: bytes, flow_length: int, end_stream: bool) -> None:
        self.stream_id = stream_id
        self.data = data
        self.flow_length = flow_length
        self.end_stream = end_stream


class TrailersReceived(_Event):
    """Trailer fields; the stream ends with them."""

    __slots__ = ("headers", "stream_id")

    def __init__(self, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.stream_id = stream_id
        self.headers = headers


class StreamEnded(_Event):
    """The server finished its side of a stream (sent after the data/trailers events)."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class StreamReset(_Event):
    """A stream was reset: by the server (``remote``) or by ``h2`` on a stream error."""

    __slots__ = ("error_code", "remote", "stream_id")

    def __init__(self, stream_id: int, error_code: int, remote: bool) -> None:
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote


class WindowUpdated(_Event):
    """More send window: on one stream, or (``stream_id == 0``) on the whole connection."""

    __slots__ = ("stream_id",)

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id


class SettingsChanged(_Event):
    """The server's SETTINGS arrived or changed (limits may have moved)."""

    __slots__ = ("max_concurrent_streams",)

    def __init__(self, max_concurrent_streams: int) -> None:
        self.max_concurrent_streams = max_concurrent_streams


class PingAcked(_Event):
    """The answer to a PING we sent; ``rtt`` is set for bandwidth-delay samples."""

    __slots__ = ("data", "rtt")

    def __init__(self, data: bytes, rtt: float | None) -> None:
        self.data = data
        self.rtt = rtt


class ConnectionTerminated(_Event):
    """GOAWAY: streams above ``last_stream_id`` were not processed and may be retried."""

    __slots__ = ("additional_data", "error_code", "last_stream_id")

    def __init__(self, error_code: int, last_stream_id: int, additional_data: bytes) -> None:
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.additional_data = additional_data


Event = (
    ResponseReceived
    | InformationalResponse
    | DataReceived
    | TrailersReceived
    | StreamEnded
    | StreamReset
    | WindowUpdated
    | SettingsChanged
    | PingAcked
    | ConnectionTerminated
)


def error_name(code: int) -> str:
    """``PROTOCOL_ERROR (0x1)`` for an HTTP/2 error code, for messages."""
    if 0 <= code < len(_ERROR_NAMES):
        return f"{_ERROR_NAMES[code]} (0x{code:x})"
    return f"unknown error code 0x{code:x}"


#: Header blocks remembered per connection by the memoising HPACK coder below.
_HPACK_CACHE_SIZE: Final = 64


class _MemoDecoder(hpack.Decoder):
    """An HPACK decoder that remembers header blocks decoded with an empty dynamic table.

    With the dynamic table empty and sized 0, decoding is a pure function of the block's
    bytes -- and that is how nginx encodes every response (it never indexes) -- so a
    repeated block (same status, type, length; the date changes once a second) skips
    Huffman decoding entirely. Any other table state decodes normally.
    """

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(max_header_list_size=max_header_list_size)
        self._memo: dict[bytes, list[hpack.HeaderTuple]] = {}
        self._fields: dict[bytes, list[tuple[str, str]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> Iterable[hpack.HeaderTuple]:
        table = self.header_table
        if table.maxsize or table.dynamic_entries or not raw:
            return super().decode(data, raw)
        key = bytes(data)
        hit = self._memo.get(key)
        if hit is None:
            hit = list(super().decode(key, raw))
            if table.maxsize or table.dynamic_entries:
                return hit  # the block resized the table: not a pure function after all
            if len(self._memo) >= _HPACK_CACHE_SIZE:
                self._memo.clear()
            self._memo[key] = hit
        return list(hit)

    def decode_fields(self, data: bytes) -> list[tuple[str, str]]:
        """``(name, value)`` strings (latin-1: bytes map 1:1), memoised like :meth:`decode`."""
        table = self.header_table
        pure = not (table.maxsize or table.dynamic_entries)
        if pure:
            hit = self._fields.get(data)
            if hit is not None:
                return hit
        try:
            decoded = super().decode(data, raw=True)
        except hpack.OversizedHeaderListError:
            raise _oversized(self.max_header_list_size) from None
        except hpack.HPACKError as exc:
            raise _ConnectionError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in decoded]
        _check_received(fields)
        if pure and not (table.maxsize or table.dynamic_entries):
            if len(self._fields) >= _HPACK_CACHE_SIZE:
                self._fields.clear()
            self._fields[data] = fields
        return fields


class _MemoEncoder(hpack.Encoder):
    """An HPACK encoder that remembers header lists whose encoding changed no table state.

    A request whose fields are all already in the dynamic table encodes to index
    references only and leaves the table as it was; the same list then encodes to the
    same bytes for as long as the table is unchanged (checked by its newest entry and
    length: every insertion replaces the newest entry). The key is the fields' content:
    sensitive fields are marked never-indexed by their name and value
    (:func:`_is_sensitive`), so equal content always arrives with equal marking.
    """

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[Any, ...], tuple[Any, int, bytes]] = {}

    def prepare(self, fields: list[tuple[str, str]]) -> Any:
        """What :meth:`encode_block` takes: the fields, credentials marked never-indexed."""
        return [
            hpack.NeverIndexedHeaderTuple(n, v) if _is_sensitive(n, v) else (n, v)
            for n, v in fields
        ]

    def encode_block(self, prepared: Any) -> bytes:
        return self.encode(prepared)

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if self.table_size_changes or self.header_table.resized or not isinstance(headers, list):
            return super().encode(headers, huffman)
        entries = self.header_table.dynamic_entries
        newest = entries[0] if entries else None
        size = len(entries)
        key = (*headers, huffman)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is newest and hit[1] == size:
            return hit[2]
        block = super().encode(headers, huffman)
        if (entries[0] if entries else None) is newest and len(entries) == size:
            if len(self._memo) >= _HPACK_CACHE_SIZE:
                self._memo.clear()
            self._memo[key] = (newest, size, block)
        return block


def _is_sensitive(name: str, value: str) -> bool:
    """Credentials never enter the HPACK table (RFC 7541 §7.1.3; what h2 and curl do)."""
    return name in ("authorization", "proxy-authorization") or (
        name == "cookie" and len(value) < 20
    )


class _RustEncoder:
    """jh2's HPACK encoder (Rust): about 2 µs for a request with a new path, where
    hpack's pure-Python one takes about 20 µs (its memo only helps exact repeats)."""

    __slots__ = ("_coder",)

    def __init__(self) -> None:
        self._coder = _rust_hpack.Encoder()

    @property
    def header_table_size(self) -> int:
        size: int = self._coder.header_table_size
        return size

    @header_table_size.setter
    def header_table_size(self, value: int) -> None:
        self._coder.header_table_size = value

    def prepare(self, fields: list[tuple[str, str]]) -> Any:
        return [(n.encode(), v.encode(), _is_sensitive(n, v)) for n, v in fields]

    def encode_block(self, prepared: Any) -> bytes:
        block: bytes = self._coder.encode(prepared, True)
        return block


class _RustDecoder:
    """jh2's HPACK decoder (Rust), memoised like :class:`_MemoDecoder`.

    Its table is opaque, but a table whose size is 0 holds nothing: then decoding is a
    pure function of the block's bytes.
    """

    __slots__ = ("_coder", "_fields", "max_header_list_size")

    def __init__(self, max_header_list_size: int) -> None:
        self._coder = _rust_hpack.Decoder(max_header_list_size)
        self._fields: dict[bytes, list[tuple[str, str]]] = {}
        self.max_header_list_size = max_header_list_size

    def decode_fields(self, data: bytes) -> list[tuple[str, str]]:
        coder = self._coder
        pure = coder.header_table_size == 0
        if pure:
            hit = self._fields.get(data)
            if hit is not None:
                return hit
        try:
            decoded = coder.decode(data, True)
        except _rust_hpack.OversizedHeaderListError:
            raise _oversized(self.max_header_list_size) from None
        except _rust_hpack.HPACKError as exc:
            raise _ConnectionError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        except BaseException as exc:
            # jh2 5.0 panics (pyo3's PanicException, a BaseException) on some truncated
            # blocks instead of raising HPACKError: still the server's malformed block.
            if type(exc).__name__ != "PanicException":
                raise
            raise _ConnectionError(COMPRESSION_ERROR, f"bad header block: {exc}") from None
        fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value, _ in decoded]
        _check_received(fields)
        if pure and coder.header_table_size == 0:
            if len(self._fields) >= _HPACK_CACHE_SIZE:
                self._fields.clear()
            self._fields[data] = fields
        return fields


class _MalformedFields(Exception):
    """Internal: a header block decoded (the HPACK table is in step) to fields that are
    not valid HTTP; the stream is reset, the connection carries on."""


#: RFC 9113 §8.2.1: a received field name is a lower-case token.
_RECEIVED_NAME: Final = re.compile(r"[-!#$%&'*+.^_`|~0-9a-z]+")
_RECEIVED_BAD_VALUE: Final = re.compile(r"[\r\n\x00]")
#: Received names known valid (bounded, as the HTTP/1.1 codec's memo of names).
_RECEIVED_NAMES: set[str] = set()
_RECEIVED_NAMES_MAX: Final = 4096


def _check_received(fields: list[tuple[str, str]]) -> None:
    """Refuse a field list that is malformed (RFC 9113 §8.2.1, §8.3.2): a name that is
    not a lower-case token (empty, upper-case, a colon, CR/LF), a pseudo-header other than
    one ``:status`` before the regular fields, a value with CR, LF or NUL -- fields that
    would otherwise reach the caller, or a proxy's HTTP/1.1 side, as they are.

    Checked once per decoded block, before the decoders memoise it: a repeated block
    costs nothing more.
    """
    names = _RECEIVED_NAMES
    pseudo = True  # a pseudo-header may still come
    for name, _ in fields:
        if name in names or (name == ":status" and pseudo):
            pseudo = False
        elif _RECEIVED_NAME.fullmatch(name) is not None:
            pseudo = False
            if len(names) < _RECEIVED_NAMES_MAX:
                names.add(name)
        else:
            raise _MalformedFields(name)
    if _RECEIVED_BAD_VALUE.search("".join([value for _, value in fields])) is not None:
        raise _MalformedFields("a value with CR, LF or NUL")


def _oversized(limit: int) -> _ConnectionError:
    return _ConnectionError(
        PROTOCOL_ERROR, f"header list larger than {limit} bytes (max_header_list_size)"
    )


class _Encoder(Protocol):
    header_table_size: int

    def prepare(self, fields: list[tuple[str, str]]) -> Any: ...

    def encode_block(self, prepared: Any) -> bytes: ...


class _Decoder(Protocol):
    def decode_fields(self, data: bytes) -> list[tuple[str, str]]: ...


def hpack_backend() -> str:
    """``"jh2"`` (Rust HPACK, when jh2 is installed) or ``"hpack"`` (pure Python).

    ``AIODUCT_HPACK=python`` in the environment forces the pure-Python coder.
    """
    return "jh2" if _rust_hpack is not None else "hpack"


def _new_coders(max_header_list_size: int) -> tuple[_Encoder, _Decoder]:
    if _rust_hpack is not None:
        return _RustEncoder(), _RustDecoder(max_header_list_size)
    return _MemoEncoder(), _MemoDecoder(max_header_list_size)


class _Stream:
    """Per-stream state: both windows and which sides have ended."""

    __slots__ = (
        "accepts_data",
        "expected",
        "head_done",
        "interim",
        "interim_bytes",
        "is_head",
        "local_closed",
        "recv_max",
        "recv_unacked",
        "recv_window",
        "remote_closed",
        "send_window",
    )

    def __init__(self, send_window: int, recv_window: int) -> None:
        self.send_window = send_window
        #: Bytes the server may still send on this stream, and the most it may.
        self.recv_window = recv_window
        self.recv_max = recv_window
        #: Bytes consumed but not yet credited back with a WINDOW_UPDATE.
        self.recv_unacked = 0
        self.local_closed = False
        self.remote_closed = False
        #: The final (non-1xx) response head arrived: further HEADERS are trailers.
        self.head_done = False
        #: DATA is legal now: after the final head, before the server's END_STREAM.
        self.accepts_data = False
        #: A HEAD request: its response has no content, whatever Content-Length says.
        self.is_head = False
        #: Body bytes still due by the response's Content-Length (None: not declared).
        self.expected: int | None = None
        #: Interim (1xx) heads received, and their header blocks' bytes.
        self.interim = self.interim_bytes = 0


def _credit(unacked: int, window: int, maximum: int) -> int:
    """How much to credit back now: batched to half a window, unless it ran dry.

    A WINDOW_UPDATE per DATA frame would double the frames on the wire; waiting for
    half the window keeps the peer sending without stalling (h2's policy).
    """
    if unacked >= maximum // 2 or (window == 0 and unacked > min(1024, maximum // 4)):
        return min(unacked, maximum - window)
    return 0


class H2Protocol:
    """One client-side HTTP/2 connection's state (see the module docstring)."""

    __slots__ = (
        "_bdp_bytes",
        "_bdp_sent_at",
        "_block_bytes",
        "_closed_by_us",
        "_continuation",
        "_decoder",
        "_encoder",
        "_fields_memo",
        "_idle_run",
        "_inbuf",
        "_inbuf_size",
        "_local_max_frame",
        "_max_block",
        "_max_continuations",
        "_max_idle_run",
        "_max_interim",
        "_max_reset_ids",
        "_need",
        "_next_id",
        "_out",
        "_preface",
        "_recv_unacked",
        "_recv_window",
        "_remote_initial_window",
        "_remote_max_frame",
        "_reset_ids",
        "_send_window",
        "_streams",
        "_window",
        "adaptive_window",
        "connection_window",
        "enable_connect_protocol",
        "max_concurrent_streams",
        "terminated",
    )

    def __init__(
        self,
        *,
        stream_window: int = 2 * 1024 * 1024,
        connection_window: int = 4 * 1024 * 1024,
        max_frame_size: int = 16384,
        max_header_list_size: int = 65536,
        max_closed_streams: int = 1024,
        adaptive_window: bool = False,
        max_informational: int = MAX_INFORMATIONAL_RESPONSES,
        max_unproductive_frames: int = 10_000,
    ) -> None:
        self._encoder, self._decoder = _new_coders(max_header_list_size)
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        #: Streams we reset, remembered so late frames on them are ignored (RFC 9113 §5.4.2).
        self._reset_ids: OrderedDict[int, None] = OrderedDict()
        self._max_reset_ids = max_closed_streams
        self._out: list[bytes] = []
        #: Received bytes of an incomplete frame, kept as read until ``_need`` bytes are
        #: here: a large frame arriving in many reads is joined once, not once per read.
        self._inbuf: list[bytes] = []
        self._inbuf_size = 0
        self._need = 0
        #: (stream id, END_STREAM, fragments) of a header block awaiting CONTINUATION.
        self._continuation: tuple[int, bool, list[bytes]] | None = None
        # Bounds on a header block (RUSTSEC-2024-0332, CVE-2024-27316: endless
        # CONTINUATION): its bytes, as compressed, may not exceed the header list it
        # may decode to, and its CONTINUATION frames may not outnumber what a full list
        # in full frames needs, plus a quarter, and never fewer than _MIN_CONTINUATIONS.
        self._block_bytes = 0
        self._max_block = max_header_list_size
        frames = max(1, max_header_list_size // max_frame_size)
        self._max_continuations = max(_MIN_CONTINUATIONS, frames + frames // 4)
        self._max_interim = max_informational
        #: Frames received in a row that carried no response data, no response head and
        #: no end of stream (PING, SETTINGS, PRIORITY, WINDOW_UPDATE, empty DATA, frames
        #: for closed streams, ...): past ``max_unproductive_frames`` it is a flood.
        #: Our own requests and request data start a new count.
        self._idle_run = 0
        self._max_idle_run = max_unproductive_frames
        #: Request field lists ready for the encoder, by request head.
        self._fields_memo: dict[tuple[Any, ...], Any] = {}
        # Our side: what the server may send.
        self._local_max_frame = max_frame_size
        self._window = stream_window
        self._recv_window = _DEFAULT_WINDOW
        self._recv_unacked = 0
        self.connection_window = connection_window
        # The server's side: what we may send (its SETTINGS change these).
        self._send_window = _DEFAULT_WINDOW
        self._remote_initial_window = _DEFAULT_WINDOW
        self._remote_max_frame = _MIN_FRAME
        #: How many streams the server lets us open at once (its SETTINGS).
        self.max_concurrent_streams = _UNLIMITED_STREAMS
        #: The server accepts extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL).
        self.enable_connect_protocol = False
        self.adaptive_window = adaptive_window
        self._bdp_sent_at: float | None = None
        self._bdp_bytes = 0
        #: Set once a GOAWAY was received or sent, or the peer broke the protocol.
        self.terminated = False
        self._closed_by_us = False
        #: Bytes received before the first frame header was complete (then None).
        self._preface: bytes | None = b""
        # HEADER_TABLE_SIZE repeats the default on purpose: nginx answers an explicit
        # value by shrinking its table to 0 with an update in its first response, after
        # which every response block is a pure function of its bytes (see _MemoDecoder).
        settings = b"".join(
            _SETTING.pack(code, value)
            for code, value in (
                (_S_HEADER_TABLE_SIZE, 4096),
                (_S_ENABLE_PUSH, 0),
                (_S_MAX_CONCURRENT_STREAMS, 100),
                (_S_INITIAL_WINDOW_SIZE, stream_window),
                (_S_MAX_FRAME_SIZE, max_frame_size),
                (_S_MAX_HEADER_LIST_SIZE, max_header_list_size),
            )
        )
        self._out += (PREFACE, _frame(_SETTINGS, 0, 0, settings))
        if connection_window > _DEFAULT_WINDOW:
            increment = connection_window - _DEFAULT_WINDOW
            self._recv_window += increment
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))

    # -- limits ----------------------------------------------------------------------------

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def stream_window(self) -> int:
        """The receive window each new stream starts with (grows with ``adaptive_window``)."""
        return self._window

    def stream_is_open(self, stream_id: int) -> bool:
        """Not yet closed on both sides (it still counts against the stream limit)."""
        return stream_id in self._streams

    def send_window(self, stream_id: int) -> int:
        """Request-body bytes the server's windows accept on ``stream_id`` right now."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0
        return max(0, min(self._send_window, stream.send_window))

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def send_request(
        self,
        method: str,
        scheme: str,
        authority: str,
        path: str,
        headers: list[tuple[str, str]],
        *,
        end_stream: bool,
        protocol: str | None = None,
    ) -> int:
        """Open a stream for a request head; returns its id.

        Header names are lower-cased, ``Host`` becomes ``:authority`` and connection-
        specific fields are dropped (RFC 9113 §8.2.2). ``protocol`` makes an extended
        CONNECT (RFC 8441): the stream then carries that protocol, not a request body.
        """
        if protocol is not None:
            if method != "CONNECT":
                raise LocalProtocolError("protocol= needs method='CONNECT' (RFC 8441)")
            if not self.enable_connect_protocol:
                raise RemoteProtocolError(
                    "the server does not support extended CONNECT "
                    "(it did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1)"
                )
        if self._closed_by_us:
            raise LocalProtocolError("cannot send the request over HTTP/2: connection closed")
        if len(self._streams) >= self.max_concurrent_streams:
            raise TooManyStreamsError(
                f"the server allows {self.max_concurrent_streams} concurrent streams"
            )
        stream_id = self._next_id
        if stream_id > _MAX_STREAM_ID:
            raise LocalProtocolError("cannot send the request over HTTP/2: stream ids exhausted")
        key = (method, scheme, authority, path, protocol, *headers)
        encoder = self._encoder
        fields = self._fields_memo.get(key)
        if fields is None:
            fields = encoder.prepare(
                _request_fields(method, scheme, authority, path, headers, protocol)
            )
            if len(self._fields_memo) >= _HPACK_CACHE_SIZE:
                self._fields_memo.clear()
            self._fields_memo[key] = fields
        block = encoder.encode_block(fields)
        self._next_id = stream_id + 2
        self._idle_run = 0  # the server owes us frames again
        flags = _END_STREAM if end_stream else 0
        out = self._out
        limit = self._remote_max_frame
        if len(block) <= limit:
            out.append(_frame_head(len(block), _HEADERS, flags | _END_HEADERS, stream_id))
            out.append(block)
        else:
            out.append(_frame(_HEADERS, flags, stream_id, block[:limit]))
            for at in range(limit, len(block), limit):
                piece = block[at : at + limit]
                last = _END_HEADERS if at + limit >= len(block) else 0
                out.append(_frame(_CONTINUATION, last, stream_id, piece))
        stream = _Stream(self._remote_initial_window, self._window)
        stream.local_closed = end_stream
        stream.is_head = method == "HEAD"
        self._streams[stream_id] = stream
        return stream_id

    def send_body(self, stream_id: int, data: memoryview, end_stream: bool) -> int:
        """Send as much of ``data`` as the windows allow; returns how many bytes went.

        ``end_stream`` applies once everything was sent (also for empty ``data``).
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.local_closed:
            return 0  # the server ended or reset the stream; its events say which
        total = len(data)
        sent = 0
        out = self._out
        max_frame = self._remote_max_frame
        while sent < total:
            room = min(self._send_window, stream.send_window, max_frame, total - sent)
            if room <= 0:
                return sent
            last = end_stream and sent + room == total
            out.append(_frame_head(room, _DATA, _END_STREAM if last else 0, stream_id))
            out.append(bytes(data[sent : sent + room]))
            self._send_window -= room
            stream.send_window -= room
            sent += room
            self._idle_run = 0  # WINDOW_UPDATEs are due for it
        if end_stream and total == 0:
            out.append(_frame_head(0, _DATA, _END_STREAM, stream_id))
        if end_stream:
            self._local_end(stream_id, stream)
        return sent

    def end_stream(self, stream_id: int) -> None:
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.local_closed:
            self._out.append(_frame_head(0, _DATA, _END_STREAM, stream_id))
            self._local_end(stream_id, stream)

    def _local_end(self, stream_id: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[stream_id]

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Credit consumed body bytes back to the server (maybe a WINDOW_UPDATE)."""
        if not flow_length:
            return
        unacked = self._recv_unacked + flow_length
        increment = _credit(unacked, self._recv_window, self.connection_window)
        if increment:
            self._recv_window += increment
            unacked = 0
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))
        self._recv_unacked = unacked
        stream = self._streams.get(stream_id)
        if stream is None:
            return  # the stream is gone: only the connection's window matters
        unacked = stream.recv_unacked + flow_length
        increment = _credit(unacked, stream.recv_window, stream.recv_max)
        if increment:
            stream.recv_window += increment
            unacked = 0
            self._out.append(_frame(_WINDOW_UPDATE, 0, stream_id, _U32.pack(increment)))
        stream.recv_unacked = unacked

    def reset(self, stream_id: int, error_code: int = CANCEL) -> None:
        """RST_STREAM (default CANCEL): only this stream ends, its siblings carry on."""
        if self._streams.pop(stream_id, None) is not None:
            self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(error_code)))
            self._remember_reset(stream_id)

    def _remember_reset(self, stream_id: int) -> None:
        ids = self._reset_ids
        ids[stream_id] = None
        if len(ids) > self._max_reset_ids:
            ids.popitem(last=False)

    def ping(self, data: bytes = KEEPALIVE_PING) -> None:
        self._out.append(_frame(_PING, 0, 0, data))

    def close(self, error_code: int = 0) -> None:
        """Queue a GOAWAY; no new streams afterwards."""
        self.terminated = True
        if not self._closed_by_us:
            self._closed_by_us = True
            self._out.append(_frame(_GOAWAY, 0, 0, _GOAWAY_HEAD.pack(0, error_code)))

    def maybe_sample_bdp(self, now: float) -> None:
        """Start a bandwidth-delay sample (a PING) unless one is running."""
        if self._bdp_sent_at is None:
            self._bdp_sent_at = now
            self._bdp_bytes = 0
            self.ping(BDP_PING)

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Process received bytes; returns what happened, in order."""
        if self._preface is not None:
            data = self._check_preface(data)
            if not data:
                return []
        inbuf = self._inbuf
        if inbuf:
            inbuf.append(data)
            self._inbuf_size += len(data)
            if self._inbuf_size < self._need:
                return []
            data = b"".join(inbuf)
            inbuf.clear()
        out: list[Event] = []
        try:
            rest = self._frames(data, out, now)
        except _ConnectionError as exc:
            self.terminated = True
            if not self._closed_by_us:
                self._closed_by_us = True
                self._out.append(_frame(_GOAWAY, 0, 0, _GOAWAY_HEAD.pack(0, exc.code)))
            raise RemoteProtocolError(
                f"the server broke the HTTP/2 protocol: {exc} ({error_name(exc.code)})"
            ) from None
        if rest:
            inbuf.append(rest)
            self._inbuf_size = size = len(rest)
            # The whole frame, once its header is here (its length was checked).
            self._need = 9 + ((rest[0] << 16) | (rest[1] << 8) | rest[2]) if size >= 9 else 9
        return out

    def _frames(self, data: bytes, out: list[Event], now: float) -> bytes:
        """Process every complete frame of ``data``; returns the incomplete rest."""
        pos = 0
        size = len(data)
        limit = self._local_max_frame
        streams = self._streams
        append = out.append
        while size - pos >= 9:
            hi, lo, kind, flags, sid = _unpack_header(data, pos)
            length = (hi << 8) | lo
            if length > limit:
                raise _ConnectionError(
                    FRAME_SIZE_ERROR, f"a {length}-byte frame exceeds our MAX_FRAME_SIZE"
                )
            end = pos + 9 + length
            if end > size:
                break
            sid &= _MAX_STREAM_ID
            payload = data[pos + 9 : end]
            pos = end
            if self._continuation is not None and kind != _CONTINUATION:
                raise _ConnectionError(PROTOCOL_ERROR, "a header block was interrupted")
            # Counted for every frame; the frames that make progress reset the count.
            run = self._idle_run + 1
            if run > self._max_idle_run:
                raise _ConnectionError(
                    ENHANCE_YOUR_CALM,
                    f"more than {self._max_idle_run} frames in a row carried no response "
                    "data (a PING, SETTINGS, empty DATA, RST_STREAM or similar flood; "
                    "max_unproductive_frames)",
                )
            self._idle_run = run
            if kind == _DATA:
                stream = streams.get(sid)
                if (
                    stream is not None
                    and stream.accepts_data
                    and not flags & _PADDED
                    and length <= stream.recv_window
                    and length <= self._recv_window
                    and (
                        (expected := stream.expected) is None
                        or (length <= expected and (not flags & _END_STREAM or length == expected))
                    )
                ):
                    # The common case, inline: an in-window DATA frame on a live stream
                    # (within its Content-Length, if any).
                    if expected is not None:
                        stream.expected = expected - length
                    self._recv_window -= length
                    stream.recv_window -= length
                    if self._bdp_sent_at is not None:
                        self._bdp_bytes += length
                    if flags & _END_STREAM:
                        self._idle_run = 0
                        append(DataReceived(sid, payload, length, True))
                        append(StreamEnded(sid))
                        self._remote_end(sid, stream)
                    else:
                        if length:
                            self._idle_run = 0
                        append(DataReceived(sid, payload, length, False))
                else:
                    self._data(sid, flags, payload, out)
            elif kind == _HEADERS:
                if not sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "HEADERS on stream 0")
                if flags & _PADDED:
                    payload = _unpad(payload)
                if flags & _PRIORITY_FLAG:
                    if len(payload) < 5:
                        raise _ConnectionError(FRAME_SIZE_ERROR, "a short HEADERS priority")
                    payload = payload[5:]
                if flags & _END_HEADERS:
                    self._headers(sid, bool(flags & _END_STREAM), payload, out)
                else:
                    self._continuation = (sid, bool(flags & _END_STREAM), [payload])
                    self._block_bytes = len(payload)
            elif kind == _CONTINUATION:
                pending = self._continuation
                if pending is None or pending[0] != sid:
                    raise _ConnectionError(PROTOCOL_ERROR, "an unexpected CONTINUATION")
                fragments = pending[2]
                fragments.append(payload)
                self._block_bytes += length
                self._check_block(len(fragments) - 1)
                if flags & _END_HEADERS:
                    self._continuation = None
                    self._headers(sid, pending[1], b"".join(fragments), out)
            else:
                self._control(kind, flags, sid, payload, out, now)
        return data[pos:] if pos < size else b""

    def _check_block(self, continuations: int) -> None:
        """Bound a header block spread over CONTINUATION frames (see ``__init__``)."""
        if self._block_bytes > self._max_block:
            raise _ConnectionError(
                ENHANCE_YOUR_CALM,
                f"a header block grew past {self._max_block} bytes (max_header_list_size) "
                "in CONTINUATION frames",
            )
        if continuations > self._max_continuations:
            raise _ConnectionError(
                ENHANCE_YOUR_CALM,
                f"a header block went on for more than {self._max_continuations} "
                "CONTINUATION frames",
            )

    def _remote_end(self, stream_id: int, stream: _Stream) -> None:
        """The server finished its side: the stream closes once ours is done too.

        A tunnel (extended CONNECT) stays open for our side; a plain request whose body
        is still going is answered early (RFC 9113 §8.1) and the connection layer resets
        it once the response was read.
        """
        stream.accepts_data = False
        if stream.local_closed:
            del self._streams[stream_id]
        else:
            stream.remote_closed = True

    def _stream_error(self, stream_id: int, code: int, out: list[Event]) -> None:
        """Reset one stream the server misused (RFC 9113 §5.4.2)."""
        if self._streams.pop(stream_id, None) is not None:
            out.append(StreamReset(stream_id, code, False))
        self._out.append(_frame(_RST_STREAM, 0, stream_id, _U32.pack(code)))
        self._remember_reset(stream_id)

    def _unknown_stream(self, stream_id: int, what: str) -> bool:
        """A frame for a stream we do not track: ``True`` to ignore it (closed by us).

        Idle streams (never opened, or server-initiated: push is disabled) are a
        connection error; a stream that closed normally answers STREAM_CLOSED.
        """
        if stream_id in self._reset_ids:
            return True
        if stream_id % 2 == 0 or stream_id >= self._next_id:
            raise _ConnectionError(PROTOCOL_ERROR, f"{what} on idle stream {stream_id}")
        return False

    def _data(self, sid: int, flags: int, payload: bytes, out: list[Event]) -> None:
        length = len(payload)
        if not sid:
            raise _ConnectionError(PROTOCOL_ERROR, "DATA on stream 0")
        if length > self._recv_window:
            raise _ConnectionError(FLOW_CONTROL_ERROR, "DATA beyond the connection window")
        self._recv_window -= length
        data = _unpad(payload) if flags & _PADDED else payload
        stream = self._streams.get(sid)
        if stream is None:
            ignore = self._unknown_stream(sid, "DATA")
            self.acknowledge(sid, length)  # nobody will consume it
            if not ignore:
                self._stream_error(sid, STREAM_CLOSED, out)
            return
        if not stream.accepts_data:
            self.acknowledge(sid, length)
            code = STREAM_CLOSED if stream.remote_closed else PROTOCOL_ERROR
            self._stream_error(sid, code, out)
            return
        if length > stream.recv_window:
            self.acknowledge(sid, length)
            self._stream_error(sid, FLOW_CONTROL_ERROR, out)
            return
        stream.recv_window -= length
        end = bool(flags & _END_STREAM)
        if data or end:
            self._idle_run = 0
        expected = stream.expected
        if expected is not None:
            # RFC 9113 §8.1.1: DATA that disagrees with Content-Length is malformed.
            expected -= len(data)
            if expected < 0 or (end and expected):
                self.acknowledge(sid, length)
                self._stream_error(sid, PROTOCOL_ERROR, out)
                return
            stream.expected = expected
        if self._bdp_sent_at is not None:
            self._bdp_bytes += length
        out.append(DataReceived(sid, data, length, end))
        if end:
            out.append(StreamEnded(sid))
            self._remote_end(sid, stream)

    def _headers(self, sid: int, end: bool, block: bytes, out: list[Event]) -> None:
        # Decode first, whatever the stream's state: the HPACK table must stay in sync.
        fields: list[tuple[str, str]] | None
        try:
            fields = self._decoder.decode_fields(block)
        except _MalformedFields:
            fields = None
        stream = self._streams.get(sid)
        if stream is None:
            if not self._unknown_stream(sid, "HEADERS"):
                self._stream_error(sid, STREAM_CLOSED, out)
            return
        if stream.remote_closed:
            self._stream_error(sid, STREAM_CLOSED, out)
            return
        if fields is None:
            self._stream_error(sid, PROTOCOL_ERROR, out)
            return
        if stream.head_done:
            # Trailers end the stream and carry no pseudo-headers (RFC 9113 §8.1).
            if not end or stream.expected or any(name[:1] == ":" for name, _ in fields):
                self._stream_error(sid, PROTOCOL_ERROR, out)
                return
            self._idle_run = 0
            out.append(TrailersReceived(sid, fields))
            out.append(StreamEnded(sid))
            self._remote_end(sid, stream)
            return
        status, headers = _split_status(fields)
        if status < 200:
            if end:
                self._stream_error(sid, PROTOCOL_ERROR, out)
                return
            self._count_interim(sid, stream, len(block))
            out.append(InformationalResponse(sid, status, headers))
            return
        self._idle_run = 0
        expected = _content_length(headers, status, stream.is_head)
        if expected == -1 or (end and expected):
            self._stream_error(sid, PROTOCOL_ERROR, out)
            return
        stream.expected = expected
        stream.head_done = True
        stream.accepts_data = True
        out.append(ResponseReceived(sid, status, headers, end))
        if end:
            out.append(StreamEnded(sid))
            self._remote_end(sid, stream)

    def _count_interim(self, sid: int, stream: _Stream, size: int) -> None:
        """Bound the 1xx heads of a stream: their number and their blocks' bytes."""
        stream.interim += 1
        stream.interim_bytes += size
        if stream.interim > self._max_interim:
            raise _ConnectionError(
                ENHANCE_YOUR_CALM,
                f"more than {self._max_interim} informational (1xx) responses on stream {sid}",
            )
        if stream.interim_bytes > self._max_block:
            raise _ConnectionError(
                ENHANCE_YOUR_CALM,
                f"the informational (1xx) responses on stream {sid} exceed "
                f"{self._max_block} bytes (max_header_list_size) together",
            )

    def _control(
        self, kind: int, flags: int, sid: int, payload: bytes, out: list[Event], now: float
    ) -> None:
        """Every frame but DATA, HEADERS and CONTINUATION."""
        length = len(payload)
        if kind == _WINDOW_UPDATE:
            if length != 4:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a WINDOW_UPDATE that is not 4 bytes")
            increment = _unpack_u32(payload)[0] & _MAX_WINDOW
            if not sid:
                if not increment:
                    raise _ConnectionError(PROTOCOL_ERROR, "a zero WINDOW_UPDATE")
                self._send_window += increment
                if self._send_window > _MAX_WINDOW:
                    raise _ConnectionError(FLOW_CONTROL_ERROR, "the window grew past 2^31-1")
                out.append(WindowUpdated(0))
                return
            stream = self._streams.get(sid)
            if stream is None:
                self._unknown_stream(sid, "WINDOW_UPDATE")
                return  # closed: late updates are expected
            if not increment:
                self._stream_error(sid, PROTOCOL_ERROR, out)
                return
            stream.send_window += increment
            if stream.send_window > _MAX_WINDOW:
                self._stream_error(sid, FLOW_CONTROL_ERROR, out)
                return
            out.append(WindowUpdated(sid))
        elif kind == _SETTINGS:
            if sid:
                raise _ConnectionError(PROTOCOL_ERROR, "SETTINGS on a stream")
            if flags & _ACK:
                if length:
                    raise _ConnectionError(FRAME_SIZE_ERROR, "a SETTINGS ACK with a payload")
                return  # our settings apply from the moment we send them
            if length % 6:
                raise _ConnectionError(FRAME_SIZE_ERROR, "SETTINGS not a multiple of 6 bytes")
            self._apply_settings(payload, out)
            self._out.append(_frame(_SETTINGS, _ACK, 0))
            out.append(SettingsChanged(self.max_concurrent_streams))
        elif kind == _PING:
            if sid:
                raise _ConnectionError(PROTOCOL_ERROR, "PING on a stream")
            if length != 8:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a PING that is not 8 bytes")
            if flags & _ACK:
                out.append(PingAcked(payload, self._bdp_ack(payload, now)))
            else:
                self._out.append(_frame(_PING, _ACK, 0, payload))
        elif kind == _RST_STREAM:
            if not sid:
                raise _ConnectionError(PROTOCOL_ERROR, "RST_STREAM on stream 0")
            if length != 4:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a RST_STREAM that is not 4 bytes")
            if self._streams.pop(sid, None) is not None:
                self._idle_run = 0
                out.append(StreamReset(sid, _unpack_u32(payload)[0], True))
            else:
                self._unknown_stream(sid, "RST_STREAM")
        elif kind == _GOAWAY:
            if sid:
                raise _ConnectionError(PROTOCOL_ERROR, "GOAWAY on a stream")
            if length < 8:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a GOAWAY shorter than 8 bytes")
            last_id, code = _GOAWAY_HEAD.unpack_from(payload)
            # RFC 9113 §6.8: the server may still finish the streams up to last_id;
            # we stop opening streams (the connection layer) and keep receiving.
            self.terminated = True
            out.append(ConnectionTerminated(code, last_id & _MAX_STREAM_ID, payload[8:]))
        elif kind == _PRIORITY:
            if not sid:
                raise _ConnectionError(PROTOCOL_ERROR, "PRIORITY on stream 0")
            if length != 5:
                raise _ConnectionError(FRAME_SIZE_ERROR, "a PRIORITY that is not 5 bytes")
        elif kind == _PUSH_PROMISE:
            raise _ConnectionError(PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled")
        # Unknown frame types are ignored (RFC 9113 §4.1).

    def _apply_settings(self, payload: bytes, out: list[Event]) -> None:
        window: int | None = None
        for at in range(0, len(payload), 6):
            code, value = _SETTING.unpack_from(payload, at)
            if code == _S_HEADER_TABLE_SIZE:
                self._encoder.header_table_size = min(value, _MAX_ENCODER_TABLE)
            elif code == _S_ENABLE_PUSH:
                # A server never enables push; a client must refuse 1 (RFC 9113 §6.5.2).
                if value:
                    raise _ConnectionError(PROTOCOL_ERROR, f"SETTINGS_ENABLE_PUSH={value}")
            elif code == _S_MAX_CONCURRENT_STREAMS:
                self.max_concurrent_streams = value
            elif code == _S_INITIAL_WINDOW_SIZE:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(
                        FLOW_CONTROL_ERROR, f"SETTINGS_INITIAL_WINDOW_SIZE={value}"
                    )
                window = value  # applied once, below: the last value is the one that holds
            elif code == _S_MAX_FRAME_SIZE:
                if not _MIN_FRAME <= value <= _MAX_FRAME:
                    raise _ConnectionError(PROTOCOL_ERROR, f"SETTINGS_MAX_FRAME_SIZE={value}")
                self._remote_max_frame = value
            elif code == _S_ENABLE_CONNECT_PROTOCOL:
                if value > 1:
                    raise _ConnectionError(
                        PROTOCOL_ERROR, f"SETTINGS_ENABLE_CONNECT_PROTOCOL={value}"
                    )
                self.enable_connect_protocol = bool(value)
        if window is not None:
            self._resize_send_windows(window, out)

    def _resize_send_windows(self, window: int, out: list[Event]) -> None:
        """Move every stream's send window by a new SETTINGS_INITIAL_WINDOW_SIZE.

        Once per SETTINGS frame, from the old value to the frame's last one (as h2 does):
        a frame repeating the setting a thousand times costs one pass over the streams.
        """
        delta = window - self._remote_initial_window
        self._remote_initial_window = window
        if not delta:
            return
        for stream in self._streams.values():
            stream.send_window += delta
            if stream.send_window > _MAX_WINDOW:
                raise _ConnectionError(FLOW_CONTROL_ERROR, "a stream window grew past 2^31-1")
        if delta > 0:
            out.append(WindowUpdated(0))  # waiting uploads may go on

    def _check_preface(self, data: bytes) -> bytes:
        """The server's first frame must be SETTINGS (RFC 9113 §3.4).

        Checked before framing: an HTTP/1.1 answer would otherwise look like the start
        of a 4 MB frame and hang, or fail with a less helpful error.
        """
        assert self._preface is not None
        head = self._preface + data
        if len(head) < 9:
            self._preface = head
            return b""
        self._preface = None
        if head[3] != 0x4 or head[5:9] != b"\0\0\0\0":
            snippet = head[:40]
            hint = " (an HTTP/1.x response)" if head.startswith(b"HTTP/") else ""
            self.terminated = True
            raise RemoteProtocolError(
                f"the server did not start with HTTP/2 SETTINGS{hint}: {snippet!r}"
            )
        return head

    def _bdp_ack(self, payload: bytes, now: float) -> float | None:
        sent_at = self._bdp_sent_at
        if payload != BDP_PING or sent_at is None:
            return None
        self._bdp_sent_at = None
        rtt = max(now - sent_at, 1e-6)
        bdp = self._bdp_bytes
        if self.adaptive_window and bdp * 3 >= self._window * 2 and self._window < _BDP_MAX_WINDOW:
            self._grow_windows(min(2 * bdp, _BDP_MAX_WINDOW))
        return rtt

    def _grow_windows(self, window: int) -> None:
        """Raise SETTINGS_INITIAL_WINDOW_SIZE (and the connection window to twice it).

        The larger windows count from the moment the SETTINGS go out: the server may
        use them as soon as it reads them, before we see its ACK.
        """
        if window <= self._window:
            return
        delta = window - self._window
        self._window = window
        for stream in self._streams.values():
            stream.recv_window += delta
            stream.recv_max += delta
        self._out.append(_frame(_SETTINGS, 0, 0, _SETTING.pack(_S_INITIAL_WINDOW_SIZE, window)))
        if 2 * window > self.connection_window:
            increment = 2 * window - self.connection_window
            self.connection_window += increment
            self._recv_window += increment
            self._out.append(_frame(_WINDOW_UPDATE, 0, 0, _U32.pack(increment)))


def _unpad(payload: bytes) -> bytes:
    """The content of a PADDED frame (the pad length byte and padding removed)."""
    if not payload or payload[0] >= len(payload):
        raise _ConnectionError(PROTOCOL_ERROR, "padding longer than the frame")
    return payload[1 : len(payload) - payload[0]]


def _request_fields(
    method: str,
    scheme: str,
    authority: str,
    path: str,
    headers: list[tuple[str, str]],
    protocol: str | None,
) -> list[tuple[str, str]]:
    """The request's HPACK field list: pseudo-headers first, then regular fields.

    Checked here too, whatever the caller checked (RFC 9113 §8.2-8.3): the method and
    ``:protocol`` are tokens, ``:scheme`` a scheme, ``:authority`` and ``:path`` visible
    ASCII without spaces, names tokens -- so never empty, never a second pseudo-header,
    never holding a colon, space or CR/LF -- and values by :mod:`aioduct.protocol.rules`.
    A proxy downgrading the request to HTTP/1.1 then has nothing to split it with (the
    class of h2's CVE-2025-57804).
    """
    check_method(method)
    check_scheme(scheme)
    check_target(authority, "authority")
    check_target(path)
    if protocol is not None:
        if TOKEN.fullmatch(protocol) is None:
            raise LocalProtocolError(
                f"invalid :protocol {show(protocol)}: must be an RFC 9110 token"
            )
        fields = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", scheme),
            (":authority", authority),
            (":path", path),
        ]
    else:
        fields = [
            (":method", method),
            (":scheme", scheme),
            (":authority", authority),
            (":path", path),
        ]
    for name, value in headers:
        check_name(name)
        check_value(name, value)
        lower = name.lower()
        if lower in _HOP_BY_HOP:
            continue
        if lower == "te" and value.lower() != "trailers":
            continue
        fields.append((lower, value))
    return fields


def _content_length(headers: list[tuple[str, str]], status: int, is_head: bool) -> int | None:
    """The body length a final response promises: ``None`` if it does not say, ``-1`` if
    its Content-Length is invalid or conflicting. HEAD and 304 responses have no content
    whatever it says (RFC 9110 §8.6); h2 checks the same."""
    if is_head or status == 304:
        return 0
    length: int | None = None
    for name, value in headers:
        if name == "content-length":
            if not value.isdigit() or not value.isascii():
                return -1
            if length is not None and int(value) != length:
                return -1
            length = int(value)
    return length


def _split_status(headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
    """The ``:status`` value and the regular fields."""
    status = 0
    fields: list[tuple[str, str]] = []
    for name, value in headers:
        if name[:1] == ":":
            if name == ":status":
                if not (len(value) == 3 and value.isdigit()):
                    raise _ConnectionError(PROTOCOL_ERROR, f"invalid :status {value!r}")
                status = int(value)
        else:
            fields.append((name, value))
    if not status:
        raise _ConnectionError(PROTOCOL_ERROR, "a response without a :status")
    return status, fields
