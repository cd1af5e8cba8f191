"""The QUIC library under :mod:`aioduct.http3`: aioquic or qh3, behind one interface.

Both are sans-I/O QUIC + HTTP/3 state machines with the same shape (qh3 began as a
fork of aioquic), so :class:`~aioduct.http3.HTTP3Connection` drives either one. They
differ in speed and in a few details this module hides:

- **aioquic** (``pip install 'aioduct[http3]'``) parses, decrypts and acknowledges
  every packet in Python: about 25 µs of CPU per received datagram, which caps a bulk
  download near 50 MB/s on one core.
- **qh3** (``pip install 'aioduct[http3-fast]'``) keeps aioquic's API but runs the
  packet path (header protection, AEAD, frames, ACKs, loss recovery) in Rust, takes a
  whole batch of datagrams per call, and has its own QPACK coder: about 4x less CPU
  per MiB downloaded (docs/benchmarks.md, "HTTP/3 backends").

``Http3Config(backend="auto")`` picks qh3 when it is importable, else aioquic; naming
one that is not installed raises :class:`~aioduct.EngineUnavailable` saying which
extra to install. The environment variable ``AIODUCT_HTTP3_BACKEND`` (``aioquic`` or
``qh3``) overrides what ``"auto"`` picks, for comparing the two without changing code.

What differs, and is adapted here (:class:`QuicBackend`):

- configuration: aioquic chooses its congestion controller by name
  (``congestion_control``); qh3's Rust core has one (``congestion_control`` is ignored).
- stream state: aioquic keeps it on ``QuicConnection._streams``; qh3 in its core, with
  each HTTP/3 request stream's two halves tracked by its ``H3Connection``.
  :class:`H3Adapter` answers "how much is still queued", "is this stream still open"
  and "abandon this stream" for both.
- receiving: qh3 decrypts a batch of datagrams in one native call.
- events: qh3 reports a 1xx head as ``InformationalHeadersReceived``; aioquic as an
  ordinary ``HeadersReceived`` (:attr:`QuicBackend.InterimHeadersReceived` is then a
  class no event has).
- the server certificate (for ``pinned_sha256``): read from each TLS stack its own way.
- server push: both would allow 8 pushes (MAX_PUSH_ID); aioduct has no use for pushed
  responses, so neither sends it and a server may push nothing (RFC 9114 §4.6).
- session tickets are each library's own type; a client keeps one backend, so tickets
  never cross.
- GOAWAY: qh3 reports it (``GoawayReceived``, applied by :mod:`aioduct.http3`);
  aioquic reads past its payload, so its HTTP/3 layer here follows the server's control
  stream itself and calls ``on_goaway``. Both go through :func:`check_goaway`.
- receive flow control: on aioquic, windows are credited as the reader consumes
  (``held`` bytes, :func:`_load_aioquic`'s ``AioquicQuic``); qh3 credits in its core
  as data arrives, with no hook to hold it back (its ``held`` is kept but earns
  nothing, ``credit_due`` is False; ``credits_on_arrival`` is True), so
  :mod:`aioduct.http3` bounds what a stream may hold unread instead.
"""

from __future__ import annotations

import importlib.util
import os
import ssl
import threading
from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final, Protocol

from .errors import EngineUnavailable

__all__ = [
    "BACKENDS",
    "ErrorCode",
    "H3Adapter",
    "QuicBackend",
    "QuicErrorCode",
    "load_backend",
    "resolve_backend",
]

#: The QUIC libraries aioduct runs on, fastest first (the order ``"auto"`` tries).
BACKENDS: Final = ("qh3", "aioquic")
#: The pip extra that installs each.
_EXTRAS: Final = {"qh3": "http3-fast", "aioquic": "http3"}
_ENV: Final = "AIODUCT_HTTP3_BACKEND"
#: Bytes of a partial HTTP/3 frame (a HEADERS frame arriving in pieces) that do not
#: count against the stream window on aioquic: a header block larger than a small
#: window must still be able to arrive; past this it waits for the reader like data.
_FRAME_ALLOWANCE: Final = 64 * 1024


