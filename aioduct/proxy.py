"""Proxies: which one a request takes, and the step that opens a connection through it.

What a client is configured with (``proxy=``, ``proxies=``, or -- with ``trust_env`` --
``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY``) becomes one
:class:`ProxyRouter` when the client is built. For each request it gives the pool key:

* no proxy (or NO_PROXY matched): the origin itself, as without proxies;
* a plain ``http://`` URL through an HTTP(S) proxy: a *forward* key, the proxy itself
  (requests go in absolute form, ``Proxy-Authorization`` on each), shared by every
  ``http://`` origin through that proxy -- the proxy sees those requests anyway;
* anything else (``https://`` through an HTTP(S) proxy: a ``CONNECT`` tunnel; every
  request through SOCKS): a *tunnel* key, the origin **and** the proxy, credentials
  included, so a tunnel is never reused for another origin, nor a connection opened with
  one proxy or set of credentials for another (curl CVE-2026-3784).

:class:`ProxyStep` is what :meth:`aioduct.engine.Engine._connect` runs between TCP
connect (to the proxy) and TLS (to the origin): TLS to an ``https://`` proxy, then the
sans-I/O handshake of :mod:`aioduct.protocol.connect` or :mod:`aioduct.protocol.socks`
driven over the runtime's stream -- the same code on asyncio, io_uring workers and the
blocking runtime. TLS to an origin inside a TLS connection to an ``https://`` proxy runs
in :class:`NestedTLSStream`, a runtime-independent stream over another stream.

``Proxy-Authorization`` is only ever sent to the proxy: on ``CONNECT``, or on requests
over a forward connection, added by the connection itself; it is never put in a
request's headers, so no redirect, layer or tunnel can carry it to an origin.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple
from urllib.parse import unquote, urlsplit

from . import __version__
from .errors import AioductError, ConnectError, ProxyError
from .noproxy import NoProxy
from .protocol.connect import ConnectHandshake
from .protocol.socks import Socks4Handshake, Socks5Handshake
from .protocol.tls import MAX_RECORD_PLAINTEXT, TLSLayer
from .runtimes import Expired, Runtime, Stream
from .url import URL, Origin

if TYPE_CHECKING:
    from .config import ClientConfig
    from .dns import ResolverCache

__all__ = [
    "PROXY_SCHEMES",
    "NestedTLSStream",
    "NoProxy",
    "ProxiedOrigin",
    "Proxy",
    "ProxyRouter",
    "ProxyStep",
    "proxy_router",
]

#: Proxy URL schemes and their default ports.
PROXY_SCHEMES: Final = {
    "http": 80,
    "https": 443,
    "socks5": 1080,
    "socks5h": 1080,
    "socks4": 1080,
    "socks4a": 1080,
}
#: Origins whose pool key a router remembers (then it starts over).
_KEY_CACHE_SIZE: Final = 4096
#: Keys of ``proxies=``.
_PROXIES_KEYS: Final = ("http", "https", "all", "no_proxy")


class Proxy(NamedTuple):
    """A parsed proxy URL. Equal (and pooled together) only with the same credentials."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str, *, what: str = "proxy") -> Proxy:
        """Parse ``scheme://[user:password@]host[:port]``; a URL without a scheme is
        taken as ``http://`` (as curl does). Raises ``ValueError`` saying what is wrong."""
        text = url.strip()
        if "://" not in text:
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{what} {_redact(url)!r} is not a valid proxy URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in PROXY_SCHEMES:
            raise ValueError(
                f"{what} {_redact(url)!r} has the unsupported scheme {scheme!r}; use one of "
                + ", ".join(f"{s}://" for s in PROXY_SCHEMES)
            )
        host = parts.hostname
        if not host:
            raise ValueError(f"{what} {_redact(url)!r} names no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                f"{what} {_redact(url)!r} has a path, query or fragment; a proxy URL is "
                "scheme://[user:password@]host[:port]"
            )
        try:
            host = host.encode("idna").decode("ascii") if not host.isascii() else host
        except UnicodeError:
            raise ValueError(f"{what} {_redact(url)!r} has an invalid host name") from None
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(scheme, host.lower(), port or PROXY_SCHEMES[scheme], username, password)

    @property
    def is_http(self) -> bool:
        """An HTTP proxy (``http://`` or ``https://``): forwards and opens CONNECT tunnels."""
        return self.scheme in ("http", "https")

    @property
    def authorization(self) -> str | None:
        """``Proxy-Authorization`` (Basic) for an HTTP proxy with credentials."""
        if self.username is None:
            return None
        pair = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def __str__(self) -> str:
        """The URL without credentials: what errors and logs show."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def __repr__(self) -> str:
        user = ", with credentials" if self.username is not None else ""
        return f"Proxy({str(self)!r}{user})"


def _redact(url: str) -> str:
    """``url`` with any password replaced, for error messages."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{hostpart}"


