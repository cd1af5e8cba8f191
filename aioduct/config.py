"""ClientConfig: everything that shapes a client's behaviour, as data.

It is a frozen ``msgspec.Struct`` so that one value describes a client completely, can be
encoded, sent to a worker process and decoded back equal
(``msgspec.msgpack.decode(msgspec.msgpack.encode(cfg), type=ClientConfig) == cfg``).
Behaviour that is code (a redirect policy callable, an ``ssl.SSLContext``, auth objects)
is passed to the in-process :class:`~aioduct.Client` instead.

Validation runs in ``__post_init__``, which msgspec calls both on construction and on
decode, so a bad value is rejected with a clear message wherever it came from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .errors import LocalProtocolError
from .headers import Headers, HeadersLike, header_field
from .limits import RateLimit
from .retries import RetryConfig
from .suggestions import SuggestingMeta, suggest
from .validation import check_fields

__all__ = ["CacheConfig", "ClientConfig", "Http2Config", "Timeout", "request_timeout", "suggest"]


def seconds(name: str, value: object) -> float | None:
    """``value`` as a duration option: a number of seconds >= 0, or ``None`` (no limit)."""
    if value is None or (type(value) is float and value >= 0 and math.isfinite(value)):
        return value
    if isinstance(value, tuple) and name == "timeout":
        raise TypeError(
            f"{name} must be a number of seconds, None or an aioduct.Timeout, not the tuple "
            f"{value!r}; for separate connect and read limits (requests' (connect, read) "
            f"pair) pass timeout=aioduct.Timeout(connect=..., read=...)"
        )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
    return float(value)


class Timeout(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, metaclass=SuggestingMeta
):
    """Deadlines in seconds, accepted wherever ``timeout=`` is (as in httpx).

    ``total`` bounds a whole request (the client's ``timeout``); ``connect``, ``read``,
    ``write`` and ``pool`` are its ``connect_timeout``, ``read_timeout``,
    ``write_timeout`` and ``pool_timeout``. A field left out keeps the client's setting;
    ``None`` means no limit::

        aioduct.Client(timeout=aioduct.Timeout(total=30, connect=5))
        await client.get(url, timeout=aioduct.Timeout(read=60))   # this request only
    """

    total: float | msgspec.UnsetType | None = msgspec.UNSET
    connect: float | msgspec.UnsetType | None = msgspec.UNSET
    read: float | msgspec.UnsetType | None = msgspec.UNSET
    write: float | msgspec.UnsetType | None = msgspec.UNSET
    pool: float | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not msgspec.UNSET:
                msgspec.structs.force_setattr(self, name, seconds(name, value))

    def __repr__(self) -> str:
        given = ", ".join(
            f"{name}={value!r}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not msgspec.UNSET
        )
        return f"Timeout({given})"

    def options(self) -> dict[str, float | None]:
        """The :class:`ClientConfig` options this sets (the fields given)."""
        return {
            option: value
            for name, option in _TIMEOUT_OPTIONS.items()
            if (value := getattr(self, name)) is not msgspec.UNSET
        }

    def resolve(self, config: ClientConfig) -> tuple[float | None, ...]:
        """``(total, connect, read, write, pool)`` for a request under ``config``."""
        given = self.options()
        return tuple(
            given[option] if option in given else getattr(config, option)
            for option in _TIMEOUT_OPTIONS.values()
        )


_TIMEOUT_OPTIONS: Final = {
    "total": "timeout",
    "connect": "connect_timeout",
    "read": "read_timeout",
    "write": "write_timeout",
    "pool": "pool_timeout",
}


def request_timeout(value: object) -> float | Timeout | None:
    """A per-request ``timeout=``: seconds, ``None`` (no limit) or a :class:`Timeout`."""
    if isinstance(value, Timeout):
        return value
    return seconds("timeout", value)


#: Sentinel default of ``timeout``-like options meaning "use the built-in default".
_TIMEOUT_FIELDS: Final = (
    "timeout",
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "pool_timeout",
    "pool_idle_timeout",
    "tcp_keepalive",
    "expect_continue_timeout",
)


def _check_integers(struct: msgspec.Struct, *bounds: tuple[str, int, int]) -> None:
    """Each ``(field, low, high)`` of ``struct`` is an int in that range (bools refused)."""
    for name, low, high in bounds:
        value = getattr(struct, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name} must be an integer in [{low}, {high}], not {value!r}")


def _check_durations(struct: msgspec.Struct, *names: str) -> None:
    """Each field is a finite number of seconds > 0, stored as a float (frozen structs)."""
    for name in names:
        value = getattr(struct, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{name} must be a number of seconds, not {value!r}")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite number of seconds > 0, not {value!r}")
        if isinstance(value, int):
            msgspec.structs.force_setattr(struct, name, float(value))


class Http2Config(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    metaclass=SuggestingMeta,
):
    """HTTP/2 tuning: flow-control windows, frame and header limits, keep-alive PINGs.

    The defaults favour throughput: RFC 9113's 64 KiB initial windows cap a download at
    one window per round trip, so aioduct advertises 2 MiB per stream and 4 MiB per
    connection (what the book uses) and lets a consumer that falls behind hold the data
    back: windows are re-opened only as the reader consumes the body.
    """

    initial_stream_window_size: int = 2 * 1024 * 1024
    """Bytes the server may send on one stream before the reader consumes some."""
    initial_connection_window_size: int = 4 * 1024 * 1024
    """Bytes the server may send across all streams before the readers consume some."""
    max_frame_size: int = 16384
    """Largest DATA frame payload the server may send (16,384 to 16,777,215)."""
    adaptive_window: bool = False
    """Grow the windows to the measured bandwidth-delay product (a PING per sample)."""
    keep_alive_interval: float | None = None
    """Send a PING after this many seconds of silence; ``None`` disables keep-alive."""
    keep_alive_timeout: float = 20.0
    """Close the connection (failing its streams) if a PING is not answered in time."""
    keep_alive_while_idle: bool = False
    """Also PING while no request is in flight (otherwise only busy connections)."""
    max_header_list_size: int = 65536
    """Largest response header list accepted (uncompressed, as RFC 9113 counts it); also
    the most bytes a header block may take in CONTINUATION frames, and all the 1xx heads
    of one stream together."""
    max_send_buf_size: int = 1024 * 1024
    """Request-body bytes queued on the socket before an upload waits for it to drain."""
    max_concurrent_reset_streams: int = 1024
    """Closed and reset streams remembered, so late frames for them are ignored."""
    max_unproductive_frames: int = 10_000
    """Frames in a row that carry no response data, head or end of stream (PING,
    SETTINGS, WINDOW_UPDATE, PRIORITY, empty DATA, RST_STREAM or frames for closed
    streams...) before the connection is closed as a flood (ENHANCE_YOUR_CALM). Sending
    a request or request data starts a new count."""

    def __post_init__(self) -> None:
        _check_integers(
            self,
            ("initial_stream_window_size", 0, 2**31 - 1),
            ("initial_connection_window_size", 65535, 2**31 - 1),
            ("max_frame_size", 16384, 2**24 - 1),
            ("max_header_list_size", 1024, 2**31 - 1),
            ("max_send_buf_size", 1024, 2**31 - 1),
            ("max_concurrent_reset_streams", 1, 2**31 - 1),
            ("max_unproductive_frames", 16, 2**31 - 1),
        )
        _check_durations(self, "keep_alive_timeout")
        if self.keep_alive_interval is not None:
            _check_durations(self, "keep_alive_interval")


class Http3Config(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    metaclass=SuggestingMeta,
):
    """HTTP/3 (QUIC) tuning: flow-control limits, idle timeout, packet size, congestion.

    The windows follow HTTP/2's defaults for the same reason: a QUIC peer may send no
    more than these before the client reads and re-opens them.
    """

    max_stream_data: int = 2 * 1024 * 1024
    """Bytes the server may send on one stream before the client credits more."""
    max_data: int = 4 * 1024 * 1024
    """Bytes the server may send across all streams before the client credits more."""
    idle_timeout: float = 30.0
    """Seconds without a packet from the server after which the connection is dead."""
    max_datagram_size: int = 1200
    """Largest UDP payload sent (1200 is what every path must carry: RFC 9000 §14)."""
    congestion_control: str = "reno"
    """aioquic's congestion controller: ``"reno"`` or ``"cubic"`` (qh3 has one, its own,
    and ignores this)."""
    qpack_max_table_capacity: int = 4096
    """Dynamic table size the client offers the server's QPACK encoder."""
    qpack_blocked_streams: int = 16
    """Streams that may wait for QPACK table updates at once."""
    max_send_buf_size: int = 1024 * 1024
    """Request-body bytes queued on a stream before an upload waits for the server to
    acknowledge some (QUIC would otherwise buffer a whole upload in memory)."""
    race_delay: float = 0.3
    """With ``http3=True``: how long a QUIC handshake to an Alt-Svc alternative may take
    before the request goes over TCP instead (the alternative is then marked broken)."""
    backend: str = "auto"
    """The QUIC library: ``"qh3"`` (Rust packet path, ``aioduct[http3-fast]``),
    ``"aioquic"`` (pure Python, ``aioduct[http3]``), or ``"auto"``: qh3 when installed,
    else aioquic (see :mod:`aioduct.quic`)."""

    def __post_init__(self) -> None:
        _check_integers(
            self,
            ("max_stream_data", 1024, 2**62 - 1),
            ("max_data", 1024, 2**62 - 1),
            ("max_datagram_size", 1200, 65527),
            ("qpack_max_table_capacity", 0, 2**30),
            ("qpack_blocked_streams", 0, 2**16),
            ("max_send_buf_size", 1024, 2**31 - 1),
        )
        _check_durations(self, "idle_timeout", "race_delay")
        if self.congestion_control not in ("reno", "cubic"):
            raise ValueError(
                f"congestion_control must be 'reno' or 'cubic', not {self.congestion_control!r}"
            )
        if self.backend not in ("auto", "qh3", "aioquic"):
            raise ValueError(f"backend must be 'auto', 'qh3' or 'aioquic', not {self.backend!r}")


