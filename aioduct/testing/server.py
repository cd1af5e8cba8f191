"""A scriptable loopback HTTP server for the cases real servers do not produce on purpose.

nginx (:mod:`aioduct.testing.nginx`) proves the client against a correct server; this
module proves it against wrong, slow, rude and malicious ones: truncated bodies, bad
framing, resets mid-response, bytes dripped one at a time, a connection closed right
after accept.  A test *scripts* the server side byte by byte.

Requests are parsed with h11 in the server role -- h11 is the project's reference
HTTP/1.1 engine, so what the server saw is exactly what a conforming parser saw -- but
responses are whatever raw bytes the script writes; nothing is validated on the way out.

The server runs its own asyncio loop on a background thread, so both ``async def`` tests
(on any loop) and blocking-client tests can use it.  Handlers run on that loop.

Example::

    with ScriptServer() as srv:
        @srv.route("/truncated")
        async def truncated(conn: Conn, req: ServerRequest) -> None:
            await conn.send(b"HTTP/1.1 200 OK\\r\\nContent-Length: 10\\r\\n\\r\\nabc")
            conn.close()

        srv.route_respond("/ok", body=b"fine")
        ...  # point the client at srv.url + "/truncated"
        assert srv.connections_accepted == 1
    # leaving the block re-raises any exception a handler raised
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http
import socket
import ssl
import struct
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Self, TypeVar

import h11

if TYPE_CHECKING:
    import trustme

__all__ = [
    "BadTLSServers",
    "Conn",
    "ConnHandler",
    "Handler",
    "PeerClosed",
    "ScriptServer",
    "ScriptServerError",
    "ServerRequest",
    "build_response",
    "start_loop_thread",
]

Handler = Callable[["Conn", "ServerRequest"], Awaitable[None]]
ConnHandler = Callable[["Conn"], Awaitable[None]]
_H = TypeVar("_H", bound=Handler)
_C = TypeVar("_C", bound=ConnHandler)

_READ_SIZE = 65536
_MAX_HEAD = 1 << 20  # generous: header-size limits are the client's to test, not ours


class ScriptServerError(AssertionError):
    """A handler raised.  An AssertionError so that a broken script fails the test
    that owns it instead of letting the test pass on a half-sent response."""


class PeerClosed(ConnectionError):
    """The client went away while a handler was sending.  Not a script bug (timeouts and
    early-closing clients are what many tests exercise), so it is not in ``errors``."""


@dataclasses.dataclass(eq=False)
class ServerRequest:
    """One request as the server parsed it.

    ``headers`` keep order and duplicates, names lowercased (h11 normalises them);
    ``body`` is complete once ``body_complete`` is true -- always, unless the route
    was registered with ``read_body=False`` and the handler did not read it.
    """

    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    conn_id: int
    http_version: str = "1.1"
    body: bytes = b""
    body_complete: bool = False
    trailers: list[tuple[bytes, bytes]] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), latin-1 decoded, or None."""
        values = self.header_list(name)
        return values[0] if values else None

    def header_list(self, name: str) -> list[str]:
        """Every value of header ``name``, in order."""
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for k, v in self.headers if k == key]

    @property
    def wants_close(self) -> bool:
        """The client asked for the connection to end after this exchange."""
        tokens = {t.strip().lower() for v in self.header_list("connection") for t in v.split(",")}
        if self.http_version == "1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def start_loop_thread(
    listen: Callable[[], Awaitable[None]],
    *,
    name: str,
    on_error: Callable[[dict[str, Any]], object],
) -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """Run a new event loop on a daemon thread, once ``listen()`` has succeeded on it.

    Test servers serve from their own thread so that async tests on any loop and blocking
    tests alike can talk to them. A failure to listen is raised here, in the caller.
    """
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(lambda _loop, ctx: on_error(ctx))

    def run() -> None:
        try:
            loop.run_until_complete(listen())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError(f"{name} did not start within 10 s")
    if failure:
        raise RuntimeError(f"{name} could not listen: {failure[0]!r}") from failure[0]
    return loop, thread


