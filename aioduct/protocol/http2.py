"""Sans-I/O HTTP/2 client protocol over the ``h2`` library.

:class:`H2Protocol` owns one ``h2.connection.H2Connection`` and never touches a socket:
the connection layer feeds it received bytes (:meth:`H2Protocol.receive_data`), gets back
a list of this module's small events, and writes whatever :meth:`H2Protocol.data_to_send`
returns. Requests are streams (:meth:`H2Protocol.send_request`), request bodies go out
through :meth:`H2Protocol.send_body` only as far as the peer's flow-control windows
allow (the caller waits for :class:`WindowUpdated` before offering the rest), and
received DATA is credited back with :meth:`H2Protocol.acknowledge` -- which the
connection layer calls when the *reader* consumed the bytes, so a slow consumer holds
the server back instead of growing a buffer.

Time is an input (``now=``) for the adaptive window: a PING measures the round trip,
the bytes received meanwhile estimate the bandwidth-delay product, and the windows grow
to twice the estimate when it approaches them (the BDP algorithm hyper and gRPC use).

Two behaviours of ``h2`` are adjusted, relying on h2 4.x internals (hence ``h2<5``):
a received GOAWAY no longer closes h2's state machine (the server may still finish
the streams it processed), and its HPACK encoder/decoder are replaced by memoising
subclasses (see :class:`_MemoDecoder`, :class:`_MemoEncoder`) that read hpack's table,
and received DATA/HEADERS frames get cheap reprs (:class:`_QuietData`).

``h2``'s own exceptions do not escape: a peer that breaks the protocol raises
:class:`~aioduct.errors.RemoteProtocolError` (``h2`` has then queued a GOAWAY), and a
request that cannot be encoded raises :class:`~aioduct.errors.LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import hpack
import hyperframe.frame

from ..errors import LocalProtocolError, RemoteProtocolError

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
    "TrailersReceived",
    "WindowUpdated",
    "error_name",
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
    try:
        return f"{h2.errors.ErrorCodes(code).name} (0x{code:x})"
    except ValueError:
        return f"unknown error code 0x{code:x}"


def _graceful_goaway_transitions() -> dict[Any, Any]:
    """h2's connection state machine, except that a received GOAWAY keeps it open.

    h2 treats a received GOAWAY as the end of the connection and rejects every frame
    after it, but RFC 9113 §6.8 lets the server finish the streams up to last-stream-id
    after a graceful GOAWAY. We stop opening streams ourselves and keep receiving.
    """
    machine = h2.connection.H2ConnectionStateMachine
    transitions: dict[Any, Any] = dict(machine._transitions)
    for state in (h2.connection.ConnectionState.IDLE, h2.connection.ConnectionState.CLIENT_OPEN):
        key = (state, h2.connection.ConnectionInputs.RECV_GOAWAY)
        if key in transitions:
            func, _closed = transitions[key]
            transitions[key] = (func, h2.connection.ConnectionState.CLIENT_OPEN)
    return transitions


_TRANSITIONS: Final = _graceful_goaway_transitions()
#: Header blocks remembered per connection by the memoising HPACK coder below.
_HPACK_CACHE_SIZE: Final = 64


class _QuietData(hyperframe.frame.DataFrame):
    """A DATA frame whose repr does not hex-dump its payload.

    h2 formats ``repr(frame)`` for its trace log on every received frame, whether or not
    anyone logs, and hyperframe's repr hexlifies the *whole* payload before truncating it
    to 20 characters: about a quarter of the CPU of a 64 KiB download.
    """

    def _body_repr(self) -> str:
        return f"<{len(self.data)} bytes>"


class _QuietHeaders(hyperframe.frame.HeadersFrame):
    """A HEADERS frame whose repr does not hex-dump its header block (see _QuietData)."""

    def _body_repr(self) -> str:
        return f"<{len(self.data)} bytes of header block>"


_QUIET: Final[dict[type, type]] = {
    hyperframe.frame.DataFrame: _QuietData,
    hyperframe.frame.HeadersFrame: _QuietHeaders,
}


class _QuietFrameBuffer(h2.frame_buffer.FrameBuffer):
    """h2's frame buffer, handing out DATA and HEADERS frames with cheap reprs."""

    def __next__(self) -> hyperframe.frame.Frame:
        frame = super().__next__()
        quiet = _QUIET.get(type(frame))
        if quiet is not None:
            frame.__class__ = quiet
        return frame


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


class _MemoEncoder(hpack.Encoder):
    """An HPACK encoder that remembers header lists whose encoding changed no table state.

    A request whose fields are all already in the dynamic table encodes to index
    references only and leaves the table as it was; the same list then encodes to the
    same bytes for as long as the table is unchanged (checked by its newest entry and
    length: every insertion replaces the newest entry). The key is the fields' content:
    h2 marks sensitive fields never-indexed by their name and value, so equal content
    always arrives with equal marking.
    """

    def __init__(self) -> None:
        super().__init__()
        self._memo: dict[tuple[Any, ...], tuple[Any, int, bytes]] = {}

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


