"""Pins hold over HTTP/3 too (QUIC's own TLS, not the ssl module): checked on every QUIC
handshake, which with pins is always a full one (no tickets, no 0-RTT before the check).
Both QUIC libraries (aioquic, qh3) read the server certificate their own way."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import aioduct
from aioduct.testing.h3server import H3Server
from aioduct.testing.nginx import TLSMaterial
from aioduct.tls import spki_sha256

from .test_tls_trust import WRONG_PIN, server_der

pytestmark = pytest.mark.usefixtures("quic_backend")


@pytest.fixture
def h3(tls_ca: TLSMaterial) -> Iterator[H3Server]:
    with H3Server(tls_ca.files) as srv:
        yield srv


async def test_http3_pins(h3: H3Server, tls_ca: TLSMaterial) -> None:
    pin = spki_sha256(server_der(tls_ca))
    base = {"http3_prior_knowledge": True, "verify": tls_ca.ca_pem_path, "early_data": True}
    async with aioduct.Client(pinned_sha256=[pin], **base) as client:
        r = await client.get(h3.url + "/small")
        assert r.http_version == "HTTP/3" and r.timings.address is not None
        await asyncio.sleep(0.05)  # a session ticket would arrive now
        h3.close_connections()
        await asyncio.sleep(0.05)
        again = await client.get(h3.url + "/small")
        assert again.http_version == "HTTP/3"
    # the second connection made a full handshake: nothing resumed, nothing sent early
    assert h3.handshakes[-1] == (False, False)
    async with aioduct.Client(pinned_sha256=[WRONG_PIN], **base) as client:
        with pytest.raises(aioduct.TLSError, match="pinned_sha256"):
            await client.get(h3.url + "/small")


async def test_http3_with_tls_bounds_and_the_system_store(
    h3: H3Server, tls_ca: TLSMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = {"http3_prior_knowledge": True, "verify": tls_ca.ca_pem_path}
    async with aioduct.Client(max_tls_version="1.2", **base) as client:
        with pytest.raises(aioduct.ConnectError, match="max_tls_version"):
            await client.get(h3.url + "/small")
    async with aioduct.Client(min_tls_version="1.3", **base) as client:
        assert (await client.get(h3.url + "/small")).http_version == "HTTP/3"
    monkeypatch.setenv("SSL_CERT_FILE", tls_ca.ca_pem_path)
    base["verify"] = "system"
    async with aioduct.Client(**base) as client:
        assert (await client.get(h3.url + "/small")).http_version == "HTTP/3"