class ProxiedOrigin(NamedTuple):
    """The pool key of a connection through a proxy (see the module docstring).

    ``tunnel``: ``scheme``/``host``/``port`` are the origin's, reached through ``proxy``.
    Forward: ``scheme`` is ``"http"`` and ``host``/``port`` are the proxy's.
    """

    scheme: str
    host: str
    port: int
    proxy: Proxy
    tunnel: bool


class ProxyRouter:
    """Picks the proxy of each request: per scheme, minus NO_PROXY (see module doc)."""

    __slots__ = ("_h2c", "_keys", "http", "https", "no_proxy")

    def __init__(
        self,
        http: Proxy | None,
        https: Proxy | None,
        no_proxy: NoProxy | None = None,
        *,
        h2c: bool = False,
    ) -> None:
        self.http = http
        self.https = https
        self.no_proxy = no_proxy or NoProxy(None)
        #: http2_prior_knowledge: plain-http requests need a tunnel to speak h2c.
        self._h2c = h2c
        #: Pool keys of recent origins (for requests without a forced version): the
        #: NO_PROXY match and key are worked out once per origin, not per request.
        self._keys: dict[Origin, Origin | ProxiedOrigin] = {}

    def __repr__(self) -> str:
        return f"ProxyRouter(http={self.http!r}, https={self.https!r}, no_proxy={self.no_proxy!r})"

    def proxy_for(self, url: URL) -> Proxy | None:
        """The proxy a request to ``url`` goes through, or ``None`` (direct)."""
        proxy = self.https if url.scheme == "https" else self.http
        if proxy is None or self.no_proxy.matches(url.host, url.port):
            return None
        return proxy

    def key(self, url: URL, version: str | None) -> Origin | ProxiedOrigin:
        """The pool key of a request to ``url`` (``version`` as the request asks)."""
        if version is None:
            origin = url.origin
            key = self._keys.get(origin)
            if key is None:
                if len(self._keys) >= _KEY_CACHE_SIZE:
                    self._keys.clear()
                key = self._keys[origin] = self._key(url, None)
            return key
        return self._key(url, version)

    def _key(self, url: URL, version: str | None) -> Origin | ProxiedOrigin:
        proxy = self.proxy_for(url)
        if proxy is None:
            return url.origin
        if version == "3":
            raise ProxyError(
                f"version='3' cannot go through the proxy {proxy}: HTTP/3 runs over UDP "
                "(QUIC), which HTTP and SOCKS proxies here do not relay; use version='2', "
                "or leave version unset (HTTP/3 is then not tried through the proxy)"
            )
        if (
            url.scheme == "http"
            and proxy.is_http
            and version != "2"
            and not (self._h2c and version is None)
        ):
            return ProxiedOrigin("http", proxy.host, proxy.port, proxy, False)
        return ProxiedOrigin(url.scheme, url.host, url.port, proxy, True)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """``name`` from the environment, lower case first (curl's order); empty is unset.

    Upper-case ``HTTP_PROXY`` is ignored under CGI (``REQUEST_METHOD`` set): there it can
    come from a request's ``Proxy:`` header (httpoxy, CVE-2016-5385).
    """
    value = environ.get(name.lower())
    if not value:
        upper = name.upper()
        if upper == "HTTP_PROXY" and "REQUEST_METHOD" in environ:
            return None
        value = environ.get(upper)
    return value.strip() if value and value.strip() else None