class ErrorCode(IntEnum):
    """HTTP/3 error codes (RFC 9114 §8.1, QPACK's from RFC 9204 §6)."""

    H3_DATAGRAM_ERROR = 0x33
    H3_NO_ERROR = 0x100
    H3_GENERAL_PROTOCOL_ERROR = 0x101
    H3_INTERNAL_ERROR = 0x102
    H3_STREAM_CREATION_ERROR = 0x103
    H3_CLOSED_CRITICAL_STREAM = 0x104
    H3_FRAME_UNEXPECTED = 0x105
    H3_FRAME_ERROR = 0x106
    H3_EXCESSIVE_LOAD = 0x107
    H3_ID_ERROR = 0x108
    H3_SETTINGS_ERROR = 0x109
    H3_MISSING_SETTINGS = 0x10A
    H3_REQUEST_REJECTED = 0x10B
    H3_REQUEST_CANCELLED = 0x10C
    H3_REQUEST_INCOMPLETE = 0x10D
    H3_MESSAGE_ERROR = 0x10E
    H3_CONNECT_ERROR = 0x10F
    H3_VERSION_FALLBACK = 0x110
    QPACK_DECOMPRESSION_FAILED = 0x200
    QPACK_ENCODER_STREAM_ERROR = 0x201
    QPACK_DECODER_STREAM_ERROR = 0x202


class QuicErrorCode(IntEnum):
    """QUIC transport error codes (RFC 9000 §20.1; 0x100-0x1ff carry a TLS alert)."""

    NO_ERROR = 0x0
    INTERNAL_ERROR = 0x1
    CONNECTION_REFUSED = 0x2
    FLOW_CONTROL_ERROR = 0x3
    STREAM_LIMIT_ERROR = 0x4
    STREAM_STATE_ERROR = 0x5
    FINAL_SIZE_ERROR = 0x6
    FRAME_ENCODING_ERROR = 0x7
    TRANSPORT_PARAMETER_ERROR = 0x8
    CONNECTION_ID_LIMIT_ERROR = 0x9
    PROTOCOL_VIOLATION = 0xA
    INVALID_TOKEN = 0xB
    APPLICATION_ERROR = 0xC
    CRYPTO_BUFFER_EXCEEDED = 0xD
    KEY_UPDATE_ERROR = 0xE
    AEAD_LIMIT_REACHED = 0xF
    NO_VIABLE_PATH = 0x10
    VERSION_NEGOTIATION_ERROR = 0x11


class QuicLike(Protocol):
    """The part of a library's ``QuicConnection`` that :mod:`aioduct.http3` calls."""

    def connect(self, addr: Any, now: float) -> None: ...

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...

    def next_event(self) -> Any: ...

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int: ...

    def close(
        self, error_code: int = ..., frame_type: int | None = ..., reason_phrase: str = ...
    ) -> None: ...


