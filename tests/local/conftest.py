"""Fixtures for the local engine: an nginx with many origins, and the worker loop kinds."""

from __future__ import annotations

import random
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


@pytest.fixture(scope="session")
def bodies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, bytes]]]:
    """An origin serving files of distinct random content, from 1 KiB to 1.5 MiB
    (around and far above the shared-memory threshold), and their contents by path."""
    if nginx_binary() is None:
        pytest.skip(NGINX_MISSING_REASON)
    root = tmp_path_factory.mktemp("bodies")
    rng = random.Random(7)
    files: dict[str, bytes] = {}
    for i, size in enumerate([1 << 10, (16 << 10) - 1, 16 << 10, 100_000, 1 << 20, 3 << 19] * 4):
        files[f"/f{i}"] = content = rng.randbytes(size)
        (root / f"f{i}").write_bytes(content)
    block = f"location / {{ root {root}; default_type application/octet-stream; }}"
    with Nginx(tmp_path_factory.mktemp("nginx-bodies"), extra_servers={"files": block}) as server:
        yield server.extra_urls["files"], files
