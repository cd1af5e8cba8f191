"""Real proxies on loopback (see :mod:`aioduct.testing.proxies`), one of each per worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aioduct.testing.nginx import TLSMaterial
from aioduct.testing.proxies import (
    Dante,
    MicroSocks,
    Socks4Server,
    TinyProxy,
    TLSFront,
    missing_proxy_binaries,
)

USER, PASSWORD = "proxyuser", "s3cret-pw"


def _need_binaries() -> None:
    missing = missing_proxy_binaries()
    if missing:
        pytest.skip(f"needs {' '.join(missing)}: run scripts/setup as root")


@pytest.fixture(scope="session")
def tinyproxy() -> Iterator[TinyProxy]:
    """tinyproxy without authentication."""
    _need_binaries()
    with TinyProxy() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def tinyproxy_auth() -> Iterator[TinyProxy]:
    """tinyproxy with Basic authentication (``USER``/``PASSWORD``); ``url`` has them."""
    _need_binaries()
    with TinyProxy(auth=(USER, PASSWORD)) as proxy:
        yield proxy


@pytest.fixture
def fresh_tinyproxy() -> Iterator[TinyProxy]:
    """A tinyproxy of this test's own: its log holds only this test's requests."""
    _need_binaries()
    with TinyProxy(auth=(USER, PASSWORD)) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def microsocks() -> Iterator[MicroSocks]:
    _need_binaries()
    with MicroSocks() as proxy:
        yield proxy


@pytest.fixture(scope="session")
def microsocks_auth() -> Iterator[MicroSocks]:
    _need_binaries()
    with MicroSocks(auth=(USER, PASSWORD)) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def microsocks6() -> Iterator[MicroSocks]:
    """microsocks listening on ``::1``."""
    _need_binaries()
    with MicroSocks(host="::1") as proxy:
        yield proxy


@pytest.fixture(scope="session")
def dante() -> Iterator[Dante]:
    _need_binaries()
    with Dante() as proxy:
        yield proxy


@pytest.fixture
def socks4_server() -> Iterator[Socks4Server]:
    with Socks4Server() as server:
        assert isinstance(server, Socks4Server)
        yield server


@pytest.fixture(scope="session")
def https_proxy(tinyproxy_auth: TinyProxy, tls_ca: TLSMaterial) -> Iterator[TLSFront]:
    """An ``https://`` proxy: TLS (the test CA's localhost certificate) before tinyproxy."""
    front = TLSFront(
        ("127.0.0.1", tinyproxy_auth.port),
        tls_ca.server_ssl_context(),
        auth=(USER, PASSWORD),
    )
    with front:
        yield front