class H3Adapter(Protocol):
    """A library's ``H3Connection`` with what aioduct adds to it (see :class:`QuicBackend`)."""

    #: Called with the stream id of each valid GOAWAY from the server (:func:`check_goaway`).
    on_goaway: Callable[[int], None] | None

    @property
    def received_settings(self) -> dict[int, int] | None:
        """The server's SETTINGS once they arrived (extended CONNECT waits for them)."""

    def handle_event(self, event: Any) -> list[Any]: ...

    def send_headers(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None: ...

    def send_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    def receive_datagrams(self, datagrams: list[bytes], addr: tuple[str, int], now: float) -> None:
        """Feed datagrams that arrived together to QUIC."""

    def send_buffered(self, stream_id: int) -> int:
        """Bytes queued on ``stream_id`` that QUIC has not sent yet."""

    def stream_is_open(self, stream_id: int) -> bool:
        """Whether either half of ``stream_id`` is still open."""

    def abandon(self, stream_id: int, error_code: int) -> None:
        """Reset our half and stop the peer's, whichever is still open."""

    def peer_max_streams(self) -> int:
        """How many request streams the server lets us open at once (0: not known yet)."""

    def can_open_stream(self) -> bool:
        """Whether the server's stream credit (MAX_STREAMS, a running total of request
        streams) allows one more now. aioquic would hold a stream beyond it back until
        the credit came (or the connection timed out), qh3 refuses it (``ValueError``):
        aioduct opens none beyond it."""

    def peer_certificate_der(self) -> bytes | None:
        """The server's certificate from this connection's handshake, or ``None``."""


class QuicBackend:
    """One QUIC library as :mod:`aioduct.http3` uses it: constructors and event classes."""

    def __init__(
        self,
        name: str,
        *,
        configuration: Callable[..., Any],
        connection_class: Callable[..., QuicLike],
        h3: Callable[[Any, int, int], H3Adapter],
        quic_events: Any,
        h3_events: Any,
        interim: type,
        goaway: type,
    ) -> None:
        self.name = name
        self._configuration = configuration
        self._connection_class = connection_class
        self.h3 = h3
        """``h3(quic, qpack_table_capacity, qpack_blocked_streams)``: its HTTP/3 layer."""
        # The two libraries' event modules have the same names for these...
        self.HandshakeCompleted: type = quic_events.HandshakeCompleted
        self.ConnectionTerminated: type = quic_events.ConnectionTerminated
        self.StreamReset: type = quic_events.StreamReset
        self.HeadersReceived: type = h3_events.HeadersReceived
        self.DataReceived: type = h3_events.DataReceived
        # ...and differ here: 1xx heads (aioquic reports them as HeadersReceived), and
        #: qh3's GOAWAY event (aioduct.http3 applies it through :func:`check_goaway`;
        #: aioquic has none: its HTTP/3 layer calls ``on_goaway`` itself).
        self.InterimHeadersReceived: type = interim
        self.GoawayReceived: type = goaway

    def connection(self, configuration: Any, on_ticket: Callable[[Any], None] | None) -> Any:
        """A client ``QuicConnection`` (``on_ticket`` receives session tickets)."""
        return self._connection_class(configuration=configuration, session_ticket_handler=on_ticket)

    def __repr__(self) -> str:
        return f"<QuicBackend {self.name}>"

    def configuration(
        self,
        server_name: str,
        *,
        alpn: list[str],
        verify: bool,
        cafile: str | None,
        max_data: int,
        max_stream_data: int,
        idle_timeout: float,
        max_datagram_size: int,
        congestion_control: str,
        session_ticket: Any = None,
    ) -> Any:
        """The library's client ``QuicConfiguration`` for one origin.

        Both run their own TLS 1.3 (not the ``ssl`` module), so trust comes as a file:
        ``cafile``, the CA bundle the TCP connections use.
        """
        return self._configuration(
            server_name=server_name,
            alpn=alpn,
            verify=verify,
            cafile=cafile,
            max_data=max_data,
            max_stream_data=max_stream_data,
            idle_timeout=idle_timeout,
            max_datagram_size=max_datagram_size,
            congestion_control=congestion_control,
            session_ticket=session_ticket,
        )


def _client_configuration(
    configuration_class: Callable[..., Any],
    *,
    server_name: str,
    alpn: list[str],
    verify: bool,
    cafile: str | None,
    session_ticket: Any,
    **options: Any,
) -> Any:
    """A client ``QuicConfiguration`` of either library (the same class shape; each
    backend adds its own ``options``: limits, congestion control, hostname checks)."""
    quic = configuration_class(
        is_client=True,
        alpn_protocols=alpn,
        server_name=server_name,
        verify_mode=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
        **options,
    )
    if verify and cafile is not None:
        quic.load_verify_locations(cafile=cafile)
    quic.session_ticket = session_ticket
    return quic


def check_goaway(h3: Any, goaway_id: int) -> None:
    """Apply a server's GOAWAY to ``h3`` (``on_goaway``), after RFC 9114 §5.2's checks:
    it names a client-initiated bidirectional stream, and a later one may only lower
    it (``ValueError`` saying which, for H3_ID_ERROR)."""
    last = getattr(h3, "last_goaway", None)
    if goaway_id & 3:
        raise ValueError(f"GOAWAY names stream {goaway_id}, not a request stream")
    if last is not None and goaway_id > last:
        raise ValueError(f"GOAWAY raised the stream id from {last} to {goaway_id}")
    h3.last_goaway = goaway_id
    on_goaway = getattr(h3, "on_goaway", None)
    if on_goaway is not None:
        on_goaway(goaway_id)


def _installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def resolve_backend(choice: str) -> str:
    """The library ``Http3Config(backend=choice)`` runs on; raises
    :class:`~aioduct.EngineUnavailable` when it (or, for ``"auto"``, any) is missing.

    Cheap (no import): the engine calls it when a client that may use HTTP/3 starts, so
    a missing library is reported then, not on the first request.
    """
    if choice == "auto":
        forced = os.environ.get(_ENV, "").strip().lower()
        if forced:
            if forced not in BACKENDS:
                raise EngineUnavailable(
                    f"{_ENV}={forced!r} names no HTTP/3 backend: use one of "
                    f"{', '.join(BACKENDS)}, or unset it"
                )
            choice = forced
        else:
            for name in BACKENDS:
                if _installed(name):
                    return name
            raise EngineUnavailable(
                "HTTP/3 needs a QUIC library and none is installed: pip install "
                "'aioduct[http3-fast]' (qh3, fastest) or 'aioduct[http3]' (aioquic)"
            )
    if choice not in BACKENDS:
        raise EngineUnavailable(
            f"no HTTP/3 backend is called {choice!r}: use 'auto', 'qh3' or 'aioquic'"
        )
    if not _installed(choice):
        raise EngineUnavailable(
            f"the HTTP/3 backend {choice!r} is not installed: pip install "
            f"'aioduct[{_EXTRAS[choice]}]' (or use backend='auto' to take whichever QUIC "
            "library is installed)"
        )
    return choice


_loaded: dict[str, QuicBackend] = {}
_lock = threading.Lock()


def load_backend(choice: str) -> QuicBackend:
    """The :class:`QuicBackend` for ``Http3Config.backend`` (imported once per process)."""
    name = resolve_backend(choice)
    backend = _loaded.get(name)
    if backend is None:
        with _lock:
            backend = _loaded.get(name)
            if backend is None:
                backend = _loaded[name] = _LOADERS[name]()
    return backend


# -- aioquic -------------------------------------------------------------------------------


def _load_aioquic() -> QuicBackend:
    import pylsqpack
    from aioquic._buffer import Buffer, BufferReadError
    from aioquic.h3 import events as h3_events
    from aioquic.h3.connection import (
        FrameError,
        FrameType,
        H3Connection,
        IdError,
        ProtocolError,
        StreamType,
    )
    from aioquic.quic import events
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import MAX_STREAM_DATA_FRAME_CAPACITY, QuicConnection
    from aioquic.quic.packet import QuicFrameType, pull_quic_transport_parameters

    def configuration(*, congestion_control: str, **options: Any) -> Any:
        return _client_configuration(
            QuicConfiguration, congestion_control_algorithm=congestion_control, **options
        )

    class AioquicQuic(QuicConnection):
        """aioquic's QUIC connection, crediting receive windows as the reader consumes.

        aioquic raises MAX_STREAM_DATA and MAX_DATA (doubling them) once half of a
        window has *arrived*, whether or not anyone read it, so a slow reader of a
        streamed response would buffer without bound. Here the limits follow what was
        consumed, as HTTP/2's WINDOW_UPDATEs do: a stream may run ``max_stream_data``
        ahead of what QUIC delivered in order minus what its exchange still ``held``
        unread (and what HTTP/3 buffers of a partial frame past ``_FRAME_ALLOWANCE``);
        the connection ``max_data`` ahead of all data received minus all held. Credit
        goes out once it opens at least half a window. The two ``_write_*_limits``
        hooks are where aioquic decides this when it builds a packet; nothing else of
        aioquic's flow control changes.
        """

        def __init__(self, *, configuration: QuicConfiguration, **kwargs: Any) -> None:
            super().__init__(configuration=configuration, **kwargs)
            self.stream_window = configuration.max_stream_data
            self.connection_window = configuration.max_data
            #: Bytes handed to an exchange and not read yet, per stream and in total.
            self.held: dict[int, int] = {}
            self.held_total = 0
            #: The HTTP/3 layer's streams (a partial frame past the allowance counts).
            self.h3_streams: dict[int, Any] = {}
            #: The server's disable_active_migration transport parameter (aioquic does
            #: not keep it): then the client must not move to another local address.
            self.migration_disabled = False
            #: Windows follow the reader here: unread data is bounded by them.
            self.credits_on_arrival = False

        def _parse_transport_parameters(
            self, data: bytes, from_session_ticket: bool = False
        ) -> None:
            if not from_session_ticket:
                try:
                    params = pull_quic_transport_parameters(Buffer(data=data))
                except ValueError:
                    pass  # aioquic's own parse below reports it
                else:
                    self.migration_disabled = bool(params.disable_active_migration)
            super()._parse_transport_parameters(data, from_session_ticket)

        def stream_credit(self, stream: Any) -> int:
            """The MAX_STREAM_DATA ``stream`` earned (delivered, minus held, plus a window)."""
            sid = stream.stream_id
            h3 = self.h3_streams.get(sid)
            pending = self.held.get(sid, 0)
            if h3 is not None and len(h3.buffer) > _FRAME_ALLOWANCE:
                pending += len(h3.buffer) - _FRAME_ALLOWANCE
            return int(stream.receiver.starting_offset()) - pending + self.stream_window

        def credit_due(self, stream_id: int) -> bool:
            """Whether a MAX_STREAM_DATA or MAX_DATA is now worth sending."""
            window = self.connection_window
            max_data = self._local_max_data
            if max_data.used - self.held_total + window - max_data.value >= window >> 1:
                return True
            stream = self._streams.get(stream_id)
            return stream is not None and (
                self.stream_credit(stream) - stream.max_stream_data_local >= self.stream_window >> 1
            )

        def _write_connection_limits(self, builder: Any, space: Any) -> None:
            max_data = self._local_max_data
            window = self.connection_window
            credit = max_data.used - self.held_total + window
            if credit - max_data.value >= window >> 1:
                max_data.value = credit
            used = max_data.used
            max_data.used = 0  # keeps aioquic from doubling MAX_DATA on arrival
            try:
                super()._write_connection_limits(builder, space)  # MAX_DATA, MAX_STREAMS
            finally:
                max_data.used = used

        def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
            # Runs for every stream each time a packet is built: the common case
            # (nothing delivered that could earn half a window, nothing unsent) returns
            # at once.
            limit = stream.max_stream_data_local
            if not limit or stream.receiver.is_finished:  # zero: our own unidirectional
                return
            window = self.stream_window
            if stream.receiver._buffer_start + window - limit >= window >> 1:
                credit = self.stream_credit(stream)
                if credit - limit >= window >> 1:
                    stream.max_stream_data_local = credit
            if stream.max_stream_data_local_sent != stream.max_stream_data_local:
                buf = builder.start_frame(
                    QuicFrameType.MAX_STREAM_DATA,
                    capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
                    handler=self._on_max_stream_data_delivery,
                    handler_args=(stream,),
                )
                buf.push_uint_var(stream.stream_id)
                buf.push_uint_var(stream.max_stream_data_local)
                stream.max_stream_data_local_sent = stream.max_stream_data_local

    class AioquicH3(H3Connection):
        """aioquic's HTTP/3 layer with the QPACK table size and blocked-stream limit we
        offer the server (fixed at 4096 and 16 otherwise), :class:`H3Adapter`, and the
        server's GOAWAY surfaced: aioquic reads past a GOAWAY's payload, so the
        server's control stream is followed here too, frame by frame (:meth:`_tap`),
        and each GOAWAY's stream id goes to ``on_goaway``."""

        def __init__(self, quic: QuicConnection, table_capacity: int, blocked: int) -> None:
            self._offer = (table_capacity, blocked)
            super().__init__(quic)
            self.on_goaway: Callable[[int], None] | None = None
            if isinstance(quic, AioquicQuic):
                quic.h3_streams = self._stream
            #: The server's control stream once its type is read; None before.
            self._tap_control: int | None = None
            #: Unparsed bytes per server unidirectional stream (only the control one
            #: after its type), and payload bytes to skip of the frame passed over.
            self._tap_pending: dict[int, bytes] = {}
            self._tap_skip = 0

        def handle_event(self, event: Any) -> list[Any]:
            if (
                type(event) is events.StreamDataReceived
                and event.stream_id & 3 == 3
                and not self._is_done
            ):
                try:
                    self._tap(event.stream_id, event.data)
                except ProtocolError as exc:  # as aioquic treats its own findings
                    self._is_done = True
                    self._quic.close(error_code=exc.error_code, reason_phrase=exc.reason_phrase)
                    return []
            return super().handle_event(event)

        def _tap(self, stream_id: int, data: bytes) -> None:
            control = self._tap_control
            if control is not None and stream_id != control:
                return
            pending = self._tap_pending
            if stream_id not in pending and control is None and stream_id in self._stream:
                return  # a server stream whose type was read already: not the control one
            buf = Buffer(data=pending.pop(stream_id, b"") + data)
            if control is None:
                try:
                    kind = buf.pull_uint_var()
                except BufferReadError:
                    pending[stream_id] = buf.data_slice(0, buf.capacity)
                    return
                if kind != StreamType.CONTROL:
                    return
                self._tap_control = stream_id
            end = buf.capacity
            while True:
                if self._tap_skip:
                    step = min(self._tap_skip, end - buf.tell())
                    buf.seek(buf.tell() + step)
                    self._tap_skip -= step
                    if self._tap_skip:
                        return
                start = buf.tell()
                try:
                    frame_type = buf.pull_uint_var()
                    length = buf.pull_uint_var()
                except BufferReadError:
                    pending[stream_id] = buf.data_slice(start, end)
                    return
                if frame_type != FrameType.GOAWAY:
                    self._tap_skip = length
                    continue
                if length > 8:
                    raise FrameError("GOAWAY frame payload is longer than a stream id")
                if end - buf.tell() < length:
                    pending[stream_id] = buf.data_slice(start, end)
                    return
                payload = Buffer(data=buf.pull_bytes(length))
                try:
                    goaway_id = payload.pull_uint_var()
                except BufferReadError:
                    raise FrameError("GOAWAY frame payload is truncated") from None
                if not payload.eof():
                    raise FrameError("GOAWAY frame payload has bytes after the stream id")
                try:
                    check_goaway(self, goaway_id)
                except ValueError as exc:
                    raise IdError(str(exc)) from None

        def _init_connection(self) -> None:
            # Runs at the end of H3Connection.__init__, before SETTINGS are sent.
            self._max_table_capacity, self._blocked_streams = self._offer
            self._decoder = pylsqpack.Decoder(*self._offer)
            self._max_push_id = None  # no MAX_PUSH_ID: aioduct takes no server push
            super()._init_connection()

        def receive_datagrams(
            self, datagrams: list[bytes], addr: tuple[str, int], now: float
        ) -> None:
            receive = self._quic.receive_datagram
            for data in datagrams:
                receive(data, addr, now)

        def send_buffered(self, stream_id: int) -> int:
            stream = self._quic._streams.get(stream_id)
            return 0 if stream is None else len(stream.sender._buffer)

        def stream_is_open(self, stream_id: int) -> bool:
            stream = self._quic._streams.get(stream_id)
            return stream is not None and not (
                stream.sender.is_finished and stream.receiver.is_finished
            )

        def abandon(self, stream_id: int, error_code: int) -> None:
            quic = self._quic
            stream = quic._streams.get(stream_id)
            if stream is None:
                return
            if not stream.sender.is_finished:
                quic.reset_stream(stream_id, error_code)
            if not stream.receiver.is_finished:
                quic.stop_stream(stream_id, error_code)

        def peer_max_streams(self) -> int:
            return int(self._quic._remote_max_streams_bidi)

        def can_open_stream(self) -> bool:
            quic = self._quic
            allowed = quic._remote_max_streams_bidi
            next_id = getattr(quic, "_local_next_stream_id_bidi", None)  # private: may go
            if not allowed or next_id is None:  # before the transport parameters, or unknown
                return True
            return bool(next_id // 4 < allowed)

        def peer_certificate_der(self) -> bytes | None:
            cert = getattr(self._quic.tls, "_peer_certificate", None)
            if cert is None:
                return None
            from cryptography.hazmat.primitives.serialization import Encoding

            return bytes(cert.public_bytes(Encoding.DER))

    class _NoEvent:
        """aioquic reports 1xx heads as HeadersReceived: no event is of this class."""

    return QuicBackend(
        "aioquic",
        configuration=configuration,
        connection_class=AioquicQuic,
        h3=AioquicH3,
        quic_events=events,
        h3_events=h3_events,
        interim=_NoEvent,
        goaway=_NoEvent,
    )


# -- qh3 -----------------------------------------------------------------------------------


def _load_qh3() -> QuicBackend:
    from qh3._hazmat import QpackDecoder
    from qh3.h3 import events as h3_events
    from qh3.h3.connection import H3Connection
    from qh3.quic import events
    from qh3.quic.configuration import QuicConfiguration
    from qh3.quic.connection import QuicConnection, QuicConnectionError

    def configuration(
        *,
        congestion_control: str,  # qh3's core has one controller: not selectable
        verify: bool,
        **options: Any,
    ) -> Any:
        return _client_configuration(
            QuicConfiguration, verify=verify, verify_hostname=verify, **options
        )

    class Qh3Quic(QuicConnection):
        """qh3's connection, minus per-datagram Python work that only feeds a QUIC
        logger: without one, datagrams go to and from the Rust core directly (its
        ``datagrams_to_send`` re-parses every packet header it sends, to log it).

        Its core credits receive windows as data arrives: ``held`` is kept for the
        same bookkeeping as on aioquic but earns nothing (``credit_due`` is False)."""

        held: dict[int, int]
        held_total = 0
        migration_disabled = False
        #: Unread data is not held back by the windows here: :mod:`aioduct.http3`
        #: bounds it itself (a stream past the bound fails, see ``unread_limit``).
        credits_on_arrival = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.held = {}

        def credit_due(self, stream_id: int) -> bool:
            return False

        def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
            # qh3's HTTP/3 layer writes its QPACK encoder and decoder streams after every
            # header block, with nothing to say when no dynamic table is used (the
            # usual case): two empty writes per request, each a full trip into the core.
            if stream_id & 3 == 2 and not end_stream and not len(data):
                return  # our own unidirectional streams exist from the start: a no-op
            super().send_stream_data(stream_id, data, end_stream)

        def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
            core = self._core
            if core is None or self._quic_logger is not None:
                return super().datagrams_to_send(now)
            poll = core.poll_transmit
            out = []
            try:
                while (transmit := poll(now)) is not None:
                    out.append((transmit[0], transmit[1]))
            except RuntimeError as exc:  # as QuicConnection._call_core reports it
                raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
            return out

        def receive_burst(self, datagrams: list[bytes], addr: tuple[str, int], now: float) -> None:
            core = self._core
            if core is None or not self._handshake_complete or self._quic_logger is not None:
                # the handshake's datagrams take the careful path (per-packet TLS steps)
                self.receive_many_datagrams(datagrams, addr, now)
                return
            try:
                core.receive_many_datagrams(datagrams, addr, now)
            except RuntimeError as exc:
                raise QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc)) from exc
            self._drain_core()

    class Qh3H3(H3Connection):
        """qh3's HTTP/3 layer with the QPACK limits we offer (it offers 65536 and 100
        otherwise) and :class:`H3Adapter`. Request streams' halves are tracked by the
        HTTP/3 layer (``_stream``: an entry lives until both halves ended)."""

        def __init__(self, quic: Qh3Quic, table_capacity: int, blocked: int) -> None:
            self._offer = (table_capacity, blocked)
            super().__init__(quic)
            self._quic: Qh3Quic = quic
            self.on_goaway: Callable[[int], None] | None = None

        def _init_connection(self) -> None:
            # Runs at the end of H3Connection.__init__, before SETTINGS are sent.
            self._max_table_capacity, self._blocked_streams = self._offer
            self._decoder = QpackDecoder(
                *self._offer, max_field_section_size=self._max_field_section_size
            )
            self._max_push_id = None  # no MAX_PUSH_ID: aioduct takes no server push
            super()._init_connection()

        def receive_datagrams(
            self, datagrams: list[bytes], addr: tuple[str, int], now: float
        ) -> None:
            self._quic.receive_burst(datagrams, addr, now)

        def send_buffered(self, stream_id: int) -> int:
            return self._quic.get_send_buffer_size(stream_id)

        def stream_is_open(self, stream_id: int) -> bool:
            stream = self._stream.get(stream_id)
            if stream is None or getattr(stream, "abandoned", False):
                return False
            return not (stream.sending_ended and stream.receiving_ended)

        def abandon(self, stream_id: int, error_code: int) -> None:
            stream = self._stream.get(stream_id)
            if stream is None:
                return
            # The entry stays until the peer's FIN or RESET_STREAM: data still in
            # flight must find it (a new entry would take that DATA for a frame out of
            # order and close the connection). ``abandoned`` marks it closed for us.
            quic = self._quic
            send, stream.sending_ended = not stream.sending_ended, True
            receive = not stream.receiving_ended
            stream.abandoned = True  # type: ignore[attr-defined]  # ours, on qh3's object
            try:
                if send:
                    quic.reset_stream(stream_id, error_code)
                if receive:
                    quic.stop_stream(stream_id, error_code)
            except (QuicConnectionError, AssertionError):
                pass  # the core already forgot the stream (or the connection)
            self._maybe_cleanup_stream(stream)

        def peer_max_streams(self) -> int:
            return int(self._quic.max_concurrent_bidi_streams)

        def can_open_stream(self) -> bool:
            quic = self._quic
            core = quic._core
            if core is None or not quic._handshake_complete:
                return True  # early streams wait in qh3 until the handshake allows them
            allowed, _uni, opened, _opened_uni = core.stream_limits
            return bool(opened < allowed)

        def peer_certificate_der(self) -> bytes | None:
            cert = self._quic.get_peercert()
            return None if cert is None else bytes(cert.public_bytes())

    return QuicBackend(
        "qh3",
        configuration=configuration,
        connection_class=Qh3Quic,
        h3=Qh3H3,
        quic_events=events,
        h3_events=h3_events,
        interim=h3_events.InformationalHeadersReceived,
        goaway=h3_events.GoawayReceived,
    )


_LOADERS: Final[dict[str, Callable[[], QuicBackend]]] = {
    "aioquic": _load_aioquic,
    "qh3": _load_qh3,
}
