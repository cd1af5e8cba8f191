"""The request pipeline, written once for every runtime.

``Engine.send`` takes a built :class:`Request` through: deadlines → redirect loop →
pool checkout (or connect: DNS, TCP, TLS with ALPN) → send on the connection → response
head → body (read now, or handed to the caller as a stream) → pool checkin.

HTTP/1.1 connections carry one exchange at a time and go back to the pool after it;
HTTP/2 connections stay shared in the pool and each request takes one stream slot, which
the stream gives back itself when it ends. The version is the server's choice by ALPN
(``http2=True``), h2c with ``http2_prior_knowledge``, or forced per request
(``version="1.1"``/``"2"``). It talks to the
outside world only through a :class:`~aioduct.runtimes.Runtime`, so the io_uring engine
runs this same code.

The engine binds to the event loop it is first used on: pools hold sockets that belong to
one loop.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from threading import get_ident
from time import perf_counter
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from .altsvc import AltSvcCache, AltSvcLayer
from .auth import with_request_auth
from .bodies import is_replayable
from .bodybuffers import BodyBuffers
from .config import ClientConfig, Timeout
from .connection import HTTP11Connection, NoStreamCapacity, StaleConnection, StreamNotProcessed
from .decompress import decode_body, response_codings
from .dns import Resolver, ResolverCache, literal_address, resolver_from_config
from .errors import (
    AioductError,
    ConnectError,
    InvalidURL,
    LocalProtocolError,
    ProxyError,
    RemoteProtocolError,
    TooManyRedirects,
)
from .eyeballs import connect as connect_first
from .eyeballs import format_address
from .headers import Headers
from .layers import Layer, inline_hooks, new_hop, run_layers
from .models import Request, Response, Timings
from .pool import ConnectionPool, PoolKey
from .proxy import ProxiedOrigin, ProxyRouter, ProxyStep, proxy_router, start_tls_inside
from .redirects import REDIRECT_STATUSES, RedirectPolicy, next_request
from .runtimes import Expired, Runtime, Stream, default_runtime
from .timeouts import Deadlines
from .tls import (
    ALPN_H2,
    ALPN_HTTP11,
    SessionCache,
    SessionKey,
    certificate_covers,
    check_pins,
    check_pins_der,
    create_ssl_context,
    keylog_file,
    system_ca_file,
    tls_error,
    verify_setting,
)
from .upgrade import H1Upgraded, H2Tunnel
from .url import Origin

__all__ = ["Engine"]

#: Methods RFC 9110 §9.2.2 calls idempotent: safe to resend when a reused connection
#: turns out to have been closed before the server saw the request.
IDEMPOTENT_METHODS: Final = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"))
#: A redirect response body larger than this is not drained; its connection is closed.
_DRAIN_LIMIT: Final = 256 * 1024

_UNSET: Final = object()
#: A body up to this size arrives with its head (elapsed is then the time to the head).
_ONE_READ: Final = 16384
#: The codec's HTTP/1.x version as httpx (and users) spell it on a Response.
_HTTP_VERSIONS: Final = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
#: Times a request the server did not process (GOAWAY, REFUSED_STREAM) is sent again.
_MAX_UNPROCESSED_RETRIES: Final = 3
#: Forks of this process so far (counted in each child): an engine bound to a loop in the
#: parent is not bound to anything in a child, whatever the copied loop's state says.
_forks: Final = [0]


def _forked() -> None:
    _forks[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

if TYPE_CHECKING:
    # Imported lazily at runtime: h2 costs ~25 ms to import and HTTP/1.1-only programs
    # (and plain-http crawls) never need it.
    from .http2 import HTTP2Connection
    from .http3 import HTTP3Connection

    Connection: TypeAlias = HTTP11Connection | HTTP2Connection | HTTP3Connection


class Engine:
    """Runs requests for one client: its config, pool and TLS settings."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        redirect_policy: RedirectPolicy | None = None,
        runtime: Runtime | None = None,
        layers: tuple[Layer, ...] = (),
        resolver: Resolver | None = None,
        proxies: ProxyRouter | bool | None = True,
    ) -> None:
        self.config = config
        #: Who resolves names (None: the system resolver); bound per runtime in _make_pool.
        self._dns = resolver or resolver_from_config(
            config.dns_over_https,
            config.dns_over_tls,
            config.verify_certificates and config.verify,
        )
        #: Where requests go through a proxy (``None``: all direct). ``True`` (default):
        #: from the config and, with ``trust_env``, the environment as it is now.
        self.proxies = proxy_router(config) if proxies is True else proxies or None
        self.layers = layers
        #: Where HTTP/1.1 bodies of known length are received (a local-engine worker
        #: puts its shared-memory ring here).
        self.body_buffers: BodyBuffers = BodyBuffers()
        self._ssl_context = ssl_context
        self._redirect_policy = redirect_policy
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The thread that loop ran in when last seen, and the process's fork count then.
        self._bound_to: tuple[int, int] = (0, -1)
        #: A runtime of its own (the blocking one) instead of the running loop's.
        self._fixed_runtime = runtime
        self._runtime: Runtime | None = None
        self._pool: ConnectionPool[Connection] | None = None
        self._resolver: ResolverCache | None = None
        #: TLS sessions to resume, per server and TLS settings (tls_session_cache).
        self._sessions = SessionCache() if config.tls_session_cache else None
        #: HTTP/3 alternatives learned from Alt-Svc (``http3=True``), shared with the layer.
        self._alt_svc: AltSvcCache | None = next(
            (layer.cache for layer in layers if isinstance(layer, AltSvcLayer)), None
        )
        #: QUIC session tickets per (host, port), for resumption and 0-RTT.
        self._quic_tickets: dict[tuple[str, int], Any] = {}
        if config.http3 or config.http3_prior_knowledge:
            from .quic import resolve_backend

            resolve_backend(config.http3_config.backend)  # no QUIC library: say so now
        self._closed = False

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The client's policies around each hop (see :mod:`aioduct.layers`)."""
        return self._layers

    @layers.setter
    def layers(self, layers: tuple[Layer, ...]) -> None:
        self._layers = layers
        #: Their inline hooks, when every one has them (run without the chain).
        self._hooks = inline_hooks(layers)

    # -- binding -------------------------------------------------------------------------------

    def _bind(self) -> tuple[Runtime, ConnectionPool[Connection]]:
        if self._fixed_runtime is not None:
            if self._pool is not None:
                return self._fixed_runtime, self._pool
            if self._closed:
                from .errors import ClientClosed

                raise ClientClosed("the client is closed")
            return self._make_pool(self._fixed_runtime)
        loop = self._loop
        if loop is not None and self._bound_to == (get_ident(), _forks[0]) and loop.is_running():
            # The loop this engine is bound to runs in this thread (of this process), so
            # it is the running loop: one loop runs per thread at a time. Found without
            # get_running_loop(), which on CPython 3.11 makes a getpid() system call,
            # once per request otherwise.
            assert self._runtime is not None and self._pool is not None
            return self._runtime, self._pool
        loop = asyncio.get_running_loop()
        if self._loop is loop:  # the same loop, running in another thread now
            assert self._runtime is not None and self._pool is not None
            self._bound_to = (get_ident(), _forks[0])
            return self._runtime, self._pool
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError(
                "this client is bound to the event loop it was first used on; "
                "create one client per loop (BlockingClient runs its own loop)"
            )
        if self._closed:
            from .errors import ClientClosed

            raise ClientClosed("the client is closed")
        if self._pool is not None:
            # Connections of the closed loop: nothing can use them again.
            self._pool.close()
        self._loop = loop
        self._bound_to = (get_ident(), _forks[0])
        return self._make_pool(default_runtime())

    def _make_pool(self, runtime: Runtime) -> tuple[Runtime, ConnectionPool[Connection]]:
        cfg = self.config
        self._runtime = runtime
        self._resolver = ResolverCache(runtime, self._dns, cfg.resolve)
        self._pool = ConnectionPool(
            runtime,
            max_idle_per_host=cfg.pool_max_idle_per_host,
            idle_timeout=cfg.pool_idle_timeout,
            max_connections=cfg.max_connections,
            max_connections_per_host=cfg.max_connections_per_host,
        )
        return runtime, self._pool

    @property
    def pool(self) -> ConnectionPool[Connection] | None:
        return self._pool

    name = "send"

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.close()
        if self._resolver is not None:
            self._resolver.close()

    async def aclose(self) -> None:
        self.close()

    async def migrate_http3(self, local_address: str | None = None) -> int:
        """Move every pooled HTTP/3 connection to a new local UDP socket (see
        :meth:`HTTP3Connection.migrate <aioduct.http3.HTTP3Connection.migrate>`); the
        number moved."""
        pool = self._pool
        if pool is None:
            return 0
        moved = 0
        for conn in pool.shared_connections():
            migrate = getattr(conn, "migrate", None)
            if migrate is not None and await migrate(local_address):
                moved += 1
        return moved

    # -- the pipeline --------------------------------------------------------------------------

    async def send(
        self,
        request: Request,
        *,
        stream: bool = False,
        timeout: float | object | None = _UNSET,  # noqa: ASYNC109 (a deadline, not a wrapper)
        follow_redirects: bool | None = None,
    ) -> Response:
        """Send ``request`` and return its final response (body read unless ``stream``)."""
        runtime, pool = self._bind()
        cfg = self.config
        if isinstance(timeout, Timeout):  # this request's own deadlines
            total, connect, read, write, pool_wait = timeout.resolve(cfg)
        else:
            total = cfg.timeout if timeout is _UNSET else timeout  # type: ignore[assignment]
            connect, read, write = cfg.connect_timeout, cfg.read_timeout, cfg.write_timeout
            pool_wait = cfg.pool_timeout
        deadlines = Deadlines(
            runtime, total=total, connect=connect, read=read, write=write, pool=pool_wait
        )
        follow = cfg.follow_redirects if follow_redirects is None else follow_redirects
        history: list[Response] = []
        # max_download_speed paces body reads (a layer): the transport streams every
        # body, and a buffered one is read below, through the pacing reader.
        wire_stream = stream or cfg.max_download_speed is not None
        layers, hooks = self._layers, self._hooks
        if request.auth is not None:  # challenge auth (Digest) runs in the chain
            layers, hooks = with_request_auth(layers), None
        while True:
            try:
                if hooks is not None:
                    sent = request
                    for prepare in hooks[0]:
                        sent = prepare(sent)
                    response = await self._send_once(sent, deadlines, pool, stream)
                    for observe in hooks[1]:
                        observe(sent, response)
                    response.request = request  # what prepare() added was for this hop
                elif layers:
                    response = await run_layers(
                        layers,
                        request,
                        lambda r: self._send_once(r, deadlines, pool, wire_stream),
                        new_hop(runtime, deadlines, wire_stream),
                    )
                    request = response.request or request  # a layer may have rewritten it
                else:
                    response = await self._send_once(request, deadlines, pool, stream)
            except AioductError as exc:
                raise exc._with_request(request.method, request.url.redacted()) from exc.__cause__
            if not (follow and response.status in REDIRECT_STATUSES):
                break
            if "location" not in response.headers:
                break
            nxt = next_request(request, response, https_only=cfg.https_only, referer=cfg.referer)
            policy = self._redirect_policy
            if policy is not None and not policy(request.url, nxt.url, response.status, nxt.method):
                break
            if len(history) >= cfg.max_redirects:
                await response.aclose()
                history.append(response)
                chain = " -> ".join(str(r.url) for r in history)
                raise TooManyRedirects(
                    f"exceeded max_redirects={cfg.max_redirects}: {chain}",
                    history=history,
                    method=request.method,
                    url=request.url.redacted(),
                )
            await self._discard_body(response)
            history.append(response)
            request = nxt
        response.history = history
        if not stream and response._body is not None:  # streamed for max_download_speed
            try:
                await response.aread(cfg.max_body_size)
            except AioductError as exc:
                raise exc._with_request(request.method, request.url.redacted()) from None
        if cfg.decompress and response._upgraded is None:
            values = _content_encoding(response.headers._list)
            if values:
                try:
                    self._decode(request.method, response, values, stream)
                except AioductError as exc:
                    await response.aclose()
                    raise exc._with_request(request.method, request.url.redacted()) from None
        return response

    def _decode(self, method: str, response: Response, values: list[str], stream: bool) -> None:
        """Undo the response's content codings: now if its body is read, else as it is.

        Only the final response is decoded: the bodies of redirects followed stay as
        received (urllib3 CVE-2026-21441 decoded them while draining: a bomb behind a
        302), and those of HEAD, 204 and 304 are empty.
        """
        codings = response_codings(method, response.status, values)
        if not codings:
            return
        response._codings = codings
        if not stream or response._content is not None:  # read, or answered by a layer
            assert response._content is not None
            response._content = decode_body(response._content, codings, self.config.max_body_size)

    async def _discard_body(self, response: Response) -> None:
        if response.is_read:
            return
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) <= _DRAIN_LIMIT:
            await response.aread()
        else:
            await response.aclose()

    async def _send_once(
        self,
        request: Request,
        deadlines: Deadlines,
        pool: ConnectionPool[Connection],
        stream: bool,
    ) -> Response:
        url = request.url
        cfg = self.config
        if cfg.https_only and url.scheme != "https":
            raise InvalidURL(f"refusing {url.redacted()!r}: https_only is set")
        version = request.version
        proxies = self.proxies
        key = url.origin if proxies is None else proxies.key(url, version)
        before = perf_counter()
        conn = pool.checkout(key, version)
        reused = conn is not None
        fresh_only = False
        unprocessed = 0
        while True:
            if conn is None:
                multiplex = version != "1.1" and (
                    version in ("2", "3")
                    or (
                        cfg.http2 or cfg.http3 or cfg.http3_prior_knowledge
                        if key.scheme == "https"
                        else cfg.http2_prior_knowledge
                    )
                )
                coalesce = None
                if multiplex and key.scheme == "https" and cfg.connection_coalescing:
                    coalesce = self._coalesce
                conn, reused = await pool.acquire(
                    key,
                    self._connect,
                    deadlines,
                    self._pool_deadline(deadlines),
                    reuse=not fresh_only,
                    version=version,
                    multiplex=multiplex,
                    coalesce=coalesce,
                )
            pool_wait = perf_counter() - before if reused else None
            if conn.multiplexed:
                try:
                    return await self._exchange_h2(
                        conn, request, deadlines, stream, reused, pool_wait
                    )
                except StreamNotProcessed:
                    # Not processed (RFC 9113 §8.7): safe to send again, whatever the method.
                    if not is_replayable(request.stream) or unprocessed >= _MAX_UNPROCESSED_RETRIES:
                        raise
                except NoStreamCapacity:
                    if unprocessed >= _MAX_UNPROCESSED_RETRIES:
                        raise RemoteProtocolError(
                            "the server kept lowering its HTTP/2 stream limit"
                        ) from None
                unprocessed += 1  # another shared connection may take it, or a new one
                before = perf_counter()
                conn = pool.checkout(key, version)
                reused = conn is not None
                continue
            if request.protocol is not None:
                pool.release(conn)
                raise LocalProtocolError(
                    f"protocol={request.protocol!r} needs HTTP/2 (extended CONNECT), "
                    f"but {key.host}:{key.port} speaks HTTP/1.1 on this connection"
                )
            try:
                head, sent_at = await conn.send(request, deadlines)
            except StaleConnection:
                pool.discard(conn)
                replayable = is_replayable(request.stream) and request.method in IDEMPOTENT_METHODS
                if fresh_only or not replayable:
                    raise
                # The server closed the idle connection before it saw the request: resend
                # once, on a new connection.
                conn, fresh_only, before = None, True, perf_counter()
                continue
            except BaseException:
                pool.discard(conn)
                raise
            if head.status != 417 or not conn.body_withheld:
                break
            # 417 to "Expect: 100-continue" before the body went: send it again without
            # the expectation (RFC 9110 §10.1.1), on a new connection.
            pool.discard(conn)
            request = _without_expect(request)
            conn, before = None, perf_counter()
        head_at = perf_counter()
        if reused:
            dns = connect = tls = None
            address = conn.setup_timings[3]
        else:
            dns, connect, tls, address = conn.setup_timings
            if conn.session_key is not None:
                # The first response came after any TLS 1.3 ticket the server sends
                # right after the handshake: now the session is worth keeping.
                self._save_session(conn.session_key, conn.stream)
                conn.session_key = None
        response = Response._received(
            head.status,
            head.reason,
            head.headers,
            _HTTP_VERSIONS[head.http_version],
            request,
            (dns, connect, tls, head_at - sent_at, head_at - deadlines.started, pool_wait, address),
        )
        if head.status == 101:
            # The connection now speaks another protocol and leaves the pool for good:
            # response.upgrade() hands it over.
            pool.detach(conn)
            raw, early = conn.detach()
            response._upgraded = H1Upgraded(raw, early)
            response._content = b""
            return response
        if stream:
            response._body = _StreamingBody(conn, pool, deadlines)
            return response
        max_size = cfg.max_body_size
        try:
            content = conn.buffered_body(max_size)
            if content is None:
                content = await conn.read_body(deadlines, max_size)
                response._trailers = conn.trailers
                # (A body that came with the head ends at the head: elapsed = total.)
                response._elapsed = perf_counter() - deadlines.started
            response._content = content
        except BaseException:
            pool.discard(conn)
            raise
        if conn.reusable:
            pool.release(conn)
        else:
            pool.discard(conn)
        return response

    async def _exchange_h2(
        self,
        conn: HTTP2Connection | HTTP3Connection,
        request: Request,
        deadlines: Deadlines,
        stream: bool,
        reused: bool,
        pool_wait: float | None,
    ) -> Response:
        """One request as a stream of a shared HTTP/2 connection."""
        collect = None
        if not stream and request.protocol is None:
            limit = self.config.max_body_size
            collect = -1 if limit is None else limit
        exchange, head, sent_at = await conn.send(
            request, deadlines, request.protocol, collect=collect
        )
        head_at = exchange.head_at
        if len(head.headers) > self.config.max_response_headers:
            exchange.abort()
            raise RemoteProtocolError(
                f"response has {len(head.headers)} header fields, more than "
                f"max_response_headers={self.config.max_response_headers}"
            )
        dns, connect, tls, address = conn.setup_timings
        if reused:
            dns = connect = tls = None
        response = Response(
            head.status,
            headers=Headers._adopt(head.headers),
            http_version=conn.http_version,
            request=request,
            timings=Timings(
                dns=dns,
                connect=connect,
                tls=tls,
                ttfb=head_at - sent_at,
                total=head_at - deadlines.started,
                pool_wait=pool_wait,
                address=address,
            ),
        )
        if request.protocol is not None and 200 <= head.status < 300:
            # Extended CONNECT (RFC 8441): the stream is now the tunnel.
            runtime = self._runtime
            assert runtime is not None
            exchange.deadlines = Deadlines(
                runtime, total=None, connect=None, read=None, write=self.config.write_timeout
            )
            response._upgraded = H2Tunnel(exchange)
            response._content = b""
            return response
        if stream:
            response._body = exchange
            return response
        content = response._content = await exchange.read_body(self.config.max_body_size)
        response._trailers = exchange.trailers
        if len(content) > _ONE_READ:
            response._elapsed = perf_counter() - deadlines.started
        return response

    async def _coalesce(self, key: PoolKey) -> Connection | None:
        """A shared HTTP/2 connection to another host that may serve ``key`` too.

        RFC 9113 §9.1.1: the connection's certificate must cover ``key.host`` and the
        host must resolve to the address the connection is connected to.
        """
        pool, resolver = self._pool, self._resolver
        assert pool is not None and resolver is not None
        from .http2 import HTTP2Connection

        candidates = [
            conn
            for conn in pool.shared_connections()
            if isinstance(conn, HTTP2Connection)
            and type(conn.key) is Origin
            and conn.key.scheme == "https"
            and conn.key.port == key.port
            and key not in conn.aliases
            and conn.key != key
            and conn.has_capacity()
            and certificate_covers(conn.stream.ssl_object, key.host)
        ]
        if not candidates or type(key) is not Origin:
            return None
        literal = literal_address(key.host)
        if literal is None:
            try:
                targets, _ = await resolver.resolve(key.host, key.port)
            except AioductError:
                return None  # connecting reports the error
            ips = {target[1] for target in targets}
        else:
            ips = {ip for _family, ip in literal}
        pins = self.config.pinned_sha256
        for conn in candidates:
            peer = conn.stream.peer_address
            if peer is not None and peer[0] in ips and conn.has_capacity():
                if pins:
                    # The connection passed the pins at its handshake; checked again so
                    # that no path hands out an unpinned connection.
                    try:
                        check_pins(conn.stream.ssl_object, pins, key.host, key.port)
                    except AioductError:
                        continue
                pool.add_alias(conn, key)
                conn.in_use += 1
                return conn
        return None

    def _pool_deadline(self, deadlines: Deadlines) -> float | None:
        """How long to wait for a free connection: ``pool_timeout``, within the total."""
        pool_timeout = deadlines.pool
        if pool_timeout is None:
            return deadlines.total_at
        deadline = deadlines.now() + pool_timeout
        total_at = deadlines.total_at
        return deadline if total_at is None or deadline < total_at else total_at

    async def _connect(
        self, key: PoolKey, deadlines: Deadlines, version: str | None = None
    ) -> Connection:
        """Open a connection for ``key``: DNS, TCP, then TLS for https (timed each)."""
        runtime = self._runtime
        assert runtime is not None and self._resolver is not None
        cfg = self.config
        host, port = key.host, key.port
        step = None
        if type(key) is ProxiedOrigin:
            # DNS and TCP to the proxy; its handshake runs after TCP, before TLS.
            step = ProxyStep(key, cfg)
            host, port = step.proxy.host, step.proxy.port
        deadline = deadlines.for_connect()
        started = perf_counter()
        dns_time = tls_time = None
        literal = literal_address(host)
        try:
            if literal is None:
                if deadline is None or not runtime.background:
                    # (getaddrinfo in the calling thread cannot be interrupted)
                    addresses, looked_up = await self._resolver.resolve(host, port, deadline)
                else:
                    async with asyncio.timeout_at(deadline):
                        addresses, looked_up = await self._resolver.resolve(host, port, deadline)
                if looked_up:
                    dns_time = perf_counter() - started
            else:
                addresses = [(family, ip, port) for family, ip in literal]
            if key.scheme == "https" and version != "1.1" and version != "2" and step is None:
                h3conn = await self._connect_h3(key, addresses, deadlines, version)
                if h3conn is not None:
                    h3conn.setup_timings = (dns_time, *h3conn.setup_timings[1:])
                    return h3conn
            tcp_started = perf_counter()
            stream, target = await connect_first(
                runtime,
                addresses,
                delay=cfg.happy_eyeballs_delay,
                deadline=deadline,
                local_address=cfg.local_address,
                keepalive=cfg.tcp_keepalive,
                host=f"{host}:{port}",
            )
            address = format_address(target[1], target[2])
            if step is not None:  # TLS to an https proxy, then CONNECT or SOCKS
                stream = await step.open(
                    stream, runtime, self._resolver, deadline, self._proxy_tls_context(step)
                )
                host, port = key.host, key.port
            connect_time = perf_counter() - tcp_started
            session_key = None
            if key.scheme == "https":
                tls_started = perf_counter()
                offer_h2 = version == "2" or (cfg.http2 and version != "1.1")
                context = self._ssl_context or create_ssl_context(
                    verify_setting(cfg.verify_certificates and cfg.verify, trust_env=cfg.trust_env),
                    cfg.cert,
                    ALPN_H2 if offer_h2 else ALPN_HTTP11,
                    cfg.min_tls_version,
                    cfg.max_tls_version,
                    keylog_file(cfg.trust_env),
                )
                sessions = self._sessions
                session = None
                if sessions is not None:
                    session_key = SessionKey(context, host, port)
                    session = sessions.get(session_key)
                start_tls = runtime.start_tls if stream.ssl_object is None else start_tls_inside
                try:
                    stream = await start_tls(
                        stream, context, host, deadline=deadline, session=session
                    )
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    versions = (cfg.min_tls_version, cfg.max_tls_version)
                    raise tls_error(exc, host, port, versions) from None
                except OSError as exc:
                    raise ConnectError(
                        f"connection to {host}:{port} failed during the TLS handshake: {exc}"
                    ) from None
                tls_time = perf_counter() - tls_started
                ssl_object = stream.ssl_object
                if cfg.pinned_sha256:
                    try:
                        check_pins(ssl_object, cfg.pinned_sha256, host, port)
                    except AioductError:
                        stream.close()
                        raise
                if session is not None and ssl_object is not None and not ssl_object.session_reused:
                    assert sessions is not None and session_key is not None
                    sessions.discard(session_key, session)  # declined: keep the next one
                alpn = stream.alpn_protocol
                if alpn not in (None, "http/1.1", "h2"):
                    stream.close()
                    raise RemoteProtocolError(f"server selected unsupported protocol {alpn!r}")
                if version == "2" and alpn != "h2":
                    stream.close()
                    raise RemoteProtocolError(
                        f"version='2' was requested but {host}:{port} does not offer HTTP/2 "
                        f"(ALPN chose {alpn or 'nothing'})"
                    )
                h2 = alpn == "h2"
            else:
                h2 = version == "2" or (version is None and cfg.http2_prior_knowledge)
            if h2:
                from .http2 import HTTP2Connection

                h2conn = HTTP2Connection(stream, key, runtime, cfg.http2_config)
                h2conn.expect_timeout = cfg.expect_continue_timeout
                try:
                    await h2conn.start(deadline)
                except RemoteProtocolError as exc:
                    if key.scheme == "https":
                        raise
                    raise RemoteProtocolError(
                        f"{host}:{port} did not answer the HTTP/2 connection preface "
                        f"({exc}); does it speak h2c (http2_prior_knowledge) on this port?"
                    ) from None
                except AioductError as exc:
                    raise ConnectError(
                        f"HTTP/2 connection to {host}:{port} failed during setup: {exc}"
                    ) from None
                h2conn.setup_timings = (dns_time, connect_time, tls_time, address)
                if session_key is not None:
                    # The server's SETTINGS came after any TLS 1.3 ticket it sends.
                    self._save_session(session_key, stream)
                return h2conn
        except (Expired, TimeoutError) as exc:
            if isinstance(exc, AioductError):
                raise
            raise deadlines.error("connect", f"connecting to {host}:{port}") from None
        except ConnectError as exc:
            if step is None or step.connected or isinstance(exc, ProxyError):
                raise
            raise step.failed_to_reach(exc) from None
        conn = HTTP11Connection(
            stream,
            key,
            max_head_bytes=cfg.max_response_head_bytes,
            max_headers=cfg.max_response_headers,
            expect_timeout=cfg.expect_continue_timeout,
        )
        if step is not None and step.forward is not None:
            conn.forward = step.forward
        conn.body_buffers = self.body_buffers
        conn.setup_timings = (dns_time, connect_time, tls_time, address)
        conn.session_key = session_key
        return conn

    def _proxy_tls_context(self, step: ProxyStep) -> ssl.SSLContext | None:
        """The TLS settings for an ``https://`` proxy: the client's trust, HTTP/1.1."""
        if step.proxy.scheme != "https":
            return None
        cfg = self.config
        return create_ssl_context(
            verify_setting(cfg.verify_certificates and cfg.verify, trust_env=cfg.trust_env),
            None,
            ALPN_HTTP11,
        )

    async def _connect_h3(
        self,
        key: PoolKey,
        addresses: list[tuple[int, str, int]],
        deadlines: Deadlines,
        version: str | None,
    ) -> HTTP3Connection | None:
        """An HTTP/3 connection for ``key`` when one is wanted, else ``None`` (use TCP).

        Prior knowledge (or ``version="3"``) connects to the origin's own address and
        fails like any connect. With ``http3=True`` and an Alt-Svc alternative known,
        QUIC gets ``http3_config.race_delay`` to finish its handshake; if it fails or
        is slower, the alternative is marked broken and the request goes over TCP.
        """
        cfg = self.config
        runtime = self._runtime
        assert runtime is not None
        if cfg.max_tls_version == "1.2":  # QUIC is TLS 1.3 only
            if version == "3" or cfg.http3_prior_knowledge:
                raise ConnectError(
                    f"cannot use HTTP/3 with {key.host}:{key.port}: QUIC always runs TLS "
                    "1.3 and max_tls_version='1.2' rules it out"
                )
            return None
        target: tuple[str, int] | None
        if version == "3" or cfg.http3_prior_knowledge:
            target, racing = (key.host, key.port), False
        elif cfg.http3 and self._alt_svc is not None:
            target = self._alt_svc.lookup((key.scheme, key.host, key.port), runtime.now())
            racing = True
            if target is None:
                return None
        else:
            return None
        deadline = deadlines.for_connect()
        if racing:
            soon = runtime.now() + cfg.http3_config.race_delay
            deadline = soon if deadline is None else min(deadline, soon)
        try:
            return await self._open_h3(key, target, addresses, deadline)
        except (AioductError, Expired, OSError) as exc:
            if not racing:
                if isinstance(exc, Expired):
                    raise deadlines.error(
                        "connect", f"connecting to {key.host}:{key.port} over QUIC"
                    ) from None
                if isinstance(exc, AioductError):
                    raise
                raise ConnectError(
                    f"cannot connect to {key.host}:{key.port} over QUIC: {exc}"
                ) from None
            assert self._alt_svc is not None
            self._alt_svc.mark_broken(target, runtime.now())
            return None

    async def _open_h3(
        self,
        key: PoolKey,
        target: tuple[str, int],
        addresses: list[tuple[int, str, int]],
        deadline: float | None,
    ) -> HTTP3Connection:
        from .http3 import HTTP3Connection, quic_configuration

        cfg = self.config
        runtime = self._runtime
        assert runtime is not None and self._resolver is not None
        if self._ssl_context is not None:
            raise ConnectError(
                "HTTP/3 runs QUIC's own TLS, which cannot use an ssl.SSLContext: pass "
                "verify='path/to/ca.pem' (or verify=True/False) instead of an SSLContext"
            )
        host, port = target
        started = perf_counter()
        if host != key.host:
            found = literal_address(host)
            addresses = (
                [(family, ip, port) for family, ip in found]
                if found is not None
                else (await self._resolver.resolve(host, port))[0]
            )
        elif port != key.port:  # an alternative on another port of the same host
            addresses = [(family, ip, port) for family, ip, _port in addresses]
        pins = cfg.pinned_sha256
        verify = verify_setting(cfg.verify_certificates and cfg.verify, trust_env=cfg.trust_env)
        if verify is True:
            import certifi

            cafile: str | None = certifi.where()
        elif verify == "system":
            cafile = system_ca_file()
        else:
            cafile = verify if isinstance(verify, str) else None
        ticket_key = (key.host, key.port)
        tickets = self._quic_tickets
        quic_config = quic_configuration(
            cfg.http3_config,
            key.host,
            verify=bool(verify),
            cafile=cafile,
            # With pins, every QUIC handshake is a full one: QUIC tickets do not
            # keep the server's certificate, and the pin needs it.
            session_ticket=None if pins else tickets.get(ticket_key),
        )

        def keep_ticket(ticket: Any) -> None:
            if len(tickets) >= 1024 and ticket_key not in tickets:
                tickets.pop(next(iter(tickets)))
            tickets[ticket_key] = ticket

        errors = []
        for _family, ip, ip_port in addresses:
            try:
                udp = await runtime.open_udp(ip, ip_port, local_address=cfg.local_address)
            except OSError as exc:
                errors.append(f"{ip}: {exc.strerror or exc}")
                continue
            conn = HTTP3Connection(
                udp,
                key,
                runtime,
                cfg.http3_config,
                quic_config,
                early_data=cfg.early_data and not pins,
                on_ticket=keep_ticket,
            )
            conn.expect_timeout = cfg.expect_continue_timeout
            try:
                await conn.start(deadline)
            except ConnectError as exc:  # e.g. ICMP port unreachable: the next address
                conn.close()
                errors.append(f"{ip}: {exc}")
                continue
            except BaseException:
                conn.close()
                raise
            if pins:
                try:
                    check_pins_der(conn.peer_certificate_der(), pins, key.host, key.port)
                except AioductError:
                    conn.close()
                    raise
            conn.setup_timings = (None, None, perf_counter() - started, format_address(ip, ip_port))
            if self._alt_svc is not None:
                self._alt_svc.mark_working(target)
            return conn
        raise ConnectError(f"cannot connect to {host}:{port} over QUIC ({'; '.join(errors)})")

    def _save_session(self, key: SessionKey, stream: Stream) -> None:
        """Keep the TLS session of a connection that has heard from its server, if the
        cache wants one (fetching it costs a copy: see :class:`SessionCache`)."""
        sessions = self._sessions
        ssl_object = stream.ssl_object
        if sessions is not None and ssl_object is not None and sessions.wants(key):
            sessions.save(key, ssl_object.session)


