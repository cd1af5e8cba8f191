"""Certificate pinning, TLS version bounds, verify="system" and SSLKEYLOGFILE."""

from __future__ import annotations

import base64
import hashlib
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import aioduct
from aioduct import tls as tls_module
from aioduct.testing.nginx import SMALL_BODY, Nginx, TLSMaterial
from aioduct.testing.server import ScriptServer
from aioduct.tls import create_ssl_context, spki_sha256

from .drivers import DRIVERS, failed, fetch, fetch_all, ok

WRONG_PIN = base64.b64encode(hashlib.sha256(b"some other key").digest()).decode()


def server_der(tls_ca: TLSMaterial) -> bytes:
    pem = Path(tls_ca.files.cert_chain_pem).read_text()
    first = pem[: pem.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


@pytest.fixture(scope="module")
def good_pin(tls_ca: TLSMaterial) -> str:
    return spki_sha256(server_der(tls_ca))


def tag() -> str:
    return uuid.uuid4().hex[:12]


def test_spki_hash_is_the_public_keys(tls_ca: TLSMaterial) -> None:
    """Cross-checked with cryptography: the hash of the DER SubjectPublicKeyInfo."""
    der = server_der(tls_ca)
    key = x509.load_der_x509_certificate(der).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki_sha256(der) == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    with pytest.raises(aioduct.TLSError, match="public key"):
        spki_sha256(der[:40])


@pytest.mark.parametrize("driver", DRIVERS)
def test_pins(driver: str, nginx: Nginx, tls_ca: TLSMaterial, good_pin: str) -> None:
    url = nginx.https_url + "/small"
    verify = tls_ca.ca_pem_path
    r = ok(fetch(driver, url, verify=verify, pinned_sha256=[WRONG_PIN, good_pin]))
    assert r.content == SMALL_BODY
    # curl's spelling is accepted too
    ok(fetch(driver, url, verify=verify, pinned_sha256=f"sha256//{good_pin}"))
    message = failed(fetch(driver, url, verify=verify, pinned_sha256=[WRONG_PIN]), aioduct.TLSError)
    assert "pinned_sha256" in message and good_pin in message  # names the hash it saw
    # A pin is checked whether or not the chain is verified.
    failed(fetch(driver, url, verify=False, pinned_sha256=[WRONG_PIN]), aioduct.TLSError)
    ok(fetch(driver, url, verify=False, pinned_sha256=[good_pin]))


@pytest.mark.parametrize("http2", [False, True], ids=["h1", "h2"])
def test_every_new_connection_is_checked(
    nginx: Nginx, tls_ca: TLSMaterial, good_pin: str, http2: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection per request (no pool): resumed connections are checked too."""
    checked: list[str] = []
    real = tls_module.check_pins

    def spy(ssl_object: ssl.SSLObject, pins: tuple[str, ...], host: str, port: int) -> None:
        checked.append(host)
        real(ssl_object, pins, host, port)

    import aioduct.engine

    monkeypatch.setattr(aioduct.engine, "check_pins", spy)
    mark = tag()
    since = nginx.log_position()
    urls = [f"{nginx.https_url}/small?{mark}={i}" for i in range(3)]
    outcomes = fetch_all(
        "asyncio",
        urls,
        verify=tls_ca.ca_pem_path,
        http2=http2,
        pool_max_idle_per_host=0,
        pinned_sha256=[good_pin],
    )
    assert all(ok(r).content == SMALL_BODY for r in outcomes)
    log = nginx.requests_log(since=since, uri_contains=mark, min_entries=3)
    assert [e.tls_resumed for e in log] == [False, True, True]
    assert checked == ["localhost"] * 3


async def test_a_resumed_session_does_not_bypass_the_pin(
    nginx: Nginx, tls_ca: TLSMaterial, good_pin: str
) -> None:
    """The pin-bypass-through-reuse case: a session made under a matching pin is offered
    by a client whose pin does not match (same TLS context, so OpenSSL would resume it).
    The server resumes, and the connection is still refused: resumed handshakes carry
    the certificate of the session, and it is checked."""
    mark = tag()
    url = f"{nginx.https_url}/small?{mark}"
    options = {"verify": tls_ca.ca_pem_path, "http2": False, "pool_max_idle_per_host": 0}
    async with aioduct.Client(pinned_sha256=[good_pin], **options) as trusted:
        await trusted.get(url + "=1")
        sessions = trusted._engine._sessions
        assert sessions is not None and len(sessions) == 1
        since = nginx.log_position()
        async with aioduct.Client(pinned_sha256=[WRONG_PIN], **options) as pinned:
            pinned._engine._sessions = sessions  # the saved session, offered here
            with pytest.raises(aioduct.TLSError, match="pinned_sha256"):
                await pinned.get(url + "=2")
            assert pinned._engine.pool is not None
            assert pinned._engine.pool.open_connections == 0
        # the same session on the trusted client: resumed, and accepted
        await trusted.get(url + "=3")
    log = nginx.requests_log(since=since, uri_contains=mark, min_entries=1)
    assert [e.tls_resumed for e in log] == [True]


async def test_coalescing_hands_out_only_pinned_connections(
    nginx: Nginx, tls_ca: TLSMaterial, good_pin: str
) -> None:
    """HTTP/2 coalescing reuses a connection for another name its certificate covers:
    with a wrong pin there is no connection to reuse, and every name fails; with the
    right one the second name rides the first's connection."""
    port = int(nginx.https_url.rsplit(":", 1)[1])
    options = {"verify": tls_ca.ca_pem_path, "resolve": {"alt.localhost": "127.0.0.1"}}
    other = f"https://alt.localhost:{port}/small"
    async with aioduct.Client(pinned_sha256=[WRONG_PIN], **options) as client:
        for url in (nginx.https_url + "/small", other):
            with pytest.raises(aioduct.TLSError, match="pinned_sha256"):
                await client.get(url)
    async with aioduct.Client(pinned_sha256=[good_pin], **options) as client:
        assert (await client.get(nginx.https_url + "/small")).http_version == "HTTP/2"
        assert (await client.get(other)).content == SMALL_BODY
        assert client._engine.pool is not None and client._engine.pool.open_connections == 1


def test_pin_values_are_checked() -> None:
    for bad in (["abc"], ["sha256//not base64!"], [base64.b64encode(b"short").decode()]):
        with pytest.raises(ValueError, match="pinned_sha256"):
            aioduct.ClientConfig(pinned_sha256=bad)
    cfg = aioduct.ClientConfig(pinned_sha256=f"sha256//{WRONG_PIN};sha256//{WRONG_PIN}")
    assert cfg.pinned_sha256 == (WRONG_PIN, WRONG_PIN)
    assert aioduct.ClientConfig.decode(cfg.encode()) == cfg


# -- versions ------------------------------------------------------------------------------------


@pytest.fixture
def tls12_server(tls_ca: TLSMaterial) -> Iterator[ScriptServer]:
    context = tls_ca.server_ssl_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    srv = ScriptServer(tls=context).start()
    srv.route_respond("/", body=b"twelve")
    try:
        yield srv
    finally:
        srv.close(raise_errors=False)


@pytest.mark.parametrize("driver", DRIVERS)
def test_tls_version_bounds(
    driver: str, nginx: Nginx, tls12_server: ScriptServer, tls_ca: TLSMaterial
) -> None:
    verify = tls_ca.ca_pem_path
    assert ok(fetch(driver, tls12_server.url + "/", verify=verify)).content == b"twelve"
    message = failed(
        fetch(driver, tls12_server.url + "/", verify=verify, min_tls_version="1.3"),
        aioduct.TLSError,
    )
    assert "version" in message.lower()
    ok(fetch(driver, nginx.https_url + "/small", verify=verify, min_tls_version="1.3"))
    ok(fetch(driver, nginx.https_url + "/small", verify=verify, max_tls_version="1.2"))


async def test_max_version_is_what_is_spoken(tls_ca: TLSMaterial, nginx: Nginx) -> None:
    for version, expected in (("1.2", "TLSv1.2"), ("1.3", "TLSv1.3")):
        async with aioduct.Client(verify=tls_ca.ca_pem_path, max_tls_version=version) as c:
            await c.get(nginx.https_url + "/small")
            assert c._engine.pool is not None
            [conn] = c._engine.pool.shared_connections() or c._engine.pool._idle_connections()
            assert conn.stream.ssl_object.version() == expected


def test_version_values_are_checked() -> None:
    with pytest.raises(ValueError, match="min_tls_version"):
        aioduct.ClientConfig(min_tls_version="1.1")
    with pytest.raises(ValueError, match="max_tls_version"):
        aioduct.ClientConfig(max_tls_version="TLSv1.3")
    with pytest.raises(ValueError, match="no TLS version"):
        aioduct.ClientConfig(min_tls_version="1.3", max_tls_version="1.2")


# -- trust stores and key logging -----------------------------------------------------------------


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_verify_system_uses_the_os_store(
    driver: str, nginx: Nginx, tls_ca: TLSMaterial, monkeypatch: pytest.MonkeyPatch
) -> None:
    """verify="system" goes through truststore, which on Linux reads OpenSSL's default
    locations (SSL_CERT_FILE when set): the test CA is trusted only once it is there;
    verify=True (certifi) never trusts it."""
    import truststore

    url = nginx.https_url + "/small"
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    create_ssl_context.cache_clear()
    try:
        assert isinstance(create_ssl_context("system"), truststore.SSLContext)
        failed(fetch(driver, url, verify="system"), aioduct.TLSError)
        create_ssl_context.cache_clear()
        monkeypatch.setenv("SSL_CERT_FILE", tls_ca.ca_pem_path)
        assert ok(fetch(driver, url, verify="system")).content == SMALL_BODY
        failed(fetch(driver, url, verify=True, trust_env=False), aioduct.TLSError)
    finally:
        create_ssl_context.cache_clear()


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_sslkeylogfile(
    driver: str, nginx: Nginx, tls_ca: TLSMaterial, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    url = nginx.https_url + "/small"
    ok(fetch(driver, url, verify=tls_ca.ca_pem_path, trust_env=False))
    assert not keylog.exists()
    ok(fetch(driver, url, verify=tls_ca.ca_pem_path))
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()
    monkeypatch.setenv("SSLKEYLOGFILE", str(tmp_path / "no" / "such" / "dir" / "keys"))
    message = failed(fetch(driver, url, verify=tls_ca.ca_pem_path), aioduct.TLSError)
    assert "SSLKEYLOGFILE" in message


@pytest.mark.parametrize("driver", ["asyncio", "blocking"])
def test_tls_settings_never_share_a_pooled_connection(
    driver: str, nginx: Nginx, tls_ca: TLSMaterial, good_pin: str
) -> None:
    """requests CVE-2024-35195 and curl CVE-2022-27782 (TLS knobs missing from the pool
    key): TLS settings are a client's frozen config and the pool is the client's, so a
    connection made under looser settings is never handed to stricter ones."""
    url = nginx.https_url + "/small"
    strict = [
        ({"verify": True, "trust_env": False}, "not signed by a trusted CA"),
        ({"verify": tls_ca.ca_pem_path, "pinned_sha256": [WRONG_PIN]}, "pinned_sha256"),
    ]
    if driver == "blocking":
        with aioduct.BlockingClient(verify=False) as loose:
            assert loose.get(url).content == SMALL_BODY
            for options, words in strict:
                with (
                    aioduct.BlockingClient(**options) as client,  # type: ignore[arg-type]
                    pytest.raises(aioduct.TLSError, match=words),
                ):
                    client.get(url)
        return

    async def main() -> None:
        async with aioduct.Client(verify=False) as loose:
            assert (await loose.get(url)).content == SMALL_BODY
            for options, words in strict:
                async with aioduct.Client(**options) as client:  # type: ignore[arg-type]
                    with pytest.raises(aioduct.TLSError, match=words):
                        await client.get(url)

    import asyncio

    asyncio.run(main())
