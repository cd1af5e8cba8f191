"""niquests, async: one AsyncSession shared by the tasks, on uvloop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import niquests

from benches.harness import AsyncFetch, Fetched
from benches.scenarios import Target


def unsupported(target: Target) -> str | None:
    return "no HTTP/2 (h2c) mode in this adapter" if target.http2 else None


@asynccontextmanager
async def open_async(target: Target) -> AsyncIterator[AsyncFetch]:
    size = max(10, target.concurrency)  # one pooled connection per task in flight
    async with niquests.AsyncSession(pool_maxsize=size) as session:
        if not target.keepalive:
            session.headers["Connection"] = "close"  # no_pool, as for the sync Session
        url, body = target.url, target.body

        if target.method == "POST":

            async def fetch() -> Fetched:
                r = await session.post(url, data=body)
                return r.status_code or 0, r.content

        elif target.decode == "json":

            async def fetch() -> Fetched:
                r = await session.get(url)
                return r.status_code or 0, r.json()

        elif target.decode == "text":

            async def fetch() -> Fetched:
                r = await session.get(url)
                return r.status_code or 0, r.text

        else:

            async def fetch() -> Fetched:
                r = await session.get(url)
                return r.status_code or 0, r.content

        yield fetch