def proxy_router(
    config: ClientConfig, environ: Mapping[str, str] | None = None
) -> ProxyRouter | None:
    """The router for ``config``: explicit ``proxy=``/``proxies=`` when given (the
    environment is then not read), else the environment when ``trust_env``; ``None``
    when every request goes direct (the pipeline then costs nothing more)."""
    h2c = config.http2_prior_knowledge
    explicit = dict(config.proxies)
    if config.proxy is not None or explicit:
        default = explicit.get("all", config.proxy or "")
        http = explicit.get("http", default)
        https = explicit.get("https", default)
        return _router(http, https, explicit.get("no_proxy", ""), h2c, "proxies")
    if not config.trust_env:
        return None
    env = os.environ if environ is None else environ
    every = _env(env, "ALL_PROXY")
    http_env = _env(env, "HTTP_PROXY") or every
    https_env = _env(env, "HTTPS_PROXY") or every
    if http_env is None and https_env is None:
        return None
    no_proxy = _env(env, "NO_PROXY") or ""
    return _router(http_env or "", https_env or "", no_proxy, h2c, "environment")


def _router(http: str, https: str, no_proxy: str, h2c: bool, source: str) -> ProxyRouter | None:
    def parse(value: str, name: str) -> Proxy | None:
        if not value:
            return None
        try:
            return Proxy.parse(value, what=name)
        except ValueError as exc:
            if source == "environment":
                raise ValueError(
                    f"{exc}; fix or unset the variable, or pass trust_env=False to ignore "
                    "the proxy environment"
                ) from None
            raise

    names = ("HTTP_PROXY", "HTTPS_PROXY") if source == "environment" else ("proxy", "proxy")
    http_proxy, https_proxy = parse(http, names[0]), parse(https, names[1])
    if http_proxy is None and https_proxy is None:
        return None
    return ProxyRouter(http_proxy, https_proxy, NoProxy(no_proxy), h2c=h2c)


def proxies_option(value: object) -> tuple[tuple[str, str], ...]:
    """``proxies=`` as the config stores it: sorted ``(key, url)`` pairs, validated.

    ``None`` (or ``""``) as a value means "direct" for that scheme.
    """
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (tuple, list)):
        items = [tuple(item) for item in value]
    else:
        raise TypeError(
            f"proxies must be a dict like {{'https': 'http://proxy:3128'}}, not {value!r}"
        )
    out: dict[str, str] = {}
    for item in items:
        if len(item) != 2:
            raise TypeError(f"proxies must map a scheme to a proxy URL, got {item!r}")
        key, url = item
        if key not in _PROXIES_KEYS:
            raise ValueError(
                f"proxies has the key {key!r}; the keys are 'http', 'https', 'all' and 'no_proxy'"
            )
        if url is None:
            url = ""
        if not isinstance(url, str):
            raise TypeError(f"proxies[{key!r}] must be a proxy URL string or None, not {url!r}")
        if key != "no_proxy" and url:
            Proxy.parse(url, what=f"proxies[{key!r}]")
        out[key] = url
    return tuple(sorted(out.items()))


# -- the connect step ------------------------------------------------------------------------

Handshake = ConnectHandshake | Socks4Handshake | Socks5Handshake


