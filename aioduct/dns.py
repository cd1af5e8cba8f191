"""Name resolution: overrides, resolvers (system, DNS over HTTPS, DNS over TLS), a TTL cache.

Every new connection asks the engine's :class:`ResolverCache` for the addresses of its
host. The cache answers, in this order:

1. ``resolve=`` overrides (curl's ``--resolve``/``--connect-to``): fixed addresses for a
   name, or for a name and port (and then possibly another port). TLS still verifies,
   and sends SNI for, the name of the URL.
2. answers still within their TTL (at most ``max_entries`` names, least recently used
   forgotten: an unbounded cache is a memory leak in a crawler, aiohttp CVE-2026-34513);
   concurrent lookups of one name share one query.
3. the client's :class:`Resolver`: :class:`SystemResolver` (``getaddrinfo`` off the
   loop, the default), :class:`DoHResolver` (RFC 8484) or :class:`DoTResolver` (RFC
   7858), or your own subclass.

IP literals never get here: they need no resolution.

Resolvers are code objects (``Client(resolver=...)``). The local engine's workers
receive the client configuration as data, so there the choice is the config fields
``dns_over_https`` / ``dns_over_tls`` (see docs/dns.md).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import importlib
import ipaddress
import socket
import ssl
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from .errors import AioductError, ConnectError
from .errors import TimeoutError as AioductTimeout
from .runtimes import Expired, Runtime

if TYPE_CHECKING:
    import dns.message

__all__ = [
    "Answer",
    "DoHResolver",
    "DoTResolver",
    "Lookup",
    "Resolver",
    "ResolverCache",
    "SystemResolver",
    "literal_address",
    "parse_overrides",
]

Addresses = list[tuple[int, str]]
#: ``(family, ip, port)``: where to connect.
Target = tuple[int, str, int]

#: How long a ``getaddrinfo`` answer (which has no TTL) is kept.
_DEFAULT_TTL: Final = 60.0
#: Answers are kept no longer than this, whatever TTL a DNS server gave.
_MAX_TTL: Final = 3600.0
_MAX_ENTRIES: Final = 1024


def literal_address(host: str) -> Addresses | None:
    """``[(family, ip)]`` when ``host`` is an IP literal, else ``None``."""
    family = _literal_family(host)
    return None if family is None else [(family, host)]


@functools.lru_cache(maxsize=1024)
def _literal_family(host: str) -> int | None:
    """The address family of an IP literal, else ``None``.

    Memoised: every new connection asks, and ``ipaddress`` parses in Python.
    """
    if not host or not (host[0].isdigit() or ":" in host):
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    return int(socket.AF_INET6 if ip.version == 6 else socket.AF_INET)


# -- resolvers -----------------------------------------------------------------------------------


class Answer(NamedTuple):
    """What a resolver found: ``(family, ip)`` pairs, and how long they may be cached
    (seconds; ``None``: the default of 60 s; ``0``: not at all)."""

    addresses: Addresses
    ttl: float | None = None


class Lookup(Protocol):
    """A resolver bound to one runtime (see :meth:`Resolver.bind`)."""

    async def lookup(self, host: str, deadline: float | None) -> Answer: ...

    def close(self) -> None: ...


class Resolver:
    """Base class of resolvers: subclass it and implement :meth:`lookup`.

    A resolver is shared by every engine of a client (a BlockingClient has one per
    thread); per-engine state (connections, as :class:`DoHResolver` keeps) belongs in
    the object :meth:`bind` returns, which the engine closes with itself.
    """

    async def lookup(self, host: str, runtime: Runtime, deadline: float | None) -> Answer:
        """The addresses of ``host`` (A and AAAA together). Raise
        :class:`~aioduct.ConnectError` saying why when there are none. ``deadline`` is
        an absolute time on ``runtime.now()``'s clock, or ``None``."""
        raise NotImplementedError

    def bind(self, runtime: Runtime) -> Lookup:
        """This resolver for one engine on ``runtime``."""
        return _Bound(self, runtime)


class _Bound:
    __slots__ = ("_resolver", "_runtime")

    def __init__(self, resolver: Resolver, runtime: Runtime) -> None:
        self._resolver = resolver
        self._runtime = runtime

    async def lookup(self, host: str, deadline: float | None) -> Answer:
        return await self._resolver.lookup(host, self._runtime, deadline)

    def close(self) -> None:
        pass