class CacheConfig(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    metaclass=SuggestingMeta,
):
    """The HTTP cache as data (``ClientConfig(cache=...)``): what each engine, and each
    local-engine worker, builds its own :class:`aioduct.Cache` from.

    ``path`` is a directory for a store that survives restarts (a local-engine worker
    uses its own subdirectory ``worker-N``); ``None`` keeps responses in memory.
    """

    path: str | None = None
    """Directory of a persistent store; ``None``: in memory."""
    max_size: int = 64 * 1024 * 1024
    """Bytes the store may hold (least recently used responses are evicted)."""
    max_entries: int = 10_000
    """URLs the store may hold."""
    max_entry_size: int = 8 * 1024 * 1024
    """Largest response body stored; a larger one is passed on but not kept."""
    shared: bool = False
    """Apply a shared cache's rules (s-maxage, no ``private`` responses, RFC 9111 §3.5)."""

    def __post_init__(self) -> None:
        for name, minimum in (("max_size", 1), ("max_entries", 1), ("max_entry_size", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"cache {name} must be an integer >= {minimum}, not {value!r}")
        if self.path is not None and not isinstance(self.path, str):
            raise TypeError(f"cache path must be a str, not {type(self.path).__name__}")

    def for_worker(self, index: int) -> CacheConfig:
        """The settings of local-engine worker ``index``: its own directory, if any."""
        if self.path is None:
            return self
        import os

        return msgspec.structs.replace(self, path=os.path.join(self.path, f"worker-{index}"))


class ClientConfig(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    metaclass=SuggestingMeta,
):
    """Options of a client. ``Client(**options)`` accepts the same names.

    Durations are seconds (``float``); ``None`` means "no limit".
    """

    # -- requests --------------------------------------------------------------------------
    base_url: str | None = None
    """Prefix joined with relative request URLs."""
    headers: tuple[tuple[str, str], ...] = ()
    """Headers sent with every request (a dict or pairs is accepted)."""
    default_headers: bool = True
    """Send ``User-Agent: aioduct/<version>`` and ``Accept: */*`` (and ``Accept-Encoding``
    with ``decompress``) unless overridden."""
    decompress: bool = True
    """Decode gzip, deflate, br and zstd bodies (``Content-Encoding``) and ask for them
    with ``Accept-Encoding: gzip, deflate, br, zstd``; ``False`` asks for nothing and
    returns the bytes as sent."""
    expect_continue: bool = False
    """Send ``Expect: 100-continue`` with request bodies and hold the body back until the
    server answers 100 (or ``expect_continue_timeout`` passes) on HTTP/1.1: a server
    that refuses the request does so before the upload (see docs/uploads.md)."""
    expect_continue_timeout: float = 1.0
    """Seconds to wait for ``100 Continue`` before sending the body anyway (as curl)."""

    # -- timeouts --------------------------------------------------------------------------
    timeout: float | None = None
    """Deadline for a whole request: connect, send, and the response body. An
    :class:`aioduct.Timeout` sets this and the other deadlines at once."""
    connect_timeout: float | None = 30.0
    """Deadline for TCP connect plus TLS handshake."""
    read_timeout: float | None = 300.0
    """Longest silence allowed while waiting for response bytes."""
    write_timeout: float | None = None
    """Longest wait for the socket to accept request bytes."""
    pool_timeout: float | None = None
    """Longest wait for a connection when the pool is at ``max_connections``."""

    # -- redirects -------------------------------------------------------------------------
    follow_redirects: bool = True
    max_redirects: int = 10
    """Redirect hops followed before :class:`TooManyRedirects`; 0 disables following."""
    referer: bool = False
    """Send ``Referer`` (the previous URL) on redirect hops."""

    # -- cookies ---------------------------------------------------------------------------
    cookies: bool = True
    """Keep a cookie jar (RFC 6265bis): store what servers set, send it back where it
    belongs. ``False``: no jar. ``Client(cookies=aioduct.CookieJar())`` shares one jar
    between clients. On the local engine each worker keeps the jar of the sites it runs
    (jobs are sharded by registrable domain then)."""

    # -- connections -----------------------------------------------------------------------
    https_only: bool = False
    """Refuse ``http://`` URLs, including redirect targets."""
    pool_idle_timeout: float | None = 90.0
    """Idle keep-alive connections older than this are closed."""
    pool_max_idle_per_host: int = 10
    """Idle connections kept per origin; 0 disables connection reuse."""
    max_connections: int | None = 100
    """Open connections across all origins; requests beyond it wait (``pool_timeout``)."""
    max_connections_per_host: int | None = None
    """Open connections per origin; requests beyond it wait (``pool_timeout``)."""
    local_address: str | None = None
    """Bind outgoing connections to this local IP address."""
    tcp_keepalive: float | None = None
    """Enable TCP keep-alive probes, idle this many seconds before the first."""

    # -- HTTP/2 ----------------------------------------------------------------------------
    http2: bool = True
    """Offer HTTP/2 by ALPN on https (the server picks); ``False`` offers only HTTP/1.1."""
    http2_prior_knowledge: bool = False
    """Speak HTTP/2 on cleartext ``http://`` without negotiating (h2c)."""
    http2_config: Http2Config = Http2Config()
    """Windows, frame limits and keep-alive of HTTP/2 connections."""
    connection_coalescing: bool = True
    """Reuse an HTTP/2 connection for another host its certificate covers, at its address."""

    # -- HTTP/3 ----------------------------------------------------------------------------
    http3: bool = False
    """Use HTTP/3 for an https origin that advertised it (``Alt-Svc: h3=...``), falling
    back to TCP when QUIC does not connect within ``http3_config.race_delay``."""
    http3_prior_knowledge: bool = False
    """Speak HTTP/3 to every ``https://`` origin directly, without TCP or Alt-Svc."""
    http3_config: Http3Config = Http3Config()
    """Flow control, idle timeout, datagram size and congestion control of QUIC."""
    early_data: bool = False
    """Send idempotent requests in 0-RTT on a resumed HTTP/3 connection (never others)."""
    alt_svc_file: str | None = None
    """A file that keeps learned HTTP/3 alternatives across runs (loaded, then saved)."""

    # -- TLS -------------------------------------------------------------------------------
    verify: bool | str = True
    """``True``: certifi's roots; ``False``: no verification; ``"system"``: the operating
    system's trust store (through ``truststore``); a path: CA file or directory."""
    danger_accept_invalid_certs: bool = False
    """Same as ``verify=False``, spelled to be noticed in review."""
    cert: str | tuple[str, ...] | None = None
    """Client certificate: a PEM path with key, or ``(cert, key)`` / ``(cert, key, password)``."""
    trust_env: bool = True
    """With ``verify=True``, trust the CA roots named by ``SSL_CERT_FILE``,
    ``SSL_CERT_DIR``, ``REQUESTS_CA_BUNDLE`` or ``CURL_CA_BUNDLE`` (the first set); and
    without ``proxy``/``proxies``, use the proxies named by ``HTTP_PROXY``,
    ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (read when the client is built); and
    send the ``.netrc`` credentials (``$NETRC`` or ``~/.netrc``) of each hop's host to
    hops that carry none (see docs/authentication.md)."""
    tls_session_cache: bool = True
    """Resume TLS sessions: a new connection to a server offers the session (ticket) of
    an earlier one, which saves the full handshake. Kept per client, per TLS settings."""
    pinned_sha256: tuple[str, ...] = ()
    """Accept only server certificates whose public key (SPKI) has one of these base64
    SHA-256 hashes (curl's ``--pinnedpubkey sha256//...``); checked on every new
    connection, resumed ones included. Empty: no pinning."""
    min_tls_version: str | None = None
    """Lowest TLS version spoken: ``"1.2"`` (the default) or ``"1.3"``."""
    max_tls_version: str | None = None
    """Highest TLS version spoken: ``"1.2"`` or ``"1.3"``; ``None``: the highest available."""

    # -- name resolution -------------------------------------------------------------------
    resolve: tuple[tuple[str, str], ...] = ()
    """Fixed addresses, like curl's ``--resolve``: ``{"example.test": "127.0.0.1",
    "example.test:443": "127.0.0.1:8443"}`` (a value may list several, comma-separated).
    TLS still verifies the URL's host name and sends it as SNI."""
    dns_over_https: str | None = None
    """Resolve names with DNS over HTTPS at this URL (RFC 8484): the data form of
    ``Client(resolver=aioduct.DoHResolver(url))``, for the local engine's workers."""
    dns_over_tls: str | None = None
    """Resolve names with DNS over TLS at ``host`` or ``host:port`` (RFC 7858, port 853
    by default): the data form of ``Client(resolver=aioduct.DoTResolver(...))``."""
    happy_eyeballs_delay: float | None = 0.25
    """Happy eyeballs (RFC 8305): start connecting to the next address (IPv6 and IPv4
    interleaved, IPv6 first) this many seconds after the last attempt began, or at once
    when it fails; the first to connect wins. ``None``: one address at a time."""

    # -- proxies ---------------------------------------------------------------------------
    proxy: str | None = None
    """Proxy for every request: ``http://``, ``https://``, ``socks5://``, ``socks5h://``,
    ``socks4://`` or ``socks4a://``, with ``user:password@`` if it needs them."""
    proxies: tuple[tuple[str, str], ...] = ()
    """Proxies per scheme: ``{"http": url, "https": url, "all": url, "no_proxy": "..."}``
    (``None``: direct). Given ``proxy`` or ``proxies``, the environment is not read."""

    # -- HSTS (RFC 6797) ------------------------------------------------------------------
    hsts: bool = True
    """Remember hosts that answer https with ``Strict-Transport-Security`` and send
    later ``http://`` requests to them over https (see docs/hsts.md)."""
    hsts_file: str | None = None
    """Keep the HSTS hosts in this file (curl's format): read at start, written when
    they change and when the client closes; ``None`` keeps them in memory."""
    hsts_preload: tuple[str, ...] = ()
    """Hosts upgraded to https from the start, with their subdomains."""

    # -- limits ----------------------------------------------------------------------------
    max_response_head_bytes: int = 65536
    """Largest response status line plus headers accepted."""
    max_response_headers: int = 100
    """Most header fields accepted in a response head (and in trailers)."""
    max_body_size: int | None = None
    """Largest buffered response body, counted decoded (``decompress``); beyond it
    :class:`BodyTooLarge` is raised, before more than that is held in memory."""

    # -- caching ---------------------------------------------------------------------------
    cache: CacheConfig | None = None
    """An HTTP cache (RFC 9111) built from these settings by every engine and worker;
    ``Client(cache=aioduct.Cache(...))`` passes a cache object instead (and sets this)."""

    # -- retries, middleware, rate limits (docs/retries-middleware-limits.md) ---------------
    retry: RetryConfig | None = None
    """Retry transient failures and 5xx/429 responses (a :class:`RetryConfig`, or a
    number of retries); ``None``: never."""
    middleware: tuple[str, ...] = ()
    """Middleware as ``"package.module:name"`` import strings, outermost first (the
    form the local engine's workers can import; ``Client(middleware=)`` also takes objects)."""
    rate_limit: RateLimit | None = None
    """Hold sends to at most this rate (a :class:`RateLimit`, or requests per second
    per origin); ``None``: no limit."""
    max_download_speed: int | None = None
    """Read response bodies no faster than this many bytes per second, across all of
    this client's requests; ``None``: as fast as they come."""

    def __post_init__(self) -> None:
        _check_policies(self)
        headers = self.headers
        if not (isinstance(headers, tuple) and all(type(h) is tuple for h in headers)):
            headers = _header_pairs(headers)
            msgspec.structs.force_setattr(self, "headers", headers)
        try:
            check_fields(headers)  # sent with every request: checked once, here
        except LocalProtocolError as exc:
            raise ValueError(f"invalid headers option: {exc}") from None
        if not isinstance(self.hsts_preload, tuple):
            if isinstance(self.hsts_preload, str):
                raise TypeError("hsts_preload takes a list of host names, not one string")
            msgspec.structs.force_setattr(self, "hsts_preload", tuple(self.hsts_preload))
        if self.hsts_preload:
            from .hsts import _preload_host

            for host in self.hsts_preload:
                _preload_host(host)  # a ValueError naming what is not a host name
        if isinstance(self.cert, list):
            msgspec.structs.force_setattr(self, "cert", tuple(self.cert))
        if isinstance(self.cert, tuple) and len(self.cert) not in (2, 3):
            raise ValueError(f"cert must be a path or (cert, key[, password]), not {self.cert!r}")
        if isinstance(self.timeout, Timeout):  # timeout=Timeout(...): one option per field
            given = self.timeout.options()
            msgspec.structs.force_setattr(self, "timeout", None)
            for option, value in given.items():
                msgspec.structs.force_setattr(self, option, value)
        for name in _TIMEOUT_FIELDS:
            value = getattr(self, name)
            if value is not None and type(value) is not float:
                msgspec.structs.force_setattr(self, name, seconds(name, value))
            elif value is not None:
                seconds(name, value)  # a negative or infinite float
        for name, minimum in (
            ("max_redirects", 0),
            ("pool_max_idle_per_host", 0),
            ("max_connections", 1),
            ("max_connections_per_host", 1),
            ("max_response_head_bytes", 1024),
            ("max_response_headers", 1),
            ("max_body_size", 0),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, not {value!r}")
        if self.cache is not None and not isinstance(self.cache, CacheConfig):
            if self.cache is True:
                msgspec.structs.force_setattr(self, "cache", CacheConfig())
            elif self.cache is False:
                msgspec.structs.force_setattr(self, "cache", None)
            else:
                raise TypeError(
                    f"ClientConfig(cache=...) takes an aioduct.CacheConfig (data), not "
                    f"{type(self.cache).__name__}: pass an aioduct.Cache object to "
                    "Client(cache=...) instead"
                )
        self._check_network_edge()
        if self.proxy is not None or self.proxies:
            from .proxy import Proxy, proxies_option

            if self.proxy is not None:
                Proxy.parse(self.proxy)  # raises ValueError saying what is wrong
            proxies = proxies_option(self.proxies)
            if proxies != self.proxies:
                msgspec.structs.force_setattr(self, "proxies", proxies)
        if self.base_url is not None:
            from .url import URL

            URL(self.base_url)  # raises InvalidURL with a clear message

    def _check_network_edge(self) -> None:
        """Validate and normalise the DNS, happy eyeballs and TLS trust options."""
        if self.resolve:
            from .dns import parse_overrides

            msgspec.structs.force_setattr(self, "resolve", parse_overrides(self.resolve))
        if self.happy_eyeballs_delay is not None:
            delay = seconds("happy_eyeballs_delay", self.happy_eyeballs_delay)
            msgspec.structs.force_setattr(self, "happy_eyeballs_delay", delay)
        versions = ("1.2", "1.3")
        for name in ("min_tls_version", "max_tls_version"):
            value = getattr(self, name)
            if value is not None and value not in versions:
                raise ValueError(f"{name} must be '1.2' or '1.3' (or None), not {value!r}")
        low, high = self.min_tls_version, self.max_tls_version
        if low is not None and high is not None and low > high:
            raise ValueError(
                f"min_tls_version={low!r} is above max_tls_version={high!r}: "
                "no TLS version is left to speak"
            )
        if self.pinned_sha256:
            msgspec.structs.force_setattr(self, "pinned_sha256", _pins(self.pinned_sha256))
        if self.dns_over_https is not None and self.dns_over_tls is not None:
            raise ValueError("set dns_over_https or dns_over_tls, not both")
        if self.dns_over_https is not None and not str(self.dns_over_https).startswith("https://"):
            raise ValueError(
                f"dns_over_https must be an https:// URL (RFC 8484), not {self.dns_over_https!r}"
            )

    @property
    def verify_certificates(self) -> bool:
        return bool(self.verify) and not self.danger_accept_invalid_certs

    def replace(self, **changes: Any) -> ClientConfig:
        """A copy with some options changed (validated like a new config)."""
        check_option_names(changes)
        return msgspec.structs.replace(self, **changes)

    def encode(self) -> bytes:
        return _ENCODER.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> ClientConfig:
        try:
            return _DECODER.decode(data)
        except msgspec.ValidationError as exc:
            raise ValueError(f"invalid ClientConfig: {exc}") from None


def _pins(pins: object) -> tuple[str, ...]:
    """``pinned_sha256`` as a tuple of base64 SHA-256 hashes (curl's ``sha256//`` prefix
    and ``;``-separated lists accepted), each checked to be 32 bytes of base64."""
    import base64
    import binascii

    items = [pins] if isinstance(pins, str) else list(pins)  # type: ignore[call-overload]
    out: list[str] = []
    for item in items:
        for pin in str(item).split(";"):
            pin = pin.strip().removeprefix("sha256//")
            if not pin:
                continue
            try:
                raw = base64.b64decode(pin, validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(
                    f"pinned_sha256 entry {pin!r} is not a base64 SHA-256 hash (32 bytes); "
                    "compute one with aioduct.tls.spki_sha256(cert_der) or openssl"
                )
            out.append(pin)
    return tuple(out)


def _check_policies(cfg: ClientConfig) -> None:
    """Normalise and check the retry, middleware and limit options (shorthands included)."""
    retry: Any = cfg.retry
    if retry is not None and not isinstance(retry, RetryConfig):
        if isinstance(retry, bool) or not isinstance(retry, int):
            raise TypeError(
                f"retry must be an aioduct.RetryConfig, a number of retries or None, not {retry!r}"
            )
        msgspec.structs.force_setattr(
            cfg, "retry", RetryConfig(max_retries=retry) if retry > 0 else None
        )
    limit: Any = cfg.rate_limit
    if limit is not None and not isinstance(limit, RateLimit):
        if isinstance(limit, bool) or not isinstance(limit, int | float):
            raise TypeError(
                f"rate_limit must be an aioduct.RateLimit or requests per second, not {limit!r}"
            )
        msgspec.structs.force_setattr(cfg, "rate_limit", RateLimit(float(limit)))
    speed: Any = cfg.max_download_speed
    if speed is not None and (isinstance(speed, bool) or not isinstance(speed, int) or speed < 1):
        raise ValueError(f"max_download_speed must be bytes per second >= 1, not {speed!r}")
    middleware: Any = cfg.middleware
    if not isinstance(middleware, tuple):
        if isinstance(middleware, str):
            middleware = (middleware,)
        middleware = tuple(middleware)
        msgspec.structs.force_setattr(cfg, "middleware", middleware)
    for spec in middleware:
        if not isinstance(spec, str) or spec.count(":") != 1:
            raise TypeError(
                f"ClientConfig.middleware holds 'package.module:name' import strings, not "
                f"{spec!r}; pass middleware objects to Client(middleware=[...]) instead"
            )


def _header_pairs(headers: HeadersLike | Any) -> tuple[tuple[str, str], ...]:
    pairs: list[tuple[Any, ...]]
    if isinstance(headers, Headers):
        pairs = list(headers.multi_items())
    elif isinstance(headers, Mapping):
        pairs = list(headers.items())
    else:
        pairs = [tuple(item) for item in headers]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise TypeError(f"headers must be name/value pairs, got {pair!r}")
        out.append(header_field(*pair))
    return tuple(out)


OPTION_NAMES: Final = frozenset(ClientConfig.__struct_fields__)


def check_option_names(options: Mapping[str, Any]) -> None:
    """Reject unknown option names with a suggestion, before msgspec's generic error."""
    for name in options:
        if name not in OPTION_NAMES:
            raise TypeError(f"unknown client option {name!r}{suggest(name, OPTION_NAMES)}")


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(ClientConfig)
