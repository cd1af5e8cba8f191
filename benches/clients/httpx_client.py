"""httpx: one AsyncClient (HTTP/1.1, its default), on uvloop.

HTTP/2 scenarios: ``AsyncClient(http1=False, http2=True)``, httpx's h2c with prior
knowledge (needs the ``h2`` package, httpx's ``http2`` extra).
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
    if target.http2:
        client_cm = httpx.AsyncClient(limits=limits, http1=False, http2=True)
    else:
        client_cm = httpx.AsyncClient(limits=limits, http2=False)
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
