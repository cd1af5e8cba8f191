"""Every HTTP/3 test here runs on both QUIC libraries, aioquic and qh3 (the root
conftest's ``quic_backend`` fixture), mostly against the scriptable aioquic server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aioduct.testing.h3server import H3Server
from aioduct.testing.nginx import TLSMaterial


@pytest.fixture(autouse=True)
def _each_quic_backend(quic_backend: str) -> str:
    return quic_backend


@pytest.fixture
def h3(tls_ca: TLSMaterial) -> Iterator[H3Server]:
    """The scriptable HTTP/3 server (a module may define its own, with routes)."""
    with H3Server(tls_ca.files) as srv:
        yield srv


def options(tls_ca: TLSMaterial, **more: object) -> dict[str, object]:
    """Client options for ``h3``: HTTP/3 with prior knowledge, trusting the test CA."""
    return {"http3_prior_knowledge": True, "verify": tls_ca.ca_pem_path, **more}
