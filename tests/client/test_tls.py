"""TLS against nginx with trustme certificates, and servers with bad certificates."""

from __future__ import annotations

import asyncio
import re
import ssl
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import aioduct
from aioduct.protocol.tls import TLSLayer
from aioduct.testing.nginx import SMALL_BODY, Nginx, TLSMaterial, deterministic_bytes
from aioduct.testing.server import BadTLSServers, Conn, ScriptServer

pytestmark = pytest.mark.nginx


async def test_https_with_private_ca(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        r = await client.get(nginx.https_url + "/small")
        # nginx offers h2 by ALPN and aioduct offers it by default (http2=True).
        assert r.content == b"Hello, World!" and r.http_version == "HTTP/2"
        assert r.timings.tls is not None and r.timings.connect is not None
        again = await client.get(nginx.https_url + "/json")
        assert again.timings.tls is None and again.json()["count"] == 42
    async with aioduct.Client(verify=tls_ca.ca_pem_path, http2=False) as client:
        r = await client.get(nginx.https_url + "/small")
        assert r.content == b"Hello, World!" and r.http_version == "HTTP/1.1"


async def test_ssl_context_and_unverified(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.client_ssl_context()) as client:
        assert (await client.get(nginx.https_url + "/small")).status == 200
    async with aioduct.Client(verify=False) as client:
        assert (await client.get(nginx.https_url + "/small")).status == 200
    async with aioduct.Client(danger_accept_invalid_certs=True) as client:
        assert (await client.get(nginx.https_url + "/small")).status == 200


async def test_default_roots_reject_a_private_ca(nginx: Nginx) -> None:
    async with aioduct.Client() as client:
        with pytest.raises(aioduct.TLSError, match="not signed by a trusted CA") as info:
            await client.get(nginx.https_url + "/small")
    assert info.value.is_connect


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("expired", "certificate has expired"),
        ("wrong_host", "not valid for 'localhost'"),
        ("unknown_ca", "not signed by a trusted CA"),
    ],
)
async def test_bad_certificates_are_named(
    bad_tls_servers: BadTLSServers, tls_ca: TLSMaterial, which: str, message: str
) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        with pytest.raises(aioduct.TLSError, match=message):
            await client.get(getattr(bad_tls_servers, which) + "/")
        assert client._engine.pool is not None and client._engine.pool.open_connections == 0


async def test_https_redirect_chain(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path, https_only=True) as client:
        r = await client.get(nginx.https_url + "/redirect/301/small")
        assert r.content == b"Hello, World!"


def test_bad_ca_path_is_explained() -> None:
    with pytest.raises(aioduct.TLSError, match="neither a CA bundle file nor a directory"):
        from aioduct.tls import create_ssl_context

        create_ssl_context("/nonexistent/ca.pem")


async def test_client_certificate(tls_ca: TLSMaterial, tmp_path: Path) -> None:
    """Mutual TLS: a server that demands a client certificate issued by the test CA."""
    server_ctx = tls_ca.server_ssl_context()
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    tls_ca.ca.configure_trust(server_ctx)
    leaf = tls_ca.ca.issue_cert("client@aioduct.test")
    cert_pem = tmp_path / "client.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    with ScriptServer(tls=server_ctx) as srv:
        srv.route_respond("/who", body=b"hello client")
        async with aioduct.Client(verify=tls_ca.ca_pem_path, cert=str(cert_pem)) as client:
            assert (await client.get(srv.url + "/who")).content == b"hello client"
        async with aioduct.Client(verify=tls_ca.ca_pem_path) as anonymous:
            with pytest.raises(aioduct.RemoteProtocolError, match="client certificate"):
                await anonymous.get(srv.url + "/who")
        srv.close(raise_errors=False)


def test_unreadable_client_certificate_is_explained(tmp_path: Path) -> None:
    from aioduct.tls import create_ssl_context

    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    with pytest.raises(aioduct.TLSError, match="cannot load client certificate"):
        create_ssl_context(True, str(bogus))


# -- every driver: the TLS layer on asyncio, uvloop and io_uring, and the blocking runtime ----

DRIVERS = ["asyncio", "uvloop", "uring", "blocking"]
Outcome = aioduct.Response | aioduct.AioductError


