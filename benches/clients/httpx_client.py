"""httpx: one AsyncClient (HTTP/1.1, its default), on uvloop.

h2c scenarios: ``AsyncClient(http1=False, http2=True)``, httpx's h2c with prior
knowledge (needs the ``h2`` package, httpx's ``http2`` extra); TLS h2: ``http2=True``
(ALPN). TLS: ``verify=<SSLContext trusting the run's CA>`` (httpx deprecates a path).
gzip: httpx decodes by default.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    # no_pool: no idle connection may be kept, so every request connects (client reused).
    limits = httpx.Limits(
        max_connections=max(100, target.concurrency),
        max_keepalive_connections=max(20, target.concurrency) if target.keepalive else 0,
    )
    verify = target.ssl_context() if target.tls else True
    client_cm = httpx.AsyncClient(
        limits=limits,
        http1=not target.h2c,
        http2=target.http2,
        verify=verify,
        headers=target.headers,
    )
    async with client_cm as client:
        url, body = target.url, target.body

        if target.method == "POST":

            async def fetch() -> Fetched:
                r = await client.post(url, content=body)
                return r.status_code, r.content

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.text

        else:

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status_code, r.content

        yield fetch
