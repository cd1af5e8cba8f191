"""Client and BlockingClient: the user-facing facades over one :class:`Engine`.

Both expose the same methods. They are written once, in :class:`HTTPMethods`, generic in
what ``request()`` returns: an awaitable for :class:`Client`, a :class:`Response` for
:class:`BlockingClient`. The blocking client is an async client driven on a private event
loop thread, so there is a single pipeline and no hand-copied sync twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import weakref
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import IO, TYPE_CHECKING, Any, Final, Generic, Protocol, TypedDict, TypeVar, Unpack

import msgspec

from . import __version__
from .auth import AuthTypes, resolve_auth
from .config import (
    OPTION_NAMES,
    ClientConfig,
    Timeout,
    check_option_names,
    request_timeout,
    suggest,
)
from .cookies import CookieJar, CookieLayer, cookie_header
from .decompress import ACCEPT_ENCODING
from .dns import Resolver
from .engine import _UNSET, Engine
from .errors import ClientClosed, InvalidURL
from .headers import Headers, HeadersLike
from .hsts import HSTSStore, hsts_store_of
from .layers import Layer, build_layers, close_layers
from .middleware import split_middleware
from .models import Request, Response
from .redirects import RedirectPolicy
from .url import URL, QueryParams, encode_params
from .validation import check_request
from .well_known import well_known_url

if TYPE_CHECKING:
    from .download import Download

    # Imported where used: programs that never upload a file or read events do not load
    # these modules (fewer objects for every garbage collection pass to visit).
    from .multipart import FileTypes
    from .sse import BlockingEventSource, EventSource
    from .websocket import BlockingWebSocket, WebSocket

__all__ = ["BlockingClient", "Client", "RequestOptions", "run"]

#: client.sse() defaults (aioduct.sse.DEFAULT_MAX_EVENT_SIZE, DEFAULT_RETRY).
_SSE_MAX_EVENT_SIZE: Final = 1 << 20
_SSE_RETRY: Final = 3.0

R = TypeVar("R")
T = TypeVar("T")

Content = (
    bytes
    | bytearray
    | memoryview
    | str
    | AsyncIterable[bytes]
    | Iterable[bytes]
    | IO[bytes]
    | os.PathLike[str]
)


class RequestOptions(TypedDict, total=False):
    """Keyword arguments every request method accepts."""

    params: QueryParams | None
    headers: HeadersLike | None
    content: Content | None
    data: dict[str, Any] | list[tuple[str, Any]] | None
    files: Mapping[str, FileTypes] | list[tuple[str, FileTypes]] | None
    json: Any
    expect_continue: bool | None
    auth: AuthTypes | None
    timeout: float | Timeout | None
    follow_redirects: bool | None
    version: str | None
    protocol: str | None
    cookies: Mapping[str, str] | list[tuple[str, str]] | None


#: The keyword arguments of the request methods.
REQUEST_OPTIONS: Final[frozenset[str]] = frozenset(RequestOptions.__optional_keys__)

#: What people coming from other clients pass, and what to do instead.
_REQUEST_HINTS: Final = {
    "allow_redirects": "aioduct calls it follow_redirects=",
    "stream": "stream a response with 'with client.stream(method, url) as r:'",
    "body": "send bytes or str with content=, a form with data=, JSON with json=",
}


def check_request_options(
    options: Mapping[str, Any], valid: frozenset[str] = REQUEST_OPTIONS
) -> None:
    """Refuse keyword arguments a request method does not take, naming what to use.

    Without this, ``client.get(url, param={...})`` would send the request without them.
    ``valid`` is what the caller accepts (``aioduct.get()`` takes client options too).
    """
    if options.keys() <= valid:
        return
    name = next(n for n in options if n not in valid)
    if name in _REQUEST_HINTS:
        hint = f": {_REQUEST_HINTS[name]}"
    elif name in OPTION_NAMES:
        hint = f": {name} is a client option; set it on the client (Client({name}=...))"
    else:
        hint = suggest(name, valid)
    raise TypeError(f"a request got an unexpected keyword argument {name!r}{hint}")


class HTTPMethods(Generic[R]):
    """``get``/``post``/... as shorthands for ``request(method, url, ...)``."""

    def request(self, method: str, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        raise NotImplementedError

    def get(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("GET", url, **options)

    def head(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("HEAD", url, **options)

    def options(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("OPTIONS", url, **options)

    def post(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("POST", url, **options)

    def put(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("PUT", url, **options)

    def patch(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("PATCH", url, **options)

    def delete(self, url: URL | str, **options: Unpack[RequestOptions]) -> R:
        return self.request("DELETE", url, **options)


_JSON_ENCODER = msgspec.json.Encoder()


class Client(HTTPMethods[Coroutine[Any, Any, Response]]):
    """The async HTTP client on the running asyncio or uvloop loop.

    Options are :class:`ClientConfig`'s fields, passed as keywords or as ``config=``.
    Objects that are code rather than data go here directly: ``auth``, ``ssl_context``
    (or ``verify=`` an ``SSLContext``), ``redirect_policy``, ``middleware`` (layers,
    outermost first, or ``"package.module:name"`` strings), ``event_hooks``
    (``{"request": [...], "response": [...]}``; see docs/retries-middleware-limits.md),
    ``resolver`` (an :class:`aioduct.Resolver`: :class:`~aioduct.DoHResolver`, ...)
    and ``cache`` (an :class:`aioduct.Cache`; on the local engine each worker builds its
    own from the cache's settings).

    ``engine`` picks who sends the requests: ``"send"`` (default) this loop itself;
    ``"local"`` a :class:`~aioduct.LocalEngine` of ``workers`` pinned io_uring worker
    processes (responses arrive fully buffered; raises :class:`EngineUnavailable`
    saying why where io_uring is unusable); ``"auto"`` the local engine where io_uring
    is usable, else the send engine (and it says so once, on the ``aioduct`` logger).
    """

    def __init__(
        self,
        *,
        config: ClientConfig | None = None,
        auth: AuthTypes | None = None,
        ssl_context: ssl.SSLContext | None = None,
        redirect_policy: RedirectPolicy | None = None,
        middleware: Sequence[Layer | str] | None = None,
        event_hooks: Mapping[str, Sequence[Callable[[Any], Any]]] | None = None,
        engine: str = "send",
        workers: int | None = None,
        resolver: Resolver | None = None,
        cache: Any = None,
        **options: Any,
    ) -> None:
        cache_object = None
        if cache is not None:  # a Cache object is code; its settings are the data form
            from .cache import Cache

            if isinstance(cache, Cache):
                cache_object = cache
                options["cache"] = cache.settings
            else:
                options["cache"] = cache
        verify = options.get("verify")
        if isinstance(verify, ssl.SSLContext):
            ssl_context = options.pop("verify")
        jar = options.get("cookies")
        if isinstance(jar, CookieJar):
            options["cookies"] = True  # the config says "a jar"; this one is it
        elif jar is not None and not isinstance(jar, bool):
            raise TypeError(
                f"cookies= takes True, False or an aioduct.CookieJar to share, not "
                f"{type(jar).__name__}; to send cookies with one request pass them to it: "
                "client.get(url, cookies={'name': 'value'})"
            )
        else:
            jar = None
        middleware_specs, middleware_objects = split_middleware(middleware)
        if middleware_specs:
            options["middleware"] = middleware_specs  # data: what local workers import
        check_option_names(options)
        if config is None:
            config = ClientConfig(**options)
        elif options:
            config = config.replace(**options)
        self.config = config
        self._auth = resolve_auth(auth)
        self._engine: Sender
        if choose_engine(engine) == "local":
            if ssl_context is not None:
                raise TypeError(
                    "an SSLContext is a Python object, and local-engine workers are separate "
                    "processes that receive the configuration as data: pass "
                    "verify='path/to/ca.pem' (and cert=) instead, or use the send engine"
                )
            if resolver is not None:
                raise TypeError(
                    "resolver= is a Python object, and local-engine workers are separate "
                    "processes that receive the configuration as data: pass "
                    "dns_over_https='https://...' or dns_over_tls='host:port' instead"
                )
            if redirect_policy is not None:
                raise TypeError(
                    "redirect_policy is a Python callable, and local-engine workers are "
                    "separate processes that receive the configuration as data: use the "
                    "send engine for it, or max_redirects= / follow_redirects= (data) here"
                )
            if jar is not None:
                raise TypeError(
                    "a CookieJar is a Python object, and local-engine workers are separate "
                    "processes with a jar each (cookies=True: the default; jobs of one site "
                    "share a worker): share a jar on the send engine only"
                )
            if middleware_objects or event_hooks:
                what = "middleware objects" if middleware_objects else "event_hooks"
                raise TypeError(
                    f"{what} are Python code, and local-engine workers are separate "
                    "processes that receive the configuration as data: give middleware as "
                    "'package.module:name' import strings (each worker imports them), or "
                    "use the send engine"
                )
            from .local.sender import LocalSender

            self._engine = LocalSender(config, workers=workers)
            self._layers: tuple[object, ...] = self._engine.parent_layers
        else:
            if workers is not None:
                raise TypeError("workers= applies to engine='local' (or 'auto') only")
            self._layers = build_layers(
                config,
                cookies=jar,
                middleware=middleware if middleware_objects else None,
                event_hooks=event_hooks,
                cache=cache_object,
            )
            self._engine = Engine(
                config,
                ssl_context=ssl_context,
                redirect_policy=redirect_policy,
                layers=self._layers,
                resolver=resolver,
            )
        self.engine = self._engine.name
        self._base_url = None
        if config.base_url:
            base = URL(config.base_url)
            self._base_url = (
                base if base.path.endswith("/") else base.copy_with(path=base.path + "/")
            )
        defaults: list[tuple[str, str]] = []
        if config.default_headers:
            defaults = [("User-Agent", f"aioduct/{__version__}"), ("Accept", "*/*")]
            if config.decompress:
                defaults.append(("Accept-Encoding", ACCEPT_ENCODING))
        configured = Headers(config.headers)
        for name in configured:
            defaults = [d for d in defaults if d[0].lower() != name.lower()]
        self._default_headers = defaults + configured.multi_items()
        self._closed = False

    @property
    def cookies(self) -> CookieJar | None:
        """The client's cookie jar (None with ``cookies=False``).

        On the local engine each worker keeps its own jar, out of this process's reach:
        there this raises :class:`TypeError` saying so.
        """
        engine = self._engine
        if not isinstance(engine, Engine):
            if not self.config.cookies:
                return None
            raise TypeError(
                "with engine='local' the cookies live in the worker processes (a jar per "
                "worker, jobs of one site on one worker); use the send engine to read or "
                "set them, or send cookies per request with cookies={...}"
            )
        for layer in engine.layers:
            if isinstance(layer, CookieLayer):
                return layer.jar
        return None

    # -- building requests -----------------------------------------------------------------------

    def build_request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Request:
        """The :class:`Request` that ``request()`` would send."""
        if options:
            check_request_options(options)
        method = method.upper()
        try:
            if isinstance(url, str) and self._base_url is not None and "://" not in url:
                # Like httpx: the base URL's path is a prefix, even for "/absolute" paths.
                target = self._base_url.join(url.lstrip("/"))
            else:
                target = URL(url)
        except InvalidURL as exc:
            raise exc._with_request(method, str(url)) from None
        auth_from_url = None
        if target.username or target.password:
            auth_from_url = resolve_auth((target.username, target.password))
            target = target.copy_with(username="", password="")
        headers = Headers._adopt([("Host", target.host_header), *self._default_headers])
        if not options:  # the common case: nothing per-request to merge
            default_auth = auth_from_url or self._auth
            if default_auth is None:
                return Request._prechecked(method, target, headers)
            if hasattr(default_auth, "apply"):
                default_auth.apply(headers)
                return Request(method, target, headers=headers)
            return Request(method, target, headers=headers, auth=default_auth)
        params = options.get("params")
        if params:
            target = target.with_params(params)
        extra = options.get("headers")
        if extra:
            headers.update(extra)
        cookies = options.get("cookies")
        if cookies is not None:
            _add_cookies(headers, cookies)
        content, stream = self._body(options, headers)
        expect = None
        if (content or stream is not None) and (
            "expect_continue" in options or extra or self.config.expect_continue
        ):
            expect = self._expect_continue(options, headers)
        auth = resolve_auth(options.get("auth")) or auth_from_url or self._auth
        flow = None
        if hasattr(auth, "apply"):
            auth.apply(headers)  # type: ignore[union-attr]
        else:
            flow = auth  # challenge auth (Digest): runs around each hop of its origin
        return Request(
            method,
            target,
            headers=headers,
            content=content,
            stream=stream,
            version=options.get("version"),
            protocol=options.get("protocol"),
            expect_continue=expect or None,
            auth=flow,
        )

    def _expect_continue(self, options: RequestOptions, headers: Headers) -> bool:
        """Whether a request with a body waits for ``100 Continue``: the option, else an
        ``Expect: 100-continue`` set by hand, else the client's setting."""
        expect = options.get("expect_continue")
        if expect is None:
            asked = headers.get("expect")
            if asked is not None:
                expect = asked.strip().lower() == "100-continue"
        if expect is None:
            expect = self.config.expect_continue
        if expect and "expect" not in headers:
            headers.add("Expect", "100-continue")
        return bool(expect)

    @staticmethod
    def _body(
        options: RequestOptions, headers: Headers
    ) -> tuple[bytes | None, AsyncIterable[bytes] | None]:
        given = [k for k in ("content", "data", "json") if options.get(k) is not None]
        if "files" in options and (files := options["files"]) is not None:
            from .multipart import Multipart

            if given and given != ["data"]:
                raise TypeError(
                    f"files= sends a multipart form, whose other fields go in data=; it "
                    f"cannot be combined with {given[0]}="
                )
            fields = options.get("data")
            multipart = Multipart(fields, files)
            _set_default(headers, "Content-Type", multipart.content_type)
            return None, _sized(multipart, headers)
        if len(given) > 1:
            raise TypeError(f"pass only one of content=, data= or json= (got {', '.join(given)})")
        if not given:
            return None, None
        kind = given[0]
        if kind == "json":
            _set_default(headers, "Content-Type", "application/json")
            return _JSON_ENCODER.encode(options["json"]), None
        if kind == "data":
            form = options["data"]
            if isinstance(form, bytes | bytearray | memoryview | str):
                raise TypeError(
                    f"data= takes form fields (a dict or pairs), not {type(form).__name__}; "
                    "send bytes or str as they are with content="
                )
            _set_default(headers, "Content-Type", "application/x-www-form-urlencoded")
            return encode_params(form).encode("ascii"), None  # type: ignore[arg-type]
        content = options["content"]
        if isinstance(content, bytes):
            return content, None
        if isinstance(content, bytearray | memoryview):
            return bytes(content), None
        if isinstance(content, str):
            _set_default(headers, "Content-Type", "text/plain; charset=utf-8")
            return content.encode(), None
        from .bodies import FileBody, IterBody
        from .multipart import Multipart

        if isinstance(content, Multipart):
            _set_default(headers, "Content-Type", content.content_type)
            return None, _sized(content, headers)
        if isinstance(content, AsyncIterable):
            return None, _sized(content, headers)
        if isinstance(content, os.PathLike) or hasattr(content, "read"):
            return None, _sized(FileBody(content), headers)  # type: ignore[arg-type]
        if isinstance(content, Iterable):
            return None, IterBody(content)
        kind_name = type(content).__name__
        raise TypeError(
            "content= must be bytes, str, a binary file, a path, or a sync or async "
            f"iterable of bytes, not {kind_name}"
        )

    # -- sending ---------------------------------------------------------------------------------

    async def request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Response:
        """Send a request and return the response with its body read."""
        return await self._send(method, url, options, self._engine)

    def _send(
        self,
        method: str,
        url: URL | str,
        options: RequestOptions,
        engine: Sender,
        *,
        stream: bool = False,
    ) -> Coroutine[Any, Any, Response]:
        """The pipeline coroutine for one request on ``engine`` (the blocking client runs
        it on its own, loop-less engine)."""
        if self._closed:
            raise ClientClosed("the client is closed", method=method.upper(), url=str(url))
        request = self.build_request(method, url, **options)
        if not options and not stream:
            return engine.send(request)
        return engine.send(
            request,
            stream=stream,
            timeout=_timeout_option(options),
            follow_redirects=options.get("follow_redirects"),
        )

    @contextlib.asynccontextmanager
    async def stream(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> AsyncIterator[Response]:
        """Send a request and yield the response before its body is read.

        Read it with ``aiter_bytes()``/``aiter_text()``/``aiter_lines()`` or ``aread()``;
        leaving the block releases (or, if unread, closes) the connection.
        """
        response = await self._send(method, url, options, self._engine, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

    @contextlib.asynccontextmanager
    async def websocket(
        self,
        url: URL | str,
        *,
        subprotocols: list[str] | tuple[str, ...] | None = None,
        headers: HeadersLike | None = None,
        params: QueryParams | None = None,
        timeout: float | Timeout | None = None,  # noqa: ASYNC109 (the handshake's deadline)
        max_message_size: int | None = 16 * 1024 * 1024,
        close_timeout: float | None = 10.0,
    ) -> AsyncIterator[WebSocket]:
        """Open a WebSocket (``ws://``, ``wss://``, or ``http(s)://``); see
        :mod:`aioduct.websocket`. Leaving the block closes it (close code 1000)."""
        from .websocket import connect

        if self._closed:
            raise ClientClosed("the client is closed", method="GET", url=str(url))
        ws = await connect(
            self,
            self._engine,
            url,
            subprotocols=subprotocols,
            headers=headers,
            params=params,
            timeout=timeout,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
        )
        async with ws:
            yield ws

    async def download(
        self,
        url: URL | str,
        path: str | os.PathLike[str],
        *,
        chunks: int = 8,
        progress: Callable[[int, int | None], object] | None = None,
        headers: HeadersLike | None = None,
        resume: bool = True,
    ) -> Download:
        """Download ``url`` into ``path`` with up to ``chunks`` parallel ranges, resuming
        a partial file; see :mod:`aioduct.download`."""
        from .download import download

        return await download(
            self, self._engine, url, path, chunks=chunks, progress=progress,
            headers=headers, resume=resume, parallel=True,
        )  # fmt: skip

    @contextlib.asynccontextmanager
    async def sse(
        self,
        url: URL | str,
        *,
        method: str = "GET",
        reconnect: bool = True,
        max_reconnects: int | None = None,
        retry: float = _SSE_RETRY,
        max_event_size: int = _SSE_MAX_EVENT_SIZE,
        **options: Unpack[RequestOptions],
    ) -> AsyncIterator[EventSource]:
        """Open a Server-Sent Events stream: ``async for event in source`` (see docs/sse.md).

        The first connection is made before the block starts, so a wrong answer (not a
        200 ``text/event-stream``) raises here. A dropped stream is reopened after the
        server's ``retry`` delay (``retry`` seconds until it sends one) with
        ``Last-Event-ID``, at most ``max_reconnects`` times (``None``: no limit), unless
        ``reconnect=False``; a 204 ends it. Leaving the block closes it.
        """
        source = self._event_source(
            self._engine, method, url, options, reconnect, max_reconnects, retry, max_event_size
        )
        await source.start()
        try:
            yield source
        finally:
            await source.aclose()

    def _event_source(
        self,
        engine: Sender,
        method: str,
        url: URL | str,
        options: RequestOptions,
        reconnect: bool,
        max_reconnects: int | None,
        retry: float,
        max_event_size: int,
    ) -> EventSource:
        if not isinstance(engine, Engine):
            raise TypeError(
                "sse() needs the send engine: a stream of events is read as it arrives, and "
                "the local engine's workers hand back whole responses (use engine='send')"
            )
        from .sse import EventSource

        base = Headers(options.get("headers"))

        def open_stream(headers: Headers) -> Coroutine[Any, Any, Response]:
            return self._send(method, url, {**options, "headers": headers}, engine, stream=True)

        async def sleep(seconds: float) -> None:
            runtime, _pool = engine._bind()
            await runtime.sleep(seconds)

        return EventSource(
            open_stream,
            sleep,
            headers=base,
            reconnect=reconnect,
            max_reconnects=max_reconnects,
            retry=retry,
            max_event_size=max_event_size,
        )

    async def send(self, request: Request, *, stream: bool = False) -> Response:
        """Send a prepared :class:`Request` (see :meth:`build_request`).

        Its method and headers are checked again: they may have changed since it was
        built, and nothing invalid may reach a connection.
        """
        if self._closed:
            raise ClientClosed("the client is closed")
        check_request(request.method, request.headers.raw(), request.protocol)
        return await self._engine.send(request, stream=stream)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close pooled connections (local engine: stop its workers) and save the HSTS
        file, if any.

        In-flight requests of the send engine finish on their own connections.
        """
        if not self._closed:
            close_layers(self._layers)
        self._closed = True
        await self._engine.aclose()

    async def migrate_http3(self, local_address: str | None = None) -> int:
        """Move the pooled HTTP/3 connections to new local UDP sockets, keeping their
        QUIC connections and requests in flight (after a network change: RFC 9000 §9);
        ``local_address`` picks the new interface. Returns how many moved (a server
        that disabled migration keeps its connection where it is). The send engine
        only: the local engine's workers move on a send error by themselves."""
        engine = self._engine
        if not isinstance(engine, Engine):
            return 0
        return await engine.migrate_http3(local_address)

    @property
    def hsts_store(self) -> HSTSStore | None:
        """The client's known HSTS hosts (``None`` with ``hsts=False``)."""
        return hsts_store_of(self._layers)

    async def well_known(
        self, origin: URL | str, name: str, **options: Unpack[RequestOptions]
    ) -> Response:
        """``GET origin/.well-known/NAME`` (RFC 8615), e.g. ``"security.txt"``.

        ``origin`` is a URL whose path is ignored; ``name`` a single path segment
        (``"openid-configuration"``, ``"acme-challenge/TOKEN"`` is refused).
        """
        return await self.get(well_known_url(origin, name), **options)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<aioduct.Client {'closed' if self._closed else 'open'}>"


class Sender(Protocol):
    """What a Client needs from an engine: send one request, and close."""

    name: str

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        timeout: float | object | None = _UNSET,  # noqa: ASYNC109 (a deadline)
        follow_redirects: bool | None = None,
    ) -> Response: ...

    async def aclose(self) -> None: ...


_auto_said = False


def choose_engine(engine: str) -> str:
    """``"send"`` or ``"local"`` for an ``engine=`` option (``"auto"`` decides here)."""
    if engine in ("send", "local"):
        return engine
    if engine != "auto":
        raise ValueError(f"engine must be 'send', 'local' or 'auto', not {engine!r}")
    from . import uring

    problem = uring.unavailable_reason()
    if problem is None:
        return "local"
    global _auto_said
    if not _auto_said:
        _auto_said = True
        logging.getLogger("aioduct").warning(
            "aioduct: engine='auto' uses the send engine: io_uring is unusable here (%s)",
            problem,
        )
    return "send"


def _timeout_option(options: RequestOptions) -> object:
    """A request's ``timeout=``, checked (``_UNSET`` when not given)."""
    if "timeout" not in options:
        return _UNSET
    return request_timeout(options["timeout"])


def _sized(stream: AsyncIterable[bytes], headers: Headers) -> AsyncIterable[bytes]:
    """Declare a streamed body's length when it is known (else it goes chunked)."""
    from .bodies import stream_size

    size = stream_size(stream)
    if size is not None and "content-length" not in headers and "transfer-encoding" not in headers:
        headers.add("Content-Length", str(size))
    return stream


def _add_cookies(headers: Headers, cookies: object) -> None:
    """Per-request ``cookies=``: into the ``Cookie`` header (after one already given),
    where the redirect rules drop them on the first hop to another origin."""
    if isinstance(cookies, bool):
        raise TypeError(
            "cookies= on a request takes {'name': 'value'}; to turn the jar off pass "
            "cookies=False to the client (Client(cookies=False))"
        )
    try:
        value = cookie_header(cookies)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        raise TypeError(
            f"cookies= takes a dict or (name, value) pairs, not {type(cookies).__name__}"
        ) from None
    if not value:
        return
    given = headers.get("cookie")
    if given:
        del headers["cookie"]
        value = f"{given}; {value}"
    headers.add("Cookie", value)


def _set_default(headers: Headers, name: str, value: str) -> None:
    if name not in headers:
        headers.add(name, value)


# -- the blocking client -----------------------------------------------------------------------


class _LoopThread:
    """An event loop on a daemon thread, and a way to run coroutines on it and wait."""

    def __init__(self) -> None:
        self._loop = new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="aioduct-blocking", daemon=True
        )
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        if self._loop.is_closed() or threading.current_thread() is self._thread:
            discard(awaitable)
            if self._loop.is_closed():
                raise ClientClosed("the client is closed")
            raise RuntimeError("a BlockingClient cannot be used from its own loop thread")
        future = asyncio.run_coroutine_threadsafe(_await(awaitable), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def discard(awaitable: Awaitable[object]) -> None:
    """Close a coroutine that will never run, so Python does not warn it was not awaited."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class BlockingClient(HTTPMethods[Response]):
    """The synchronous client: the same options and methods as :class:`Client`.

    It runs the same pipeline as :class:`Client`, on the blocking runtime
    (:mod:`aioduct.runtimes.blocking`): plain sockets in the calling thread, no event loop
    and no thread hop. Thread-safe: any number of threads may share one instance; each
    thread gets its own connection pool (``max_connections`` and the other pool limits
    apply per thread). With ``engine="local"`` requests go to the local engine's workers
    through a private event loop thread instead.
    """

    def __init__(self, **options: Any) -> None:
        self._portal: _LoopThread | None = None
        engine = options.get("engine", "send")
        if choose_engine(engine) != "send":
            self._portal = _LoopThread()
        try:
            self._client = Client(**options)
        except BaseException:
            if self._portal is not None:
                self._portal.stop()
            raise
        self._threads = threading.local()
        # Weak: a thread that ends takes its engine (and pooled sockets) with it.
        self._engines: weakref.WeakSet[Engine] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._closed = False

    @property
    def config(self) -> ClientConfig:
        return self._client.config

    @property
    def cookies(self) -> CookieJar | None:
        """The cookie jar every thread of this client shares (see :attr:`Client.cookies`)."""
        return self._client.cookies

    def _engine(self) -> Engine:
        """This thread's engine on the blocking runtime (made on its first request)."""
        engine: Engine | None = getattr(self._threads, "engine", None)
        if engine is None:
            from .runtimes.blocking import BlockingRuntime

            sender = self._client._engine
            assert isinstance(sender, Engine)
            engine = Engine(
                self._client.config,
                ssl_context=sender._ssl_context,
                redirect_policy=sender._redirect_policy,
                runtime=BlockingRuntime(),
                layers=sender.layers,  # one cookie jar, cache, ... for every thread
                resolver=sender._dns,
                proxies=sender.proxies,  # the environment as it was when the client was built
            )
            with self._lock:
                if self._closed:
                    raise ClientClosed("the client is closed")
                self._engines.add(engine)
            self._threads.engine = engine
        return engine

    def _run(self, method: str, url: URL | str, options: RequestOptions, stream: bool) -> Response:
        if self._portal is not None:
            return self._portal.run(
                self._client._send(method, url, options, self._client._engine, stream=stream)
            )
        from .runtimes.blocking import run_sync

        return run_sync(self._client._send(method, url, options, self._engine(), stream=stream))

    def request(self, method: str, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return self._run(method, url, options, False)

    def migrate_http3(self, local_address: str | None = None) -> int:
        """Like :meth:`Client.migrate_http3`, for this thread's HTTP/3 connections."""
        if self._portal is not None:
            return self._portal.run(self._client.migrate_http3(local_address))
        from .runtimes.blocking import run_sync

        return run_sync(self._engine().migrate_http3(local_address))

    def build_request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Request:
        """The :class:`Request` that ``request()`` would send (see :meth:`send`)."""
        return self._client.build_request(method, url, **options)

    def send(self, request: Request, *, stream: bool = False) -> Response:
        """Send a prepared :class:`Request`; with ``stream=True`` close the response."""
        if self._portal is not None:
            response = self._portal.run(self._client.send(request, stream=stream))
            if stream:
                response._portal = self._portal.run
            return response
        from .runtimes.blocking import run_sync

        if self._client.is_closed:
            raise ClientClosed("the client is closed")
        response = run_sync(self._engine().send(request, stream=stream))
        if stream:
            response._portal = run_sync
        return response

    @contextlib.contextmanager
    def stream(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Iterator[Response]:
        """Like :meth:`Client.stream`; read with ``iter_bytes()``, ``iter_lines()``, ``read()``."""
        response = self._run(method, url, options, True)
        if self._portal is not None:
            response._portal = self._portal.run
        else:
            from .runtimes.blocking import run_sync

            response._portal = run_sync
        try:
            yield response
        finally:
            response.close()

    @contextlib.contextmanager
    def websocket(
        self,
        url: URL | str,
        *,
        subprotocols: list[str] | tuple[str, ...] | None = None,
        headers: HeadersLike | None = None,
        params: QueryParams | None = None,
        timeout: float | Timeout | None = None,
        max_message_size: int | None = 16 * 1024 * 1024,
        close_timeout: float | None = 10.0,
    ) -> Iterator[BlockingWebSocket]:
        """Like :meth:`Client.websocket`, with blocking methods."""
        from .runtimes.blocking import run_sync
        from .websocket import BlockingWebSocket, connect

        if self._client.is_closed:
            raise ClientClosed("the client is closed", method="GET", url=str(url))
        engine: Sender = self._client._engine if self._portal is not None else self._engine()
        ws = run_sync(
            connect(
                self._client,
                engine,
                url,
                subprotocols=subprotocols,
                headers=headers,
                params=params,
                timeout=timeout,
                max_message_size=max_message_size,
                close_timeout=close_timeout,
            )
        )
        with BlockingWebSocket(ws, run_sync) as blocking:
            yield blocking

    def download(
        self,
        url: URL | str,
        path: str | os.PathLike[str],
        *,
        chunks: int = 8,
        progress: Callable[[int, int | None], object] | None = None,
        headers: HeadersLike | None = None,
        resume: bool = True,
    ) -> Download:
        """Like :meth:`Client.download`; the ranges are fetched one after another."""
        from .download import download

        coro = download(
            self._client,
            self._client._engine if self._portal is not None else self._engine(),
            url, path, chunks=chunks, progress=progress, headers=headers, resume=resume,
            parallel=self._portal is not None,
        )  # fmt: skip
        if self._portal is not None:
            return self._portal.run(coro)
        from .runtimes.blocking import run_sync

        return run_sync(coro)

    @contextlib.contextmanager
    def sse(
        self,
        url: URL | str,
        *,
        method: str = "GET",
        reconnect: bool = True,
        max_reconnects: int | None = None,
        retry: float = _SSE_RETRY,
        max_event_size: int = _SSE_MAX_EVENT_SIZE,
        **options: Unpack[RequestOptions],
    ) -> Iterator[BlockingEventSource]:
        """Like :meth:`Client.sse`: ``with client.sse(url) as events: for ev in events``."""
        from .sse import BlockingEventSource

        if self._portal is not None:
            raise TypeError(
                "sse() needs the send engine: a stream of events is read as it arrives, and "
                "the local engine's workers hand back whole responses (use engine='send')"
            )
        from .runtimes.blocking import run_sync

        source = self._client._event_source(
            self._engine(), method, url, options, reconnect, max_reconnects, retry, max_event_size
        )
        run_sync(source.start())
        try:
            yield BlockingEventSource(source, run_sync)
        finally:
            run_sync(source.aclose())

    @property
    def hsts_store(self) -> HSTSStore | None:
        """The client's known HSTS hosts (``None`` with ``hsts=False``)."""
        return self._client.hsts_store

    def well_known(
        self, origin: URL | str, name: str, **options: Unpack[RequestOptions]
    ) -> Response:
        """``GET origin/.well-known/NAME`` (RFC 8615); see :meth:`Client.well_known`."""
        return self.get(well_known_url(origin, name), **options)

    def close(self) -> None:
        with self._lock:
            if not self._closed and self._portal is None:
                close_layers(self._client._layers)
            self._closed = True
            engines = list(self._engines)
            self._engines.clear()
        for engine in engines:
            engine.close()
        if self._portal is not None:
            if not self._client.is_closed:
                self._portal.run(self._client.aclose())
            self._portal.stop()
        else:
            self._client._closed = True

    def __enter__(self) -> BlockingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# -- running -------------------------------------------------------------------------------------


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when installed, asyncio's otherwise."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """``asyncio.run`` on uvloop when installed: the fastest loop for aioduct."""
    with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
        return runner.run(main)
