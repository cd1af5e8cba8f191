"""pyreqwest: the async Client (Rust reqwest on a tokio runtime), driven from uvloop.

The default runtime is pyreqwest's single-threaded tokio runtime on its own thread; with
pinning it shares the client CPU with the Python thread, and its CPU time is charged to it.
HTTP/2 scenarios use ``http2_prior_knowledge()``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pyreqwest
from pyreqwest.client import ClientBuilder

from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


def describe() -> str:
    return f"pyreqwest {pyreqwest.__version__}"


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    # HTTP/2 scenarios: reqwest's h2c with prior knowledge (hyper's h2).
    builder = (
        ClientBuilder().http2_prior_knowledge() if target.http2 else ClientBuilder().http1_only()
    )
    if not target.keepalive:
        # no_pool: reqwest's own switch; the client is reused, idle connections are not.
        builder = builder.pool_max_idle_per_host(0)
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
