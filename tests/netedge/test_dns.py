"""resolve= overrides, DoH and DoT resolvers against loopback servers, the TTL cache."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

import aioduct
from aioduct.dns import Answer, ResolverCache
from aioduct.runtimes import Runtime
from aioduct.runtimes.asyncio import AsyncioRuntime
from aioduct.testing.dnsserver import DoTServer, Zone, serve_doh
from aioduct.testing.nginx import SMALL_BODY, Nginx, TLSMaterial
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .drivers import DRIVERS, fetch, fetch_all, ok

V4 = int(socket.AF_INET)


@pytest.fixture
def origin(script_server: ScriptServer) -> ScriptServer:
    """A plain-HTTP origin the zone's names point at (127.0.0.1)."""

    async def hello(conn: Conn, req: ServerRequest) -> None:
        await conn.send_response(200, [("X-Host", req.header("host") or "")], b"hello")

    script_server.add_route("/", hello)
    return script_server


def zone_for(origin: ScriptServer, **extra: Any) -> Zone:
    records: dict[str, list[str] | str] = {
        "app.test": ["127.0.0.1"],
        "six.test": ["::1", "127.0.0.1"],
        "broken.test": "servfail",
        "garbage.test": "garbage",
        "truncated.test": "truncated",
        "other.test": "mismatch",
        "silent.test": "silent",
    }
    records.update(extra)
    return Zone(records)


@pytest.fixture
def doh(tls_ca: TLSMaterial, origin: ScriptServer) -> Iterator[tuple[str, Zone]]:
    zone = zone_for(origin)
    srv = ScriptServer(tls=tls_ca.server_ssl_context()).start()
    try:
        yield serve_doh(srv, zone), zone
    finally:
        srv.close(raise_errors=False)


@pytest.fixture
def dot(tls_ca: TLSMaterial, origin: ScriptServer) -> Iterator[tuple[DoTServer, Zone]]:
    zone = zone_for(origin)
    with DoTServer(zone, tls_ca.server_ssl_context()) as server:
        yield server, zone


# -- resolve= ----------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_resolve_overrides_keep_tls_verifying_the_name(
    driver: str, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    port = int(nginx.https_url.rsplit(":", 1)[1])
    verify = tls_ca.ca_pem_path
    # alt.localhost resolves nowhere; the override sends it to nginx, whose certificate
    # names it: TLS verifies it and SNI carries it.
    r = ok(
        fetch(
            driver,
            f"https://alt.localhost:{port}/small",
            verify=verify,
            resolve={"alt.localhost": "127.0.0.1"},
        )
    )
    assert r.content == SMALL_BODY and r.timings.address == f"127.0.0.1:{port}"
    # host:port -> another port (curl's --connect-to)
    r = ok(
        fetch(
            driver,
            "https://alt.localhost/small",
            verify=verify,
            resolve={"alt.localhost:443": f"127.0.0.1:{port}"},
        )
    )
    assert r.content == SMALL_BODY and r.timings.address == f"127.0.0.1:{port}"
    # A name the certificate does not cover still fails verification: the override
    # changes where to connect, never what is verified.
    outcome = fetch(
        driver,
        f"https://example.test:{port}/small",
        verify=verify,
        resolve={"example.test": "127.0.0.1"},
    )
    assert isinstance(outcome, aioduct.TLSError), outcome
    assert "example.test" in str(outcome)


def test_resolve_validation() -> None:
    cfg = aioduct.ClientConfig(resolve={"A.test": "127.0.0.1, ::1", "b.test:443": "[::1]:8443"})
    assert cfg.resolve == (("a.test", "127.0.0.1,::1"), ("b.test:443", "[::1]:8443"))
    assert aioduct.ClientConfig.decode(cfg.encode()) == cfg
    for bad in (
        {"x.test": "not-an-ip"},
        {"x.test": ""},
        {"x.test": "127.0.0.1:99999"},
        {"x.test": "[::1"},
        {"x.test": "localhost"},
    ):
        with pytest.raises(ValueError, match="resolve="):
            aioduct.ClientConfig(resolve=bad)


# -- DoH and DoT ---------------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_doh_answers_are_used_and_cached(
    driver: str, method: str, doh: tuple[str, Zone], origin: ScriptServer, tls_ca: TLSMaterial
) -> None:
    url, zone = doh
    resolver = aioduct.DoHResolver(url, method=method, verify=tls_ca.ca_pem_path)
    target = f"http://app.test:{origin.port}/"
    outcomes = fetch_all(driver, [target, target], resolver=resolver, pool_max_idle_per_host=0)
    for r in outcomes:
        assert ok(r).content == b"hello"
    assert ok(outcomes[0]).timings.dns is not None
    assert ok(outcomes[1]).timings.dns is None  # from the cache
    assert sorted(zone.queries) == [("app.test", "A"), ("app.test", "AAAA")]


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_dot_answers_are_used_and_cached(
    driver: str, dot: tuple[DoTServer, Zone], origin: ScriptServer, tls_ca: TLSMaterial
) -> None:
    server, zone = dot
    resolver = aioduct.DoTResolver("127.0.0.1", server.port, verify=tls_ca.ca_pem_path)
    target = f"http://app.test:{origin.port}/"
    outcomes = fetch_all(driver, [target, target], resolver=resolver, pool_max_idle_per_host=0)
    assert [ok(r).content for r in outcomes] == [b"hello", b"hello"]
    assert sorted(zone.queries) == [("app.test", "A"), ("app.test", "AAAA")]
    assert server.connections == 1