_CONFIG: Final = h2.config.H2Configuration(
    client_side=True,
    header_encoding="latin-1",
    validate_outbound_headers=False,  # we build the request headers ourselves
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)


class H2Protocol:
    """One client-side HTTP/2 connection's state (see the module docstring)."""

    __slots__ = (
        "_bdp_bytes",
        "_bdp_sent_at",
        "_conn",
        "_preface",
        "_window",
        "adaptive_window",
        "connection_window",
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
    ) -> None:
        conn = h2.connection.H2Connection(config=_CONFIG)
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_list_size,
            },
        )
        conn.state_machine._transitions = _TRANSITIONS
        conn.encoder = _MemoEncoder()
        conn.decoder = _MemoDecoder(max_header_list_size)
        # Our SETTINGS replace the defaults h2 read at construction: apply them here.
        conn.max_inbound_frame_size = max_frame_size
        conn.incoming_buffer = _QuietFrameBuffer(server=False)
        table = conn._frame_dispatch_table
        for plain, quiet in _QUIET.items():
            table[quiet] = table[plain]
        # h2 remembers closed streams so that late frames on them are ignored.
        conn.MAX_CLOSED_STREAMS = max_closed_streams
        conn._closed_streams.size_limit = max_closed_streams  # type: ignore[attr-defined]
        conn.initiate_connection()
        if connection_window > 65535:
            conn.increment_flow_control_window(connection_window - 65535)
        self._conn = conn
        self._window = stream_window
        self.connection_window = connection_window
        self.adaptive_window = adaptive_window
        self._bdp_sent_at: float | None = None
        self._bdp_bytes = 0
        #: Set once a GOAWAY was received or sent, or the peer broke the protocol.
        self.terminated = False
        #: Bytes received before the first frame header was complete (then None).
        self._preface: bytes | None = b""

    # -- limits ----------------------------------------------------------------------------

    @property
    def max_concurrent_streams(self) -> int:
        """How many streams the server lets us open at once (its SETTINGS)."""
        return self._conn.remote_settings.max_concurrent_streams

    @property
    def open_streams(self) -> int:
        return self._conn.open_outbound_streams

    @property
    def enable_connect_protocol(self) -> bool:
        """The server accepts extended CONNECT (RFC 8441 SETTINGS_ENABLE_CONNECT_PROTOCOL)."""
        return bool(
            self._conn.remote_settings.get(h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
        )

    @property
    def stream_window(self) -> int:
        """The receive window each new stream starts with (grows with ``adaptive_window``)."""
        return self._window

    def stream_is_open(self, stream_id: int) -> bool:
        """Not yet closed on both sides (h2 still counts it against the stream limit)."""
        stream = self._conn.streams.get(stream_id)
        return stream is not None and not stream.closed

    def send_window(self, stream_id: int) -> int:
        """Request-body bytes the server's windows accept on ``stream_id`` right now."""
        try:
            return self._conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0

    # -- output ----------------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

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
        conn = self._conn
        if protocol is not None:
            if method != "CONNECT":
                raise LocalProtocolError("protocol= needs method='CONNECT' (RFC 8441)")
            if not self.enable_connect_protocol:
                raise RemoteProtocolError(
                    "the server does not support extended CONNECT "
                    "(it did not send SETTINGS_ENABLE_CONNECT_PROTOCOL=1)"
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
            lower = name.lower()
            if lower in _HOP_BY_HOP:
                continue
            if lower == "te" and value.strip().lower() != "trailers":
                continue
            if "\r" in value or "\n" in value or "\0" in value:
                raise LocalProtocolError(f"header {name!r} contains CR, LF or NUL")
            fields.append((lower, value))
        stream_id = conn.get_next_available_stream_id()
        try:
            conn.send_headers(stream_id, fields, end_stream=end_stream)
        except h2.exceptions.TooManyStreamsError:
            raise
        except h2.exceptions.ProtocolError as exc:
            raise LocalProtocolError(f"cannot send the request over HTTP/2: {exc}") from None
        return stream_id

    def send_body(self, stream_id: int, data: memoryview, end_stream: bool) -> int:
        """Send as much of ``data`` as the windows allow; returns how many bytes went.

        ``end_stream`` applies once everything was sent (also for empty ``data``).
        """
        conn = self._conn
        total = len(data)
        sent = 0
        max_frame = conn.max_outbound_frame_size
        try:
            while sent < total:
                room = min(conn.local_flow_control_window(stream_id), max_frame, total - sent)
                if room <= 0:
                    return sent
                last = end_stream and sent + room == total
                conn.send_data(stream_id, data[sent : sent + room], end_stream=last)
                sent += room
            if end_stream and total == 0:
                conn.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            pass  # the server ended or reset the stream; its events say which
        return sent

    def end_stream(self, stream_id: int) -> None:
        try:
            self._conn.end_stream(stream_id)
        except h2.exceptions.StreamClosedError:
            pass  # already closed by the server (early response or reset)

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Credit consumed body bytes back to the server (maybe a WINDOW_UPDATE)."""
        if flow_length:
            try:
                self._conn.acknowledge_received_data(flow_length, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass  # the stream is gone; h2 already credited the connection window

    def reset(self, stream_id: int, error_code: int = h2.errors.ErrorCodes.CANCEL) -> None:
        """RST_STREAM (default CANCEL): only this stream ends, its siblings carry on."""
        try:
            self._conn.reset_stream(stream_id, error_code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass  # already closed on both sides

    def ping(self, data: bytes = KEEPALIVE_PING) -> None:
        self._conn.ping(data)

    def close(self, error_code: int = 0) -> None:
        """Queue a GOAWAY; no new streams afterwards."""
        self.terminated = True
        try:
            self._conn.close_connection(error_code)
        except h2.exceptions.ProtocolError:
            pass

    def maybe_sample_bdp(self, now: float) -> None:
        """Start a bandwidth-delay sample (a PING) unless one is running."""
        if self._bdp_sent_at is None:
            self._bdp_sent_at = now
            self._bdp_bytes = 0
            self._conn.ping(BDP_PING)

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Process received bytes; returns what happened, in order."""
        if self._preface is not None:
            data = self._check_preface(data)
            if not data:
                return []
        try:
            h2_events: list[Any] = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self.terminated = True
            raise RemoteProtocolError(f"the server broke the HTTP/2 protocol: {exc}") from None
        out: list[Event] = []
        append = out.append
        for ev in h2_events:
            kind = type(ev)
            if kind is h2.events.DataReceived:
                length = ev.flow_controlled_length or 0
                append(DataReceived(ev.stream_id, ev.data or b"", length, False))
                if self._bdp_sent_at is not None:
                    self._bdp_bytes += length
            elif kind is h2.events.ResponseReceived:
                status, headers = _split_status(ev.headers)
                append(ResponseReceived(ev.stream_id, status, headers, False))
            elif kind is h2.events.StreamEnded:
                sid = ev.stream_id
                # Fold the end into the event just emitted for the same stream.
                last = out[-1] if out else None
                if type(last) in (DataReceived, ResponseReceived) and last.stream_id == sid:  # type: ignore[union-attr]
                    last.end_stream = True  # type: ignore[union-attr]
                append(StreamEnded(sid))
            elif kind is h2.events.WindowUpdated:
                append(WindowUpdated(ev.stream_id or 0))
            elif kind is h2.events.StreamReset:
                append(StreamReset(ev.stream_id, int(ev.error_code or 0), ev.remote_reset))
            elif kind is h2.events.TrailersReceived:
                append(TrailersReceived(ev.stream_id, list(ev.headers)))
            elif kind is h2.events.InformationalResponseReceived:
                status, headers = _split_status(ev.headers)
                append(InformationalResponse(ev.stream_id, status, headers))
            elif kind is h2.events.RemoteSettingsChanged:
                append(SettingsChanged(self.max_concurrent_streams))
            elif kind is h2.events.PingAckReceived:
                payload = bytes(ev.ping_data or b"")
                append(PingAcked(payload, self._bdp_ack(payload, now)))
            elif kind is h2.events.ConnectionTerminated:
                self.terminated = True
                append(
                    ConnectionTerminated(
                        int(ev.error_code or 0),
                        ev.last_stream_id or 0,
                        bytes(ev.additional_data or b""),
                    )
                )
            elif kind is h2.events.PushedStreamReceived:
                # Push is disabled in our SETTINGS; a server that pushes anyway gets
                # the stream refused.
                self.reset(ev.pushed_stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        return out

    def _check_preface(self, data: bytes) -> bytes:
        """The server's first frame must be SETTINGS (RFC 9113 §3.4).

        Checked here because h2 waits for a whole frame before judging it: an HTTP/1.1
        answer would otherwise look like the start of a 4 MB frame and hang.
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
        if window <= self._window:
            return
        self._window = window
        self._conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        if 2 * window > self.connection_window:
            increment = 2 * window - self.connection_window
            self.connection_window += increment
            self._conn.increment_flow_control_window(increment)


def _split_status(headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]]]:
    """The ``:status`` value and the regular fields (h2 validated the pseudo-headers)."""
    status = 0
    fields: list[tuple[str, str]] = []
    for name, value in headers:
        if name[0] == ":":
            if name == ":status":
                if not (len(value) == 3 and value.isdigit()):
                    raise RemoteProtocolError(f"invalid :status {value!r} in an HTTP/2 response")
                status = int(value)
        else:
            fields.append((name, value))
    if not status:
        raise RemoteProtocolError("HTTP/2 response without a :status")
    return status, fields