class ProxyStep:
    """Opens the way through ``key.proxy`` on a TCP stream to it (see module doc).

    Built before connecting, so a handshake that cannot be sent (a host name too long for
    SOCKS5) fails before any byte goes out.
    """

    __slots__ = ("_handshake", "_key", "connected", "forward", "opened", "proxy")

    def __init__(self, key: ProxiedOrigin, config: ClientConfig) -> None:
        self._key = key
        proxy = self.proxy = key.proxy
        #: The connection to a forwarding proxy: the header fields each request adds.
        self.forward: tuple[tuple[str, str], ...] | None = None
        #: TCP to the proxy is up: errors from here on are not "cannot reach the proxy".
        self.connected = False
        #: The proxy relays to the origin now (errors after this are the origin's).
        self.opened = False
        self._handshake: Handshake | None = None
        if not key.tunnel:
            auth = proxy.authorization
            self.forward = (("Proxy-Authorization", auth),) if auth is not None else ()
        elif proxy.is_http:
            self._handshake = ConnectHandshake(
                key.host,
                key.port,
                proxy=str(proxy),
                proxy_authorization=proxy.authorization,
                user_agent=f"aioduct/{__version__}" if config.default_headers else None,
                max_head_bytes=config.max_response_head_bytes,
            )
        elif proxy.scheme in ("socks5h", "socks4a") or _is_ip(key.host):
            self._handshake = self._socks(key.host)

    def _socks(self, host: str) -> Handshake:
        key, proxy = self._key, self.proxy
        if proxy.scheme in ("socks5", "socks5h"):
            return Socks5Handshake(
                host, key.port, proxy=str(proxy), username=proxy.username, password=proxy.password
            )
        return Socks4Handshake(
            host,
            key.port,
            proxy=str(proxy),
            remote_dns=proxy.scheme == "socks4a",
            user_id=proxy.username,
        )

    def failed_to_reach(self, exc: AioductError) -> ProxyError:
        """The error for a failure to resolve or connect to the proxy itself."""
        return ProxyError(f"cannot connect to the proxy {self.proxy}: {exc}")

    async def open(
        self,
        stream: Stream,
        runtime: Runtime,
        resolver: ResolverCache,
        deadline: float | None,
        tls_context: ssl.SSLContext | None,
    ) -> Stream:
        """Run the step on ``stream`` (TCP to the proxy); returns the stream that now
        reaches the origin (or the forwarding proxy). Closes ``stream`` on failure."""
        proxy = self.proxy
        self.connected = True
        try:
            if proxy.scheme == "https":
                assert tls_context is not None
                try:
                    stream = await runtime.start_tls(
                        stream, tls_context, proxy.host, deadline=deadline
                    )
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    from .tls import tls_error

                    raise ProxyError(
                        f"TLS to the proxy failed: {tls_error(exc, proxy.host, proxy.port)}"
                    ) from None
                except OSError as exc:
                    raise ProxyError(
                        f"connection to the proxy {proxy} failed during its TLS handshake: {exc}"
                    ) from None
            handshake = self._handshake
            if handshake is None and self._key.tunnel:
                # socks4/socks5 with local DNS: resolve the origin here (socks4: IPv4).
                try:
                    addresses, _ = await resolver.resolve(self._key.host, self._key.port)
                except ConnectError as exc:
                    raise ConnectError(f"{exc} (to reach it through the proxy {proxy})") from None
                if proxy.scheme == "socks4":
                    v4 = [target[1] for target in addresses if ":" not in target[1]]
                    if not v4:
                        raise ProxyError(
                            f"{self._key.host!r} has no IPv4 address, and SOCKS4 carries only "
                            f"IPv4 (proxy {proxy}); use socks4a:// or socks5h:// to let the "
                            "proxy resolve it"
                        )
                    ip = v4[0]
                else:
                    ip = addresses[0][1]
                handshake = self._socks(ip)
            if handshake is not None:
                await _drive(handshake, stream, deadline, proxy)
            self.opened = True
            return stream
        except BaseException:
            stream.close()
            raise