def test_doh_and_dot_in_local_engine_workers(
    doh: tuple[str, Zone], dot: tuple[DoTServer, Zone], origin: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """The local engine takes the data forms: dns_over_https= and dns_over_tls=."""
    url, zone = doh
    target = f"http://app.test:{origin.port}/"
    r = ok(fetch("local", target, dns_over_https=url, verify=tls_ca.ca_pem_path))
    assert r.content == b"hello" and ("app.test", "A") in zone.queries
    server, dot_zone = dot
    r = ok(
        fetch("local", target, dns_over_tls=f"127.0.0.1:{server.port}", verify=tls_ca.ca_pem_path)
    )
    assert r.content == b"hello" and ("app.test", "A") in dot_zone.queries


def test_ipv6_answers_are_raced_with_ipv4(
    doh: tuple[str, Zone], origin: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """six.test has ::1 (nothing listens there on this port) and 127.0.0.1."""
    url, _zone = doh
    resolver = aioduct.DoHResolver(url, verify=tls_ca.ca_pem_path)
    r = ok(fetch("asyncio", f"http://six.test:{origin.port}/", resolver=resolver))
    assert r.timings.address == f"127.0.0.1:{origin.port}"


FAILURES = [
    ("nowhere.test", "NXDOMAIN"),
    ("broken.test", "SERVFAIL"),
    ("garbage.test", "malformed DNS message"),
    ("truncated.test", "malformed DNS message"),
    ("other.test", "another question"),
    ("silent.test", "in time"),
]


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
@pytest.mark.parametrize(("name", "words"), FAILURES, ids=[f[0] for f in FAILURES])
@pytest.mark.parametrize("kind", ["doh", "dot"])
def test_resolver_failures_are_connect_errors(
    driver: str,
    kind: str,
    name: str,
    words: str,
    request: pytest.FixtureRequest,
    origin: ScriptServer,
    tls_ca: TLSMaterial,
) -> None:
    resolver: aioduct.Resolver
    if kind == "doh":
        url, _zone = request.getfixturevalue("doh")
        resolver = aioduct.DoHResolver(url, verify=tls_ca.ca_pem_path, timeout=0.5)
    else:
        server, _zone = request.getfixturevalue("dot")
        resolver = aioduct.DoTResolver(
            "127.0.0.1", server.port, verify=tls_ca.ca_pem_path, timeout=0.5
        )
    outcome = fetch(driver, f"http://{name}:{origin.port}/", resolver=resolver)
    assert isinstance(outcome, aioduct.ConnectError), outcome
    assert f"cannot resolve host {name!r}" in str(outcome), outcome
    assert words.lower() in str(outcome).lower(), outcome


def test_a_dot_server_with_an_untrusted_certificate_is_refused(
    dot: tuple[DoTServer, Zone], origin: ScriptServer
) -> None:
    server, zone = dot
    resolver = aioduct.DoTResolver("127.0.0.1", server.port)  # certifi: not the test CA
    outcome = fetch("asyncio", f"http://app.test:{origin.port}/", resolver=resolver)
    assert isinstance(outcome, aioduct.ConnectError) and "certificate" in str(outcome)
    assert zone.queries == []


def test_resolver_options_are_checked() -> None:
    with pytest.raises(ValueError, match="https://"):
        aioduct.DoHResolver("http://127.0.0.1/dns-query")
    with pytest.raises(ValueError, match="GET"):
        aioduct.DoHResolver("https://127.0.0.1/dns-query", method="PUT")
    with pytest.raises(ValueError, match="not both"):
        aioduct.ClientConfig(dns_over_https="https://a/", dns_over_tls="b")
    with pytest.raises(TypeError, match="dns_over_https"):
        aioduct.Client(engine="local", resolver=aioduct.SystemResolver())
    cfg = aioduct.ClientConfig(dns_over_https="https://127.0.0.1/dns-query", dns_over_tls=None)
    assert msgspec.msgpack.decode(cfg.encode(), type=aioduct.ClientConfig) == cfg


# -- what the resolver is asked (reliability.md 1.1 / 1.10) --------------------------------------


class Recording(aioduct.Resolver):
    """Answers every name with 127.0.0.1 and remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def lookup(self, host: str, runtime: Runtime, deadline: float | None) -> Answer:
        self.asked.append(host)
        return Answer([(V4, "127.0.0.1")])


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_credentials_never_reach_the_resolver_on_a_relative_redirect(
    driver: str, script_server: ScriptServer
) -> None:
    """curl CVE-2020-8169: part of the password ended up in the host name looked up."""
    script_server.route_respond("/start", status=302, headers=[("Location", "/next")])
    script_server.route_respond("/next", body=b"done")
    recording = Recording()
    r = ok(
        fetch(driver, f"http://u:p%40ss@app.test:{script_server.port}/start", resolver=recording)
    )
    assert r.content == b"done"
    assert recording.asked == ["app.test"]


@pytest.mark.parametrize(
    "url",
    [
        "http://app.test:{port}#@evil.test/x",
        "http://app.test:{port}?@evil.test/x",
        "http://user@evil.test@app.test:{port}/",
        "http://app.test%2F10.0.0.1:{port}/",
        "http://app.test%40evil.test:{port}/",
    ],
)
def test_the_host_looked_up_is_the_urls_host(url: str, script_server: ScriptServer) -> None:
    """curl CVE-2016-8624 and kin: what the URL's host says is what gets resolved."""
    script_server.route_respond("/", body=b"ok")
    script_server.route_respond("/x", body=b"ok")
    recording = Recording()
    outcome = fetch("asyncio", url.format(port=script_server.port), resolver=recording)
    if isinstance(outcome, aioduct.InvalidURL):
        assert recording.asked == []
    else:
        assert ok(outcome).status == 200 and recording.asked == ["app.test"]


async def test_the_cache_is_bounded() -> None:
    """aiohttp CVE-2026-34513: a crawl over many names must not grow the cache forever."""
    cache = ResolverCache(AsyncioRuntime(asyncio.get_running_loop()), Recording(), max_entries=100)
    for i in range(5000):
        targets, looked_up = await cache.resolve(f"host{i}.test", 80)
        assert looked_up and targets == [(V4, "127.0.0.1", 80)]
    assert len(cache) == 100
    # the most recent ones are the ones kept
    assert (await cache.resolve("host4999.test", 80))[1] is False
    assert (await cache.resolve("host0.test", 80))[1] is True


async def test_ttl_zero_is_not_cached_and_concurrent_lookups_share_one() -> None:
    class Slow(Recording):
        async def lookup(self, host: str, runtime: Runtime, deadline: float | None) -> Answer:
            self.asked.append(host)
            await asyncio.sleep(0.01)
            return Answer([(V4, "127.0.0.1")], ttl=0)

    slow = Slow()
    cache = ResolverCache(AsyncioRuntime(asyncio.get_running_loop()), slow)
    await asyncio.gather(*(cache.resolve("a.test", 80) for _ in range(10)))
    assert slow.asked == ["a.test"]
    await cache.resolve("a.test", 80)
    assert slow.asked == ["a.test", "a.test"]
    assert len(cache) == 0


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_doh_over_http2_shares_one_connection(
    driver: str, method: str, origin: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """Against an HTTP/2 DoH server both queries of a lookup, and later lookups, ride
    one connection of the resolver's private pool."""
    import base64

    from aioduct.testing.h2server import H2Request, H2Server

    zone = zone_for(origin)
    with H2Server(tls=tls_ca.server_ssl_context()) as srv:

        @srv.route("/dns-query")
        async def answer(req: H2Request) -> None:
            if req.method == "GET":
                encoded = req.path.partition("dns=")[2]
                wire = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            else:
                wire = await req.body()
            reply = zone.answer(wire)
            assert reply is not None
            await req.respond(200, reply, [("content-type", "application/dns-message")])

        resolver = aioduct.DoHResolver(
            srv.url + "/dns-query", method=method, verify=tls_ca.ca_pem_path
        )
        urls = [f"http://app.test:{origin.port}/", f"http://six.test:{origin.port}/"]
        outcomes = fetch_all(driver, urls, resolver=resolver)
        assert [ok(r).content for r in outcomes] == [b"hello", b"hello"]
        assert srv.connections_accepted == 1
    assert sorted(zone.queries) == [
        ("app.test", "A"),
        ("app.test", "AAAA"),
        ("six.test", "A"),
        ("six.test", "AAAA"),
    ]


async def test_idna_names_are_resolved_in_their_ascii_form(script_server: ScriptServer) -> None:
    """curl CVE-2016-8625: the name looked up is the IDNA 2008 / UTS 46 form."""
    script_server.route_respond("/", body=b"ok")
    recording = Recording()
    async with aioduct.Client(resolver=recording) as client:
        r = await client.get(f"http://straße.test:{script_server.port}/")
    assert r.status == 200 and recording.asked == ["xn--strae-oqa.test"]


@pytest.mark.parametrize("base", ["http:////admin-dashboard/secret", "http:////app.test/"])
async def test_base_url_confusion_resolves_the_parsed_host(
    base: str, script_server: ScriptServer
) -> None:
    """httpx CVE-2021-41945: a base URL must not turn into another host when joined; the
    host looked up is the one URL(base).host says, or the URL is refused."""
    script_server.route_respond("/", body=b"ok")
    recording = Recording()
    try:
        expected = aioduct.URL(base).host
    except aioduct.InvalidURL:
        with pytest.raises(aioduct.InvalidURL):
            aioduct.Client(base_url=base, resolver=recording)
        return
    async with aioduct.Client(base_url=base, resolver=recording, connect_timeout=2) as client:
        with contextlib.suppress(aioduct.AioductError):
            await client.get("x")
    assert recording.asked in ([], [expected])
