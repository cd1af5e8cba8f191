"""Request, Response and Timings: the values a user holds.

``Response`` is a single type for every engine. A response from ``await client.get()`` has
its body read already (``content`` works); one from ``client.stream()`` holds a
:class:`BodyReader` and reads on demand. The blocking client sets a *portal* — a function
that runs a coroutine on its loop thread — so the same object offers ``iter_bytes()``
and ``read()`` synchronously without a second Response class.
"""

from __future__ import annotations

import codecs
import datetime
import functools
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterator
from http import HTTPStatus
from time import perf_counter
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import msgspec

from .decompress import ContentDecoder
from .errors import BodyTooLarge, DecodeError, StatusError
from .headers import Headers
from .protocol.rules import KNOWN_METHODS, check_method
from .url import URL
from .validation import check_request

if TYPE_CHECKING:
    from .layers import Layer
    from .problem import Problem
    from .sse import ServerSentEvent
    from .upgrade import Upgraded

__all__ = ["BodyReader", "Request", "Response", "Timings"]

T = TypeVar("T")
Portal = Callable[[Awaitable[Any]], Any]


# gc=False: only numbers and a string, so never part of a reference cycle; one is made
# per response (and decoded per Result in the local engine's parent), and untracked
# objects neither trigger nor lengthen the collector's passes.
class Timings(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """How long each phase of a request took, in seconds.

    ``dns``, ``connect`` and ``tls`` are ``None`` when the phase did not happen: a literal
    IP address needs no lookup, ``http://`` has no handshake, and a reused pooled connection
    skips all three. ``ttfb`` runs from the request being written to the first response
    byte; ``total`` from the start of the request to the response head (redirect hops are
    timed separately, on each response of ``history``).
    """

    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    ttfb: float | None = None
    total: float = 0.0
    pool_wait: float | None = None
    address: str | None = None
    """The address the connection went to, ``ip:port`` (``[ip]:port`` for IPv6): the
    winner of happy eyeballs, or what ``resolve=`` named. Also set on a reused
    connection (the phases above are not)."""


_NO_TIMINGS = Timings()


class Request:
    """An HTTP request as the pipeline sends it.

    ``content`` is a buffered body; ``stream`` an async iterable of chunks sent with
    chunked framing (or with the ``Content-Length`` the caller set). At most one is set.

    Building one checks what it would put on the wire (:mod:`aioduct.validation`): an
    invalid method, header name or value raises :class:`~aioduct.LocalProtocolError`
    here, before any connection is made.
    """

    __slots__ = (
        "auth",
        "content",
        "expect_continue",
        "headers",
        "method",
        "protocol",
        "stream",
        "url",
        "version",
    )

    def __init__(
        self,
        method: str,
        url: URL | str,
        *,
        headers: Headers | None = None,
        content: bytes | None = None,
        stream: AsyncIterable[bytes] | None = None,
        version: str | None = None,
        protocol: str | None = None,
        expect_continue: bool | None = None,
        auth: Layer | None = None,
    ) -> None:
        self.method = method
        self.url = url if type(url) is URL else URL(url)
        #: Authentication that answers challenges (a layer such as
        #: :class:`~aioduct.DigestAuth`), run for this request's hops on its origin.
        self.auth = auth
        self.headers = headers if headers is not None else Headers()
        self.content = content
        self.stream = stream
        #: Send ``Expect: 100-continue`` and hold the body back until the server agrees
        #: (see docs/uploads.md); the client sets it from ``expect_continue=``.
        self.expect_continue = expect_continue
        if version not in (None, "1.1", "2", "3"):
            raise ValueError(f"version must be '1.1', '2', '3' or None, not {version!r}")
        if version == "3" and self.url.scheme != "https":
            raise ValueError(
                f"version='3' needs an https:// URL: HTTP/3 runs over QUIC, which is always "
                f"encrypted (not {self.url.scheme}://)"
            )
        #: Force HTTP/1.1 or HTTP/2 for this request (``None``: the client's choice).
        self.version = version
        if protocol is not None and method != "CONNECT":
            raise ValueError(f"protocol= needs method='CONNECT' (RFC 8441), not {method!r}")
        # Before anything is sent, on any protocol: a request that cannot go on the wire
        # contacts nobody (the URL is known to be sendable already).
        check_request(method, self.headers.raw(), protocol)
        #: The ``:protocol`` of an HTTP/2 extended CONNECT (RFC 8441), e.g. "websocket".
        self.protocol = protocol

    def copy_with(
        self, *, url: URL | None = None, headers: Headers | None = None, **fields: Any
    ) -> Request:
        """This request with ``url``, ``headers`` or other constructor fields replaced
        and every other field kept (layers use it: a copy that forgets one, say the
        body or ``auth``, sends a different request)."""
        kept: dict[str, Any] = {
            "content": self.content,
            "stream": self.stream,
            "version": self.version,
            "protocol": self.protocol,
            "expect_continue": self.expect_continue,
            "auth": self.auth,
        }
        kept.update(fields)
        return Request(
            kept.pop("method", self.method),
            self.url if url is None else url,
            headers=self.headers if headers is None else headers,
            **kept,
        )

    @classmethod
    def _prechecked(cls, method: str, url: URL, headers: Headers) -> Request:
        """The hot-path constructor, for fields known valid already: a client's default
        headers (checked when its config was built) and the Host of a URL. Only the
        method is checked."""
        if method not in KNOWN_METHODS:
            check_method(method)
        self = cls.__new__(cls)
        self.method = method
        self.url = url
        self.headers = headers
        self.content = self.stream = self.version = self.protocol = None
        self.auth = self.expect_continue = None
        return self

    def __repr__(self) -> str:
        return f"<Request [{self.method} {self.url.redacted()}]>"


class BodyReader(Protocol):
    """What a connection hands a streaming response: chunks until ``None``."""

    async def read_chunk(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end."""

    async def aclose(self) -> None:
        """Stop reading; an unfinished body means the connection is closed, not reused."""


class Response:
    """An HTTP response. ``status`` and ``status_code`` are the same number."""

    __slots__ = (
        "_attempts",
        "_body",
        "_codings",
        "_content",
        "_elapsed",
        "_encoding",
        "_portal",
        "_spent",
        "_text",
        "_timings",
        "_trailers",
        "_upgraded",
        "cache_status",
        "headers",
        "history",
        "http_version",
        "reason",
        "request",
        "status",
        "url",
    )
    #: Set only by the retry layer (see :attr:`attempts`): the hot path never touches it.
    _attempts: int

    def __init__(
        self,
        status: int,
        *,
        headers: Headers | None = None,
        reason: str = "",
        http_version: str = "HTTP/1.1",
        content: bytes | None = None,
        body: BodyReader | None = None,
        request: Request | None = None,
        timings: Timings | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else Headers()
        self.http_version = http_version
        self.request = request
        self.url: URL | None = request.url if request is not None else None
        self.history: list[Response] = []
        self._timings: Timings | tuple[Any, ...] = timings if timings is not None else _NO_TIMINGS
        self._content = content
        self._body = body
        #: The content codings undone (or to undo, while streamed) on the wire body.
        self._codings: tuple[str, ...] = ()
        self._text: str | None = None
        self._encoding: str | None = None
        self._portal: Portal | None = None
        self._upgraded: Upgraded | None = None
        #: Why a streamed body can no longer be read (it was iterated, or closed unread).
        self._spent: str | None = None
        #: Trailer fields received after the body (chunked HTTP/1.1, HTTP/2), if any.
        self._trailers: list[tuple[str, str]] | None = None
        #: Seconds from the request's start to its body being read or closed (None: the
        #: time to the head, or a streamed body not finished yet).
        self._elapsed: float | None = None
        #: Where an HTTP cache (``Client(cache=...)``) got it: ``"hit"``, ``"miss"``,
        #: ``"revalidated"`` or ``"stale"``; ``None`` without a cache.
        self.cache_status: str | None = None

    @classmethod
    def _received(
        cls,
        status: int,
        reason: str,
        fields: list[tuple[str, str]],
        http_version: str,
        request: Request,
        timings: tuple[
            float | None, float | None, float | None, float, float, float | None, str | None
        ],
    ) -> Response:
        """A response the engine just read: the hot-path constructor.

        Positional, adopts the codec's field list as headers, and keeps the timings as a
        tuple that :attr:`timings` turns into a :class:`Timings` only when asked.
        """
        self = cls.__new__(cls)
        self.status = status
        self.reason = reason
        self.headers = Headers._adopt(fields)
        self.http_version = http_version
        self.request = request
        self.url = request.url
        self.history = []
        self._timings = timings
        self._content = None
        self._body = None
        self._codings = ()
        self._text = None
        self._encoding = None
        self._portal = None
        self._upgraded = None
        self._spent = None
        self._trailers = None
        self._elapsed = None
        self.cache_status = None
        return self

    @property
    def timings(self) -> Timings:
        """How long each phase took (see :class:`Timings`)."""
        timings = self._timings
        if type(timings) is tuple:
            timings = self._timings = Timings(*timings)
        assert isinstance(timings, Timings)
        return timings

    @timings.setter
    def timings(self, value: Timings) -> None:
        self._timings = value

    @property
    def elapsed(self) -> datetime.timedelta:
        """Time from sending the request to the end of its body (httpx's ``elapsed``).

        For a streamed response, available once its body is read or it is closed.
        """
        if self._elapsed is None:
            if self._body is not None:
                raise RuntimeError(
                    "elapsed is known once a streamed response's body has been read or "
                    "the response closed"
                )
            return datetime.timedelta(seconds=self.timings.total)
        return datetime.timedelta(seconds=self._elapsed)

    def _finished(self, body: BodyReader) -> None:
        """The streamed ``body`` ended (or was closed): the request's time is known."""
        deadlines = getattr(body, "deadlines", None)
        if deadlines is not None and self._elapsed is None:
            self._elapsed = perf_counter() - deadlines.started

    @property
    def trailers(self) -> Headers:
        """Trailer fields sent after the body (HTTP/1.1 chunked, HTTP/2); empty when
        there were none, or while a streamed body is not read to its end."""
        return Headers(self._trailers) if self._trailers else Headers()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def links(self) -> dict[str, dict[str, str]]:
        """The ``Link`` header (RFC 8288) by relation: ``r.links["next"]["url"]``.

        Each link is a dict with its ``url`` (resolved against the response URL), its
        ``rel`` and other parameters; a link without ``rel`` is keyed by its URL.
        """
        values = self.headers.get_list("link")
        if not values:
            return {}
        from .links import links_by_rel

        return links_by_rel(values, self.url)

    def problem(self) -> Problem | None:
        """The RFC 9457 problem details of an ``application/problem+json`` response,
        else ``None``. A malformed problem body raises :class:`DecodeError`."""
        from .problem import is_problem, parse_problem

        if not is_problem(self.headers.get("content-type")):
            return None
        try:
            return parse_problem(self.content)
        except (msgspec.DecodeError, ValueError) as exc:
            raise DecodeError(
                f"the application/problem+json body is not a problem details object: {exc}",
                **self._request_names(),
            ) from None

    @property
    def attempts(self) -> int:
        """How many times this hop's request was sent (more than 1 after retries, as
        :attr:`Result.attempts <aioduct.Result.attempts>`). Left unset on the hot path:
        only the retry layer sets it."""
        try:
            return self._attempts
        except AttributeError:
            return 1

    # -- status ----------------------------------------------------------------------------

    @property
    def status_code(self) -> int:
        return self.status

    @property
    def reason_phrase(self) -> str:
        """httpx's name for :attr:`reason` (the standard phrase when the server sent none)."""
        return self.reason or _phrase(self.status)

    @property
    def is_informational(self) -> bool:
        return 100 <= self.status < 200

    @property
    def is_success(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_client_error(self) -> bool:
        return 400 <= self.status < 500

    @property
    def is_server_error(self) -> bool:
        return 500 <= self.status < 600

    @property
    def is_redirect(self) -> bool:
        return self.status in (301, 302, 303, 307, 308) and "location" in self.headers

    @property
    def is_error(self) -> bool:
        return self.status >= 400

    def raise_for_status(self) -> Response:
        """Raise :class:`StatusError` for a 4xx or 5xx status; otherwise return ``self``."""
        if self.status < 400:
            return self
        kind = "client error" if self.status < 500 else "server error"
        reason = self.reason or _phrase(self.status)
        raise StatusError(
            f"{self.status} {reason} ({kind})", response=self, **self._request_names()
        )

    # -- buffered body -----------------------------------------------------------------------

    @property
    def is_read(self) -> bool:
        return self._content is not None

    @property
    def content(self) -> bytes:
        """The whole body, decoded (``decompress``). A streamed response must be read
        first (``await r.aread()``)."""
        if self._content is None:
            if self._spent is not None:
                raise RuntimeError(self._spent_message())
            raise RuntimeError(
                "the body of a streamed response has not been read: "
                "call 'await response.aread()' (or iterate it) first"
            )
        return self._content

    @property
    def encoding(self) -> str:
        """The charset used by ``text``: Content-Type's ``charset``, else UTF-8."""
        if self._encoding is None:
            self._encoding = _charset(self.headers.get("content-type")) or "utf-8"
        return self._encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        codecs.lookup(value)
        self._encoding = value
        self._text = None

    @property
    def text(self) -> str:
        """The body decoded with :attr:`encoding`; undecodable bytes become U+FFFD."""
        if self._text is None:
            self._text = self.content.decode(self.encoding, errors="replace")
        return self._text

    @overload
    def json(self) -> Any: ...
    @overload
    def json(self, type: type[T]) -> T: ...
    def json(self, type: Any = Any) -> Any:
        """Decode the JSON body with msgspec, optionally validating into ``type``."""
        try:
            return msgspec.json.decode(self.content, type=type)
        except msgspec.ValidationError as exc:  # valid JSON, but not the shape asked for
            name = getattr(type, "__name__", None) or repr(type)
            raise DecodeError(
                f"response JSON does not fit {name}: {exc}", **self._request_names()
            ) from None
        except msgspec.DecodeError as exc:
            snippet = self.content[:60]
            raise DecodeError(
                f"response body is not valid JSON ({exc}); it starts with {snippet!r}",
                **self._request_names(),
            ) from None

    def _request_names(self) -> dict[str, Any]:
        """``method=`` and ``url=`` for an exception about this response."""
        return {
            "method": self.request.method if self.request is not None else None,
            "url": str(self.url) if self.url is not None else None,
        }

    # -- streaming (async) -------------------------------------------------------------------

    async def aread(self, max_size: int | None = None) -> bytes:
        """Read the rest of the body, decoded, and keep it as :attr:`content`.

        ``max_size`` bounds the decoded size: :class:`BodyTooLarge` is raised as soon as
        it is passed, holding at most that much (plus one decoder step).
        """
        if self._content is None:
            chunks = [chunk async for chunk in self._chunks(max_size)]
            self._content = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return self._content

    def _chunks(self, max_size: int | None = None) -> AsyncIterator[bytes]:
        """The body as the user sees it: decoded while streamed if it has codings."""
        if self._codings and self._content is None:
            return self._decoded_chunks(self._codings, max_size)
        return self._raw_chunks(max_size)

    async def _decoded_chunks(
        self, codings: tuple[str, ...], max_size: int | None
    ) -> AsyncIterator[bytes]:
        decoder = ContentDecoder(codings)
        seen = 0
        try:
            async for chunk in self._raw_chunks():
                for piece in decoder.decode(chunk):
                    seen += len(piece)
                    if max_size is not None and seen > max_size:
                        raise BodyTooLarge(
                            f"decoded response body exceeds max_body_size={max_size} bytes",
                            **self._request_names(),
                        )
                    yield piece
            for piece in decoder.finish():
                seen += len(piece)
                if max_size is not None and seen > max_size:
                    raise BodyTooLarge(
                        f"decoded response body exceeds max_body_size={max_size} bytes",
                        **self._request_names(),
                    )
                yield piece
        except DecodeError as exc:
            if exc.url is not None:
                raise
            raise DecodeError(str(exc), **self._request_names()) from None

    async def _raw_chunks(self, max_size: int | None = None) -> AsyncIterator[bytes]:
        if self._content is not None:
            if self._content:
                yield self._content
            return
        body = self._body
        if body is None:
            if self._spent is not None:
                raise RuntimeError(self._spent_message())
            return
        seen = 0
        self._spent = "it was already read by iterating over it"
        try:
            while (chunk := await body.read_chunk()) is not None:
                seen += len(chunk)
                if max_size is not None and seen > max_size:
                    raise BodyTooLarge(
                        f"response body exceeds max_body_size={max_size} bytes",
                        **self._request_names(),
                    )
                yield chunk
            self._trailers = getattr(body, "trailers", None)
        finally:
            self._body = None
            self._finished(body)
            await body.aclose()

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """Yield the body, decoded, as it arrives; ``chunk_size`` regroups it into pieces
        of that size. A compressed body is decoded in bounded steps, so a small
        ``chunk_size`` holds little memory however much the body expands."""
        if chunk_size is None:
            async for chunk in self._chunks():
                if chunk:
                    yield chunk
            return
        rest = b""
        async for chunk in self._chunks():
            if rest:
                chunk = rest + chunk
            start, end = 0, len(chunk)
            while end - start >= chunk_size:
                yield chunk[start : start + chunk_size]
                start += chunk_size
            rest = chunk[start:]
        if rest:
            yield rest

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """Yield the body as it came off the wire: still compressed (``Content-Encoding``).

        Only before the body is decoded: a response from ``await client.get()`` has its
        body decoded already (use ``client.stream()``, or ``decompress=False``).
        """
        if self._codings and self._content is not None:
            raise RuntimeError(
                "the wire bytes of this response are gone: its body was decoded "
                f"({', '.join(self._codings)}) when it was read; use client.stream() and "
                "aiter_raw() before reading, or decompress=False"
            )
        async for chunk in self._raw_chunks():
            if chunk:
                yield chunk

    async def aiter_text(self, chunk_size: int | None = None) -> AsyncIterator[str]:
        """Yield decoded text; multi-byte characters split across chunks are kept whole."""
        decoder = codecs.getincrementaldecoder(self.encoding)(errors="replace")
        async for chunk in self.aiter_bytes(chunk_size):
            if text := decoder.decode(chunk):
                yield text
        if tail := decoder.decode(b"", final=True):
            yield tail

    async def aiter_sse(
        self, *, max_event_size: int | None = None
    ) -> AsyncIterator[ServerSentEvent]:
        """Yield the Server-Sent Events of this (streamed) ``text/event-stream`` response.

        For a response already open; :meth:`Client.sse` also reconnects. Raises
        :class:`~aioduct.sse.SSEError` if the response is not a 200 event stream.
        """
        from .sse import DEFAULT_MAX_EVENT_SIZE, SSEDecoder, check_event_stream

        check_event_stream(self)
        decoder = SSEDecoder(max_event_size=max_event_size or DEFAULT_MAX_EVENT_SIZE)
        async for chunk in self.aiter_bytes():
            for event in decoder.feed(chunk):
                yield event
        decoder.end()

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Yield text lines without their terminators (``\\n``, ``\\r\\n`` or ``\\r``)."""
        pending = ""
        async for text in self.aiter_text():
            pending += text
            lines = pending.splitlines(keepends=True)
            pending = ""
            if lines and not lines[-1].endswith(("\n", "\r")):
                pending = lines.pop()
            elif lines and lines[-1].endswith("\r"):
                # "\r" may be the first half of "\r\n" split across chunks.
                pending = lines.pop()
            for line in lines:
                yield line.rstrip("\r\n")
        if pending:
            yield pending.rstrip("\r\n")

    def _spent_message(self) -> str:
        return (
            f"the body of this streamed response cannot be read again: {self._spent}. A "
            "streamed body is read once; to keep it, call aread() (read() on the "
            "blocking client) first: content, text and the iterators then reuse it"
        )

    async def aclose(self) -> None:
        """Release the connection; an unread body is discarded (the connection is closed)."""
        body, self._body = self._body, None
        if body is not None:
            self._finished(body)
            self._spent = self._spent or "the response was closed before its body was read"
            await body.aclose()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- upgrades ----------------------------------------------------------------------------

    async def upgrade(self) -> Upgraded:
        """The bidirectional stream after ``101 Switching Protocols`` (HTTP/1.1) or a 2xx
        answer to an extended CONNECT (HTTP/2, ``protocol=``); see :mod:`aioduct.upgrade`.

        Can be taken once; the connection (HTTP/1.1) or stream (HTTP/2) is then yours.
        """
        upgraded, self._upgraded = self._upgraded, None
        if upgraded is None:
            raise RuntimeError(
                f"response {self.status} is not an upgrade: expected 101 to an Upgrade "
                "request, or 2xx to method='CONNECT' with protocol= over HTTP/2 "
                "(or upgrade() was already called)"
            )
        return upgraded

    # -- streaming (blocking client) ---------------------------------------------------------

    def _run(self, awaitable: Awaitable[T]) -> T:
        if self._portal is None:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()
            raise RuntimeError(
                "this response belongs to an async client: use 'await response.aread()' "
                "and 'async for ... in response.aiter_bytes()'"
            )
        result: T = self._portal(awaitable)
        return result

    def read(self) -> bytes:
        """Blocking form of :meth:`aread`."""
        return self._run(self.aread())

    def close(self) -> None:
        """Blocking form of :meth:`aclose`."""
        if self._body is not None:
            self._run(self.aclose())

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            self._run(_aclose_gen(agen))

    def iter_bytes(self, chunk_size: int | None = None) -> Iterator[bytes]:
        return self._iterate(self.aiter_bytes(chunk_size))

    def iter_raw(self) -> Iterator[bytes]:
        """Blocking form of :meth:`aiter_raw`."""
        return self._iterate(self.aiter_raw())

    def iter_text(self, chunk_size: int | None = None) -> Iterator[str]:
        return self._iterate(self.aiter_text(chunk_size))

    def iter_lines(self) -> Iterator[str]:
        return self._iterate(self.aiter_lines())

    def iter_sse(self, *, max_event_size: int | None = None) -> Iterator[ServerSentEvent]:
        """Blocking form of :meth:`aiter_sse`."""
        return self._iterate(self.aiter_sse(max_event_size=max_event_size))

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Response [{self.status} {self.reason or _phrase(self.status)}]>"


async def _aclose_gen(agen: AsyncIterator[Any]) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        await aclose()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@functools.lru_cache(maxsize=256)
def _charset(content_type: str | None) -> str | None:
    """The codec name of a Content-Type's charset (memoised: servers repeat theirs)."""
    if not content_type:
        return None
    mime, _, params = content_type.partition(";")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            value = value.strip().strip('"').strip("'")
            try:
                return codecs.lookup(value).name
            except LookupError:
                return None
    if mime.strip().lower() in ("application/json", "application/problem+json"):
        return "utf-8"
    return None
