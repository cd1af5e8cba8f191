"""aiohttp: one ClientSession over a TCPConnector, on uvloop (its fastest configuration).

TLS scenarios: ``TCPConnector(ssl=<SSLContext trusting the run's CA>)``; aiohttp has no
HTTP/2. gzip: aiohttp decodes by default (``auto_decompress``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True


def unsupported(target: Target) -> str | None:
    if target.proxy_url and not target.proxy_url.startswith("http://"):
        return "no SOCKS in aiohttp (it needs the aiohttp-socks package)"
    return "no HTTP/2 in aiohttp" if target.http2 else None


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    # no_pool: force_close is aiohttp's own "no keep-alive" switch (session reused).
    connector = aiohttp.TCPConnector(
        limit=max(100, target.concurrency),
        force_close=not target.keepalive,
        ssl=target.ssl_context() if target.tls else True,
    )
    async with aiohttp.ClientSession(
        connector=connector, headers=target.headers, proxy=target.proxy_url
    ) as session:
        url, body = target.url, target.body

        if target.method == "POST":

            async def fetch() -> Fetched:
                async with session.post(url, data=body) as r:
                    return r.status, await r.read()

        elif target.decode == "json":

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.text()

        else:

            async def fetch() -> Fetched:
                async with session.get(url) as r:
                    return r.status, await r.read()

        yield fetch