async def _drive(
    handshake: Handshake, stream: Stream, deadline: float | None, proxy: Proxy
) -> None:
    """Move bytes between ``stream`` and ``handshake`` until it is done (or raises)."""
    try:
        stream.write(handshake.data_to_send())
        while not handshake.done:
            await stream.drain(deadline)
            data = await stream.read(deadline)
            handshake.receive_data(data)
            out = handshake.data_to_send()
            if out:
                stream.write(out)
        await stream.drain(deadline)
    except OSError as exc:
        raise ProxyError(
            f"connection to the proxy {proxy} failed during its handshake: {exc}"
        ) from None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- TLS inside TLS --------------------------------------------------------------------------


class NestedTLSStream:
    """TLS over any runtime stream: to an origin inside a TLS connection to a proxy.

    The runtimes' own TLS takes over their socket; here the TLS connection to the
    proxy *is* the transport, so the :class:`TLSLayer` moves ciphertext through the
    inner stream's ``read``/``write``. Runtime-independent, hence on every driver.
    """

    __slots__ = ("_buffer", "_closed", "_eof", "_inner", "_tls")

    def __init__(self, inner: Stream, tls: TLSLayer) -> None:
        self._inner = inner
        self._tls = tls
        self._buffer = bytearray(MAX_RECORD_PLAINTEXT * 4)
        self._eof = False
        self._closed = False

    @property
    def writing_paused(self) -> bool:
        return self._inner.writing_paused

    @writing_paused.setter
    def writing_paused(self, value: bool) -> None:  # the inner stream's to set
        pass

    async def handshake(self, deadline: float | None) -> None:
        tls, inner = self._tls, self._inner
        while True:
            try:
                done = tls.do_handshake()
            finally:
                out = tls.data_to_send()
                if out:
                    inner.write(out)
            if done:
                await inner.drain(deadline)
                return
            await inner.drain(deadline)
            tls.receive_data(await inner.read(deadline))

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise ConnectionResetError("connection is closed")
        self._inner.write(self._tls.encrypt(data))

    async def drain(self, deadline: float | None) -> None:
        await self._inner.drain(deadline)

    async def read(self, deadline: float | None) -> bytes:
        tls = self._tls
        view = memoryview(self._buffer)
        data: bytes | None = None
        while True:
            if self._eof:
                return b""
            if data is None and not tls.pending_plaintext():
                data = await self._inner.read(deadline)
            n = tls.read_into(view, data)
            data = None
            if tls.bytes_to_send:
                self._inner.write(tls.data_to_send())
            if n:
                return bytes(view[:n])
            if tls.closed:
                self._eof = True
                return b""

    #: The first read of a response is an ordinary read here.
    read_head = read

    def is_reusable(self) -> bool:
        return not self._closed and not self._eof and self._inner.is_reusable()

    def quick_ack(self) -> None:
        quick_ack = getattr(self._inner, "quick_ack", None)
        if quick_ack is not None:
            quick_ack()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            notify = self._tls.close()
            if notify and self._inner.is_reusable():
                self._inner.write(notify)
        except (OSError, ssl.SSLError):
            pass
        self._inner.close()

    @property
    def alpn_protocol(self) -> str | None:
        return self._tls.ssl_object.selected_alpn_protocol()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._tls.ssl_object

    @property
    def peer_address(self) -> tuple[str, int] | None:
        return self._inner.peer_address


async def start_tls_inside(
    stream: Stream,
    context: ssl.SSLContext,
    server_hostname: str | None,
    *,
    deadline: float | None,
    session: ssl.SSLSession | None = None,
) -> Stream:
    """:meth:`Runtime.start_tls` for a stream that already speaks TLS (to a proxy)."""
    try:
        nested = NestedTLSStream(
            stream, TLSLayer(context, server_hostname=server_hostname, session=session)
        )
        await nested.handshake(deadline)
    except Expired:
        stream.close()
        raise
    except BaseException:
        stream.close()
        raise
    return nested
