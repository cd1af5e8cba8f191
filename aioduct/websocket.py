"""WebSockets (RFC 6455) over HTTP/1.1 Upgrade or HTTP/2 extended CONNECT (RFC 8441).

``client.websocket(url)`` opens one::

    async with client.websocket("wss://example.org/chat") as ws:
        await ws.send_text("hello")
        async for message in ws:      # str for text, bytes for binary; ends on a normal close
            print(message)

aioduct does the HTTP part itself -- the handshake is an ordinary request through the
client's pipeline (pool, TLS, proxies-to-come, timeouts) and the connection is handed
over by :meth:`Response.upgrade() <aioduct.Response.upgrade>` -- and ``wsproto`` (sans-I/O)
does the framing. Over HTTPS with HTTP/2 (or h2c with prior knowledge) the handshake is an
extended CONNECT on a stream of the shared connection when the server sent
``SETTINGS_ENABLE_CONNECT_PROTOCOL``; otherwise an HTTP/1.1 ``Upgrade: websocket``.

A message is a ``str`` (text) or ``bytes`` (binary): no wrapper object, so a message
compares and prints as what it is. Failures are :class:`~aioduct.WebSocketClosed` with the
close ``code`` (1006: the connection dropped without a close frame, or the close
handshake timed out; 1009: a message over ``max_message_size``; 1002/1007: the server
broke the protocol) or :class:`~aioduct.WebSocketHandshakeError`.

Receive from one task at a time. ``close()`` from another task while one is receiving
sends the close frame and leaves the receiving task to see the server's answer (its
``async for`` then ends).
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Final, TypeVar

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError as WsprotoLocalError

from .errors import (
    AioductError,
    EngineUnavailable,
    LocalProtocolError,
    RemoteProtocolError,
    TransportError,
    WebSocketClosed,
    WebSocketError,
    WebSocketHandshakeError,
)
from .headers import Headers, HeadersLike
from .runtimes import Expired

if TYPE_CHECKING:
    from .client import Client, Sender
    from .models import Response
    from .runtimes import Runtime
    from .upgrade import Upgraded
    from .url import URL, QueryParams

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "BlockingWebSocket",
    "WebSocket",
    "connect",
]

T = TypeVar("T")

#: A message (all its frames together) larger than this closes the WebSocket with 1009.
DEFAULT_MAX_MESSAGE_SIZE: Final = 16 * 1024 * 1024
#: How long ``close()`` waits for the server's close frame before dropping the connection.
DEFAULT_CLOSE_TIMEOUT: Final = 10.0
#: Close codes that end ``async for`` quietly (normal closure, going away, no status).
NORMAL_CLOSE_CODES: Final = frozenset((1000, 1001, 1005))

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_ABNORMAL: Final = 1006
_TOO_BIG: Final = 1009


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer to ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def _tokens(values: list[str]) -> list[str]:
    return [t.strip().lower() for v in values for t in v.split(",") if t.strip()]


class WebSocket:
    """An open WebSocket (made by ``Client.websocket``; see the module docstring)."""

    def __init__(
        self,
        upgraded: Upgraded,
        runtime: Runtime,
        response: Response,
        *,
        subprotocol: str | None,
        max_message_size: int | None,
        close_timeout: float | None,
    ) -> None:
        self._up = upgraded
        self._runtime = runtime
        self._ws = Connection(ConnectionType.CLIENT)
        #: The handshake response (101, or 200 to an extended CONNECT).
        self.response = response
        #: The subprotocol the server chose among those offered, or None.
        self.subprotocol = subprotocol
        #: "HTTP/1.1" (Upgrade) or "HTTP/2" (extended CONNECT).
        self.http_version = upgraded.http_version
        self.max_message_size = max_message_size
        self.close_timeout = close_timeout
        self._messages: deque[str | bytes] = deque()
        self._parts: list[Any] = []
        self._size = 0
        self._closed: WebSocketClosed | None = None
        self._reading = False

    # -- state -----------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def close_code(self) -> int | None:
        """The close code once closed (1000 normal, 1006 dropped, ...), else None."""
        return None if self._closed is None else self._closed.code

    @property
    def close_reason(self) -> str | None:
        return None if self._closed is None else self._closed.reason

    def _closed_error(self) -> WebSocketClosed:
        assert self._closed is not None
        done = self._closed
        return WebSocketClosed(str(done), code=done.code, reason=done.reason)

    # -- sending ---------------------------------------------------------------------------

    async def send_text(self, text: str) -> None:
        """Send a text message."""
        if not isinstance(text, str):
            raise TypeError(f"send_text() takes str, not {type(text).__name__}: use send_bytes()")
        await self._send(TextMessage(data=text))

    async def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        """Send a binary message."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send_bytes() takes bytes, not {type(data).__name__}: use send_text()")
        await self._send(BytesMessage(data=bytes(data)))

    async def send(self, message: str | bytes) -> None:
        """Send ``message``: text if it is a ``str``, binary if ``bytes``."""
        if isinstance(message, str):
            await self._send(TextMessage(data=message))
        else:
            await self.send_bytes(message)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a PING (at most 125 bytes of payload); the server's PONG is consumed by
        whichever ``receive()`` reads it."""
        if len(payload) > 125:
            raise ValueError(f"a ping payload is at most 125 bytes, not {len(payload)}")
        await self._send(Ping(payload=payload))

    async def _send(self, event: Message[Any] | Ping) -> None:
        if self._closed is not None or self._ws.state is not ConnectionState.OPEN:
            if self._closed is not None:
                raise self._closed_error()
            raise WebSocketClosed(
                "cannot send: the WebSocket is closing (close() was called or the server "
                "sent a close frame)",
                code=_ABNORMAL,
            )
        data = self._ws.send(event)
        try:
            await self._up.send(data)
        except TransportError as exc:
            await self._abort(_ABNORMAL, f"the connection failed while sending: {exc}")
            raise self._closed_error() from None

    # -- receiving -------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Raises :class:`~aioduct.WebSocketClosed` once the WebSocket is closed (``code``
        says how: 1000 normal, 1006 dropped, 1009 too big, ...).
        """
        messages = self._messages
        while not messages:
            if self._closed is not None:
                raise self._closed_error()
            if self._reading:
                raise WebSocketError(
                    "another task is already receiving from this WebSocket: receive from "
                    "one task at a time"
                )
            self._reading = True
            try:
                await self._fill(None)
            finally:
                self._reading = False
        return messages.popleft()

    async def receive_text(self) -> str:
        """The next message, which must be text (a binary one raises WebSocketError)."""
        message = await self.receive()
        if not isinstance(message, str):
            raise WebSocketError(
                f"expected a text message, got a binary one ({len(message)} bytes): "
                "use receive() to accept both"
            )
        return message

    async def receive_bytes(self) -> bytes:
        """The next message, which must be binary (a text one raises WebSocketError)."""
        message = await self.receive()
        if not isinstance(message, bytes):
            raise WebSocketError(
                f"expected a binary message, got a text one ({len(message)} characters): "
                "use receive() to accept both"
            )
        return message

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except WebSocketClosed as exc:
            if exc.code in NORMAL_CLOSE_CODES:
                raise StopAsyncIteration from None
            raise

    async def _fill(self, deadline: float | None) -> None:
        """Read once from the connection and act on what it carried."""
        try:
            data = await self._up.receive(deadline)
        except Expired:
            raise
        except AioductError as exc:
            self._ws.receive_data(None)
            await self._abort(_ABNORMAL, f"the connection failed: {exc}")
            return
        self._ws.receive_data(data or None)
        for event in self._ws.events():
            if isinstance(event, TextMessage | BytesMessage):
                self._size += len(event.data)
                limit = self.max_message_size
                if limit is not None and self._size > limit:
                    self._parts.clear()
                    await self._fail(
                        _TOO_BIG,
                        f"the server sent a message larger than max_message_size={limit} "
                        "bytes; the WebSocket was closed with 1009 (raise max_message_size "
                        "to accept it)",
                    )
                    return
                self._parts.append(event.data)
                if event.message_finished:
                    parts, self._parts, self._size = self._parts, [], 0
                    if isinstance(event, TextMessage):
                        self._messages.append(parts[0] if len(parts) == 1 else "".join(parts))
                    else:
                        self._messages.append(b"".join(parts))
            elif isinstance(event, Ping):
                # Answered at once, never queued: a PING flood is paced by our sends.
                if self._ws.state is ConnectionState.OPEN:
                    try:
                        await self._up.send(self._ws.send(event.response()))
                    except TransportError as exc:
                        await self._abort(_ABNORMAL, f"the connection failed: {exc}")
                        return
            elif isinstance(event, Pong):
                pass
            elif isinstance(event, CloseConnection):
                await self._on_close(event)
                return

    async def _on_close(self, event: CloseConnection) -> None:
        state = self._ws.state
        code, reason = int(event.code), event.reason or ""
        if state is ConnectionState.OPEN:
            # wsproto found a protocol violation (it reports one as a close event
            # without changing state): fail the connection with its code.
            await self._fail(code, f"the server broke the WebSocket protocol: {reason}")
        elif state is ConnectionState.REMOTE_CLOSING:
            reply = self._ws.send(event.response())
            if not self._remote_ended():
                try:  # answer the server's close frame; then the server ends the connection
                    await self._up.send(reply)
                except TransportError:
                    pass
            await self._finish()
            text = f": {reason}" if reason else ""
            self._closed = WebSocketClosed(
                f"the server closed the WebSocket with code {code}{text}", code=code, reason=reason
            )
        elif code == _ABNORMAL and self._closed is None and not self._closing:
            await self._abort(
                _ABNORMAL,
                "the server dropped the connection without a close frame (abnormal closure)",
            )
        else:
            # The answer to our close frame (or the end of the connection after it).
            await self._finish()
            if self._closed is None:
                self._closed = self._ours

    # -- closing ---------------------------------------------------------------------------

    _closing = False
    _ours: WebSocketClosed | None = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket: send a close frame, wait (at most ``close_timeout``) for the
        server's, then end the connection.

        Raises :class:`~aioduct.WebSocketClosed` (1006) if the server does not answer in
        time (the connection is dropped anyway). Closing a closed WebSocket does nothing.
        """
        if self._closed is not None or self._closing:
            return
        self._closing = True
        text = f": {reason}" if reason else ""
        self._ours = WebSocketClosed(
            f"the WebSocket was closed with code {code}{text}", code=code, reason=reason
        )
        try:
            data = self._ws.send(CloseConnection(code=code, reason=reason or None))
            await self._up.send(data)
        except (TransportError, WsprotoLocalError):
            await self._up.aclose()
            self._closed = self._ours
            return
        if self._reading:
            return  # the receiving task reads the server's answer
        timeout = self.close_timeout
        deadline = None if timeout is None else self._runtime.now() + timeout
        try:
            while self._closed is None:
                await self._fill(deadline)
        except Expired:
            await self._abort(
                _ABNORMAL,
                f"the server did not answer the close frame within close_timeout={timeout:g}s; "
                "the connection was dropped",
            )
            raise self._closed_error() from None
        self._messages.clear()

    async def _finish(self) -> None:
        """End the connection after the close handshake. Over HTTP/2 the stream ends
        with END_STREAM both ways (RFC 8441 §5), not with a reset."""
        if self.http_version in ("HTTP/2", "HTTP/3") and not self._remote_ended():
            timeout = self.close_timeout
            deadline = None if timeout is None else self._runtime.now() + timeout
            try:
                await self._up.send_eof()
                while await self._up.receive(deadline):
                    pass
            except (Expired, AioductError):
                pass
        await self._up.aclose()

    def _remote_ended(self) -> bool:
        """Over HTTP/2: the server already ended its stream. It has finished with the
        WebSocket, so nothing more is sent on the stream: it is reset instead (DATA on
        it would reach a stream the server has forgotten; hypercorn 0.18 then drops the
        whole connection, with every other stream on it)."""
        return bool(getattr(self._up, "remote_ended", False))

    async def _fail(self, code: int, message: str) -> None:
        """Fail the WebSocket (RFC 6455 §7.1.7): send a close frame, drop the connection."""
        if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
            try:
                await self._up.send(self._ws.send(CloseConnection(code=code)))
            except (TransportError, WsprotoLocalError):
                pass
        await self._abort(code, message)

    async def _abort(self, code: int, message: str) -> None:
        await self._up.aclose()
        if self._closed is None:
            self._closed = WebSocketClosed(message, code=code)

    async def aclose(self) -> None:
        """Close with 1000 (as :meth:`close`)."""
        await self.close()

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            await self.close()
            return
        try:
            await self.close(1011 if not isinstance(exc, WebSocketClosed) else 1000)
        except WebSocketError:
            pass  # the caller's own exception is the one to see

    def __repr__(self) -> str:
        state = "open" if self._closed is None else f"closed {self._closed.code}"
        return f"<aioduct.WebSocket {state} over {self.http_version}>"


class BlockingWebSocket:
    """:class:`WebSocket` for :class:`~aioduct.BlockingClient`: the same methods, blocking."""

    def __init__(self, ws: WebSocket, run: Callable[[Awaitable[Any]], Any]) -> None:
        self._ws = ws
        self._run = run
        self.response = ws.response
        self.subprotocol = ws.subprotocol
        self.http_version = ws.http_version

    @property
    def closed(self) -> bool:
        return self._ws.closed

    @property
    def close_code(self) -> int | None:
        return self._ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self._ws.close_reason

    def send_text(self, text: str) -> None:
        self._run(self._ws.send_text(text))

    def send_bytes(self, data: bytes | bytearray | memoryview) -> None:
        self._run(self._ws.send_bytes(data))

    def send(self, message: str | bytes) -> None:
        self._run(self._ws.send(message))

    def ping(self, payload: bytes = b"") -> None:
        self._run(self._ws.ping(payload))

    def receive(self) -> str | bytes:
        result: str | bytes = self._run(self._ws.receive())
        return result

    def receive_text(self) -> str:
        result: str = self._run(self._ws.receive_text())
        return result

    def receive_bytes(self) -> bytes:
        result: bytes = self._run(self._ws.receive_bytes())
        return result

    def close(self, code: int = 1000, reason: str = "") -> None:
        self._run(self._ws.close(code, reason))

    def __iter__(self) -> Iterator[str | bytes]:
        while True:
            try:
                yield self.receive()
            except WebSocketClosed as exc:
                if exc.code in NORMAL_CLOSE_CODES:
                    return
                raise

    def __enter__(self) -> BlockingWebSocket:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._run(self._ws.__aexit__(exc_type, exc, tb))

    def __repr__(self) -> str:
        return repr(self._ws).replace("aioduct.WebSocket", "aioduct.BlockingWebSocket")


# -- the handshake ---------------------------------------------------------------------------


def _http_url(url: URL | str) -> URL | str:
    """``ws://`` and ``wss://`` as the ``http://``/``https://`` the request goes to."""
    if isinstance(url, str):
        lower = url[:6].lower()
        if lower.startswith("ws://"):
            return "http://" + url[5:]
        if lower.startswith("wss://"):
            return "https://" + url[6:]
    return url


