"""HTTP/3 against Caddy (quic-go): a native server, and Alt-Svc the way production
servers send it (on every TCP response, for the same port)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioduct
from aioduct.testing.caddy import CADDY_MISSING_REASON, Caddy, caddy_binary
from aioduct.testing.nginx import TLSMaterial, deterministic_bytes


@pytest.fixture(scope="module")
def caddy(tmp_path_factory: pytest.TempPathFactory, tls_ca: TLSMaterial) -> Iterator[Caddy]:
    if caddy_binary() is None:
        pytest.skip(CADDY_MISSING_REASON)
    with Caddy(Path(tmp_path_factory.mktemp("caddy")), tls_ca.files) as server:
        yield server


async def test_prior_knowledge(caddy: Caddy, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(http3_prior_knowledge=True, verify=tls_ca.ca_pem_path) as client:
        small, big = await asyncio.gather(
            client.get(caddy.url + "/small"), client.get(caddy.url + "/bytes/1m")
        )
    assert (small.http_version, small.content) == ("HTTP/3", b"Hello, World!")
    assert big.content == deterministic_bytes(1048576)


def test_alt_svc_from_a_real_server(caddy: Caddy, tls_ca: TLSMaterial) -> None:
    with aioduct.BlockingClient(
        http3=True, verify=tls_ca.ca_pem_path, pool_max_idle_per_host=0
    ) as client:
        first = client.get(caddy.url + "/small")
        second = client.get(caddy.url + "/small")
    assert first.http_version == "HTTP/2" and 'h3=":' in first.headers["alt-svc"]
    assert second.http_version == "HTTP/3" and second.content == b"Hello, World!"


async def test_more_requests_than_the_initial_stream_credit(
    caddy: Caddy, tls_ca: TLSMaterial
) -> None:
    # quic-go grants 100 request streams and raises MAX_STREAMS as they close: 250
    # requests, 10 at a time, all go through (on one connection while the credit keeps up).
    async with aioduct.Client(http3_prior_knowledge=True, verify=tls_ca.ca_pem_path) as client:

        async def lane() -> set[bytes]:
            return {(await client.get(caddy.url + "/small")).content for _ in range(25)}

        seen = await asyncio.gather(*(lane() for _ in range(10)))
    assert set().union(*seen) == {b"Hello, World!"}
