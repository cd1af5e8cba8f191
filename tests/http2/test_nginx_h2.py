"""HTTP/2 against nginx: h2 over TLS by ALPN, and h2c with prior knowledge."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import aioduct
from aioduct.testing.nginx import (
    BYTES_SIZES,
    Nginx,
    TLSMaterial,
    deterministic_bytes,
    nginx_version,
)

pytestmark = pytest.mark.nginx


def tag() -> str:
    return uuid.uuid4().hex[:12]


async def test_alpn_picks_h2_and_many_requests_share_one_connection(
    nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    t = tag()
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        responses = await asyncio.gather(
            *(client.get(f"{nginx.https_url}/small?{t}={i}") for i in range(40))
        )
        assert {r.http_version for r in responses} == {"HTTP/2"}
        assert all(r.content == b"Hello, World!" for r in responses)
        assert client._engine.pool is not None
        assert client._engine.pool.open_connections == 1
    log = nginx.requests_log(uri_contains=t, min_entries=40)
    assert len(log) == 40 and len({e.connection for e in log}) == 1


async def test_h2c_prior_knowledge_concurrent_on_one_connection(nginx: Nginx) -> None:
    t = tag()
    async with aioduct.Client(http2_prior_knowledge=True) as client:
        responses = await asyncio.gather(
            *(client.get(f"{nginx.h2c_url}/json?{t}={i}") for i in range(30))
        )
        assert all(r.json()["count"] == 42 and r.http_version == "HTTP/2" for r in responses)
        for r in responses:
            assert r.timings.ttfb is not None and 0 <= r.timings.ttfb <= r.timings.total
        # and again, sequentially, on the same connection
        for i in range(5):
            assert (await client.get(f"{nginx.h2c_url}/small?{t}=s{i}")).status == 200
    log = nginx.requests_log(uri_contains=t, min_entries=35)
    assert len({e.connection for e in log}) == 1


async def test_ten_megabytes_through_small_windows(nginx: Nginx) -> None:
    small = aioduct.Http2Config(
        initial_stream_window_size=65535, initial_connection_window_size=65535
    )
    async with aioduct.Client(http2_prior_knowledge=True, http2_config=small) as client:
        r = await client.get(nginx.h2c_url + "/bytes/10m")
        assert len(r.content) == BYTES_SIZES["10m"]
        assert r.content == deterministic_bytes(BYTES_SIZES["10m"])


async def test_streamed_download_is_credited_as_it_is_read(nginx: Nginx) -> None:
    small = aioduct.Http2Config(
        initial_stream_window_size=65535, initial_connection_window_size=65535
    )
    async with aioduct.Client(http2_prior_knowledge=True, http2_config=small) as client:
        async with client.stream("GET", nginx.h2c_url + "/bytes/1m") as r:
            seen = 0
            async for chunk in r.aiter_bytes():
                seen += len(chunk)
                # Never more than one window buffered ahead of the reader.
                exchange = r._body
                assert exchange is not None
                buffered = sum(len(c) for c, _ in exchange.chunks)  # type: ignore[attr-defined]
                assert buffered <= 65535
            assert seen == BYTES_SIZES["1m"]
        # the connection is still good for the next request
        assert (await client.get(nginx.h2c_url + "/small")).content == b"Hello, World!"


async def test_upload_larger_than_the_window(nginx: Nginx) -> None:
    body = deterministic_bytes(3 * 1024 * 1024)  # nginx's stream window is 64 KiB
    async with aioduct.Client(http2_prior_knowledge=True) as client:
        r = await client.post(nginx.h2c_url + "/post", content=body)
        assert r.text == f"POST {len(body)}"

        async def chunks():  # type: ignore[no-untyped-def]
            for i in range(0, len(body), 100_000):
                yield body[i : i + 100_000]

        r = await client.post(nginx.h2c_url + "/post", content=chunks())
        assert r.status == 200 and r.text.startswith("POST")


async def test_abandoned_stream_is_reset_and_the_connection_lives_on(nginx: Nginx) -> None:
    t = tag()
    async with aioduct.Client(http2_prior_knowledge=True) as client:
        async with client.stream("GET", f"{nginx.h2c_url}/bytes/10m?{t}=a") as r:
            async for _ in r.aiter_bytes():
                break  # leave with most of the body unread
        r = await client.get(f"{nginx.h2c_url}/small?{t}=b")
        assert r.content == b"Hello, World!"
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1


async def test_cancelled_request_resets_only_its_stream(nginx: Nginx) -> None:
    async with aioduct.Client(http2_prior_knowledge=True) as client:
        slow = asyncio.ensure_future(client.get(nginx.h2c_url + "/slow"))
        fast = [asyncio.ensure_future(client.get(nginx.h2c_url + "/small")) for _ in range(5)]
        await asyncio.sleep(0.2)
        slow.cancel()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert [r.status for r in await asyncio.gather(*fast)] == [200] * 5
        assert (await client.get(nginx.h2c_url + "/json")).json()["count"] == 42
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1


async def test_forced_versions_and_http2_off(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        assert (
            await client.get(nginx.https_url + "/small", version="1.1")
        ).http_version == "HTTP/1.1"
        assert (await client.get(nginx.https_url + "/small", version="2")).http_version == "HTTP/2"
        assert (await client.get(nginx.https_url + "/small")).http_version in ("HTTP/1.1", "HTTP/2")
    async with aioduct.Client(verify=tls_ca.ca_pem_path, http2=False) as client:
        assert (await client.get(nginx.https_url + "/small")).http_version == "HTTP/1.1"
    async with aioduct.Client() as client:
        r = await client.get(nginx.h2c_url + "/small", version="2")
        assert r.http_version == "HTTP/2"
        # plain http without prior knowledge stays HTTP/1.1
        assert (await client.get(nginx.http_url + "/small")).http_version == "HTTP/1.1"
    with pytest.raises(ValueError, match="version must be"):
        aioduct.Request("GET", nginx.http_url, version="4")
    with pytest.raises(ValueError, match="needs an https:// URL"):
        aioduct.Request("GET", nginx.http_url, version="3")


async def test_h2c_against_an_http1_port_fails_clearly(nginx: Nginx) -> None:
    async with aioduct.Client(http2_prior_knowledge=True) as client:
        with pytest.raises(aioduct.RemoteProtocolError, match="does it speak h2c"):
            await client.get(nginx.http_url + "/small")
        assert client._engine.pool is not None and client._engine.pool.open_connections == 0


async def test_http1_against_the_h2c_port_fails_clearly(nginx: Nginx) -> None:
    version = nginx_version(nginx.binary) if nginx.binary else None
    async with aioduct.Client() as client:
        if version is not None and version >= (1, 25, 1):
            # `http2 on;` ports detect the preface and serve HTTP/1.1 too.
            assert (await client.get(nginx.h2c_url + "/small")).http_version == "HTTP/1.1"
            return
        with pytest.raises(aioduct.RemoteProtocolError):
            await client.get(nginx.h2c_url + "/small")


async def test_coalescing_onto_a_certificate_with_two_sans(
    nginx: Nginx, tls_ca: TLSMaterial
) -> None:
    # The certificate covers localhost and 127.0.0.1; both resolve to nginx's address.
    t = tag()
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        assert (await client.get(f"{nginx.https_url}/small?{t}=1")).http_version == "HTTP/2"
        assert (await client.get(f"{nginx.alt_https_url}/small?{t}=2")).status == 200
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1
    log = nginx.requests_log(uri_contains=t, min_entries=2)
    assert len({e.connection for e in log}) == 1
    t = tag()
    async with aioduct.Client(verify=tls_ca.ca_pem_path, connection_coalescing=False) as client:
        await client.get(f"{nginx.https_url}/small?{t}=1")
        await client.get(f"{nginx.alt_https_url}/small?{t}=2")
        assert client._engine.pool is not None and client._engine.pool.open_connections == 2
    log = nginx.requests_log(uri_contains=t, min_entries=2)
    assert len({e.connection for e in log}) == 2


async def test_no_coalescing_without_verification(nginx: Nginx) -> None:
    async with aioduct.Client(verify=False) as client:
        await client.get(nginx.https_url + "/small")
        await client.get(nginx.alt_https_url + "/small")
        assert client._engine.pool is not None and client._engine.pool.open_connections == 2


@pytest.mark.uvloop
async def test_h2_on_uvloop(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        rs = await asyncio.gather(*(client.get(nginx.https_url + "/bytes/64k") for _ in range(8)))
        assert all(len(r.content) == 65536 and r.http_version == "HTTP/2" for r in rs)


def test_blocking_client_over_h2c(nginx: Nginx) -> None:
    with aioduct.BlockingClient(http2_prior_knowledge=True) as client:
        r = client.get(nginx.h2c_url + "/json")
        assert r.http_version == "HTTP/2" and r.json()["count"] == 42
        with client.stream("GET", nginx.h2c_url + "/bytes/64k") as streamed:
            assert sum(len(c) for c in streamed.iter_bytes()) == 65536


async def test_adaptive_window_grows_during_a_download(nginx: Nginx) -> None:
    cfg = aioduct.Http2Config(
        initial_stream_window_size=65535,
        initial_connection_window_size=65535,
        adaptive_window=True,
    )
    async with aioduct.Client(http2_prior_knowledge=True, http2_config=cfg) as client:
        r = await client.get(nginx.h2c_url + "/bytes/10m")
        assert r.content == deterministic_bytes(BYTES_SIZES["10m"])
        assert client._engine.pool is not None
        (conn,) = client._engine.pool.shared_connections()
        assert conn.proto.stream_window > 65535  # type: ignore[union-attr]
        assert (await client.get(nginx.h2c_url + "/small")).status == 200
