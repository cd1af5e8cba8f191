"""A scriptable HTTP/2 loopback server on the ``h2`` library, for the cases nginx will not
produce on demand: GOAWAY mid-flight, RST_STREAM on one stream, tiny flow-control
windows, a low SETTINGS_MAX_CONCURRENT_STREAMS, extended CONNECT, a server that stops
answering PINGs.

It speaks h2c (prior knowledge) or h2 over TLS (ALPN ``h2``), runs its own asyncio loop
on a background thread like :class:`~aioduct.testing.server.ScriptServer`, and counts the
connections it accepted. Handlers are ``async def handler(req: H2Request)``; paths not
routed get the built-in responses:

==================  ===================================================================
``/small``          200 ``Hello, World!``
``/bytes/N``        N bytes of :func:`~aioduct.testing.nginx.deterministic_bytes`
``/echo``           200 with the request body read completely (acknowledged as read)
``/slow/MS``        200 ``slow`` after MS milliseconds
anything else       404
==================  ===================================================================

Frames h2 would never send -- floods, malformed frames -- go out with
:meth:`H2ServerConn.send_raw` (build them with :func:`raw_frame`); h2's own state does
not see them.

Example::

    with H2Server(max_concurrent_streams=2, initial_window_size=1024) as srv:
        @srv.route("/reset")
        async def reset(req: H2Request) -> None:
            req.reset(h2.errors.ErrorCodes.INTERNAL_ERROR)
        ...  # aioduct.Client(http2_prior_knowledge=True).get(srv.url + "/reset")
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from typing import TypeVar

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hyperframe.frame import GoAwayFrame

from .nginx import SMALL_BODY, deterministic_bytes
from .server import LoopThreadServer

__all__ = ["H2Handler", "H2Request", "H2Server", "H2ServerConn", "raw_frame"]

H2Handler = Callable[["H2Request"], Awaitable[None]]
_H = TypeVar("_H", bound=H2Handler)


def raw_frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One HTTP/2 frame as bytes (RFC 9113 §4.1), whatever its content."""
    head = len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream_id.to_bytes(4, "big")
    return head + payload


