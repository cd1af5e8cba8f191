"""Every HTTP/2 test runs with each HPACK coder available: jh2's Rust one and hpack's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import aioduct.protocol.http2 as protocol

_BACKENDS = ["hpack"] + (["jh2"] if protocol._rust_hpack is not None else [])


@pytest.fixture(autouse=True, params=_BACKENDS)
def hpack_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "hpack":
        monkeypatch.setattr(protocol, "_rust_hpack", None)
    assert protocol.hpack_backend() == request.param
    yield request.param
