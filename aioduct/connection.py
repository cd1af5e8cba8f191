"""HTTP11Connection: one HTTP/1.1 exchange at a time over a runtime stream.

This is the only place where the sans-I/O codec meets I/O: it moves bytes between a
:class:`~aioduct.runtimes.Stream` and a :class:`~aioduct.protocol.http11.ClientCodec`,
and translates OS errors into aioduct's. Framing rules live in the codec, pooling rules
in the pool, policy in the engine.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Final, Literal

from .bodybuffers import DIRECT_MAX, DIRECT_MIN, BodyBuffers
from .errors import AioductError, BodyTooLarge, ReadError, RemoteProtocolError, WriteError
from .models import Request
from .pool import PoolKey
from .protocol.http11 import (
    NEED_DATA,
    ClientCodec,
    Data,
    EndOfMessage,
    InformationalResponse,
    Response,
)
from .runtimes import Expired, Stream
from .timeouts import Deadlines
from .tls import SessionKey

__all__ = [
    "HTTP11Connection",
    "NoStreamCapacity",
    "ResponseHead",
    "StaleConnection",
    "StreamNotProcessed",
]

#: Request bodies up to this size are sent in one write together with the head.
_COALESCE_BODY: Final = 64 * 1024

ResponseHead = Response


class StreamNotProcessed(ReadError):
    """The server did not process this HTTP/2 request (GOAWAY above it, or REFUSED_STREAM).

    RFC 9113 §8.7 makes such a request safe to retry whatever its method; the engine
    does so transparently on another connection when the body can be sent again.
    """


class NoStreamCapacity(ReadError):
    """Internal: the server lowered its HTTP/2 stream limit under us; take another slot."""


class StaleConnection(ReadError):
    """A reused connection failed before any response byte arrived.

    The server most likely closed it while it sat idle, so the request was not processed;
    the engine retries an idempotent request once on a fresh connection.
    """


#: How a server that refuses a TLS 1.3 client after the handshake may end up looking.
_REFUSALS: Final = (ssl.SSLError, ConnectionResetError, BrokenPipeError)


def _refused_after_handshake(exc: OSError | None) -> RemoteProtocolError:
    """The error for a new TLS connection that ended before any response byte.

    TLS 1.3 servers check a client certificate after the client's side of the handshake
    is done: the refusal comes as an alert, a bare close, or -- when the request was
    already on its way -- a reset that may make the request's write fail first.
    """
    if isinstance(exc, ssl.SSLError) and exc.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return RemoteProtocolError(
            "server refused the connection right after the TLS handshake: it requires "
            f"a client certificate (cert=) ({exc.reason})"
        )
    return RemoteProtocolError(
        "server closed the connection right after the TLS handshake without sending a "
        "response; it may require a client certificate (cert=) or refuse this TLS "
        "configuration" + (f" ({exc})" if exc is not None else "")
    )


class HTTP11Connection:
    """A keep-alive HTTP/1.1 connection (see module docstring)."""

    __slots__ = (
        "body_buffers",
        "body_withheld",
        "codec",
        "expect_timeout",
        "forward",
        "holds_slot",
        "idle_since",
        "key",
        "requests_sent",
        "session_key",
        "setup_timings",
        "stream",
        "trailers",
    )

    http_version: Final = "HTTP/1.1"
    multiplexed: Literal[False] = False

    def __init__(
        self,
        stream: Stream,
        key: PoolKey,
        *,
        max_head_bytes: int,
        max_headers: int,
        expect_timeout: float = 1.0,
    ) -> None:
        self.stream = stream
        #: Seconds to wait for ``100 Continue`` before sending a body anyway.
        self.expect_timeout = expect_timeout
        #: The last request's body was not sent: the server answered its
        #: ``Expect: 100-continue`` with a final response first.
        self.body_withheld = False
        self.key = key
        self.codec = ClientCodec(max_head_bytes=max_head_bytes, max_headers=max_headers)
        self.idle_since = 0.0
        self.requests_sent = 0
        self.holds_slot = False
        #: How long DNS, TCP connect and TLS took to open this connection (seconds).
        self.setup_timings: tuple[float | None, float | None, float | None, str | None] = (
            None,
            None,
            None,
            None,
        )
        #: Where to save this connection's TLS session once the first response arrived
        #: (set by the engine when it keeps sessions; ``None`` afterwards).
        self.session_key: SessionKey | None = None
        #: The trailer fields of the last body read to its end by events (chunked).
        self.trailers: list[tuple[str, str]] | None = None
        #: On a connection to a forwarding proxy: requests go in absolute form, with
        #: these fields added (``Proxy-Authorization``); ``None`` elsewhere.
        self.forward: tuple[tuple[str, str], ...] | None = None
        #: Where bodies of known length are received whole (see :meth:`read_body`);
        #: ``None``: as they arrive.
        self.body_buffers: BodyBuffers | None = None

    def is_ready(self) -> bool:
        return self.stream.is_reusable()

    def close(self) -> None:
        self.stream.close()

    # -- the exchange --------------------------------------------------------------------------

    async def send(self, request: Request, deadlines: Deadlines) -> tuple[Response, float]:
        """Send ``request`` and return its final response head and when it was written.

        1xx interim responses are skipped. Raises :class:`StaleConnection` when a reused
        connection turns out to be dead before any response byte arrived.
        """
        codec = self.codec
        stream = self.stream
        if self.requests_sent:
            codec.start_next_cycle()
        self.requests_sent += 1
        reused = self.requests_sent > 1
        if request.expect_continue and (request.content or request.stream is not None):
            early = await self._send_expecting(request, deadlines, reused)
            if early is not None:
                self.body_withheld = True
                return early, perf_counter()
            return await self._await_head(deadlines, reused, perf_counter())
        try:
            if request.stream is None:
                content = request.content
                target = request.url.target
                headers = request.headers.raw()
                if self.forward is not None:
                    target, headers = self._forward_form(request, headers)
                if content is not None and len(content) > _COALESCE_BODY:
                    # Head and body go out as two writes: no copy of a large body.
                    if "content-length" not in request.headers:
                        headers = [*headers, ("Content-Length", str(len(content)))]
                    stream.write(codec.encode_request(request.method, target, headers))
                    stream.write(codec.encode_data(content))
                    stream.write(codec.encode_end())
                else:
                    stream.write(codec.encode_request(request.method, target, headers, content))
                if stream.writing_paused:
                    await stream.drain(deadlines.for_write())
            else:
                await self._send_streaming(request, deadlines)
        except Expired:
            raise deadlines.error("write", "sending the request") from None
        except OSError as exc:
            if reused:
                raise StaleConnection(f"reused connection failed while sending: {exc}") from None
            raise WriteError(f"connection failed while sending the request: {exc}") from None
        sent_at = perf_counter()
        # A new cycle starts with nothing buffered (a reusable connection has no leftover
        # bytes), so read first rather than ask the codec to parse an empty buffer.
        # (_await_head does the same for an exchange that may have bytes buffered.)
        # Awaiting the stream directly rather than through _receive() saves a coroutine
        # on every request; failures are translated by the same helpers.
        try:
            data = await stream.read_head(deadlines.for_read())
        except (Expired, OSError) as exc:
            raise self._read_error(exc, deadlines, reused) from None
        if not data:
            self._check_early_eof(reused)
        codec.receive_data(data)
        while True:
            event = codec.next_event()
            if type(event) is Response:
                return event, sent_at
            if event is NEED_DATA:
                codec.receive_data(await self._receive(deadlines, reused))
            elif type(event) is not InformationalResponse:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    async def _await_head(
        self, deadlines: Deadlines, reused: bool, sent_at: float
    ) -> tuple[Response, float]:
        """The final response head, parsing what is buffered before reading more."""
        codec = self.codec
        while True:
            event = codec.next_event()
            if type(event) is Response:
                return event, sent_at
            if event is NEED_DATA:
                codec.receive_data(await self._receive(deadlines, reused))
            elif type(event) is not InformationalResponse:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} before the response")

    async def _send_expecting(
        self, request: Request, deadlines: Deadlines, reused: bool
    ) -> Response | None:
        """``Expect: 100-continue`` (RFC 9110 §10.1.1): send the head, wait for ``100``,
        then the body.

        Returns the final response if the server answers before the body was sent: the
        body is then never sent, and the connection is not reused (the server may still
        expect the body, or not: RFC 9110 leaves it ambiguous, so it is closed, as curl
        does). After ``expect_timeout`` seconds without an answer the body goes anyway.
        """
        codec, stream = self.codec, self.stream
        headers = request.headers.raw()
        target = request.url.target
        if self.forward is not None:
            target, headers = self._forward_form(request, headers)
        content = request.content
        try:
            if request.stream is None:
                assert content is not None
                if "content-length" not in request.headers:
                    headers = [*headers, ("Content-Length", str(len(content)))]
                head = codec.encode_request(request.method, target, headers)
            else:
                chunked = "content-length" not in request.headers
                head = codec.encode_request(request.method, target, headers, chunked=chunked)
            stream.write(head)
            await stream.drain(deadlines.for_write())
        except Expired:
            raise deadlines.error("write", "sending the request") from None
        except OSError as exc:
            if reused:
                raise StaleConnection(f"reused connection failed while sending: {exc}") from None
            raise WriteError(f"connection failed while sending the request: {exc}") from None
        read_at = deadlines.read_at()
        wait_at = deadlines.now() + self.expect_timeout
        if read_at is not None and read_at < wait_at:
            wait_at = read_at
        while True:
            event = codec.next_event() if codec.response_started else NEED_DATA
            if type(event) is Response:
                return event  # a final answer before the body: it is not sent
            if type(event) is InformationalResponse:
                if event.status == 100:
                    break
                continue
            if event is not NEED_DATA:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} before the response")
            try:
                data = await stream.read(wait_at)
            except Expired:
                if read_at is not None and wait_at >= read_at:
                    raise deadlines.error("read", "waiting for 100 Continue") from None
                break  # no answer in time: send the body (RFC 9110 §10.1.1, as curl)
            except OSError as exc:
                raise self._read_error(exc, deadlines, reused) from None
            if not data:
                self._check_early_eof(reused)
            codec.receive_data(data)
        try:
            if request.stream is None:
                assert content is not None
                stream.write(codec.encode_data(content))
                stream.write(codec.encode_end())
                await stream.drain(deadlines.for_write())
            else:
                await self._send_body(request, deadlines)
        except Expired:
            raise deadlines.error("write", "sending the request body") from None
        except OSError as exc:
            raise WriteError(f"connection failed while sending the request body: {exc}") from None
        return None

    async def _send_streaming(self, request: Request, deadlines: Deadlines) -> None:
        codec, stream = self.codec, self.stream
        assert request.stream is not None
        chunked = "content-length" not in request.headers
        target, headers = request.url.target, request.headers.raw()
        if self.forward is not None:
            target, headers = self._forward_form(request, headers)
        head = codec.encode_request(request.method, target, headers, chunked=chunked)
        stream.write(head)
        await self._send_body(request, deadlines)

    async def _send_body(self, request: Request, deadlines: Deadlines) -> None:
        codec, stream = self.codec, self.stream
        assert request.stream is not None
        async for chunk in request.stream:
            if chunk:
                stream.write(codec.encode_data(bytes(chunk)))
                if stream.writing_paused:
                    await stream.drain(deadlines.for_write())
        stream.write(codec.encode_end())
        await stream.drain(deadlines.for_write())

    def _forward_form(
        self, request: Request, headers: list[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]]:
        """The absolute-form target and head fields of a request to a forwarding proxy."""
        assert self.forward is not None
        url = request.url
        return f"{url.scheme}://{url.host_header}{url.target}", [*headers, *self.forward]

    async def _receive(self, deadlines: Deadlines, reused: bool = False) -> bytes:
        try:
            data = await self.stream.read(deadlines.for_read())
        except (Expired, OSError) as exc:
            raise self._read_error(exc, deadlines, reused) from None
        if not data:
            self._check_early_eof(reused)
        return data

    def _read_error(self, exc: Exception, deadlines: Deadlines, reused: bool) -> AioductError:
        """The public error for a failed or expired read."""
        started = self.codec.response_started
        if isinstance(exc, Expired):
            return deadlines.error(
                "read", "reading the body" if started else "waiting for the response"
            )
        if reused and not started:
            return StaleConnection(f"reused connection was reset: {exc}")
        if not started and self.stream.ssl_object is not None and isinstance(exc, _REFUSALS):
            return _refused_after_handshake(exc)
        return ReadError(f"connection failed while reading the response: {exc}")

    def _check_early_eof(self, reused: bool) -> None:
        """Explain an EOF before any response byte (a later EOF is the codec's to judge)."""
        if self.codec.response_started:
            return
        if reused:
            raise StaleConnection("reused connection was closed by the server")
        if self.stream.ssl_object is not None:
            raise _refused_after_handshake(None)

    async def next_chunk(self, deadlines: Deadlines) -> bytes | None:
        """The next piece of the response body, or ``None`` once it is complete."""
        codec = self.codec
        while True:
            event = codec.next_event()
            if type(event) is Data:
                return event.data
            if event is NEED_DATA:
                codec.receive_data(await self._receive(deadlines))
            elif type(event) is EndOfMessage:
                self.trailers = event.trailers
                return None
            else:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} in the body")

    def buffered_body(self, max_size: int | None) -> bytes | None:
        """The whole response body if it is already buffered, else ``None`` (no await)."""
        body = self.codec.read_complete_body()
        if body is not None and max_size is not None and len(body) > max_size:
            raise BodyTooLarge(f"response body exceeds max_body_size={max_size} bytes")
        return body

    async def read_body(self, deadlines: Deadlines, max_size: int | None) -> bytes:
        """The whole response body, read as it arrives (see :meth:`buffered_body`).

        A Content-Length body of ``DIRECT_MIN`` to ``DIRECT_MAX`` bytes on a stream that
        receives into a caller's buffer goes into one buffer of its length instead
        (:mod:`aioduct.bodybuffers`): the loop receives straight into it.
        """
        codec = self.codec
        buffers = self.body_buffers
        if buffers is not None:
            left = codec.length_body_left()
            if DIRECT_MIN <= left <= DIRECT_MAX:
                read_into = getattr(self.stream, "read_into", None)
                if read_into is not None:
                    return await self._read_body_into(buffers, read_into, deadlines, max_size)
        parts: list[bytes] = []
        size = 0
        while True:
            event = codec.next_event()
            if type(event) is Data:
                parts.append(event.data)
                size += len(event.data)
                if max_size is not None and size > max_size:
                    raise BodyTooLarge(f"response body exceeds max_body_size={max_size} bytes")
            elif type(event) is EndOfMessage:
                self.trailers = event.trailers
                break
            elif event is NEED_DATA:
                codec.receive_data(await self._receive(deadlines))
            else:
                raise RemoteProtocolError(f"unexpected {type(event).__name__} in the body")
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    async def _read_body_into(
        self,
        buffers: BodyBuffers,
        read_into: Callable[[memoryview, Callable[[], float | None]], Awaitable[int]],
        deadlines: Deadlines,
        max_size: int | None,
    ) -> bytes:
        codec = self.codec
        length = codec.length_body_left()
        part = codec.take_buffered_body()
        if max_size is not None and length > max_size:
            raise BodyTooLarge(f"response body exceeds max_body_size={max_size} bytes")
        rest = self.stream.take_buffered(length - len(part))  # type: ignore[attr-defined]
        if rest is not None:  # all here already: one copy, no buffer of its own
            codec.body_received(len(rest))
            event = codec.next_event()
            assert type(event) is EndOfMessage
            self.trailers = event.trailers
            return b"".join((part, rest))
        view = buffers.take(length)
        try:
            start = len(part)
            view[:start] = part
            del part
            try:
                got = await read_into(view[start:], deadlines.for_read)
            except (Expired, OSError) as exc:
                raise self._read_error(exc, deadlines, False) from None
            codec.body_received(got)
            if got < length - start:
                codec.receive_data(b"")
                codec.next_event()  # raises: the body is truncated
                raise RemoteProtocolError("peer closed connection inside the body")
            event = codec.next_event()
            assert type(event) is EndOfMessage
            self.trailers = event.trailers
            return buffers.finish(view)
        except BaseException:
            buffers.abandon(view)
            raise

    @property
    def reusable(self) -> bool:
        """After a complete exchange: may carry another request."""
        return self.codec.reusable

    def detach(self) -> tuple[Stream, bytes]:
        """Hand the stream over after ``101 Switching Protocols`` (with early bytes)."""
        return self.stream, self.codec.trailing_data
