"""Every HTTP/3 test here runs on both QUIC libraries, aioquic and qh3 (the root
conftest's ``quic_backend`` fixture)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _each_quic_backend(quic_backend: str) -> str:
    return quic_backend
