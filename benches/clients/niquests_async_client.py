"""niquests, async: one AsyncSession shared by the tasks, on uvloop.

TLS and gzip as for the sync Session (benches.clients.niquests_client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import niquests

from benches.clients import quic_prior_knowledge, verify_per_request
from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target

#: The h3_* scenarios run with this adapter (HTTP/3 with prior knowledge).
HTTP3 = True


def unsupported(target: Target) -> str | None:
    if target.kind != "request":
        return "the streams scenarios are wired for the sync niquests adapter"
    return "no h2c (prior knowledge) mode in this adapter" if target.h2c else None


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    size = max(10, target.concurrency)  # one pooled connection per task in flight
    disable_http2 = target.tls and not target.http2 and not target.h3
    async with niquests.AsyncSession(
        pool_maxsize=size,
        disable_http2=disable_http2,
        quic_cache_layer=quic_prior_knowledge(target),
    ) as session:
        session.headers.update(target.headers)
        if not target.keepalive:
            session.headers["Connection"] = "close"  # no_pool, as for the sync Session
        url, body = target.url, target.body
        get, post = verify_per_request(target, session.get, session.post)

        if target.method == "POST":

            async def fetch() -> Fetched:
                r = await post(url, data=body)
                return r.status_code or 0, r.content

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await get(url)
                return r.status_code or 0, r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await get(url)
                return r.status_code or 0, r.text

        else:

            async def fetch() -> Fetched:
                r = await get(url)
                return r.status_code or 0, r.content

        yield fetch