def build_response(
    status: int = 200,
    headers: Iterable[tuple[str | bytes, str | bytes]] = (),
    body: bytes = b"",
    *,
    reason: str | None = None,
    head: bool = False,
) -> bytes:
    """Serialise a well-formed HTTP/1.1 response.

    ``Content-Length`` is added unless ``headers`` frame the body themselves or the
    status has no body; ``head=True`` drops the body (a response to HEAD).
    """

    def b(x: str | bytes) -> bytes:
        return x if isinstance(x, bytes) else x.encode("latin-1")

    pairs = [(b(k), b(v)) for k, v in headers]
    names = {k.lower() for k, _ in pairs}
    bodyless = 100 <= status < 200 or status in (204, 304)
    if not bodyless and b"content-length" not in names and b"transfer-encoding" not in names:
        pairs.append((b"Content-Length", str(len(body)).encode()))
    if reason is None:
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}".encode("latin-1")]
    lines += [k + b": " + v for k, v in pairs]
    payload = b"" if head or bodyless else body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


class Conn:
    """The server side of one TCP (or TLS) connection, as a handler sees it.

    Everything a handler writes goes out verbatim.  After a route handler returns with
    the connection still open, the server reads the next request from it (keep-alive)
    -- unless the client asked to close, in which case the server closes.
    """

    def __init__(
        self,
        server: ScriptServer,
        conn_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.id = conn_id
        self.requests: list[ServerRequest] = []
        #: We closed or reset it (the server stops reading from it).
        self.closed = False
        #: The client half-closed or closed (we read EOF), or reset it.
        self.peer_closed = False
        self._reader = reader
        self._writer = writer
        self._buffer = b""  # received but not yet parsed: the next request's bytes
        self._h11: h11.Connection | None = None  # set while a body is unread
        self._current: ServerRequest | None = None

    def __repr__(self) -> str:
        return f"<Conn #{self.id} requests={len(self.requests)} closed={self.closed}>"

    # ----------------------------------------------------------------- writing

    async def send(self, data: bytes, *, delay_between_bytes: float = 0.0) -> None:
        """Write ``data`` verbatim; with ``delay_between_bytes``, one byte at a time."""
        if delay_between_bytes:
            await self.drip(data, chunk_size=1, delay=delay_between_bytes)
            return
        self._check_writable()
        self._writer.write(data)
        await self._drain()

    async def drip(self, data: bytes, *, chunk_size: int = 1, delay: float = 0.01) -> None:
        """Write ``data`` in ``chunk_size`` pieces with ``delay`` seconds between them:
        a slow server, and a test that the client parses across arbitrary splits."""
        for i in range(0, len(data), chunk_size):
            if i:
                await asyncio.sleep(delay)
            self._check_writable()
            self._writer.write(data[i : i + chunk_size])
            await self._drain()

    async def send_response(
        self,
        status: int = 200,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        body: bytes = b"",
        *,
        reason: str | None = None,
    ) -> None:
        """Send a well-formed response (see :func:`build_response`); no body for HEAD."""
        head = self._current is not None and self._current.method == "HEAD"
        await self.send(build_response(status, headers, body, reason=reason, head=head))

    def _check_writable(self) -> None:
        if self.closed:
            raise RuntimeError(f"connection #{self.id}: send() after close() or reset()")
        if self._writer.transport.is_closing():
            self.peer_closed = True
            raise PeerClosed(f"connection #{self.id}: the client closed the connection")

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except ConnectionError as exc:
            self.peer_closed = True
            raise PeerClosed(f"connection #{self.id}: {exc}") from exc

    async def sleep(self, seconds: float) -> None:
        """Pause the script (the server's ``close()`` cancels it, so forever is fine)."""
        await asyncio.sleep(seconds)

    def close(self) -> None:
        """Graceful close: flush what was written, then FIN (TLS: close_notify first)."""
        if self.closed:
            return
        self.closed = True
        self._writer.close()

    def reset(self) -> None:
        """Abortive close: RST instead of FIN (``SO_LINGER`` 0), unsent bytes dropped."""
        if self.closed:
            return
        self.closed = True
        sock = self._writer.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def shutdown_write(self) -> None:
        """Half-close: send FIN but keep reading (plain TCP only; TLS cannot half-close)."""
        await self._drain()
        if not self._writer.can_write_eof():
            raise RuntimeError("half-close is not possible on a TLS connection")
        self._writer.write_eof()

    # ----------------------------------------------------------------- reading

    async def recv(self, max_bytes: int = _READ_SIZE) -> bytes:
        """Raw bytes from the client (``b""`` at EOF), bypassing HTTP parsing."""
        if self._buffer:
            data, self._buffer = self._buffer[:max_bytes], self._buffer[max_bytes:]
            return data
        return await self._read(max_bytes)

    async def read_until_eof(self) -> bytes:
        """Everything the client still sends until it closes: for asserting that a
        client closed its side (wrap in ``asyncio.timeout`` to bound the wait)."""
        chunks = [self._buffer]
        self._buffer = b""
        while data := await self._read(_READ_SIZE):
            chunks.append(data)
        return b"".join(chunks)

    async def _read(self, max_bytes: int) -> bytes:
        try:
            data = await self._reader.read(max_bytes)
        except ConnectionError:
            data = b""
        if not data:
            self.peer_closed = True
        return data

    async def read_request(self, *, read_body: bool = True) -> ServerRequest | None:
        """Parse the next request head (and body, unless ``read_body=False``).

        Returns None if the client closed cleanly before sending one.  A body the
        previous request left unread is read and dropped first.  Malformed input raises
        ``h11.RemoteProtocolError`` (the server answers it with a 400).
        """
        if self._h11 is not None:
            await self.read_body()
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD)
        if self._buffer:  # (receive_data(b"") would mean EOF to h11)
            parser.receive_data(self._buffer)
            self._buffer = b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await self._read(_READ_SIZE))
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                break
            raise AssertionError(f"unexpected h11 event before a request: {event!r}")
        req = ServerRequest(
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            headers=[(bytes(k), bytes(v)) for k, v in event.headers],
            conn_id=self.id,
            http_version=event.http_version.decode("ascii"),
        )
        self._h11 = parser
        self._current = req
        self.requests.append(req)
        self.server.requests.append(req)
        if read_body:
            await self.read_body()
        return req

    @property
    def client_waiting_for_continue(self) -> bool:
        """The current request said ``Expect: 100-continue`` and nothing was sent yet."""
        return self._h11 is not None and self._h11.they_are_waiting_for_100_continue

    async def read_body(self, *, send_continue: bool = True) -> bytes:
        """Read the rest of the current request's body (also stored on the request).

        If the client waits for ``100 Continue``, send it first (``send_continue``),
        as a server that wants the body must.
        """
        parser, req = self._h11, self._current
        if parser is None or req is None:
            return req.body if req is not None else b""
        if send_continue and parser.they_are_waiting_for_100_continue:
            await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunks = [req.body]
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(await self._read(_READ_SIZE))
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                req.trailers = [(bytes(k), bytes(v)) for k, v in event.headers]
                break
            else:
                raise AssertionError(f"unexpected h11 event in a body: {event!r}")
        req.body = b"".join(chunks)
        req.body_complete = True
        self._buffer = parser.trailing_data[0]
        self._h11 = None
        return req.body


