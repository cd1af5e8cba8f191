"""The worker's lean HTTP/1.1 driver: plain ``http://`` jobs without a coroutine per job.

A local-engine worker used to run each Job as a task through ``Client.request``: build a
Request, walk the async pipeline (deadlines, redirect loop, pool, connection, stream),
and convert the Response into a Result. That costs ~100 µs of CPU per small request, five
times what the wire work needs. This module runs the same exchange as callbacks:

* one :class:`_Conn` (an ``asyncio.Protocol``) per TCP connection is the state machine:
  it writes the request with the project's :class:`~aioduct.protocol.http11.ClientCodec`
  and pulls response events out of it as bytes arrive (``data_received``), with no future,
  task or coroutine frame in between;
* one :class:`_Exchange` per attempt carries the job across redirect hops and the
  stale-connection replay, and builds the :class:`~aioduct.jobs.Result` directly;
* a per-origin LIFO pool of idle connections (the pipeline's rules: ``pool_max_idle_per_host``,
  ``pool_idle_timeout``, readiness checked on checkout) and one lazily re-armed
  ``loop.call_at`` timer per connection for the read and total deadlines.

What stays a coroutine is what is rare: opening a connection (DNS through the shared
:class:`~aioduct.dns.Resolver`, TCP connect with its deadline) and a redirect hop to a
target this driver does not speak (``https://``), which goes through the full pipeline
(``Engine.send`` with ``follow_redirects=False``) while the redirect loop stays here.

The values are the pipeline's: the same errors (class, message, request suffix), the same
redirect rules (:func:`aioduct.redirects.next_request`), the same Timings definitions.
``tests/local/test_fastpath.py`` runs the same Jobs through both and compares the Results.

Scope is decided per job before any byte is sent (:meth:`FastPath.accepts`) and per
config once (:func:`unsupported_reason`); everything else runs through the pipeline.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final

from ..config import ClientConfig
from ..dns import Resolver, literal_address
from ..engine import IDEMPOTENT_METHODS
from ..errors import (
    AioductError,
    BodyTooLarge,
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    ProtocolError,
    ReadError,
    ReadTimeout,
    RemoteProtocolError,
    TooManyRedirects,
    TotalTimeout,
)
from ..headers import Headers
from ..jobs import Job, Result
from ..models import Request, Response, Timings
from ..protocol.http11 import (
    _SEND_IDLE,
    NEED_DATA,
    ClientCodec,
    Data,
    EndOfMessage,
    InformationalResponse,
)
from ..protocol.http11 import Response as Head
from ..redirects import REDIRECT_STATUSES, next_request
from ..runtimes.asyncio import AsyncioRuntime, _set_keepalive
from ..url import URL, Origin

if TYPE_CHECKING:
    from ..client import Client

__all__ = ["MAX_FAST_BODY", "FastPath", "unsupported_reason"]

#: Request bodies up to this size go out with the head in one write, as in the pipeline;
#: larger ones (which the pipeline streams with write deadlines) take the pipeline.
MAX_FAST_BODY: Final = 64 * 1024
#: Methods the driver sends (CONNECT switches protocols; anything exotic takes the pipeline).
_METHODS: Final = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"))
#: Request headers that change framing or the connection's protocol.
_SPECIAL_HEADERS: Final = frozenset(("upgrade", "transfer-encoding", "expect"))

#: ``done(token, result, error)``: an attempt's outcome, exactly one of the two set.
Done = Callable[[Any, Result | None, AioductError | None], None]


def unsupported_reason(config: ClientConfig, concurrency: int) -> str | None:
    """Why the driver cannot run jobs under ``config`` at all (``None``: it can).

    The driver never waits for pool capacity: with at most ``concurrency`` jobs in
    flight and ``max_connections >= concurrency`` an over-full pool always has an idle
    connection to evict, so configurations that could make a job wait for a connection
    keep the pipeline, whose pool implements the waiting.
    """
    if config.https_only:
        return "https_only is set (the driver speaks plain http only)"
    if config.local_address is not None:
        return "local_address is set"
    if config.http2_prior_knowledge:
        return "http2_prior_knowledge is set (the driver speaks HTTP/1.1 only)"
    if config.max_connections is not None and config.max_connections < concurrency:
        return "max_connections is below the worker's concurrency"
    if config.max_connections_per_host is not None:
        return "max_connections_per_host is set"
    return None


#: Request heads kept by :class:`_Codec` (cleared when full: a crawl has many targets).
_HEAD_CACHE_SIZE: Final = 4096
_HeadEntry = tuple[bytes, tuple[Any, ...]]
#: The codec attributes :meth:`ClientCodec.encode_request` sets for a request.
_SEND_STATE: Final = ("_send", "_head_request", "_connect", "_upgrade", "_request_close")


class _Codec(ClientCodec):
    """The codec, with request heads for the default headers serialised once.

    A crawl sends the same few request heads over and over (method, target, Host and the
    client's default headers), and ``encode_request`` validates and renders every one
    (~4 µs). Here a head is produced once by the real ``encode_request`` on a scratch
    codec, which also yields the send state it leaves behind; later requests copy that
    state and reuse the bytes. Correct by construction: the same inputs, the same checks
    already passed, the same state.
    """

    __slots__ = ()

    def encode_default(
        self, cache: dict[tuple[str, str, str], _HeadEntry], method: str, url: URL, headers: Any
    ) -> bytes:
        key = (method, url.target, url.host_header)
        entry = cache.get(key)
        if entry is None:
            scratch = ClientCodec()
            head = scratch.encode_request(method, url.target, headers)
            entry = (head, tuple(getattr(scratch, name) for name in _SEND_STATE))
            if len(cache) >= _HEAD_CACHE_SIZE:
                cache.clear()
            cache[key] = entry
        if self._error is not None or self._send != _SEND_IDLE:  # let the codec say what is wrong
            return self.encode_request(method, url.target, headers)
        self._send, self._head_request, self._connect, self._upgrade, self._request_close = entry[1]
        self._reader = ClientCodec._read_head
        return entry[0]


class _Exchange:
    """One attempt of one job: the request of the current hop and what came back."""

    __slots__ = (
        "body_parts",
        "conn",
        "content",
        "defaults",
        "follow",
        "head",
        "head_at",
        "headers",
        "history",
        "job",
        "method",
        "pool_before",
        "replayed",
        "reused",
        "sent_at",
        "setup",
        "size",
        "started",
        "timeout",
        "token",
        "total_at",
        "url",
    )

    def __init__(self, token: Any, job: Job, url: URL, headers: list[tuple[str, str]]) -> None:
        self.token = token
        self.job = job
        self.url = url
        self.method = job.method
        self.headers = headers
        self.content = job.body
        #: The request has only the default headers and no body: its head is cacheable.
        self.defaults = False
        self.started = perf_counter()
        self.timeout: float | None = None
        self.total_at: float | None = None
        self.follow = True
        self.history: list[str] = []
        self.conn: _Conn | None = None
        self.replayed = False
        self.reused = False
        self.setup: tuple[float | None, float | None] = (None, None)
        self.pool_before = 0.0
        self.sent_at = 0.0
        self.head_at = 0.0
        self.head: Head | None = None
        self.body_parts: list[bytes] = []
        self.size = 0

    def error(self, exc: AioductError) -> AioductError:
        """``exc`` naming this hop's request, as ``Engine.send`` names it."""
        return exc._with_request(self.method, self.url.redacted())


class _Conn(asyncio.Protocol):
    """One keep-alive connection and the exchange it is carrying, driven by callbacks."""

    __slots__ = (
        "closed",
        "codec",
        "deadline",
        "driver",
        "eof",
        "ex",
        "holds_slot",
        "idle_since",
        "key",
        "requests",
        "setup",
        "timer",
        "timer_at",
        "transport",
    )

    def __init__(self, driver: FastPath, key: Origin) -> None:
        self.driver = driver
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.codec = _Codec(
            max_head_bytes=driver.config.max_response_head_bytes,
            max_headers=driver.config.max_response_headers,
        )
        self.ex: _Exchange | None = None
        self.requests = 0
        self.idle_since = 0.0
        self.eof = False
        self.closed = False
        self.holds_slot = True
        self.setup: tuple[float | None, float | None] = (None, None)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.deadline = 0.0

    # -- protocol callbacks --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:  # bytes nobody asked for: the connection cannot be reused
            self.eof = True
            self.driver._forget_idle(self)
            return
        codec = self.codec
        try:
            codec.receive_data(data)
        except ProtocolError as exc:
            self._fail(ex.error(exc))
            return
        self._pump(ex)

    def eof_received(self) -> bool:
        self.eof = True
        ex = self.ex
        if ex is not None:
            self._ended(ex, None)
        elif self.holds_slot:
            self.driver._forget_idle(self)  # closed while idle: free its slot now
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        ex = self.ex
        if ex is not None:
            self._ended(ex, exc)
        elif self.holds_slot:
            self.driver._forget_idle(self)

    def _ended(self, ex: _Exchange, exc: Exception | None) -> None:
        """The server closed (``exc is None``) or reset the connection mid-exchange."""
        codec = self.codec
        started = codec.response_started
        if exc is not None:
            if ex.reused and not started:
                self._fail(StaleConnection(f"reused connection was reset: {exc}"))
            else:
                self._fail(
                    ex.error(ReadError(f"connection failed while reading the response: {exc}"))
                )
            return
        if not started and ex.reused:
            self._fail(StaleConnection("reused connection was closed by the server"))
            return
        try:
            codec.receive_data(b"")
        except ProtocolError as exc2:
            self._fail(ex.error(exc2))
            return
        self._pump(ex)

    # -- the exchange --------------------------------------------------------------------------

    def start(self, ex: _Exchange) -> None:
        """Send ``ex``'s request on this (connected, idle) connection."""
        codec = self.codec
        self.ex = ex
        ex.conn = self
        try:
            if self.requests:
                codec.start_next_cycle()
            self.requests += 1
            ex.reused = self.requests > 1
            ex.setup = self.setup
            if ex.defaults:
                data = codec.encode_default(self.driver._heads, ex.method, ex.url, ex.headers)
            else:
                data = codec.encode_request(ex.method, ex.url.target, ex.headers, ex.content)
        except ProtocolError as exc:
            self._fail(ex.error(exc))
            return
        transport = self.transport
        assert transport is not None
        transport.write(data)
        ex.sent_at = perf_counter()
        if self.ex is ex:  # the write may have failed at once
            self._arm(ex)

    def _arm(self, ex: _Exchange) -> None:
        """Move the read deadline to ``now + read_timeout`` (capped by the total)."""
        driver = self.driver
        read = driver.read_timeout
        total_at = ex.total_at
        if read is None:
            if total_at is None:
                return
            deadline = total_at
        else:
            deadline = driver.loop.time() + read
            if total_at is not None and total_at < deadline:
                deadline = total_at
        self.deadline = deadline
        timer = self.timer
        # One timer per connection, moved only when the deadline comes earlier: deadlines
        # mostly move forward, and a timer that fires early re-arms itself.
        if timer is None or self.timer_at > deadline:
            if timer is not None:
                timer.cancel()
            self.timer = driver.loop.call_at(deadline, self._on_timer)
            self.timer_at = deadline

    def _on_timer(self) -> None:
        self.timer = None
        ex = self.ex
        if ex is None:
            return
        loop = self.driver.loop
        now = loop.time()
        if now < self.deadline:
            self.timer = loop.call_at(self.deadline, self._on_timer)
            self.timer_at = self.deadline
            return
        what = "reading the body" if self.codec.response_started else "waiting for the response"
        if ex.total_at is not None and now >= ex.total_at - 1e-3:
            error: AioductError = TotalTimeout(
                f"request exceeded timeout={ex.timeout:g}s while {what}"
            )
        else:
            error = ReadTimeout(
                f"{what} took longer than read_timeout={self.driver.read_timeout:g}s"
            )
        self._fail(ex.error(error))

    def _pump(self, ex: _Exchange) -> None:
        """Pull every event the received bytes make available."""
        codec = self.codec
        max_size = self.driver.max_body_size
        try:
            while True:
                event: Any = codec.next_event()
                kind = type(event)
                if kind is Data:
                    data: bytes = event.data
                    ex.body_parts.append(data)
                    ex.size += len(data)
                    if max_size is not None and ex.size > max_size:
                        raise BodyTooLarge(f"response body exceeds max_body_size={max_size} bytes")
                elif event is NEED_DATA:
                    if self.eof:  # pragma: no cover - the codec raises at EOF instead
                        raise RemoteProtocolError("server closed the connection mid-response")
                    self._arm(ex)
                    return
                elif kind is Head:
                    ex.head = event
                    ex.head_at = perf_counter()
                    if event.status == 101:
                        self._finished(ex, switched=True)
                        return
                elif kind is EndOfMessage:
                    self._finished(ex)
                    return
                elif kind is not InformationalResponse:  # pragma: no cover
                    raise RemoteProtocolError(f"unexpected {kind.__name__} in the response")
        except AioductError as exc:
            self._fail(ex.error(exc))

    def _finished(self, ex: _Exchange, *, switched: bool = False) -> None:
        self.ex = None
        ex.conn = None
        driver = self.driver
        if switched or not self.codec.reusable:
            driver._discard(self)
        else:
            driver._release(self)
        driver._response(ex)

    def _fail(self, error: AioductError) -> None:
        ex = self.ex
        self.ex = None
        self.driver._discard(self)
        if ex is not None:
            ex.conn = None
            self.driver._failed(ex, error)

    # -- pool hooks ----------------------------------------------------------------------------

    def is_ready(self) -> bool:
        transport = self.transport
        return (
            not self.closed
            and not self.eof
            and transport is not None
            and not transport.is_closing()
        )

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.closed = True
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


class StaleConnection(ReadError):
    """A reused connection died before any response byte: replayed once if idempotent.

    The same name (and so the same Result ``kind``) as the pipeline's
    :class:`aioduct.connection.StaleConnection`.
    """


class FastPath:
    """Runs attempts of eligible jobs on ``loop``; reports each through ``done``.

    ``client`` is the worker's pipeline client: its default headers are the driver's,
    and it carries the hops the driver does not speak (``https://`` redirect targets).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client: Client,
        *,
        worker: int,
        keep_body: bool,
        done: Done,
    ) -> None:
        config = client.config
        self.loop = loop
        self.client = client
        self.config = config
        self.worker = worker
        self.keep_body = keep_body
        self.done = done
        self.read_timeout = config.read_timeout
        self.connect_timeout = config.connect_timeout
        self.max_body_size = config.max_body_size
        self._defaults = client._default_headers
        self._idle: dict[Origin, list[_Conn]] = {}
        self._open_total = 0
        self._max_idle = config.pool_max_idle_per_host
        self._idle_timeout = config.pool_idle_timeout
        self._max_total = config.max_connections
        self._reaper: asyncio.TimerHandle | None = None
        self._resolver = Resolver(AsyncioRuntime(loop))
        self._heads: dict[tuple[str, str, str], _HeadEntry] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: set[_Conn] = set()
        self._closed = False

    # -- scope ---------------------------------------------------------------------------------

    @staticmethod
    def accepts(job: Job, url: URL) -> bool:
        """Whether the driver runs ``job`` (decided before any byte is sent)."""
        if url.scheme != "http" or url.username or url.password:
            return False
        if job.method not in _METHODS:
            return False
        body = job.body
        if body is not None and len(body) > MAX_FAST_BODY:
            return False
        return all(name.lower() not in _SPECIAL_HEADERS for name, _ in job.headers)

    # -- attempts ------------------------------------------------------------------------------

    def run(self, token: Any, job: Job, url: URL) -> None:
        """Start one attempt of ``job``; ``done(token, ...)`` is called exactly once."""
        if job.headers:
            # The pipeline's merge rules (defaults replaced by name) via the client itself.
            try:
                request = self.client.build_request(job.method, url, headers=job.headers)
            except (ValueError, TypeError) as exc:  # JobRunner's report of an unbuildable job
                error = exc if isinstance(exc, AioductError) else InvalidURL(str(exc))
                self.done(token, None, error)
                return
            headers = request.headers.raw()
        else:
            headers = [("Host", url.host_header), *self._defaults]
        loop = self.loop
        ex = _Exchange(token, job, url, headers)
        ex.defaults = not job.headers and job.body is None
        timeout = self.config.timeout if job.timeout is None else job.timeout
        ex.timeout = timeout
        if timeout is not None:
            ex.total_at = loop.time() + timeout
        follow = job.follow_redirects
        ex.follow = self.config.follow_redirects if follow is None else follow
        self._hop(ex)

    def _hop(self, ex: _Exchange) -> None:
        """Send the current request: on a pooled connection, a new one, or the pipeline."""
        ex.head = None
        ex.body_parts = []
        ex.size = 0
        ex.pool_before = perf_counter()
        key = ex.url.origin
        if key.scheme != "http":
            self._spawn(self._pipeline_hop(ex))
            return
        conn = self._checkout(key) if not ex.replayed else None
        if conn is not None:
            conn.start(ex)
            return
        self._open(ex, key)

    def _open(self, ex: _Exchange, key: Origin) -> None:
        if self._max_total is not None and self._open_total >= self._max_total:
            self._evict_oldest_idle()
        self._open_total += 1
        self._spawn(self._connect(ex, key))

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, ex: _Exchange, key: Origin) -> None:
        """DNS and TCP for a new connection, then send ``ex`` on it (``Engine._connect``)."""
        host, port = key.host, key.port
        conn = _Conn(self, key)
        connect = self.connect_timeout
        deadline = ex.total_at
        if connect is not None:
            at = self.loop.time() + connect
            deadline = at if deadline is None or at < deadline else deadline
        started = perf_counter()
        dns_time = None
        try:
            addresses = literal_address(host)
            try:
                if addresses is None:
                    async with asyncio.timeout_at(deadline):
                        addresses, looked_up = await self._resolver.resolve(host, port)
                    if looked_up:
                        dns_time = perf_counter() - started
                tcp_started = perf_counter()
                errors: list[str] = []
                connected = False
                for _family, ip in addresses:
                    try:
                        async with asyncio.timeout_at(deadline):
                            transport, _ = await self.loop.create_connection(lambda: conn, ip, port)
                        connected = True
                        break
                    except OSError as exc:
                        errors.append(f"{ip}: {exc.strerror or exc}")
                if not connected:
                    raise ConnectError(f"cannot connect to {host}:{port} ({'; '.join(errors)})")
            except TimeoutError as exc:
                if isinstance(exc, AioductError):
                    raise
                raise self._connect_timeout(ex, f"connecting to {host}:{port}") from None
        except AioductError as exc:
            self._forget(conn)
            self._failed(ex, ex.error(exc))
            return
        except BaseException:
            self._forget(conn)
            raise
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.config.tcp_keepalive is not None:
                _set_keepalive(sock, self.config.tcp_keepalive)
        conn.setup = (dns_time, perf_counter() - tcp_started)
        if self._closed or conn.closed or conn.eof:
            # The server hung up before the request went out (what the pipeline then
            # reads as EOF), or the driver was closed meanwhile.
            self._forget(conn)
            self._failed(
                ex,
                ex.error(
                    RemoteProtocolError("server closed the connection without sending a response")
                ),
            )
            return
        self._busy.add(conn)
        conn.start(ex)

    def _connect_timeout(self, ex: _Exchange, what: str) -> AioductError:
        if ex.total_at is not None and self.loop.time() >= ex.total_at - 1e-3:
            return TotalTimeout(f"request exceeded timeout={ex.timeout:g}s while {what}")
        return ConnectTimeout(f"{what} took longer than connect_timeout={self.connect_timeout:g}s")

    async def _pipeline_hop(self, ex: _Exchange) -> None:
        """One hop the driver does not speak, through the pipeline (no redirects there)."""
        remaining = ex.timeout
        if ex.total_at is not None:
            remaining = max(0.0, ex.total_at - self.loop.time())
        request = Request(
            ex.method, ex.url, headers=Headers._adopt(list(ex.headers)), content=ex.content
        )
        try:
            response = await self.client._engine.send(
                request, timeout=remaining, follow_redirects=False
            )
        except AioductError as exc:
            self._failed(ex, exc)
            return
        except (ValueError, TypeError) as exc:  # as JobRunner reports a request it cannot build
            self._failed(ex, InvalidURL(str(exc)))
            return
        ex.head = Head(
            response.status, response.reason, response.headers.multi_items(), response.http_version
        )
        ex.head_at = perf_counter()
        ex.sent_at = ex.head_at - (response.timings.ttfb or 0.0)
        ex.body_parts = [response.content]
        ex.size = len(response.content)
        ex.reused = response.timings.pool_wait is not None
        ex.setup = (response.timings.dns, response.timings.connect)
        self._response(ex)

    # -- outcomes ------------------------------------------------------------------------------

    def _response(self, ex: _Exchange) -> None:
        """A whole response arrived: follow it if it redirects, else report it."""
        head = ex.head
        assert head is not None
        status = head.status
        if ex.follow and status in REDIRECT_STATUSES:
            location = None
            for name, value in head.headers:
                if name.lower() == "location":
                    location = value
                    break
            if location is not None:
                self._redirect(ex, head)
                return
        job = ex.job
        conn_reused = ex.reused
        parts = ex.body_parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if conn_reused:
            dns = connect = None
            pool_wait: float | None = ex.sent_at - ex.pool_before
        else:
            dns, connect = ex.setup
            pool_wait = None
        result = Result(
            id=job.id,
            url=job.url,
            final_url=str(ex.url),
            status=status,
            headers=tuple(head.headers),
            body=body if self.keep_body else None,
            http_version=head.http_version,
            timings=Timings(
                dns=dns,
                connect=connect,
                tls=None,
                ttfb=ex.head_at - ex.sent_at,
                total=ex.head_at - ex.started,
                pool_wait=pool_wait,
            ),
            worker=self.worker,
            meta=job.meta,
            reason=head.reason,
            size=ex.size,
        )
        self.done(ex.token, result, None)

    def _redirect(self, ex: _Exchange, head: Head) -> None:
        request = Request(
            ex.method, ex.url, headers=Headers._adopt(list(ex.headers)), content=ex.content
        )
        response = Response(head.status, headers=Headers._adopt(head.headers), request=request)
        try:
            nxt = next_request(
                request, response, https_only=self.config.https_only, referer=self.config.referer
            )
        except AioductError as exc:
            self._failed(ex, exc)  # Engine.send lets redirect errors through unnamed
            return
        history = ex.history
        max_redirects = self.config.max_redirects
        if len(history) >= max_redirects:
            chain = " -> ".join([*history, str(ex.url)])
            self._failed(
                ex,
                TooManyRedirects(
                    f"exceeded max_redirects={max_redirects}: {chain}",
                    history=[],
                    method=ex.method,
                    url=ex.url.redacted(),
                ),
            )
            return
        history.append(str(ex.url))
        ex.method = nxt.method
        ex.url = nxt.url
        ex.defaults = False
        ex.headers = nxt.headers.raw()
        ex.content = nxt.content
        ex.replayed = False
        self._hop(ex)

    def _failed(self, ex: _Exchange, error: AioductError) -> None:
        if (
            type(error) is StaleConnection
            and not ex.replayed
            and ex.method in IDEMPOTENT_METHODS
            and not self._closed
        ):
            ex.replayed = True  # once, on a fresh connection (Engine._send_once's rule)
            self._hop(ex)
            return
        if type(error) is StaleConnection:
            error = ex.error(error)
        self.done(ex.token, None, error)

    # -- the pool ------------------------------------------------------------------------------

    def _checkout(self, key: Origin) -> _Conn | None:
        stack = self._idle.get(key)
        if not stack:
            return None
        timeout = self._idle_timeout
        cutoff = float("-inf") if timeout is None else self.loop.time() - timeout
        while stack:
            conn = stack.pop()
            if conn.idle_since >= cutoff and conn.is_ready():
                if not stack:
                    del self._idle[key]
                self._busy.add(conn)
                return conn
            self._forget(conn)
        del self._idle[key]
        return None

    def _release(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        if self._closed or self._max_idle == 0 or not conn.is_ready():
            self._forget(conn)
            return
        conn.idle_since = self.loop.time()
        stack = self._idle.get(conn.key)
        if stack is None:
            stack = self._idle[conn.key] = []
        stack.append(conn)
        if len(stack) > self._max_idle:
            self._forget(stack.pop(0))
        if self._reaper is None and self._idle_timeout is not None:
            self._reaper = self.loop.call_later(self._reap_interval(), self._reap)

    def _discard(self, conn: _Conn) -> None:
        self._busy.discard(conn)
        self._forget(conn)

    def _forget(self, conn: _Conn) -> None:
        conn.close()
        if conn.holds_slot:
            conn.holds_slot = False
            self._open_total -= 1

    def _forget_idle(self, conn: _Conn) -> None:
        stack = self._idle.get(conn.key)
        if stack is not None and conn in stack:
            stack.remove(conn)
            if not stack:
                del self._idle[conn.key]
        self._forget(conn)

    def _evict_oldest_idle(self) -> None:
        oldest: _Conn | None = None
        for stack in self._idle.values():
            if stack and (oldest is None or stack[0].idle_since < oldest.idle_since):
                oldest = stack[0]
        if oldest is not None:
            self._forget_idle(oldest)

    def _reap_interval(self) -> float:
        assert self._idle_timeout is not None
        return max(0.05, min(self._idle_timeout / 2, 30.0))

    def _reap(self) -> None:
        """Close idle connections past ``pool_idle_timeout`` or closed by the server."""
        self._reaper = None
        assert self._idle_timeout is not None
        cutoff = self.loop.time() - self._idle_timeout
        for key in list(self._idle):
            stack = self._idle[key]
            keep = [c for c in stack if c.idle_since >= cutoff and c.is_ready()]
            for conn in stack:
                if conn not in keep:
                    self._forget(conn)
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]
        if self._idle and not self._closed:
            self._reaper = self.loop.call_later(self._reap_interval(), self._reap)

    @property
    def open_connections(self) -> int:
        """Connections open or being opened (for tests and stats)."""
        return self._open_total

    def idle_connections(self) -> int:
        return sum(len(stack) for stack in self._idle.values())

    def close(self) -> None:
        """Close every connection and cancel connects; attempts in flight never report."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
        for stack in self._idle.values():
            for conn in stack:
                self._forget(conn)
        self._idle.clear()
        for conn in list(self._busy):
            conn.ex = None
            self._forget(conn)
        self._busy.clear()
        for task in list(self._tasks):
            task.cancel()
