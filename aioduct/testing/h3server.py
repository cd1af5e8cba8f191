"""A scriptable HTTP/3 server on loopback, built on aioquic's own server machinery.

Like :class:`~aioduct.testing.h2server.H2Server` it runs its own asyncio loop on a
background thread, counts what it saw, and lets tests route paths to handlers for the
cases a stock server will not produce on demand: a connection closed mid-flight, a
stream reset, garbage datagrams, a low stream limit, 0-RTT refused. Built-in routes:

==================  ===================================================================
``/small``          200 ``Hello, World!``
``/bytes/N``        N bytes of :func:`~aioduct.testing.nginx.deterministic_bytes`
``/echo``           200 with the request body (after reading all of it)
``/headers``        200 with the request's fields, one ``name: value`` per line
``/slow/MS``        200 ``slow`` after MS milliseconds
``/peer``           200 ``host:port``: the client address the request came from
``/ws...``          extended CONNECT ``:protocol websocket`` (RFC 9220): a WebSocket echo
                    (text stays text); ``/ws/close/CODE`` closes with CODE at once; an
                    offered subprotocol starting with ``echo`` is accepted
``/goaway``         GOAWAY naming the next stream, then 200 ``goaway`` (the connection
                    takes no more requests)
anything else       404
==================  ===================================================================

Example::

    with H3Server(tls_ca.files) as srv:
        async with aioduct.Client(http3_prior_knowledge=True, verify=ca) as client:
            r = await client.get(srv.url + "/small")   # r.http_version == "3"
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection, Setting, encode_frame
from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import HandshakeCompleted, ProtocolNegotiated, QuicEvent, StreamReset
from aioquic.tls import SessionTicket

from .nginx import SMALL_BODY, TLSFiles, deterministic_bytes
from .server import LoopThreadServer

__all__ = ["H3Handler", "H3Request", "H3Server"]

H3Handler = Callable[["H3Request"], Awaitable[None]]
_H = TypeVar("_H", bound=H3Handler)


class H3Request:
    """One request stream as a handler sees it."""

    def __init__(self, conn: _H3Protocol, stream_id: int, fields: list[tuple[str, str]]) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.fields = fields
        pseudo = {k: v for k, v in fields if k.startswith(":")}
        self.method = pseudo.get(":method", "")
        self.path = pseudo.get(":path", "")
        #: Extended CONNECT's ``:protocol`` (RFC 9220), or None.
        self.protocol = pseudo.get(":protocol")
        self.headers = [(k, v) for k, v in fields if not k.startswith(":")]
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.reset_by_client: int | None = None
        #: The client's address (host, port) as the request's packets came from it.
        paths = conn._quic._network_paths
        self.client_address: tuple[str, int] = paths[0].addr[:2] if paths else ("", 0)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    async def body(self) -> bytes:
        parts = []
        while (chunk := await self._chunks.get()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    def send_headers(
        self, status: int, headers: Sequence[tuple[str, str]] = (), *, end: bool = False
    ) -> None:
        fields = [(b":status", str(status).encode())]
        fields += [(k.lower().encode(), v.encode()) for k, v in headers]
        self.conn.h3_connection().send_headers(self.stream_id, fields, end_stream=end)
        self.conn.transmit()

    def send_data(self, data: bytes, *, end: bool = False) -> None:
        self.conn.h3_connection().send_data(self.stream_id, data, end_stream=end)
        self.conn.transmit()

    def respond(self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()) -> None:
        extra = [("content-length", str(len(body))), *headers]
        if body:
            self.send_headers(status, extra)
            self.send_data(body, end=True)
        else:
            self.send_headers(status, extra, end=True)

    def reset(self, error_code: int = 0x102) -> None:
        """Abandon the stream (H3_INTERNAL_ERROR by default)."""
        self.conn._quic.reset_stream(self.stream_id, error_code)
        self.conn.transmit()


async def _websocket_echo(req: H3Request) -> None:
    """The server side of a WebSocket over an HTTP/3 stream, framed by wsproto."""
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

    offered = [p.strip() for p in (req.header("sec-websocket-protocol") or "").split(",")]
    chosen = next((p for p in offered if p.startswith("echo")), None)
    req.send_headers(200, [("sec-websocket-protocol", chosen)] if chosen else [])
    ws = Connection(ConnectionType.SERVER)
    if req.path.startswith("/ws/close/"):
        req.send_data(ws.send(CloseConnection(code=int(req.path[10:]))))
    text: list[str] = []
    data: list[bytes] = []
    while (chunk := await req._chunks.get()) is not None:
        ws.receive_data(chunk)
        for event in ws.events():
            if isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    req.send_data(ws.send(TextMessage("".join(text))))
                    text.clear()
            elif isinstance(event, BytesMessage):
                data.append(bytes(event.data))
                if event.message_finished:
                    req.send_data(ws.send(BytesMessage(b"".join(data))))
                    data.clear()
            elif isinstance(event, Ping):
                req.send_data(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if ws.state.name == "REMOTE_CLOSING":
                    req.send_data(ws.send(event.response()))
                req.send_data(b"", end=True)  # RFC 8441 §5: the stream ends after close
                return
    req.send_data(b"", end=True)


async def _builtin(req: H3Request) -> None:
    path = req.path.split("?", 1)[0]
    if req.method == "CONNECT" and req.protocol == "websocket" and path.startswith("/ws"):
        await _websocket_echo(req)
    elif path == "/small":
        req.respond(200, SMALL_BODY, [("content-type", "text/plain")])
    elif path.startswith("/bytes/") and path[7:].isdigit():
        size = int(path[7:])
        req.respond(200, deterministic_bytes(size), [("content-type", "application/octet-stream")])
    elif path == "/echo":
        req.respond(200, await req.body())
    elif path == "/headers":
        await req.body()
        text = "".join(f"{k}: {v}\n" for k, v in req.fields)
        req.respond(200, text.encode())
    elif path == "/peer":
        host, port = req.client_address
        req.respond(200, f"{host}:{port}".encode())
    elif path == "/goaway":
        req.conn.goaway(req.stream_id + 4)
        req.respond(200, b"goaway")
    elif path.startswith("/slow/") and path[6:].isdigit():
        await asyncio.sleep(int(path[6:]) / 1000)
        req.respond(200, b"slow")
    else:
        req.respond(404, f"no such location: {path}\n".encode())


class _ServerH3(H3Connection):
    """aioquic's HTTP/3 server side, optionally without SETTINGS_ENABLE_CONNECT_PROTOCOL
    (aioquic always sends it; a server without RFC 9220 does not)."""

    def __init__(self, quic: Any, *, connect_protocol: bool) -> None:
        self._connect_protocol = connect_protocol
        super().__init__(quic)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if not self._connect_protocol:
            settings.pop(Setting.ENABLE_CONNECT_PROTOCOL, None)
        return settings


class _H3Protocol(QuicConnectionProtocol):
    server: H3Server

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3: H3Connection | None = None
        self.requests: dict[int, H3Request] = {}
        self.early_data_accepted = False
        self.session_resumed = False

    def h3_connection(self) -> H3Connection:
        assert self.h3 is not None
        return self.h3

    def quic_event_received(self, event: QuicEvent) -> None:
        srv = self.server
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.h3 = _ServerH3(self._quic, connect_protocol=srv.enable_connect_protocol)
            srv.connections_accepted += 1
            srv.conns.append(self)
        elif isinstance(event, HandshakeCompleted):
            self.early_data_accepted = event.early_data_accepted
            self.session_resumed = event.session_resumed
            srv.handshakes.append((event.session_resumed, event.early_data_accepted))
        elif isinstance(event, StreamReset):
            req = self.requests.get(event.stream_id)
            if req is not None:
                req.reset_by_client = event.error_code
                req._chunks.put_nowait(None)
        if self.h3 is not None:
            for h3_event in self.h3.handle_event(event):
                self._h3_event(h3_event)

    def _h3_event(self, event: H3Event) -> None:
        srv = self.server
        if isinstance(event, HeadersReceived):
            req = self.requests.get(event.stream_id)
            if req is not None:  # trailers
                if event.stream_ended:
                    req._chunks.put_nowait(None)
                return
            fields = [(k.decode(), v.decode()) for k, v in event.headers]
            req = H3Request(self, event.stream_id, fields)
            self.requests[event.stream_id] = req
            srv.requests.append((srv.conns.index(self) + 1, event.stream_id, req.method, req.path))
            srv.max_open_streams_seen = max(srv.max_open_streams_seen, self._open_requests())
            if event.stream_ended:
                req._chunks.put_nowait(None)
            srv._spawn(srv._handle(req))
        elif isinstance(event, DataReceived):
            req = self.requests.get(event.stream_id)
            if req is not None:
                if event.data:
                    req._chunks.put_nowait(event.data)
                if event.stream_ended:
                    req._chunks.put_nowait(None)

    def goaway(self, stream_id: int) -> None:
        """Send GOAWAY: requests on ``stream_id`` and later streams are not processed."""
        self.send_control(encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id)))

    def send_control(self, raw: bytes) -> None:
        """Write raw bytes (frames, well formed or not) on the server's control stream."""
        control = self.h3_connection()._local_control_stream_id
        assert control is not None
        self._quic.send_stream_data(control, raw)
        self.transmit()

    def _open_requests(self) -> int:
        return sum(1 for sid in self.requests if self._quic._streams.get(sid) is not None)