def get_all(driver: str, urls: list[str], **options: Any) -> list[Outcome]:
    """GET each URL in turn on one client of ``driver``; responses or their errors.

    After an error the pool must hold no connection (a failed handshake leaks nothing).
    """
    if driver == "blocking":
        outcomes: list[Outcome] = []
        with aioduct.BlockingClient(**options) as blocking:
            for url in urls:
                try:
                    outcomes.append(blocking.get(url))
                except aioduct.AioductError as exc:
                    outcomes.append(exc)
        return outcomes

    async def main() -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with aioduct.Client(**options) as client:
            runtime, pool = client._engine._bind()
            assert runtime.name == driver
            for url in urls:
                try:
                    outcomes.append(await client.get(url))
                except aioduct.AioductError as exc:
                    assert pool.open_connections == 0
                    outcomes.append(exc)
        return outcomes

    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if driver == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        loop_factory = uvloop.new_event_loop
    elif driver == "uring":
        from aioduct import uring

        reason = uring.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        from aioduct.uring.loop import new_event_loop

        loop_factory = new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def tag() -> str:
    return uuid.uuid4().hex[:12]


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
def test_sessions_are_resumed(nginx: Nginx, tls_ca: TLSMaterial, driver: str, http2: bool) -> None:
    """A connection per request (no pool): from the second on, nginx resumes the session."""
    mark = tag()
    since = nginx.log_position()
    urls = [f"{nginx.https_url}/small?{mark}={i}" for i in range(4)]
    outcomes = get_all(
        driver, urls, verify=tls_ca.ca_pem_path, http2=http2, pool_max_idle_per_host=0
    )
    for r in outcomes:
        assert isinstance(r, aioduct.Response) and r.content == SMALL_BODY
        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
        assert r.timings.tls is not None  # each one did a handshake, resumed or not
    log = nginx.requests_log(since=since, uri_contains=mark, min_entries=4)
    assert len({e.connection for e in log}) == 4
    assert [e.tls_resumed for e in log] == [False, True, True, True]


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_sessions_can_be_turned_off(nginx: Nginx, tls_ca: TLSMaterial, driver: str) -> None:
    mark = tag()
    since = nginx.log_position()
    urls = [f"{nginx.https_url}/small?{mark}={i}" for i in range(3)]
    options = {"verify": tls_ca.ca_pem_path, "pool_max_idle_per_host": 0}
    get_all(driver, urls, tls_session_cache=False, **options)
    log = nginx.requests_log(since=since, uri_contains=mark, min_entries=3)
    assert [e.tls_resumed for e in log] == [False, False, False]