def _without_expect(request: Request) -> Request:
    headers = Headers([(n, v) for n, v in request.headers.multi_items() if n.lower() != "expect"])
    return request.copy_with(headers=headers, expect_continue=False)


def _content_encoding(fields: list[tuple[str, str]]) -> list[str] | None:
    """The ``Content-Encoding`` values of a response head, looked up on every response:
    names of another length are skipped without lower-casing them (Headers.get_list
    would build the head's index, three times the cost)."""
    values = None
    for name, value in fields:
        if len(name) == 16 and name.lower() == "content-encoding":
            if values is None:
                values = [value]
            else:
                values.append(value)
    return values


class _StreamingBody:
    """The body of a streamed response, reading from a checked-out connection."""

    __slots__ = ("_conn", "_pool", "deadlines", "trailers")

    def __init__(
        self, conn: HTTP11Connection, pool: ConnectionPool[Connection], deadlines: Deadlines
    ):
        self._conn: HTTP11Connection | None = conn
        self._pool = pool
        self.deadlines = deadlines
        #: The trailer fields, once the body has ended.
        self.trailers: list[tuple[str, str]] | None = None

    async def read_chunk(self) -> bytes | None:
        conn = self._conn
        if conn is None:
            return None
        try:
            chunk = await conn.next_chunk(self.deadlines)
        except BaseException:
            self._conn = None
            self._pool.discard(conn)
            raise
        if chunk is None:
            self._conn = None
            self.trailers = conn.trailers
            if conn.reusable:
                self._pool.release(conn)
            else:
                self._pool.discard(conn)
        return chunk

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.discard(conn)
