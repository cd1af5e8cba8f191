"""HTTP/3 against a real QUIC server (aioquic's, aioduct.testing.h3server) on loopback,
on every driver: Client on asyncio and uvloop, BlockingClient, the local engine."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

import aioduct
from aioduct.testing.h3server import H3Request, H3Server
from aioduct.testing.nginx import Nginx, TLSMaterial, deterministic_bytes

from .conftest import options


async def test_prior_knowledge_get(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/small")
        again = await client.get(h3.url + "/headers")
    assert (r.status, r.http_version, r.content) == (200, "HTTP/3", b"Hello, World!")
    assert r.timings.tls is not None and again.timings.tls is None  # one handshake
    assert h3.connections_accepted == 1
    seen = dict(line.split(": ", 1) for line in again.text.splitlines())
    assert seen[":authority"] == h3.url.removeprefix("https://")
    assert "host" not in seen and "connection" not in seen  # RFC 9114 §4.2


@pytest.mark.uvloop
async def test_forty_concurrent_streams_share_one_connection(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        responses = await asyncio.gather(
            *(client.get(f"{h3.url}/slow/50?i={i}") for i in range(40))
        )
    assert {(r.status, r.content) for r in responses} == {(200, b"slow")}
    assert h3.connections_accepted == 1
    assert h3.max_open_streams_seen > 10


async def test_ten_megabyte_download_and_streaming(h3: H3Server, tls_ca: TLSMaterial) -> None:
    expected = deterministic_bytes(10_000_000)
    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.get(h3.url + "/bytes/10000000")
        assert r.content == expected
        async with client.stream("GET", h3.url + "/bytes/3000000") as streamed:
            parts = [chunk async for chunk in streamed.aiter_bytes()]
        assert b"".join(parts) == expected[:3_000_000] and len(parts) > 1


async def test_upload_larger_than_the_flow_control_window(
    h3: H3Server, tls_ca: TLSMaterial
) -> None:
    body = os.urandom(5 * 1024 * 1024)  # the server grants 1 MiB per stream at first

    async def chunks() -> object:
        for i in range(0, len(body), 300_000):
            yield body[i : i + 300_000]

    async with aioduct.Client(**options(tls_ca)) as client:
        r = await client.post(h3.url + "/echo", content=body)
        streamed = await client.post(h3.url + "/echo", content=chunks())  # type: ignore[arg-type]
    assert r.content == body and streamed.content == body


def test_blocking_client(h3: H3Server, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(**options(tls_ca)) as client:
        r = client.get(h3.url + "/small")
        big = client.post(h3.url + "/echo", content=b"z" * 2_000_000)
        assert client.get(h3.url + "/bytes/1000000").content == deterministic_bytes(1_000_000)
    assert (r.status, r.http_version, r.content) == (200, "HTTP/3", b"Hello, World!")
    assert big.content == b"z" * 2_000_000
    assert h3.connections_accepted == 1


def test_local_engine_workers(h3: H3Server, tls_ca: TLSMaterial) -> None:
    with aioduct.LocalEngine(workers=1, **options(tls_ca)) as engine:  # type: ignore[arg-type]
        results = list(engine.map([h3.url + "/small"] * 20))
    assert {(r.status, r.http_version, r.body, r.error) for r in results} == {
        (200, "HTTP/3", b"Hello, World!", None)
    }


async def test_per_request_version(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        r = await client.get(h3.url + "/small", version="3")
    assert r.http_version == "HTTP/3"


async def test_server_closing_mid_flight(h3: H3Server, tls_ca: TLSMaterial) -> None:
    arrived = asyncio.Event()
    loop = asyncio.get_running_loop()

    @h3.route("/hang")
    async def hang(req: H3Request) -> None:
        loop.call_soon_threadsafe(arrived.set)
        await asyncio.sleep(30)

    async with aioduct.Client(**options(tls_ca)) as client:
        pending = asyncio.ensure_future(client.get(h3.url + "/hang"))
        await arrived.wait()
        h3.close_connections(error_code=0x102, reason="going away")  # H3_INTERNAL_ERROR
        with pytest.raises(aioduct.RemoteProtocolError, match=r"H3_INTERNAL_ERROR.*going away"):
            await pending
        r = await client.get(h3.url + "/small")  # a new connection
    assert r.content == b"Hello, World!" and h3.connections_accepted == 2


async def test_stream_reset_fails_only_that_request(h3: H3Server, tls_ca: TLSMaterial) -> None:
    @h3.route("/reset")
    async def reset(req: H3Request) -> None:
        req.reset(0x10C)  # H3_REQUEST_CANCELLED

    async with aioduct.Client(**options(tls_ca)) as client:
        with pytest.raises(aioduct.RemoteProtocolError, match="H3_REQUEST_CANCELLED"):
            await client.get(h3.url + "/reset")
        assert (await client.get(h3.url + "/small")).status == 200
    assert h3.connections_accepted == 1


async def test_garbage_datagrams_do_not_hang_the_client(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca)) as client:
        await client.get(h3.url + "/small")
        pending = asyncio.ensure_future(client.get(h3.url + "/slow/200"))
        await asyncio.sleep(0.05)
        h3.send_garbage([os.urandom(1200) for _ in range(50)] + [b"\x00", b"\xff" * 40])
        r = await pending
    assert r.content == b"slow"


async def test_read_timeout(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca, read_timeout=0.2)) as client:
        with pytest.raises(aioduct.ReadTimeout):
            await client.get(h3.url + "/slow/3000")
        assert (await client.get(h3.url + "/small")).status == 200


async def test_untrusted_certificate(h3: H3Server) -> None:
    async with aioduct.Client(http3_prior_knowledge=True) as client:  # certifi roots only
        with pytest.raises(aioduct.ConnectError, match="QUIC"):
            await client.get(h3.url + "/small")


async def test_nothing_listening_fails_fast(tls_ca: TLSMaterial) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aioduct.Client(**options(tls_ca, connect_timeout=5)) as client:
        with pytest.raises(aioduct.ConnectError, match="QUIC"):
            await client.get(f"https://127.0.0.1:{port}/small")


async def test_zero_rtt_accepted(h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(**options(tls_ca, early_data=True)) as client:
        await client.get(h3.url + "/small")
        await asyncio.sleep(0.05)  # the session ticket arrives after the handshake
        h3.close_connections()
        await asyncio.sleep(0.05)
        r = await client.get(h3.url + "/small")
        posted = await client.post(h3.url + "/echo", content=b"not in 0-RTT")
    assert r.content == b"Hello, World!" and posted.content == b"not in 0-RTT"
    assert h3.handshakes[-1] == (True, True)  # resumed, early data accepted


async def test_zero_rtt_refused_is_sent_again(tls_ca: TLSMaterial) -> None:
    with H3Server(tls_ca.files, early_data=False) as h3:
        async with aioduct.Client(**options(tls_ca, early_data=True)) as client:
            await client.get(h3.url + "/small")
            await asyncio.sleep(0.05)
            h3.close_connections()
            await asyncio.sleep(0.05)
            r = await client.get(h3.url + "/small")
    assert r.content == b"Hello, World!"
    assert h3.handshakes[-1] == (False, False)


# -- Alt-Svc: learned over TCP from nginx, then used for new connections -------------------


@pytest.mark.nginx
async def test_alt_svc_upgrade(nginx: Nginx, h3: H3Server, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(
        http3=True, verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0
    ) as client:
        first = await client.get(f"{nginx.https_url}/alt-svc/{h3.port}")
        second = await client.get(f"{nginx.https_url}/small")
    assert first.http_version in ("HTTP/1.1", "HTTP/2") and first.headers["alt-svc"].startswith(
        "h3="
    )
    # nginx does not speak HTTP/3: the alternative answered for its origin.
    assert second.http_version == "HTTP/3" and second.content == b"Hello, World!"
    assert h3.requests[-1][3] == "/small"


@pytest.mark.nginx
async def test_alt_svc_to_a_dead_udp_port_falls_back_to_tcp(
    nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never read
    blackhole.bind(("127.0.0.1", 0))
    port = blackhole.getsockname()[1]
    try:
        async with aioduct.Client(
            http3=True,
            verify=tls_ca.ca_pem_path,
            pool_max_idle_per_host=0,
            http3_config=aioduct.Http3Config(race_delay=0.2),
        ) as client:
            await client.get(f"{nginx.https_url}/alt-svc/{port}")
            cache = client._engine._alt_svc  # type: ignore[union-attr]
            origin = ("https", "localhost", int(nginx.https_url.rsplit(":", 1)[1]))
            assert cache.lookup(origin, 0.0) == ("localhost", port)
            r = await client.get(f"{nginx.https_url}/small")
            # QUIC got no answer within race_delay: TCP served it, and the alternative
            # is now skipped (a second request does not race again).
            assert cache.lookup(origin, asyncio.get_running_loop().time()) is None
            again = await client.get(f"{nginx.https_url}/small")
        assert r.http_version != "HTTP/3" and r.content == b"Hello, World!"
        assert again.http_version != "HTTP/3"
    finally:
        blackhole.close()


def test_alt_svc_blocking_client(nginx: Nginx, h3: H3Server, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(
        http3=True, verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0
    ) as client:
        client.get(f"{nginx.https_url}/alt-svc/{h3.port}")
        assert client.get(f"{nginx.https_url}/small").http_version == "HTTP/3"


@pytest.mark.nginx
async def test_alt_svc_file_persists(
    nginx: Nginx, h3: H3Server, tls_ca: TLSMaterial, tmp_path: os.PathLike[str]
) -> None:
    path = os.path.join(tmp_path, "alt-svc.json")
    common = {"http3": True, "verify": tls_ca.ca_pem_path, "alt_svc_file": path}
    async with aioduct.Client(**common) as client:
        await client.get(f"{nginx.https_url}/alt-svc/{h3.port}")
    async with aioduct.Client(**common) as fresh:
        r = await fresh.get(f"{nginx.https_url}/small")
    assert r.http_version == "HTTP/3"


def test_ignored_over_cleartext(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(http3=True, pool_max_idle_per_host=0) as client:
        client.get(f"{nginx.http_url}/alt-svc/443")
        assert len(client._client._engine._alt_svc) == 0  # type: ignore[union-attr,arg-type]


async def test_idle_timeout_retires_the_connection(tls_ca: TLSMaterial) -> None:
    with H3Server(tls_ca.files, idle_timeout=0.3) as h3:
        config = aioduct.Http3Config(idle_timeout=0.3)
        async with aioduct.Client(**options(tls_ca, http3_config=config)) as client:
            await client.get(h3.url + "/small")
            pool = client._engine.pool  # type: ignore[union-attr]
            assert pool is not None and pool.open_connections == 1
            # Both sides give the connection up after 0.3 s idle; a loaded machine may
            # run the timers late, so wait for it (up to 10 s) rather than a fixed time.
            for _ in range(100):
                await asyncio.sleep(0.1)
                if pool.open_connections == 0:
                    break
            r = await client.get(h3.url + "/small")
            assert pool.open_connections == 1
    assert r.content == b"Hello, World!" and h3.connections_accepted == 2
