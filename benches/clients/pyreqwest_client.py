"""pyreqwest: the async Client (Rust reqwest on a tokio runtime), driven from uvloop.

The default runtime is pyreqwest's single-threaded tokio runtime on its own thread; with
pinning it shares the client CPU with the Python thread, and its CPU time is charged to it.
h2c scenarios use ``http2_prior_knowledge()``, TLS h2 ``http2(True)`` (ALPN; pyreqwest is
HTTP/1.1-only by default). TLS: ``add_root_certificate_pem`` with the run's CA. gzip:
reqwest decodes by default (``gzip(True)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pyreqwest
from pyreqwest.client import ClientBuilder

from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


def describe() -> str:
    return f"pyreqwest {pyreqwest.__version__}"


def _builder(target: Target) -> ClientBuilder:
    builder = ClientBuilder()
    if target.h2c:  # reqwest's h2c with prior knowledge (hyper's h2)
        builder = builder.http2_prior_knowledge()
    elif target.http2:
        builder = builder.http2(True)
    else:
        builder = builder.http1_only()
    if target.tls:
        assert target.ca_file is not None
        builder = builder.add_root_certificate_pem(Path(target.ca_file).read_bytes())
    if target.gzip:
        builder = builder.default_headers(target.headers).gzip(True)
    if not target.keepalive:
        # no_pool: reqwest's own switch; the client is reused, idle connections are not.
        builder = builder.pool_max_idle_per_host(0)
    return builder


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    builder = _builder(target)
    async with builder.build() as client:
        url, body = target.url, target.body

        if target.method == "POST":
            assert body is not None

            async def fetch() -> Fetched:
                r = await client.post(url).body_bytes(body).build().send()
                return r.status, await r.bytes()

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.text()

        else:

            async def fetch() -> Fetched:
                r = await client.get(url).build().send()
                return r.status, await r.bytes()

        yield fetch
