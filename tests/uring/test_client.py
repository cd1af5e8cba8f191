"""aioduct's unchanged pipeline on the io_uring loop, against nginx and a ScriptServer."""

from __future__ import annotations

import asyncio
import socket
import uuid

import pytest

import aioduct
from aioduct.testing.nginx import Nginx, TLSMaterial, deterministic_bytes
from aioduct.testing.server import Conn, ScriptServer, ServerRequest

from .conftest import RunUring


def tag() -> str:
    return uuid.uuid4().hex[:12]


def test_get_small_runs_on_the_uring_runtime(run_uring: RunUring, nginx: Nginx) -> None:
    async def main() -> aioduct.Response:
        async with aioduct.Client() as client:
            assert client._engine._bind()[0].name == "uring"
            return await client.get(nginx.http_url + "/small")

    r = run_uring(main())
    assert (r.status, r.http_version, r.content) == (200, "HTTP/1.1", b"Hello, World!")
    assert r.timings.connect is not None and r.timings.ttfb is not None


def test_keep_alive_reuses_one_connection(run_uring: RunUring, nginx: Nginx) -> None:
    mark = tag()
    since = nginx.log_position()

    async def main() -> None:
        async with aioduct.Client() as client:
            for i in range(20):
                r = await client.get(f"{nginx.http_url}/small?{mark}={i}")
                assert r.content == b"Hello, World!"

    run_uring(main())
    entries = nginx.requests_log(since=since, uri_contains=mark, min_entries=20)
    assert len(entries) == 20
    assert len({e.connection for e in entries}) == 1


@pytest.mark.parametrize("size", ["1m", "10m"])
def test_downloads_are_byte_exact(run_uring: RunUring, nginx: Nginx, size: str) -> None:
    async def main() -> bytes:
        async with aioduct.Client() as client:
            r = await client.get(f"{nginx.http_url}/bytes/{size}")
            assert r.status == 200
            return r.content

    expected = deterministic_bytes(1024 * 1024 * (1 if size == "1m" else 10))
    assert run_uring(main()) == expected


def test_streamed_download_is_byte_exact(run_uring: RunUring, nginx: Nginx) -> None:
    async def main() -> bytes:
        async with (
            aioduct.Client() as client,
            client.stream("GET", nginx.http_url + "/bytes/10m") as r,
        ):
            parts = [chunk async for chunk in r.aiter_bytes()]
        return b"".join(parts)

    assert run_uring(main()) == deterministic_bytes(10 * 1024 * 1024)


@pytest.mark.parametrize("eager_send", [True, False])
def test_post_3_mib(
    run_uring: RunUring, nginx: Nginx, monkeypatch: pytest.MonkeyPatch, eager_send: bool
) -> None:
    from aioduct.uring.loop import _UringSocketTransport

    monkeypatch.setattr(_UringSocketTransport, "eager_send", eager_send)  # False: all ring
    body = deterministic_bytes(3 * 1024 * 1024)

    async def main() -> str:
        async with aioduct.Client() as client:
            r = await client.post(nginx.http_url + "/post", content=body)
            return r.text

    assert run_uring(main()) == f"POST {len(body)}"


def test_fifty_concurrent_requests(run_uring: RunUring, nginx: Nginx) -> None:
    async def main() -> list[bytes]:
        async with aioduct.Client() as client:
            responses = await asyncio.gather(
                *(client.get(f"{nginx.http_url}/small?n={i}") for i in range(50))
            )
            again = await asyncio.gather(*(client.get(nginx.http_url + "/json") for _ in range(50)))
            assert all(r.json()["count"] == 42 for r in again)
            return [r.content for r in responses]

    assert run_uring(main()) == [b"Hello, World!"] * 50


def test_https_with_the_test_ca(run_uring: RunUring, nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async def main() -> None:
        async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
            r = await client.get(nginx.https_url + "/small")
            assert r.content == b"Hello, World!" and r.timings.tls is not None
            big = await client.get(nginx.https_url + "/bytes/1m")
            assert big.content == deterministic_bytes(1024 * 1024)
            assert big.timings.tls is None  # the TLS connection was reused
        async with aioduct.Client() as client:  # default roots do not know the test CA
            with pytest.raises(aioduct.TLSError, match="not signed by a trusted CA"):
                await client.get(nginx.https_url + "/small")

    run_uring(main())


def test_host_names_resolve_through_the_executor(run_uring: RunUring, nginx: Nginx) -> None:
    url = nginx.http_url.replace("127.0.0.1", "localhost") + "/small"

    async def main() -> aioduct.Response:
        async with aioduct.Client() as client:
            return await client.get(url)

    r = run_uring(main())
    assert r.content == b"Hello, World!" and r.timings.dns is not None


def test_read_timeout_on_a_silent_route(run_uring: RunUring, script_server: ScriptServer) -> None:
    @script_server.route("/silent")
    async def silent(conn: Conn, req: ServerRequest) -> None:
        await conn.sleep(30)

    script_server.route_raw("/good", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async def main() -> None:
        async with aioduct.Client(read_timeout=0.2) as client:
            with pytest.raises(aioduct.ReadTimeout, match=r"read_timeout=0\.2s"):
                await client.get(script_server.url + "/silent")
            pool = client._engine.pool
            assert pool is not None and pool.open_connections == 0
            assert (await client.get(script_server.url + "/good")).content == b"ok"

    run_uring(main())


def test_connection_refused_is_a_connect_error(run_uring: RunUring) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused

        async def main() -> None:
            async with aioduct.Client() as client:
                with pytest.raises(aioduct.ConnectError, match="refused") as info:
                    await client.get(f"http://127.0.0.1:{port}/")
                assert info.value.is_connect

        run_uring(main())


def test_runtime_sets_nodelay_and_keepalive(run_uring: RunUring, nginx: Nginx) -> None:
    from aioduct.runtimes.uring import UringRuntime

    port = int(nginx.http_url.rsplit(":", 1)[1])

    async def main() -> tuple[int, int, int]:
        runtime = UringRuntime()
        assert runtime.name == "uring"
        assert (socket.AF_INET, "127.0.0.1") in await runtime.resolve("localhost", port)
        stream = await runtime.open_tcp("127.0.0.1", port, deadline=None, keepalive=30)
        try:
            sock = stream._transport.get_extra_info("socket")  # type: ignore[union-attr]
            return (
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            )
        finally:
            stream.close()

    nodelay, keepalive, idle = run_uring(main())
    assert nodelay and keepalive and idle == 30


def test_default_runtime_keeps_asyncio_on_other_loops() -> None:
    from aioduct.runtimes import default_runtime

    async def name() -> str:
        return default_runtime().name

    assert asyncio.run(name()) == "asyncio"


def test_http2_runs_unchanged_on_the_uring_runtime(
    run_uring: RunUring, nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    async def main() -> None:
        async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
            assert client._engine._bind()[0].name == "uring"
            rs = await asyncio.gather(
                *(client.get(nginx.https_url + "/bytes/64k") for _ in range(10))
            )
            assert all(r.http_version == "HTTP/2" and len(r.content) == 65536 for r in rs)
            assert client._engine.pool is not None and client._engine.pool.open_connections == 1
        async with aioduct.Client(http2_prior_knowledge=True) as client:
            r = await client.get(nginx.h2c_url + "/bytes/1m")
            assert r.content == deterministic_bytes(1024 * 1024)

    run_uring(main())
