"""aioduct: one pooled Client shared by the tasks; the loop (asyncio or uvloop) is the runner's.

h2c scenarios: ``Client(http2_prior_knowledge=True)``, so every task shares one h2c
connection (concurrent requests are streams of it). TLS scenarios: ``verify=`` the run's CA
file, ``http2=`` whether ALPN may offer h2 (see aioduct_common, also for gzip).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aioduct
from benches import streams
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

        if target.kind != "request":
            with streams.download_path() as path:
                yield stream_fetch(client, target, path)
            return

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


def stream_fetch(client: aioduct.Client, target: Target, path: Path) -> AsyncFetch:
    """The streams-and-formats scenarios (benches.streams), each through aioduct's own API:
    ``client.sse()``, ``files=``, a generator as ``content=``, ``client.stream()`` with
    ``aiter_bytes()``, ``client.download(chunks=N)`` (one stream: ``client.stream()``
    into the file)."""
    url, kind = target.url, target.kind

    if kind == "sse":

        async def fetch() -> Fetched:
            async with client.sse(url, reconnect=False) as source:
                assert source.response is not None  # (the stream ends it)
                status = source.response.status
                events = [event.data async for event in source]
            return status, events

    elif kind == "multipart":
        form = streams.form_fields()
        content = streams.file_content(target.body_size)

        async def fetch() -> Fetched:
            files = streams.form_files(content)
            r = await client.post(url, data=form, files=files)
            return r.status, r.text

    elif kind == "upload_stream":
        chunks = streams.upload_chunks(target.body_size)

        async def fetch() -> Fetched:
            r = await client.post(url, content=streams.aiterate(chunks))
            return r.status, r.text

    elif kind == "body_stream":

        async def fetch() -> Fetched:
            async with client.stream("GET", url) as r:
                return r.status, [chunk async for chunk in r.aiter_bytes()]

    elif target.chunks:
        chunks_n = target.chunks

        async def fetch() -> Fetched:
            await client.download(url, path, chunks=chunks_n, resume=False)
            return 200, path  # download() raises unless every range came back right

    else:

        async def fetch() -> Fetched:
            async with client.stream("GET", url) as r:
                with open(path, "wb") as f:  # noqa: ASYNC230 (as download() writes)
                    async for chunk in r.aiter_bytes():
                        f.write(chunk)
                return r.status, path

    return fetch
