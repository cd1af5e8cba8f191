"""aioduct: one pooled Client shared by the tasks; the loop (asyncio or uvloop) is the runner's.

h2c scenarios: ``Client(http2_prior_knowledge=True)``, so every task shares one h2c
connection (concurrent requests are streams of it). TLS scenarios: ``verify=`` the run's CA
file, ``http2=`` whether ALPN may offer h2 (see aioduct_common, also for gzip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aioduct
from benches.clients.aioduct_common import client_options, unsupported_reason
from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target

#: Runs the proxy scenarios (target.proxy_url).
PROXIES = True
#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def describe() -> str:
    """Which QUIC library HTTP/3 runs on here (``Http3Config(backend="auto")``)."""
    from importlib.metadata import version

    try:
        from aioduct.quic import resolve_backend

        backend = resolve_backend("auto")
    except (ImportError, aioduct.AioductError):
        return ""
    return f"HTTP/3 on {backend} {version(backend)}"


def unsupported(target: Target) -> str | None:
    if not hasattr(aioduct, "Client"):
        return "aioduct.Client is not implemented yet"
    return unsupported_reason(target)


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    async with aioduct.Client(**client_options(target)) as client:
        url, body = target.url, target.body

        if target.method == "POST":

            async def fetch() -> Fetched:
                r = await client.post(url, content=body)
                return r.status, r.content

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status, r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status, r.text

        else:

            async def fetch() -> Fetched:
                r = await client.get(url)
                return r.status, r.content

        yield fetch