def _wants_h2(client: Client, url: URL | str) -> bool:
    cfg = client.config
    text = str(url).lower()
    if text.startswith("https://"):
        return cfg.http2 or cfg.http3_prior_knowledge or cfg.http3  # RFC 8441 or RFC 9220
    if text.startswith("http://"):
        return cfg.http2_prior_knowledge
    return cfg.http2  # a relative URL against base_url: let the attempt decide


async def connect(
    client: Client,
    engine: Sender,
    url: URL | str,
    *,
    subprotocols: list[str] | tuple[str, ...] | None = None,
    headers: HeadersLike | None = None,
    params: QueryParams | None = None,
    timeout: Any = None,  # noqa: ASYNC109 (the handshake's deadline)
    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    close_timeout: float | None = DEFAULT_CLOSE_TIMEOUT,
) -> WebSocket:
    """Open a WebSocket to ``url`` through ``client``'s pipeline on ``engine``."""
    from .engine import Engine

    if not isinstance(engine, Engine):
        raise EngineUnavailable(
            "WebSockets need the send engine (a long-lived connection in this process); "
            "the local engine's workers answer with buffered results: use "
            "Client(engine='send') for WebSockets"
        )
    if max_message_size is not None and max_message_size <= 0:
        raise ValueError(f"max_message_size must be positive or None, not {max_message_size}")
    offered = list(subprotocols or ())
    for name in offered:
        if not name or any(c in name for c in ' ,;"\t\r\n'):
            raise ValueError(f"invalid WebSocket subprotocol name {name!r}")
    target = _http_url(url)
    extra = Headers(headers)
    for name in ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions"):
        if name in extra:
            title = "-".join(p.capitalize() for p in name.split("-")).replace(
                "Websocket", "WebSocket"
            )
            raise ValueError(f"{title} is set by client.websocket(); do not pass it in headers=")
    if offered:
        extra["Sec-WebSocket-Protocol"] = ", ".join(offered)
    options: dict[str, Any] = {"follow_redirects": False}
    if params is not None:
        options["params"] = params
    if timeout is not None:
        options["timeout"] = timeout

    version: str | None = None
    if _wants_h2(client, target):
        h2_headers = Headers(extra)
        h2_headers["Sec-WebSocket-Version"] = "13"
        try:
            response = await client._send(
                "CONNECT",
                target,
                {**options, "headers": h2_headers, "protocol": "websocket"},  # type: ignore[typeddict-item]
                engine,
            )
        except LocalProtocolError as exc:
            if "needs HTTP/2" not in str(exc):
                raise
            response = None  # the connection speaks HTTP/1.1: Upgrade on it
        except RemoteProtocolError as exc:
            if "extended CONNECT" not in str(exc):
                raise
            response, version = None, "1.1"  # HTTP/2 without RFC 8441: a 1.1 connection
        if response is not None:
            if not 200 <= response.status < 300:
                raise WebSocketHandshakeError(
                    f"the server answered {response.status} {response.reason} to the "
                    "WebSocket's extended CONNECT instead of 2xx: it refused the WebSocket",
                    response=response,
                    method="CONNECT",
                    url=str(response.url),
                )
            upgraded = await response.upgrade()
            try:
                chosen = _check_subprotocol(response, offered)
            except WebSocketHandshakeError:
                await upgraded.aclose()
                raise
            return _open(upgraded, engine, response, chosen, max_message_size, close_timeout)

    key = base64.b64encode(os.urandom(16)).decode("ascii")
    h1_headers = Headers(extra)
    h1_headers["Connection"] = "Upgrade"
    h1_headers["Upgrade"] = "websocket"
    h1_headers["Sec-WebSocket-Key"] = key
    h1_headers["Sec-WebSocket-Version"] = "13"
    if version is not None:
        options["version"] = version
    response = await client._send("GET", target, {**options, "headers": h1_headers}, engine)  # type: ignore[typeddict-item]
    where = {"method": "GET", "url": str(response.url)}
    if response.status != 101:
        raise WebSocketHandshakeError(
            f"the server answered {response.status} {response.reason} instead of "
            "101 Switching Protocols: it is not a WebSocket endpoint, or it refused this one",
            response=response,
            **where,
        )
    upgraded = await response.upgrade()
    try:
        got = response.headers
        if "websocket" not in _tokens(got.get_list("upgrade")):
            raise WebSocketHandshakeError(
                f"the server switched to {got.get('upgrade')!r}, not to websocket",
                response=response,
                **where,
            )
        if "upgrade" not in _tokens(got.get_list("connection")):
            raise WebSocketHandshakeError(
                "the server's 101 lacks 'Connection: Upgrade' (RFC 6455 §4.1)",
                response=response,
                **where,
            )
        accept = got.get("sec-websocket-accept")
        if accept != accept_value(key):
            raise WebSocketHandshakeError(
                f"the server's Sec-WebSocket-Accept {accept!r} does not match the key sent "
                "(it is not answering this handshake; a caching or broken proxy may be in "
                "between)",
                response=response,
                **where,
            )
        chosen = _check_subprotocol(response, offered)
    except WebSocketHandshakeError:
        await upgraded.aclose()
        raise
    return _open(upgraded, engine, response, chosen, max_message_size, close_timeout)


def _check_subprotocol(response: Response, offered: list[str]) -> str | None:
    got = response.headers
    if got.get("sec-websocket-extensions"):
        raise WebSocketHandshakeError(
            f"the server enabled WebSocket extensions {got.get('sec-websocket-extensions')!r} "
            "that were not offered (RFC 6455 §4.1)",
            response=response,
        )
    chosen = got.get("sec-websocket-protocol")
    if chosen is None:
        return None
    if chosen not in offered:
        raise WebSocketHandshakeError(
            f"the server chose subprotocol {chosen!r}, which was not offered "
            f"(offered: {offered or 'none'})",
            response=response,
        )
    return chosen


def _open(
    upgraded: Upgraded,
    engine: Sender,
    response: Response,
    subprotocol: str | None,
    max_message_size: int | None,
    close_timeout: float | None,
) -> WebSocket:
    from .engine import Engine

    assert isinstance(engine, Engine)
    runtime, _ = engine._bind()
    return WebSocket(
        upgraded,
        runtime,
        response,
        subprotocol=subprotocol,
        max_message_size=max_message_size,
        close_timeout=close_timeout,
    )