class H3Server(LoopThreadServer):
    """An HTTP/3 server on 127.0.0.1 (UDP) whose behaviour tests script.

    ``max_streams`` is the peer limit on concurrent request streams;
    ``early_data=False`` refuses 0-RTT (tickets still resume the session);
    ``enable_connect_protocol=False`` leaves extended CONNECT (RFC 9220) out of SETTINGS.
    """

    def __init__(
        self,
        tls: TLSFiles,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_streams: int = 128,
        early_data: bool = True,
        idle_timeout: float = 60.0,
        enable_connect_protocol: bool = True,
    ) -> None:
        super().__init__()
        self.enable_connect_protocol = enable_connect_protocol
        self.tls = tls
        self.host = host
        self.port = port
        self.max_streams = max_streams
        self.early_data = early_data
        self.idle_timeout = idle_timeout
        self.connections_accepted = 0
        self.conns: list[_H3Protocol] = []
        #: ``(connection number, stream id, method, path)`` of every request, in order.
        self.requests: list[tuple[int, int, str, str]] = []
        #: ``(session resumed, early data accepted)`` of every completed handshake.
        self.handshakes: list[tuple[bool, bool]] = []
        self.max_open_streams_seen = 0
        self._tickets: dict[bytes, SessionTicket] = {}
        self._routes: dict[str, H3Handler] = {}
        self._server: QuicServer | None = None

    @property
    def url(self) -> str:
        host = "localhost" if self.host == "127.0.0.1" else self.host
        return f"https://{host}:{self.port}"

    def route(self, path: str) -> Callable[[_H], _H]:
        def register(handler: _H) -> _H:
            self._routes[path] = handler
            return handler

        return register

    def close_connections(self, error_code: int = 0, reason: str = "closing") -> None:
        """Close every connection now (CONNECTION_CLOSE to the client)."""

        def close() -> None:
            for conn in self.conns:
                conn._quic.close(error_code=error_code, reason_phrase=reason)
                conn.transmit()

        self.call(close)

    def send_garbage(self, datagrams: list[bytes]) -> None:
        """Send raw datagrams to every connected client, from the server's port."""

        def send() -> None:
            for conn in self.conns:
                peer = conn._quic._network_paths[0].addr if conn._quic._network_paths else None
                if peer is not None and conn._transport is not None:
                    for data in datagrams:
                        conn._transport.sendto(data, peer)

        self.call(send)

    # -- lifecycle ------------------------------------------------------------------------

    async def _listen(self) -> None:
        config = QuicConfiguration(
            is_client=False,
            alpn_protocols=H3_ALPN,
            max_datagram_frame_size=65536,
            idle_timeout=self.idle_timeout,
        )
        config.load_cert_chain(str(self.tls.cert_chain_pem), str(self.tls.key_pem))
        server = self

        class Protocol(_H3Protocol):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.server = server
                self._quic._local_max_streams_bidi.value = server.max_streams

        self._server = await serve(
            self.host,
            self.port,
            configuration=config,
            create_protocol=Protocol,
            session_ticket_fetcher=self._fetch_ticket,
            session_ticket_handler=self._store_ticket,
        )
        transport = self._server._transport
        assert transport is not None
        sock: socket.socket = transport.get_extra_info("socket")
        self.port = sock.getsockname()[1]

    def _fetch_ticket(self, ticket: bytes) -> SessionTicket | None:
        # Without early data the server "forgot" every ticket (as after a restart): a
        # client's 0-RTT is refused and the handshake is a full one.
        return self._tickets.get(ticket) if self.early_data else None

    def _store_ticket(self, ticket: SessionTicket) -> None:
        self._tickets[ticket.ticket] = ticket

    async def _stop_serving(self) -> None:
        if self._server is not None:
            self._server.close()

    # -- serving --------------------------------------------------------------------------

    async def _handle(self, req: H3Request) -> None:
        path = req.path.split("?", 1)[0]
        handler = self._routes.get(path) or self._routes.get("*") or _builtin
        try:
            await handler(req)
        except (asyncio.CancelledError, ConnectionError):
            pass
        except BaseException as exc:
            if req.reset_by_client is None:
                self.errors.append(exc)
