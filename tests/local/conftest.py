"""Fixtures for the local engine: an nginx with many origins, and the worker loop kinds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from aioduct import uring
from aioduct.testing.nginx import NGINX_MISSING_REASON, Nginx, nginx_binary

ORIGINS = 8


@pytest.fixture(scope="session")
def many_origins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """``ORIGINS`` plain origins (one nginx, one port each) answering ``PORT URI``."""
    if nginx_binary() is None:
        pytest.skip(NGINX_MISSING_REASON)
    block = 'location / { default_type text/plain; return 200 "$server_port $uri"; }'
    servers = {f"o{i}": block for i in range(ORIGINS)}
    with Nginx(tmp_path_factory.mktemp("nginx-many"), extra_servers=servers) as server:
        yield list(server.extra_urls.values())


@pytest.fixture(params=["uring", "asyncio"])
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Each worker loop the local engine offers; ``uring`` skips where it is unusable."""
    if request.param == "uring":
        reason = uring.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
    return str(request.param)