async def test_a_session_is_resumed_only_with_the_settings_it_was_made_with(
    nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    """HTTP/1.1-only and h2-offering connections use different TLS settings (ALPN): a
    session made by one is never offered by the other."""
    mark = tag()
    since = nginx.log_position()
    async with aioduct.Client(verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0) as client:
        for i, version in enumerate(["1.1", None, "1.1", None]):
            r = await client.get(f"{nginx.https_url}/small?{mark}={i}", version=version)
            assert r.http_version == ("HTTP/1.1" if version else "HTTP/2")
    log = nginx.requests_log(since=since, uri_contains=mark, min_entries=4)
    assert len({e.connection for e in log}) == 4
    assert [e.tls_resumed for e in log] == [False, False, True, True]


@pytest.mark.parametrize("driver", DRIVERS)
def test_large_bodies_cross_many_records(nginx: Nginx, tls_ca: TLSMaterial, driver: str) -> None:
    """10 MB over HTTP/1.1 and h2, byte-exact: records split across receives, several
    records per receive, and the connection reused afterwards."""
    urls = [nginx.https_url + "/bytes/10m", nginx.https_url + "/bytes/1m"]
    for http2 in (False, True):
        big, small = get_all(driver, urls, verify=tls_ca.ca_pem_path, http2=http2)
        assert isinstance(big, aioduct.Response) and isinstance(small, aioduct.Response)
        assert big.content == deterministic_bytes(10 * 1024 * 1024)
        assert small.content == deterministic_bytes(1024 * 1024)
        assert small.timings.tls is None  # the same connection carried both


# -- servers that are not what they claim -----------------------------------------------------


@pytest.fixture(scope="module")
def broken_tls() -> Iterator[dict[str, str]]:
    """Plain TCP servers that answer a ClientHello wrongly, by name -> https URL."""

    async def garbage(conn: Conn) -> None:
        await conn.recv()
        await conn.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    async def reset(conn: Conn) -> None:
        await conn.recv()
        conn.reset()

    async def close(conn: Conn) -> None:
        await conn.recv()
        conn.close()

    async def silent(conn: Conn) -> None:
        await conn.recv()
        await conn.sleep(3600)

    servers = {}
    for hook in (garbage, reset, close, silent):
        srv = ScriptServer().start()
        srv.on_connect(hook)
        servers[hook.__name__] = srv
    try:
        yield {name: f"https://127.0.0.1:{srv.port}/" for name, srv in servers.items()}
    finally:
        for srv in servers.values():
            srv.close(raise_errors=False)


@pytest.mark.parametrize("driver", DRIVERS)
@pytest.mark.parametrize(
    ("server", "error", "message"),
    [
        ("garbage", aioduct.TLSError, "failed: WRONG_VERSION_NUMBER"),
        ("reset", aioduct.ConnectError, "during the TLS handshake: .*reset by peer"),
        ("close", aioduct.TLSError, "the server closed the connection in the middle of it"),
        ("silent", aioduct.ConnectTimeout, "longer than connect_timeout=0.3s"),
    ],
)
def test_broken_handshakes_are_named(
    broken_tls: dict[str, str],
    tls_ca: TLSMaterial,
    driver: str,
    server: str,
    error: type[Exception],
    message: str,
) -> None:
    (outcome,) = get_all(
        driver, [broken_tls[server]], verify=tls_ca.ca_pem_path, connect_timeout=0.3
    )
    assert type(outcome) is error
    assert outcome.is_connect or outcome.is_timeout
    assert re.search(message, str(outcome)), outcome


@pytest.mark.parametrize("driver", DRIVERS)
def test_bad_certificates_on_every_driver(
    bad_tls_servers: BadTLSServers, tls_ca: TLSMaterial, driver: str
) -> None:
    urls = [bad_tls_servers.expired, bad_tls_servers.wrong_host, bad_tls_servers.unknown_ca]
    outcomes = get_all(driver, [u + "/" for u in urls], verify=tls_ca.ca_pem_path)
    messages = ["certificate has expired", "not valid for 'localhost'", "not signed by a trusted"]
    for outcome, message in zip(outcomes, messages, strict=True):
        assert isinstance(outcome, aioduct.TLSError) and message in str(outcome)


# -- the stream's own TLS, seen from a server made of the same layer --------------------------


@pytest.fixture
def layer_server(tls_ca: TLSMaterial) -> Iterator[tuple[ScriptServer, list[TLSLayer]]]:
    """A server (``https://localhost:PORT``) that is a TLSLayer over plain TCP, and that
    layer per connection.

    The server sees exactly what the client put on the wire, down to the close_notify
    before the FIN. Each connection gets a new server context, so new ticket keys: it
    never resumes a session, and always issues a new one.
    """
    seen: list[TLSLayer] = []
    with ScriptServer() as srv:

        @srv.on_connect
        async def serve(conn: Conn) -> None:
            tls = TLSLayer(tls_ca.server_ssl_context(), server_side=True)
            seen.append(tls)
            buf = memoryview(bytearray(65536))
            while not tls.do_handshake():
                await conn.send(tls.data_to_send())
                tls.receive_data(await conn.recv())
            await conn.send(tls.data_to_send())
            request = bytes(buf[: tls.read_into(buf)])  # it may have come with the Finished
            while b"\r\n\r\n" not in request:
                request += buf[: tls.read_into(buf, await conn.recv())]
            await conn.send(tls.encrypt(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            while not tls.closed:
                tls.read_into(buf, await conn.recv())

        yield srv, seen


def test_close_notify_is_sent_when_a_connection_is_closed(
    layer_server: tuple[ScriptServer, list[TLSLayer]], tls_ca: TLSMaterial
) -> None:
    srv, seen = layer_server
    url = f"https://localhost:{srv.port}/"
    for driver in ("asyncio", "uvloop", "uring"):
        (r,) = get_all(driver, [url], verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0)
        assert isinstance(r, aioduct.Response) and r.content == b"ok"
        srv.wait_for(lambda: seen[-1].closed)
        assert seen[-1].close_notify_received, driver


async def test_a_declined_session_is_replaced_by_the_next_one(
    layer_server: tuple[ScriptServer, list[TLSLayer]], tls_ca: TLSMaterial
) -> None:
    """A session is offered until the server declines it; then the connection that was
    declined hands over its own, which is offered next."""
    srv, seen = layer_server
    url = f"https://localhost:{srv.port}/"
    held = []
    async with aioduct.Client(verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0) as client:
        sessions = client._engine._sessions
        assert sessions is not None
        for _ in range(3):
            assert (await client.get(url)).content == b"ok"
            assert len(sessions) == 1
            held.append(next(iter(sessions._sessions.values())))
    assert not any(tls.ssl_object.session_reused for tls in seen)
    assert held[0] is not held[1] and held[1] is not held[2]