class SystemResolver(Resolver):
    """The operating system's resolver (``getaddrinfo``: /etc/hosts, nsswitch, the
    system's DNS servers): on a thread of the event loop's executor, so the loop goes
    on; in the calling thread on the blocking client. ``getaddrinfo`` reports no TTL:
    answers are kept ``ttl`` seconds."""

    def __init__(self, *, ttl: float = _DEFAULT_TTL) -> None:
        self.ttl = ttl

    async def lookup(self, host: str, runtime: Runtime, deadline: float | None) -> Answer:
        del deadline  # the engine bounds the wait where it can (not in a blocking call)
        try:
            addresses = await runtime.resolve(host, 0)
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConnectError(f"cannot resolve host {host!r}: {reason}") from None
        return Answer(addresses, self.ttl)

    def __repr__(self) -> str:
        return "SystemResolver()"


class DoHResolver(Resolver):
    """DNS over HTTPS (RFC 8484): A and AAAA queries to ``url`` in ``application/dns-message``.

    ``method`` is ``"POST"`` (default) or ``"GET"`` (``?dns=`` base64url, cacheable by
    HTTP caches). Queries go over a private connection pool per engine (HTTP/2 when the
    server offers it, so both queries share one connection), not through the client's
    own pool: a lookup made while the client's pool is full must not wait for a
    connection slot the lookup itself holds up. The DoH server's own name, if ``url``
    has one rather than an IP address, is resolved by the system resolver.

    ``verify`` is as the client's (``True``, a CA path, ``"system"``).
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "POST",
        verify: bool | str = True,
        timeout: float = 5.0,
    ) -> None:
        from .url import URL

        parsed = URL(url)
        if parsed.scheme != "https":
            raise ValueError(f"DoHResolver needs an https:// URL (RFC 8484), not {url!r}")
        method = method.upper()
        if method not in ("GET", "POST"):
            raise ValueError(f"DoHResolver method must be 'GET' or 'POST', not {method!r}")
        self.url = url
        self.method = method
        self.verify = verify
        self.timeout = timeout

    def bind(self, runtime: Runtime) -> Lookup:
        return _DoHLookup(self, runtime)

    def __repr__(self) -> str:
        return f"DoHResolver({self.url!r}, method={self.method!r})"


class _DoHLookup:
    __slots__ = ("_engine", "_resolver", "_runtime")

    def __init__(self, resolver: DoHResolver, runtime: Runtime) -> None:
        self._resolver = resolver
        self._runtime = runtime
        #: An aioduct.engine.Engine, made on first use. Imported by name at run time:
        #: engine imports this module, and a static import cycle through engine.py
        #: leaves mypy unable to resolve engine's TYPE_CHECKING connection alias.
        self._engine: Any = None

    def _private_engine(self) -> Any:
        engine = self._engine
        if engine is None:
            from .config import ClientConfig

            Engine = importlib.import_module("aioduct.engine").Engine
            config = ClientConfig(
                verify=self._resolver.verify,
                follow_redirects=False,
                connect_timeout=self._resolver.timeout,
                pool_max_idle_per_host=2,
            )
            engine = self._engine = Engine(config, runtime=self._runtime)
        return engine

    async def lookup(self, host: str, deadline: float | None) -> Answer:
        import dns.rdatatype

        kinds = (dns.rdatatype.AAAA, dns.rdatatype.A)
        queries = [_query(host, kind, zero_id=True) for kind in kinds]
        if self._runtime.background:
            wires = await asyncio.gather(
                *(self._ask(host, q, deadline) for q in queries), return_exceptions=True
            )
        else:
            wires = []
            for q in queries:
                try:
                    wires.append(await self._ask(host, q, deadline))
                except AioductError as exc:
                    wires.append(exc)
        return _combine(host, queries, wires, f"DoH server {self._resolver.url}")

    async def _ask(self, host: str, query: dns.message.Message, deadline: float | None) -> bytes:
        from .headers import Headers
        from .models import Request
        from .url import URL

        resolver = self._resolver
        wire = query.to_wire()
        if resolver.method == "GET":
            encoded = base64.urlsafe_b64encode(wire).rstrip(b"=").decode()
            sep = "&" if "?" in resolver.url else "?"
            url = URL(f"{resolver.url}{sep}dns={encoded}")
            fields = [("Host", url.host_header), ("Accept", "application/dns-message")]
            request = Request("GET", url, headers=Headers(fields))
        else:
            url = URL(resolver.url)
            fields = [
                ("Host", url.host_header),
                ("Accept", "application/dns-message"),
                ("Content-Type", "application/dns-message"),
            ]
            request = Request("POST", url, headers=Headers(fields), content=wire)
        timeout = resolver.timeout
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - self._runtime.now()))
        where = f"DoH server {resolver.url}"
        try:
            response = await self._private_engine().send(request, timeout=timeout)
        except AioductTimeout:
            raise ConnectError(
                f"cannot resolve host {host!r}: {where} did not answer in time ({timeout:g} s)"
            ) from None
        except AioductError as exc:
            reason = exc.args[0] if exc.args else exc
            raise ConnectError(f"cannot resolve host {host!r}: {where} failed: {reason}") from None
        if response.status != 200:
            raise ConnectError(
                f"cannot resolve host {host!r}: {where} answered HTTP {response.status}, "
                "not a DNS message"
            )
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/dns-message":
            raise ConnectError(
                f"cannot resolve host {host!r}: {where} answered with Content-Type "
                f"{kind or 'none'!r}, not "
                "application/dns-message; is the URL its RFC 8484 endpoint?"
            )
        content: bytes = response.content
        return content

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


class DoTResolver(Resolver):
    """DNS over TLS (RFC 7858): A and AAAA queries on one TLS connection to ``host:port``.

    ``server_hostname`` is the name the server's certificate must carry (default
    ``host``; an IP address needs an IP entry in the certificate). ``verify`` is as
    the client's. A connection per lookup: answers are cached for their TTL anyway.
    """

    def __init__(
        self,
        host: str,
        port: int = 853,
        *,
        server_hostname: str | None = None,
        verify: bool | str = True,
        timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.server_hostname = server_hostname or host
        self.verify = verify
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"DoTResolver({self.host!r}, port={self.port})"

    async def lookup(self, host: str, runtime: Runtime, deadline: float | None) -> Answer:
        import dns.rdatatype

        from .tls import ALPN_NONE, create_ssl_context, tls_error

        where = f"DoT server {self.host}:{self.port}"
        own = runtime.now() + self.timeout
        deadline = own if deadline is None or own < deadline else deadline
        queries = [_query(host, kind) for kind in (dns.rdatatype.AAAA, dns.rdatatype.A)]
        server = literal_address(self.host)
        try:
            if server is None:
                server = await runtime.resolve(self.host, self.port)
            stream = await runtime.open_tcp(server[0][1], self.port, deadline=deadline)
            try:
                context = create_ssl_context(self.verify, None, ALPN_NONE)
                try:
                    stream = await runtime.start_tls(
                        stream, context, self.server_hostname, deadline=deadline
                    )
                except (ssl.SSLError, ssl.CertificateError) as exc:
                    reason = tls_error(exc, self.host, self.port)
                    raise ConnectError(f"cannot resolve host {host!r}: {where}: {reason}") from None
                stream.write(b"".join(_framed(q.to_wire()) for q in queries))
                await stream.drain(deadline)
                wires = await _read_framed(
                    stream, len(queries), deadline, f"cannot resolve host {host!r}: {where}"
                )
            finally:
                stream.close()
        except Expired:
            raise ConnectError(
                f"cannot resolve host {host!r}: {where} did not answer in time"
            ) from None
        except OSError as exc:
            raise ConnectError(
                f"cannot resolve host {host!r}: {where} failed: {exc.strerror or exc}"
            ) from None
        # Answers may come in any order (RFC 7858 §3.3): match them by message id; one
        # matching no query is parsed as the next query's (and reported as what it is).
        remaining = list(wires)
        answers: list[bytes | BaseException] = []
        for query in queries:
            match = next((w for w in remaining if w[:2] == query.id.to_bytes(2, "big")), None)
            if match is None:
                match = remaining[0]
            remaining.remove(match)
            answers.append(match)
        return _combine(host, queries, answers, where)


def _framed(wire: bytes) -> bytes:
    """RFC 7858 §3.3 / RFC 1035 §4.2.2: a two-byte length, then the message."""
    return len(wire).to_bytes(2, "big") + wire


async def _read_framed(stream: Any, count: int, deadline: float | None, where: str) -> list[bytes]:
    buffer = b""
    messages: list[bytes] = []
    while len(messages) < count:
        while len(buffer) >= 2 and len(buffer) >= 2 + int.from_bytes(buffer[:2], "big"):
            size = int.from_bytes(buffer[:2], "big")
            messages.append(buffer[2 : 2 + size])
            buffer = buffer[2 + size :]
        if len(messages) >= count:
            break
        data = await stream.read(deadline)
        if not data:
            raise ConnectError(
                f"{where} closed the connection after {len(messages)} of {count} answers"
            )
        buffer += data
    return messages


def _query(host: str, kind: Any, *, zero_id: bool = False) -> dns.message.Message:
    import dns.message
    import dns.name

    try:
        name = dns.name.from_text(host)
    except Exception as exc:
        raise ConnectError(f"cannot resolve host {host!r}: not a valid DNS name ({exc})") from None
    query = dns.message.make_query(name, kind)
    if zero_id:
        query.id = 0  # RFC 8484 §4.1: DoH clients SHOULD use 0, for HTTP caching
    return query


def _combine(
    host: str,
    queries: list[dns.message.Message],
    wires: Iterable[bytes | BaseException],
    where: str,
) -> Answer:
    """Addresses from the AAAA and A answers; an error only if neither gave any."""
    addresses: Addresses = []
    ttls: list[float] = []
    first_error: BaseException | None = None
    for query, wire in zip(queries, wires, strict=True):
        if isinstance(wire, BaseException):
            if not isinstance(wire, AioductError):
                raise wire
            first_error = first_error or wire
            continue
        try:
            found, ttl = _parse_answer(host, query, wire, where)
        except ConnectError as exc:
            first_error = first_error or exc
            continue
        addresses.extend(found)
        if found:
            ttls.append(ttl)
    if not addresses:
        if first_error is not None:
            raise first_error
        raise ConnectError(f"cannot resolve host {host!r}: {where} knows no address for it")
    return Answer(addresses, min(ttls))


def _parse_answer(
    host: str, query: dns.message.Message, wire: bytes, where: str
) -> tuple[Addresses, float]:
    import dns.exception
    import dns.message
    import dns.rcode
    import dns.rdatatype

    try:
        reply = dns.message.from_wire(wire)
    except (dns.exception.DNSException, ValueError) as exc:
        raise ConnectError(
            f"cannot resolve host {host!r}: {where} sent a malformed DNS message ({exc})"
        ) from None
    if query.id != 0 and not query.is_response(reply):
        raise ConnectError(
            f"cannot resolve host {host!r}: {where} answered another question than asked"
        )
    if reply.question != query.question:
        raise ConnectError(
            f"cannot resolve host {host!r}: {where} answered another question than asked"
        )
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise ConnectError(f"cannot resolve host {host!r}: no such domain (NXDOMAIN from {where})")
    if rcode != dns.rcode.NOERROR:
        raise ConnectError(
            f"cannot resolve host {host!r}: {where} answered {dns.rcode.to_text(rcode)}; "
            "try again later or use another resolver"
        )
    # The queried name and the names its CNAME chain leads to, in the answer section.
    names = {query.question[0].name}
    grew = True
    while grew:
        grew = False
        for rrset in reply.answer:
            if rrset.rdtype == dns.rdatatype.CNAME and rrset.name in names:
                for rdata in rrset:
                    if rdata.target not in names:
                        names.add(rdata.target)
                        grew = True
    found: Addresses = []
    ttl = _MAX_TTL
    for rrset in reply.answer:
        if rrset.name not in names:
            continue
        if rrset.rdtype == dns.rdatatype.A:
            family = int(socket.AF_INET)
        elif rrset.rdtype == dns.rdatatype.AAAA:
            family = int(socket.AF_INET6)
        else:
            continue
        ttl = min(ttl, float(rrset.ttl))
        found.extend((family, rdata.address) for rdata in rrset)
    return found, ttl


# -- overrides -----------------------------------------------------------------------------------


def parse_overrides(
    resolve: Mapping[str, str | Iterable[str]] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    """``resolve=`` as sorted ``(key, "addr[,addr...]")`` pairs, each checked.

    A key is ``host`` or ``host:port``; a value an IP address, or ``ip:port`` /
    ``[ipv6]:port`` to connect to another port, or several separated by commas (or a
    list). Raises ``ValueError`` naming the bad entry.
    """
    items = resolve.items() if isinstance(resolve, Mapping) else resolve
    out: dict[str, str] = {}
    for item in items:
        key, value = item
        if not isinstance(key, str) or not key:
            raise ValueError(f"resolve= keys are 'host' or 'host:port', not {key!r}")
        values = [value] if isinstance(value, str) else list(value)
        parts = [p.strip() for v in values for p in str(v).split(",") if p.strip()]
        if not parts:
            raise ValueError(f"resolve={{{key!r}: {value!r}}} names no address")
        _split_key(key)
        for part in parts:
            _parse_target(part, 0, key)
        out[key.lower()] = ",".join(parts)
    return tuple(sorted(out.items()))


def _split_key(key: str) -> tuple[str, int | None]:
    host, sep, port = key.rpartition(":")
    if sep and port.isdigit() and "]" not in port and (":" not in host or host.endswith("]")):
        return host.strip("[]").lower(), _port(port, key)
    return key.strip("[]").lower(), None


def _port(text: str, where: str) -> int:
    port = int(text)
    if not 0 < port < 65536:
        raise ValueError(f"resolve= entry {where!r}: port {port} is out of range")
    return port


def _parse_target(text: str, port: int, key: str) -> Target:
    if text.startswith("["):
        ip, sep, rest = text[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            raise ValueError(f"resolve= entry {key!r}: {text!r} is not '[ipv6]:port'")
        if rest:
            port = _port(rest[1:], key)
    elif text.count(":") == 1:
        ip, _, port_text = text.partition(":")
        if not port_text.isdigit():
            raise ValueError(f"resolve= entry {key!r}: {text!r} is not 'ip:port'")
        port = _port(port_text, key)
    else:
        ip = text
    family = _literal_family(ip)
    if family is None:
        raise ValueError(
            f"resolve= entry {key!r}: {text!r} is not an IP address (a name would need "
            "resolving itself; give the address)"
        )
    return family, ip, port


class ResolverCache:
    """One engine's resolution: overrides, then cached answers, then its resolver."""

    __slots__ = ("_cache", "_inflight", "_lookup", "_max_entries", "_overrides", "_runtime")

    def __init__(
        self,
        runtime: Runtime,
        resolver: Resolver | None = None,
        overrides: tuple[tuple[str, str], ...] = (),
        *,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:
        self._runtime = runtime
        self._lookup = (resolver or SYSTEM_RESOLVER).bind(runtime)
        self._max_entries = max_entries
        self._overrides: dict[tuple[str, int | None], str] = {
            _split_key(key): value for key, value in overrides
        }
        self._cache: OrderedDict[str, tuple[float, Addresses]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Addresses]] = {}

    def __len__(self) -> int:
        return len(self._cache)

    async def resolve(
        self, host: str, port: int, deadline: float | None = None
    ) -> tuple[list[Target], bool]:
        """Where to connect for ``host:port``, and whether a lookup was performed."""
        if self._overrides:
            fixed = self._overrides.get((host, port)) or self._overrides.get((host, None))
            if fixed is not None:
                return [_parse_target(t, port, host) for t in fixed.split(",")], False
        addresses, looked_up = await self._addresses(host, deadline)
        return [(family, ip, port) for family, ip in addresses], looked_up

    async def _addresses(self, host: str, deadline: float | None) -> tuple[Addresses, bool]:
        cache = self._cache
        hit = cache.get(host)
        if hit is not None:
            if hit[0] > self._runtime.now():
                cache.move_to_end(host)
                return hit[1], False
            del cache[host]
        if not self._runtime.background:  # one lookup at a time in this thread anyway
            return await self._lookup_now(host, deadline), True
        pending = self._inflight.get(host)
        if pending is not None:
            return await asyncio.shield(pending), True
        future: asyncio.Future[Addresses] = asyncio.get_running_loop().create_future()
        self._inflight[host] = future
        try:
            addresses = await self._lookup_now(host, deadline)
            future.set_result(addresses)
            return addresses, True
        except BaseException as exc:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)
                    future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[host]

    async def _lookup_now(self, host: str, deadline: float | None) -> Addresses:
        answer = await self._lookup.lookup(host, deadline)
        if not isinstance(answer, Answer):  # a custom resolver may return a plain list
            answer = Answer(list(answer))
        addresses = answer.addresses
        if not addresses:
            raise ConnectError(f"cannot resolve host {host!r}: no addresses")
        ttl = _DEFAULT_TTL if answer.ttl is None else min(answer.ttl, _MAX_TTL)
        if ttl > 0:
            cache = self._cache
            cache[host] = (self._runtime.now() + ttl, addresses)
            cache.move_to_end(host)
            while len(cache) > self._max_entries:
                cache.popitem(last=False)
        return addresses

    def close(self) -> None:
        self._lookup.close()


#: The default resolver, shared (it keeps no state).
SYSTEM_RESOLVER: Final = SystemResolver()


def resolver_from_config(
    dns_over_https: str | None, dns_over_tls: str | None, verify: bool | str
) -> Resolver | None:
    """The resolver the data fields ``dns_over_https`` / ``dns_over_tls`` ask for."""
    if dns_over_https is not None:
        return DoHResolver(dns_over_https, verify=verify)
    if dns_over_tls is not None:
        key = dns_over_tls
        host, port = _split_key(key)
        return DoTResolver(host, port or 853, verify=verify)
    return None
