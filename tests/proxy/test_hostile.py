"""Proxies that misbehave, scripted byte by byte, on every driver: each failure is a
ProxyError naming the step, nothing hangs, and nothing a bad proxy sent reaches the
caller as if the origin had said it."""

from __future__ import annotations

import asyncio

import pytest

import aioduct
from aioduct.errors import ConnectError, ProxyError
from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.server import Conn, ScriptServer

from .drivers import DRIVERS, fetch
from .scripted import connect_proxy, read_head

ORIGIN = "https://localhost:9/"  # never reached: the proxy is the whole story


def proxy_url(srv: ScriptServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{srv.port}"


@pytest.mark.parametrize("driver", DRIVERS)
def test_connect_proxy_closes_mid_handshake(driver: str, script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        await read_head(conn)
        await conn.send(b"HTTP/1.1 200 Conn")
        conn.close()

    with pytest.raises(ProxyError, match="closed the connection before answering CONNECT"):
        fetch(driver, ORIGIN, proxy=proxy_url(script_server))


@pytest.mark.parametrize("driver", DRIVERS)
def test_socks_proxy_closes_mid_handshake(driver: str, script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        await conn.recv(3)
        await conn.send(b"\x05\x00")
        await conn.recv(64)
        await conn.send(b"\x05\x00\x00\x01\x7f")
        conn.close()

    with pytest.raises(ProxyError, match="closed the connection while answering the CONNECT"):
        fetch(driver, "http://example.test/", proxy=proxy_url(script_server, "socks5h"))


@pytest.mark.parametrize(
    ("scheme", "garbage", "match"),
    [
        ("socks5h", b"HTTP/1.1 400 Bad Request\r\n\r\n", "did not answer as a SOCKS5 server"),
        ("socks5h", b"\x05\x07", "chose authentication method 0x07"),
        ("socks4a", b"\xff" * 8, "did not answer as a SOCKS4 server"),
        ("socks4a", b"\x00\x5a\x00\x00\x00\x00\x00\x00HTTP/1.1 200 OK\r\n", "unexpected bytes"),
        ("http", b"\x05\x00", "did not answer CONNECT with HTTP"),
    ],
)
@pytest.mark.parametrize("driver", DRIVERS)
def test_proxy_answers_garbage(
    driver: str, scheme: str, garbage: bytes, match: str, script_server: ScriptServer
) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        await conn.recv(1)
        await conn.send(garbage)
        await conn.sleep(30)  # a proxy that keeps the connection open must not hang us

    target = ORIGIN if scheme == "http" else "http://example.test/"
    with pytest.raises(ProxyError, match=match):
        fetch(driver, target, proxy=proxy_url(script_server, scheme))


SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nfrom the proxy, evil"


@pytest.mark.parametrize("driver", DRIVERS)
def test_connect_response_with_bytes_after_the_head_is_refused(
    driver: str, script_server: ScriptServer
) -> None:
    async def smuggle(conn: Conn, head: bytes) -> bool:
        await conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n" + SMUGGLED)
        return True

    connect_proxy(script_server, [], smuggle)
    with pytest.raises(ProxyError, match="bytes after its '200 Connection established' answer"):
        fetch(driver, "https://localhost:9/", proxy=proxy_url(script_server))


@pytest.mark.parametrize("driver", DRIVERS)
def test_smuggled_bytes_after_a_pause_never_pass_for_the_origin(
    driver: str, script_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    """The tunnel opened; what follows must be the origin's TLS, and a plaintext
    response is not: the handshake fails, nothing is returned."""

    async def smuggle(conn: Conn, head: bytes) -> bool:
        await conn.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await conn.sleep(0.05)
        await conn.send(SMUGGLED)
        return True

    connect_proxy(script_server, [], smuggle)
    with pytest.raises(ConnectError):
        fetch(
            driver,
            "https://localhost:9/",
            proxy=proxy_url(script_server),
            verify=tls_ca.ca_pem_path,
        )


@pytest.mark.parametrize("driver", DRIVERS)
def test_407_loop_is_one_attempt_and_names_the_realm(
    driver: str, script_server: ScriptServer
) -> None:
    heads: list[bytes] = []

    async def challenge(conn: Conn, head: bytes) -> bool:
        await conn.send(
            b"HTTP/1.1 407 Proxy Authentication Required\r\n"
            b'Proxy-Authenticate: Basic realm="loop land"\r\nContent-Length: 0\r\n\r\n'
        )
        return True

    connect_proxy(script_server, heads, challenge)
    url = f"http://user:pw@127.0.0.1:{script_server.port}"
    with pytest.raises(ProxyError, match="requires authentication for realm 'loop land'"):
        fetch(driver, "https://localhost:9/", proxy=url)
    assert len(heads) == 1
    assert b"Proxy-Authorization: Basic dXNlcjpwdw==" in heads[0]


@pytest.mark.parametrize("driver", DRIVERS)
def test_huge_proxy_response_head_is_refused(driver: str, script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        await read_head(conn)
        await conn.send(b"HTTP/1.1 200 OK\r\n")
        for _ in range(2000):
            await conn.send(b"X-Filler: " + b"z" * 100 + b"\r\n")
        await conn.send(b"\r\n")

    with pytest.raises(ProxyError, match="larger than 65536 bytes"):
        fetch(driver, "https://localhost:9/", proxy=proxy_url(script_server))


@pytest.mark.parametrize("driver", DRIVERS)
def test_slow_socks5_handshake_one_byte_at_a_time(driver: str, script_server: ScriptServer) -> None:
    """Every reply dripped a byte at a time; then the 'origin' (the proxy itself) answers."""
    seen: list[bytes] = []

    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        greeting = await conn.recv(3)
        assert greeting == b"\x05\x02\x00\x02"[: len(greeting)]
        await conn.recv(64)
        await conn.drip(b"\x05\x02", delay=0.01)
        auth = await conn.recv(64)
        seen.append(auth)
        await conn.drip(b"\x01\x00", delay=0.01)
        request = await conn.recv(300)
        seen.append(request)
        await conn.drip(b"\x05\x00\x00\x03\x09localhost\x00\x50", delay=0.005)
        head = await read_head(conn)
        seen.append(head)
        await conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        conn.close()

    url = f"socks5h://me:pw@127.0.0.1:{script_server.port}"
    assert fetch(driver, "http://example.test:8080/x", proxy=url).content == b"ok"
    assert seen[0] == b"\x01\x02me\x02pw"
    assert seen[1] == b"\x05\x01\x00\x03\x0cexample.test\x1f\x90"
    assert seen[2].startswith(b"GET /x HTTP/1.1\r\n")
    assert b"proxy-authorization" not in seen[2].lower()


def test_socks5h_host_name_over_255_bytes_fails_before_any_byte(
    script_server: ScriptServer,
) -> None:
    """curl CVE-2023-38545: a 256-byte name for remote resolution is an error, never a
    truncated length byte, and nothing reaches the proxy -- also after a redirect."""
    long_host = ".".join(["a" * 63] * 4) + ".b"  # 257 bytes
    url = f"http://{long_host}/"
    for driver in DRIVERS:
        with pytest.raises(ProxyError, match="257 bytes long, too long to be resolved remotely"):
            fetch(driver, url, proxy=proxy_url(script_server, "socks5h"))
    assert script_server.connections_accepted == 0

    sent: list[bytes] = []

    @script_server.on_connect
    async def hook(conn: Conn) -> None:  # a SOCKS5 proxy whose "origin" redirects
        await conn.recv(3)
        await conn.send(b"\x05\x00")
        sent.append(await conn.recv(300))
        await conn.send(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x50")
        await read_head(conn)
        await conn.send(
            b"HTTP/1.1 301 Moved\r\nLocation: " + url.encode() + b"\r\nContent-Length: 0\r\n\r\n"
        )
        await conn.sleep(5)

    with pytest.raises(ProxyError, match="too long to be resolved remotely"):
        fetch("async", "http://short.test/", proxy=proxy_url(script_server, "socks5h"))
    assert script_server.connections_accepted == 1
    assert sent == [b"\x05\x01\x00\x03\x0ashort.test\x00\x50"]


def test_socks5_username_over_255_bytes_fails_before_any_byte(script_server: ScriptServer) -> None:
    url = f"socks5h://{'u' * 256}:pw@127.0.0.1:{script_server.port}"
    with pytest.raises(ProxyError, match="SOCKS5 username is 256 bytes"):
        fetch("blocking", "http://example.test/", proxy=url)
    assert script_server.connections_accepted == 0


def test_connect_timeout_covers_a_silent_proxy(script_server: ScriptServer) -> None:
    @script_server.on_connect
    async def hook(conn: Conn) -> None:
        await read_head(conn)
        await conn.sleep(30)

    for driver in ("async", "blocking"):
        with pytest.raises(aioduct.ConnectTimeout):
            fetch(driver, ORIGIN, proxy=proxy_url(script_server), connect_timeout=0.3)


def test_forward_connection_is_reused_across_http_origins(script_server: ScriptServer) -> None:
    """A plain-http forward connection may carry requests for any origin (the proxy sees
    them all anyway): one connection for two origins, requests in absolute form."""

    @script_server.route("*")
    async def forward(conn: Conn, req: object) -> None:
        target = req.target
        await conn.send_response(200, [("Content-Type", "text/plain")], target.encode())

    proxy = f"http://who:pw@127.0.0.1:{script_server.port}"

    async def run() -> list[str]:
        async with aioduct.Client(proxy=proxy) as client:
            out = []
            for url in ["http://a.test/1", "http://b.test:8080/2?q=1", "http://a.test/3"]:
                response = await client.get(url)
                assert "proxy-authorization" not in response.request.headers  # type: ignore[union-attr]
                out.append(response.text)
            return out

    assert asyncio.run(run()) == ["http://a.test/1", "http://b.test:8080/2?q=1", "http://a.test/3"]
    assert script_server.connections_accepted == 1
    assert all(r.header("proxy-authorization") == "Basic d2hvOnB3" for r in script_server.requests)


@pytest.mark.parametrize("driver", ["async", "blocking"])
def test_a_failed_handshake_leaves_the_client_usable(
    driver: str, script_server: ScriptServer, nginx: object
) -> None:
    """The first CONNECT is refused, the second relays: the failure held no pool slot
    and left nothing behind (max_connections=1 would wait forever otherwise)."""
    from aioduct.testing.nginx import Nginx

    assert isinstance(nginx, Nginx)
    heads: list[bytes] = []

    async def first_refused(conn: Conn, head: bytes) -> bool:
        if len(heads) == 1:
            await conn.send(b"HTTP/1.1 503 Try Again\r\nContent-Length: 0\r\n\r\n")
            return True
        return False

    connect_proxy(script_server, heads, first_refused)
    url = nginx.h2c_url + "/small"
    proxy = proxy_url(script_server)

    async def run() -> int:
        async with aioduct.Client(proxy=proxy, max_connections=1) as c:
            with pytest.raises(ProxyError, match="503 Try Again"):
                await c.get(url, version="2")  # h2c asks for a tunnel: CONNECT
            return (await c.get(url, version="2")).status

    if driver == "async":
        assert asyncio.run(run()) == 200
    else:
        with aioduct.BlockingClient(proxy=proxy, max_connections=1) as client:
            with pytest.raises(ProxyError, match="503 Try Again"):
                client.get(url, version="2")
            assert client.get(url, version="2").status == 200
    assert len(heads) == 2