@dataclasses.dataclass
class _Route:
    handler: Handler
    read_body: bool


class ScriptServer:
    """A loopback server whose responses are scripted per path.

    * ``@srv.route(path)`` -- an ``async def handler(conn, req)``; ``path`` is matched
      against the request path without the query; a trailing ``*`` makes it a prefix
      (``"*"`` alone catches everything).  With ``read_body=False`` the handler runs
      right after the head, before the body arrives (``await conn.read_body()`` reads it).
    * ``srv.route_raw(path, data)`` / ``srv.route_respond(path, ...)`` -- shortcuts.
    * ``@srv.on_connect`` -- ``async def hook(conn)`` run on every new connection before
      any HTTP parsing: read or write raw bytes, ``close()`` or ``reset()`` right after
      accept; if it leaves the connection open, normal routing follows.
    * unknown paths get a 404 with a Content-Length; a malformed request gets a 400,
      the connection is closed and the h11 error is kept in ``bad_requests``.

    A handler that raises has its connection reset and its exception stored in
    ``errors``; ``close()`` raises :class:`ScriptServerError` listing them, so a broken
    script cannot let a test pass.  ``close()`` cancels handlers still running.
    """

    def __init__(
        self,
        tls: ssl.SSLContext | None = None,
        *,
        host: str = "127.0.0.1",
    ) -> None:
        self.tls = tls
        self.host = host
        self.port = 0
        self.connections_accepted = 0
        self.requests: list[ServerRequest] = []
        self.conns: list[Conn] = []
        self.errors: list[BaseException] = []
        self.bad_requests: list[h11.RemoteProtocolError] = []
        #: What asyncio reported (e.g. TLS handshake failures); informational only.
        self.loop_errors: list[dict[str, Any]] = []
        self._routes: dict[str, _Route] = {}
        self._on_connect: ConnHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # ----------------------------------------------------------------- scripting

    @property
    def url(self) -> str:
        """Base URL; ``https://localhost:PORT`` with TLS since certificates name hosts."""
        if not self.port:
            raise RuntimeError("ScriptServer is not started: use start() or `with`")
        if self.tls is not None:
            return f"https://localhost:{self.port}"
        return f"http://{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def route(self, path: str, *, read_body: bool = True) -> Callable[[_H], _H]:
        """Decorator registering ``handler(conn, req)`` for ``path``."""

        def register(handler: _H) -> _H:
            self.add_route(path, handler, read_body=read_body)
            return handler

        return register

    def add_route(self, path: str, handler: Handler, *, read_body: bool = True) -> None:
        self._routes[path] = _Route(handler, read_body)

    def route_raw(self, path: str, data: bytes, *, close: bool = False) -> None:
        """Answer ``path`` with ``data`` verbatim; ``close=True`` then closes (needed when
        the response is delimited by EOF, e.g. it has no Content-Length)."""

        async def raw(conn: Conn, req: ServerRequest) -> None:
            await conn.send(data)
            if close:
                conn.close()

        self.add_route(path, raw)

    def route_respond(
        self,
        path: str,
        status: int = 200,
        headers: Iterable[tuple[str | bytes, str | bytes]] = (),
        body: bytes = b"",
        *,
        close: bool = False,
    ) -> None:
        """Answer ``path`` with a well-formed response (Content-Length added)."""
        frozen = list(headers)

        async def respond(conn: Conn, req: ServerRequest) -> None:
            await conn.send_response(status, frozen, body)
            if close:
                conn.close()

        self.add_route(path, respond)

    def on_connect(self, hook: _C) -> _C:
        """Decorator: run ``hook(conn)`` on each new connection before HTTP parsing."""
        self._on_connect = hook
        return hook

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate()`` holds: the server thread updates counters
        asynchronously, e.g. it sees a client's FIN some time after the client sent it."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s: {predicate}")
            time.sleep(0.005)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> ScriptServer:
        if self._thread is not None:
            return self
        self._loop, self._thread = start_loop_thread(
            self._listen,
            name=f"ScriptServer-{id(self):x}",
            on_error=self.loop_errors.append,
        )
        return self

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.StreamReaderProtocol:
            # Called on TCP accept -- before any TLS handshake -- so handshake failures
            # count as accepted connections too.
            self.connections_accepted += 1
            conn_id = self.connections_accepted
            reader = asyncio.StreamReader(limit=_MAX_HEAD)

            def connected(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                task = loop.create_task(self._connection(conn_id, r, w))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

            return asyncio.StreamReaderProtocol(reader, connected)

        self._server = await loop.create_server(
            protocol, self.host, 0, ssl=self.tls, backlog=128, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _connection(
        self, conn_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn = Conn(self, conn_id, reader, writer)
        self.conns.append(conn)
        try:
            if self._on_connect is not None:
                await self._on_connect(conn)
            while not conn.closed:
                req = await conn.read_request(read_body=False)
                if req is None:
                    break
                route = self._find(req.path)
                if route is None:
                    await conn.read_body()
                    await conn.send_response(
                        404, [("Content-Type", "text/plain")], f"no route for {req.path}\n".encode()
                    )
                else:
                    if route.read_body:
                        await conn.read_body()
                    await route.handler(conn, req)
                if conn.closed:
                    break
                if req.wants_close:
                    break
                if not req.body_complete and conn.client_waiting_for_continue:
                    # Answered without asking for the body: the client may never send
                    # it, so waiting to drain it would hang.  RFC 9110 lets us close.
                    break
        except h11.RemoteProtocolError as exc:
            self.bad_requests.append(exc)
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.send(build_response(400, [("Connection", "close")], f"{exc}\n".encode()))
        except ConnectionError:  # PeerClosed included: the client left, not a bug
            conn.peer_closed = True
        except asyncio.CancelledError:
            conn.reset()
            raise
        except Exception as exc:
            self.errors.append(exc)
            conn.reset()
        finally:
            conn.close()

    def _find(self, path: str) -> _Route | None:
        route = self._routes.get(path)
        if route is not None:
            return route
        best: tuple[int, _Route] | None = None
        for pattern, candidate in self._routes.items():
            if (
                pattern.endswith("*")
                and path.startswith(pattern[:-1])
                and (best is None or len(pattern) > best[0])
            ):
                best = (len(pattern), candidate)
        return best[1] if best else None

    def close(self, *, raise_errors: bool = True) -> None:
        """Stop listening, cancel running handlers, close connections, join the thread;
        then raise :class:`ScriptServerError` if any handler raised."""
        if self._closed:
            return
        self._closed = True
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        if raise_errors:
            self.raise_errors()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        for conn in self.conns:
            if not conn._writer.transport.is_closing():
                conn._writer.transport.abort()
        for _ in range(3):  # let the transports run their close callbacks
            await asyncio.sleep(0)

    def raise_errors(self) -> None:
        """Raise :class:`ScriptServerError` if a handler raised (and forget them)."""
        if not self.errors:
            return
        errors, self.errors = self.errors, []
        details = "\n".join(
            "".join(traceback.format_exception(type(e), e, e.__traceback__)) for e in errors
        )
        raise ScriptServerError(
            f"{len(errors)} ScriptServer handler(s) raised -- the test's server script "
            f"is broken, so its result cannot be trusted:\n{details}"
        ) from errors[0]

    def __enter__(self) -> ScriptServer:
        return self.start()

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        # Do not mask the test's own failure with the handlers' errors.
        self.close(raise_errors=exc_type is None)

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<ScriptServer {where} connections={self.connections_accepted}>"


@dataclasses.dataclass
class BadTLSServers:
    """Three HTTPS servers a client that trusts ``trusted_ca`` must refuse.

    Each would answer any request with ``200 ok`` -- so a failure can only come from the
    certificate.  What a verifying ``ssl`` client reports (``SSLCertVerificationError``):

    * ``expired`` -- valid name, trusted CA, expired yesterday: verify_code 10,
      "certificate has expired".
    * ``wrong_host`` -- trusted CA, issued for ``example.org`` only: verify_code 62,
      "Hostname mismatch".
    * ``unknown_ca`` -- valid name, issued by a CA the client does not trust:
      verify_code 20, "unable to get local issuer certificate".
    """

    expired: str
    wrong_host: str
    unknown_ca: str
    servers: list[ScriptServer]

    @classmethod
    def start(cls, trusted_ca: trustme.CA) -> BadTLSServers:
        import datetime

        import trustme

        now = datetime.datetime.now(datetime.UTC)
        leaves = [
            trusted_ca.issue_cert(
                "localhost",
                "127.0.0.1",
                not_before=now - datetime.timedelta(days=30),
                not_after=now - datetime.timedelta(days=1),
            ),
            trusted_ca.issue_cert("example.org"),
            trustme.CA().issue_cert("localhost", "127.0.0.1"),
        ]
        servers: list[ScriptServer] = []
        try:
            for leaf in leaves:
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                leaf.configure_cert(ctx)
                srv = ScriptServer(tls=ctx)
                srv.route_respond("*", 200, [("Content-Type", "text/plain")], b"ok")
                servers.append(srv.start())
        except BaseException:
            for srv in servers:
                srv.close()
            raise
        return cls(servers[0].url, servers[1].url, servers[2].url, servers)

    def close(self) -> None:
        for srv in self.servers:
            srv.close()

    def __enter__(self) -> BadTLSServers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LoopThreadServer:
    """A scriptable test server serving from a loop thread of its own (H2Server, H3Server).

    Subclasses implement ``_listen`` (bind; runs on the new loop) and may implement
    ``_stop_serving``. Handler tasks go through ``_spawn``; an exception a handler raises
    is kept in ``errors`` and raised from ``close()``, so a broken server script fails
    the test that used it instead of passing silently.
    """

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _stop_serving(self) -> None:
        """Stop accepting and drop live connections (before handler tasks are cancelled)."""

    def start(self) -> Self:
        self._loop, self._thread = start_loop_thread(
            self._listen, name=type(self).__name__, on_error=lambda _ctx: None
        )
        return self

    def call(self, func: Callable[[], Any]) -> Any:
        """Run ``func`` on the server's loop thread and return its result."""
        assert self._loop is not None

        async def run() -> Any:
            return func()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if self.errors:
            errors, self.errors = self.errors, []
            details = "".join(traceback.format_exception(errors[0]))
            raise AssertionError(
                f"{len(errors)} {type(self).__name__} handler(s) raised:\n{details}"
            )

    async def _shutdown(self) -> None:
        await self._stop_serving()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
