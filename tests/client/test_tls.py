"""TLS against nginx with trustme certificates, and servers with bad certificates."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

import aioduct
from aioduct.testing.nginx import Nginx, TLSMaterial
from aioduct.testing.server import BadTLSServers, ScriptServer

pytestmark = pytest.mark.nginx


async def test_https_with_private_ca(nginx: Nginx, tls_ca: TLSMaterial) -> None:
    async with aioduct.Client(verify=tls_ca.ca_pem_path) as client:
        r = await client.get(nginx.https_url + "/small")
        # nginx offers h2 by ALPN and aioduct offers it by default (http2=True).
        assert r.content == b"Hello, World!" and r.http_version == "2"
        assert r.timings.tls is not None and r.timings.connect is not None
        again = await client.get(nginx.https_url + "/json")
        assert again.timings.tls is None and again.json()["count"] == 42
    async with aioduct.Client(verify=tls_ca.ca_pem_path, http2=False) as client:
        r = await client.get(nginx.https_url + "/small")
        assert r.content == b"Hello, World!" and r.http_version == "1.1"


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