class H2ServerConn:
    """One accepted connection: its h2 state and the raw transport."""

    def __init__(self, server: H2Server, conn_id: int, writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.id = conn_id
        self.writer = writer
        self.h2 = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self.requests: dict[int, H2Request] = {}
        self.window_opened = asyncio.Event()
        #: When False, PINGs are not answered (h2 acks them itself; we drop the ack).
        self.answer_pings = server.answer_pings
        self.closed = False

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.writer.write(data)

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as it is, after what h2 queued; ``ConnectionResetError`` once
        the connection is closed (a flooding handler's loop ends there)."""
        self.flush()
        if self.closed or self.writer.transport.is_closing():
            raise ConnectionResetError(f"connection #{self.id} is closed")
        self.writer.write(data)
        await self.writer.drain()

    def goaway(self, last_stream_id: int | None = None, error_code: int = 0) -> None:
        """Send GOAWAY: streams above ``last_stream_id`` (default: the highest opened)
        are declared unprocessed; the others may still be answered.

        Written as a raw frame because h2 refuses to send anything after its own
        ``close_connection()``, and a graceful GOAWAY is followed by responses.
        """
        self.flush()
        frame = GoAwayFrame(0)
        frame.last_stream_id = (
            max(self.requests, default=0) if last_stream_id is None else last_stream_id
        )
        frame.error_code = error_code
        self.writer.write(frame.serialize())

    def close(self) -> None:
        """Drop the TCP connection now (no GOAWAY)."""
        self.closed = True
        self.writer.transport.abort()


class H2Request:
    """A request stream as the server sees it, with the means to answer it."""

    def __init__(self, conn: H2ServerConn, stream_id: int, headers: list[tuple[str, str]]) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.headers = headers
        pseudo = {k: v for k, v in headers if k.startswith(":")}
        self.method = pseudo.get(":method", "")
        self.path = pseudo.get(":path", "")
        self.authority = pseudo.get(":authority", "")
        self.protocol = pseudo.get(":protocol")
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.body_complete = False
        self.reset_by_client: int | None = None

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None

    # -- reading --------------------------------------------------------------------------

    async def receive(self) -> bytes | None:
        """The next body chunk (acknowledged now: the client's window reopens only as the
        handler reads), or ``None`` at the end of the request body."""
        chunk = await self._chunks.get()
        if chunk is None:
            self._chunks.put_nowait(None)
            return None
        if chunk:
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self.conn.h2.acknowledge_received_data(len(chunk), self.stream_id)
            self.conn.flush()
        return chunk

    async def body(self) -> bytes:
        parts = []
        while (chunk := await self.receive()) is not None:
            parts.append(chunk)
        return b"".join(parts)

    # -- answering ------------------------------------------------------------------------

    def send_headers(
        self,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        *,
        end_stream: bool = False,
    ) -> None:
        fields = [(":status", str(status)), *(headers or [])]
        self.conn.h2.send_headers(self.stream_id, fields, end_stream=end_stream)
        self.conn.flush()

    async def send_data(self, data: bytes, *, end_stream: bool = False) -> None:
        """Send ``data`` as the client's flow-control windows allow."""
        conn = self.conn
        view = memoryview(data)
        while True:
            window = conn.h2.local_flow_control_window(self.stream_id)
            room = min(window, conn.h2.max_outbound_frame_size, len(view))
            if room > 0 or not view:
                last = end_stream and room == len(view)
                conn.h2.send_data(self.stream_id, view[:room].tobytes(), end_stream=last)
                conn.flush()
                await conn.writer.drain()
                view = view[room:]
                if not view:
                    return
                continue
            conn.window_opened.clear()
            await conn.window_opened.wait()

    async def respond(
        self, status: int = 200, body: bytes = b"", headers: list[tuple[str, str]] | None = None
    ) -> None:
        fields = [("content-length", str(len(body))), *(headers or [])]
        self.send_headers(status, fields, end_stream=not body)
        if body:
            await self.send_data(body, end_stream=True)

    def reset(self, error_code: int = h2.errors.ErrorCodes.INTERNAL_ERROR) -> None:
        """RST_STREAM this stream only."""
        self.conn.h2.reset_stream(self.stream_id, error_code)
        self.conn.flush()


async def _builtin(req: H2Request) -> None:
    path = req.path.split("?", 1)[0]
    if path == "/small":
        await req.respond(200, SMALL_BODY)
    elif path.startswith("/bytes/"):
        await req.respond(200, deterministic_bytes(int(path.rsplit("/", 1)[1])))
    elif path == "/echo":
        await req.respond(200, await req.body())
    elif path.startswith("/slow/"):
        await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
        await req.respond(200, b"slow")
    else:
        await req.respond(404, b"no such path: " + path.encode())


class H2Server(LoopThreadServer):
    """An HTTP/2 server on 127.0.0.1 whose behaviour tests script (see module docs).

    ``max_concurrent_streams``, ``initial_window_size``, ``max_frame_size`` and
    ``enable_connect_protocol`` go into its SETTINGS; ``answer_pings=False`` makes it
    a server that has silently gone away as far as keep-alive PINGs can tell.
    """

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        max_concurrent_streams: int | None = None,
        initial_window_size: int | None = None,
        max_frame_size: int | None = None,
        enable_connect_protocol: bool = False,
        answer_pings: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__()
        if tls is not None:
            tls.set_alpn_protocols(["h2"])
        self.tls = tls
        self.settings: dict[int, int] = {}
        if max_concurrent_streams is not None:
            self.settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = max_concurrent_streams
        if initial_window_size is not None:
            self.settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] = initial_window_size
        if max_frame_size is not None:
            self.settings[h2.settings.SettingCodes.MAX_FRAME_SIZE] = max_frame_size
        if enable_connect_protocol:
            self.settings[h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL] = 1
        self.answer_pings = answer_pings
        self.host = host
        self.port = port
        self.connections_accepted = 0
        self.conns: list[H2ServerConn] = []
        #: ``(connection id, stream id, method, path)`` of every request, in order.
        self.requests: list[tuple[int, int, str, str]] = []
        self.max_open_streams_seen = 0
        self._routes: dict[str, H2Handler] = {}
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        host = "localhost" if self.tls is not None and self.host == "127.0.0.1" else self.host
        return f"{scheme}://{host}:{self.port}"

    def route(self, path: str) -> Callable[[_H], _H]:
        def register(handler: _H) -> _H:
            self._routes[path] = handler
            return handler

        return register

    # -- lifecycle ------------------------------------------------------------------------

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.tls, backlog=128
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_serving(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.conns:
            conn.closed = True
            conn.writer.transport.abort()

    # -- serving --------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        conn = H2ServerConn(self, self.connections_accepted, writer)
        self.conns.append(conn)
        conn.h2.initiate_connection()
        if self.settings:
            conn.h2.update_settings(self.settings)
        conn.flush()
        try:
            while not conn.closed:
                data = await reader.read(65536)
                if not data:
                    break
                try:
                    events = conn.h2.receive_data(data)
                except h2.exceptions.ProtocolError:
                    conn.flush()
                    break
                for event in events:
                    self._event(conn, event)
                if not conn.answer_pings:
                    conn.h2.data_to_send()  # drop the PING ACK h2 queued
                conn.flush()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            conn.closed = True
            writer.transport.abort()
            for req in conn.requests.values():
                req._chunks.put_nowait(None)

    def _event(self, conn: H2ServerConn, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            headers = [(str(k), str(v)) for k, v in event.headers or []]
            stream_id = event.stream_id or 0
            new = H2Request(conn, stream_id, headers)
            conn.requests[stream_id] = new
            self.requests.append((conn.id, stream_id, new.method, new.path))
            self.max_open_streams_seen = max(
                self.max_open_streams_seen, conn.h2.open_inbound_streams
            )
            if event.stream_ended is not None:
                new.body_complete = True
                new._chunks.put_nowait(None)
            self._spawn(self._handle(new))
        elif isinstance(event, h2.events.DataReceived):
            req = conn.requests.get(event.stream_id or 0)
            if req is not None:
                req._chunks.put_nowait(event.data or b"")
        elif isinstance(event, h2.events.StreamEnded):
            req = conn.requests.get(event.stream_id or 0)
            if req is not None and not req.body_complete:
                req.body_complete = True
                req._chunks.put_nowait(None)
        elif isinstance(event, h2.events.StreamReset):
            req = conn.requests.get(event.stream_id or 0)
            if req is not None:
                req.reset_by_client = int(event.error_code or 0)
                req._chunks.put_nowait(None)
            conn.window_opened.set()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            conn.window_opened.set()

    async def _handle(self, req: H2Request) -> None:
        path = req.path.split("?", 1)[0]
        handler = self._routes.get(path) or self._routes.get("*") or _builtin
        try:
            await handler(req)
        except (
            asyncio.CancelledError,
            ConnectionError,
            h2.exceptions.StreamClosedError,
        ):
            pass
        except BaseException as exc:
            if not req.conn.closed and req.reset_by_client is None:
                self.errors.append(exc)
