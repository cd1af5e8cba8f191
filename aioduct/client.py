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
import ssl
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Coroutine, Iterator
from typing import Any, Generic, Protocol, TypedDict, TypeVar, Unpack

import msgspec

from . import __version__
from .auth import AuthTypes, resolve_auth
from .config import ClientConfig, check_option_names
from .engine import _UNSET, Engine
from .errors import ClientClosed
from .headers import Headers, HeadersLike
from .models import Request, Response
from .redirects import RedirectPolicy
from .url import URL, QueryParams, encode_params
from .validation import check_request

__all__ = ["BlockingClient", "Client", "RequestOptions", "run"]

R = TypeVar("R")
T = TypeVar("T")

Content = bytes | bytearray | memoryview | str | AsyncIterable[bytes]


class RequestOptions(TypedDict, total=False):
    """Keyword arguments every request method accepts."""

    params: QueryParams | None
    headers: HeadersLike | None
    content: Content | None
    data: dict[str, Any] | list[tuple[str, Any]] | None
    json: Any
    auth: AuthTypes | None
    timeout: float | None
    follow_redirects: bool | None
    version: str | None
    protocol: str | None


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
    (or ``verify=`` an ``SSLContext``) and ``redirect_policy``.

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
        engine: str = "send",
        workers: int | None = None,
        **options: Any,
    ) -> None:
        verify = options.get("verify")
        if isinstance(verify, ssl.SSLContext):
            ssl_context = options.pop("verify")
        check_option_names(options)
        if config is None:
            config = ClientConfig(**options)
        elif options:
            config = config.replace(**options)
        self.config = config
        self._auth = resolve_auth(auth)
        self._engine: Sender
        if choose_engine(engine) == "local":
            if ssl_context is not None or redirect_policy is not None:
                given = "ssl_context" if ssl_context is not None else "redirect_policy"
                raise TypeError(
                    f"{given} is a Python object, and local-engine workers are separate "
                    "processes that receive the configuration as data; use the send engine "
                    "for it (or verify='path/to/ca.pem' instead of an SSLContext)"
                )
            from .local.sender import LocalSender

            self._engine = LocalSender(config, workers=workers)
        else:
            if workers is not None:
                raise TypeError("workers= applies to engine='local' (or 'auto') only")
            self._engine = Engine(config, ssl_context=ssl_context, redirect_policy=redirect_policy)
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
        configured = Headers(config.headers)
        for name in configured:
            defaults = [d for d in defaults if d[0].lower() != name.lower()]
        self._default_headers = defaults + configured.multi_items()
        self._closed = False

    # -- building requests -----------------------------------------------------------------------

    def build_request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Request:
        """The :class:`Request` that ``request()`` would send."""
        method = method.upper()
        if isinstance(url, str) and self._base_url is not None and "://" not in url:
            # Like httpx: the base URL's path is a prefix, even for "/absolute" paths.
            target = self._base_url.join(url.lstrip("/"))
        else:
            target = URL(url)
        auth_from_url = None
        if target.username or target.password:
            auth_from_url = resolve_auth((target.username, target.password))
            target = target.copy_with(username="", password="")
        headers = Headers._adopt([("Host", target.host_header), *self._default_headers])
        if not options:  # the common case: nothing per-request to merge
            default_auth = auth_from_url or self._auth
            if default_auth is None:
                return Request._prechecked(method, target, headers)
            default_auth.apply(headers)
            return Request(method, target, headers=headers)
        params = options.get("params")
        if params:
            target = target.with_params(params)
        extra = options.get("headers")
        if extra:
            headers.update(extra)
        content, stream = self._body(options, headers)
        auth = resolve_auth(options.get("auth")) or auth_from_url or self._auth
        if auth is not None:
            auth.apply(headers)
        return Request(
            method,
            target,
            headers=headers,
            content=content,
            stream=stream,
            version=options.get("version"),
            protocol=options.get("protocol"),
        )

    @staticmethod
    def _body(
        options: RequestOptions, headers: Headers
    ) -> tuple[bytes | None, AsyncIterable[bytes] | None]:
        given = [k for k in ("content", "data", "json") if options.get(k) is not None]
        if len(given) > 1:
            raise TypeError(f"pass only one of content=, data= or json= (got {', '.join(given)})")
        if not given:
            return None, None
        kind = given[0]
        if kind == "json":
            _set_default(headers, "Content-Type", "application/json")
            return _JSON_ENCODER.encode(options["json"]), None
        if kind == "data":
            _set_default(headers, "Content-Type", "application/x-www-form-urlencoded")
            return encode_params(options["data"]).encode("ascii"), None  # type: ignore[arg-type]
        content = options["content"]
        if isinstance(content, bytes):
            return content, None
        if isinstance(content, bytearray | memoryview):
            return bytes(content), None
        if isinstance(content, str):
            _set_default(headers, "Content-Type", "text/plain; charset=utf-8")
            return content.encode(), None
        if isinstance(content, AsyncIterable):
            return None, content
        kind_name = type(content).__name__
        raise TypeError(
            f"content= must be bytes, str or an async iterable of bytes, not {kind_name}"
        )

    # -- sending ---------------------------------------------------------------------------------

    async def request(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Response:
        """Send a request and return the response with its body read."""
        if self._closed:
            raise ClientClosed("the client is closed")
        request = self.build_request(method, url, **options)
        if not options:
            return await self._engine.send(request)
        return await self._engine.send(
            request,
            timeout=options.get("timeout", _UNSET),
            follow_redirects=options.get("follow_redirects"),
        )

    async def _send(
        self, method: str, url: URL | str, options: RequestOptions, *, stream: bool
    ) -> Response:
        if self._closed:
            raise ClientClosed("the client is closed")
        request = self.build_request(method, url, **options)
        return await self._engine.send(
            request,
            stream=stream,
            timeout=options.get("timeout", _UNSET),
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
        response = await self._send(method, url, options, stream=True)
        try:
            yield response
        finally:
            await response.aclose()

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
        """Close pooled connections (local engine: stop its workers).

        In-flight requests of the send engine finish on their own connections.
        """
        self._closed = True
        await self._engine.aclose()

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

    Thread-safe: any number of threads may share one instance; their requests run
    concurrently on the client's private event loop thread.
    """

    def __init__(self, **options: Any) -> None:
        self._portal = _LoopThread()
        try:
            self._client = Client(**options)
        except BaseException:
            self._portal.stop()
            raise

    @property
    def config(self) -> ClientConfig:
        return self._client.config

    def request(self, method: str, url: URL | str, **options: Unpack[RequestOptions]) -> Response:
        return self._portal.run(self._client.request(method, url, **options))

    @contextlib.contextmanager
    def stream(
        self, method: str, url: URL | str, **options: Unpack[RequestOptions]
    ) -> Iterator[Response]:
        """Like :meth:`Client.stream`; read with ``iter_bytes()``, ``iter_lines()``, ``read()``."""
        response = self._portal.run(self._client._send(method, url, options, stream=True))
        response._portal = self._portal.run
        try:
            yield response
        finally:
            response.close()

    def close(self) -> None:
        if not self._client.is_closed:
            self._portal.run(self._client.aclose())
        self._portal.stop()

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
